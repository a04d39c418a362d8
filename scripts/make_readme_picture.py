"""Regenerate the README picture ``docs/assets/warehouse.png`` from a real simulator state.

A scripted fleet (the envs' built-in BFS + pure-pursuit controller) works the default
warehouse in the ``exceptions`` scenario (pallets, people, breakdowns) for ``--time-s``
seconds; the top-down renderer then draws the state. Optionally also writes a GIF.

Usage:
    python scripts/make_readme_picture.py [--seed 0] [--time-s 45] [--width 720]
        [--out docs/assets/warehouse.png] [--gif docs/assets/warehouse.gif]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import imageio.v2 as imageio

from sim.config import FaultsConfig
from sim.env_core import FleetCore, make_env_config
from sim.render import write_gif


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-s", type=float, default=45.0, help="sim seconds before the snapshot")
    ap.add_argument("--width", type=int, default=720, help="image width (px)")
    ap.add_argument("--robots", type=int, default=6)
    ap.add_argument("--out", type=Path, default=Path("docs/assets/warehouse.png"))
    ap.add_argument("--gif", type=Path, default=None, help="also write a GIF of the run")
    args = ap.parse_args(argv)
    faults = FaultsConfig(enabled=True, blocked_aisle_rate=2.0, breakdown_rate=0.5, n_people=2,
                          blocked_aisle_duration=(60.0, 120.0))
    cfg = make_env_config(n_robots=args.robots, duration_s=args.time_s + 1.0, faults=faults,
                          orders_per_min=8.0)
    core = FleetCore(cfg, learners=())
    core.reset(args.seed)
    frames, every = [], max(1, round(0.5 / core.dt))  # GIF at 2 sim-Hz
    while core.sim.time < args.time_s - 1e-9:
        core.tick()
        if args.gif is not None and core._tick % every == 0:
            frames.append(core.render(args.width // 2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    imageio.imwrite(args.out, core.render(args.width))
    if args.gif is not None:
        write_gif(frames, args.gif, fps=10)
    core.close()
    print(f"wrote {args.out}" + (f" and {args.gif}" if args.gif else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
