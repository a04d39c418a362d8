"""Control ticks per second of WarehouseSim vs raw PyBullet on the same world and motion.

Env: ``WarehouseSim.step`` with 4 robots, lidar on (all sensors but the camera).
Raw: what any env must pay anyway: a second, identical world (same config and seed)
replays, per tick, the env's recorded motor targets (one ``setJointMotorControlArray``
per robot), the same number of physics substeps and one ``rayTestBatch`` of the env's
recorded rays (prebuilt lists). A first untimed pass records them; the sim is
deterministic, so the timed env pass follows exactly the recorded motion. Env and raw
blocks are interleaved to share machine noise.

Run: ``python benchmarks/bench_sim.py [--ticks 600] [--robots 4]``. Last line:
``ratio env/raw = X`` (lower is better; target <= 1.5).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sim.config import SimConfig
from sim.types import TwistCmd
from sim.warehouse import WarehouseSim
from sim.world import World


def commands(k: int, n: int) -> list[TwistCmd]:
    """Gentle varied twists: robots move and turn, sometimes touching walls."""
    return [TwistCmd(0.6 * np.sin(0.02 * k + i), 0.8 * np.cos(0.03 * k + 2 * i)) for i in range(n)]


def record(cfg: SimConfig, ticks: int) -> tuple[list, list]:
    """Untimed pass: per tick, the motor targets and the lidar ray lists of the env."""
    sim = WarehouseSim(cfg, seed=0)
    drives: list[list] = [[] for _ in range(ticks)]
    rays: list = [None] * ticks
    world, k = sim.world, [0]
    drive, cast = world.drive, world.ray_batch

    def rec_drive(name: str, vx: float, vy: float, w: float) -> None:
        drives[k[0]].append((name, vx, vy, w))
        drive(name, vx, vy, w)

    def rec_cast(origins: np.ndarray, ends: np.ndarray, **kw: int):
        if k[0] < ticks:
            rays[k[0]] = (origins.tolist(), ends.tolist())
        return cast(origins, ends, **kw)

    world.drive, world.ray_batch = rec_drive, rec_cast  # type: ignore[method-assign]
    for k[0] in range(ticks):
        sim.step(commands(k[0], cfg.n_robots))
    sim.close()
    return drives, rays


def replay_raw(world: World, drives: list, rays: tuple, substeps: int) -> None:
    """One raw tick: motor targets, physics substeps, one ray batch."""
    for name, vx, vy, w in drives:
        world.drive(name, vx, vy, w)
    world.step(substeps)
    world.cast_rays_raw(*rays)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ticks", type=int, default=600)
    ap.add_argument("--robots", type=int, default=4)
    ap.add_argument("--block", type=int, default=50)
    args = ap.parse_args()
    cfg = SimConfig(n_robots=args.robots)
    drives, rays = record(cfg, args.ticks)
    env = WarehouseSim(cfg, seed=0)
    raw = WarehouseSim(cfg, seed=0)
    subs = round(cfg.world.physics_hz / cfg.world.control_hz)
    cmds = [commands(k, args.robots) for k in range(args.ticks)]
    t_env = t_raw = 0.0
    for b0 in range(0, args.ticks, args.block):
        b1 = min(args.ticks, b0 + args.block)
        t0 = time.perf_counter()
        for k in range(b0, b1):
            env.step(cmds[k])
        t1 = time.perf_counter()
        for k in range(b0, b1):
            replay_raw(raw.world, drives[k], rays[k], subs)
        t2 = time.perf_counter()
        t_env += t1 - t0
        t_raw += t2 - t1
    n_rays = len(rays[0][0])
    print(f"robots={args.robots} rays/tick={n_rays} substeps/tick={subs} ticks={args.ticks}")
    print(
        f"env: {args.ticks / t_env:.1f} ticks/s ({1e3 * t_env / args.ticks:.3f} ms/tick, "
        f"{args.ticks * env.dt / t_env:.1f}x real time)"
    )
    print(f"raw: {args.ticks / t_raw:.1f} ticks/s ({1e3 * t_raw / args.ticks:.3f} ms/tick)")
    env.close()
    raw.close()
    print(f"ratio env/raw = {t_env / t_raw:.3f}")


if __name__ == "__main__":
    main()
