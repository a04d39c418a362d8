"""Localizer throughput: predict+update cycles per second per robot on one core.

For the EKF and the UKF, with lidar scan matching on every frame (20 Hz), at 5 Hz
(``lidar_period_s=0.2``) and without lidar; all other sensors nominal (odometry, IMU,
UWB to 6 anchors at 20 Hz, floor fiducials). Frames come from the synthetic generator
(``perception.synthetic``, the simulator's noise defaults), generated once, untimed. Each
configuration is timed ``--repeats`` times over the whole episode; the best run is
reported (machine noise only ever slows a run down). The rate uses this process's CPU
time (single-threaded, BLAS pinned to one thread, so CPU time = one core's time; on a
shared machine wall time also counts other jobs); the wall-clock rate is printed beside
it. Also times the blockage detector.

A 20 Hz control loop for 50 robots needs 1000 cycles/s on one core: the last line says
which configurations fit.

Run: ``python benchmarks/bench_localization.py [--seconds 20] [--repeats 3]``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core: no BLAS threads

import argparse
import dataclasses
import time

import numpy as np

from perception import (
    BlockageDetector,
    Localizer,
    LocalizerConfig,
    generate_scenario,
    nominal_config,
)
from sim.layout import LayoutConfig, generate_layout

FLEET_CYCLES = 50 * 20  # 50 robots at 20 Hz


def _time(fn, repeats: int) -> tuple[float, float]:
    """Best (CPU seconds, wall seconds) of ``repeats`` calls."""
    cpu = wall = float("inf")
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu = min(cpu, time.process_time() - c0)
        wall = min(wall, time.perf_counter() - w0)
    return cpu, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="episode length (s of sim time)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    layout = generate_layout(LayoutConfig())
    run = generate_scenario(
        layout, nominal_config(args.seconds), np.random.default_rng(args.seed)
    ).runs[0]
    frames = run.frames
    no_lidar = [dataclasses.replace(f, lidar=None) for f in frames]
    Localizer(layout, LocalizerConfig(), run.initial_pose)  # build the map field (cached), untimed

    results: dict[str, float] = {}
    for kind in ("ekf", "ukf"):
        for label, period, fr in (
            ("lidar@20Hz", 0.0, frames),
            ("lidar@5Hz", 0.2, frames),
            ("no-lidar", 0.0, no_lidar),
        ):
            cfg = LocalizerConfig(kind=kind, lidar_period_s=period)

            def work(cfg: LocalizerConfig = cfg, fr: list = fr) -> None:
                loc = Localizer(layout, cfg, run.initial_pose)
                for f in fr:
                    loc.update(f)

            cpu, wall = _time(work, args.repeats)
            rate = len(fr) / cpu
            results[f"{kind} {label}"] = rate
            print(
                f"{kind:>4} {label:>10}: {rate:8.0f} cycles/s per robot "
                f"({1e3 / rate:.2f} ms/cycle CPU; wall {len(fr) / wall:.0f}/s)"
            )

    poses = [
        dataclasses.replace(run.initial_pose, x=float(t[0]), y=float(t[1]), yaw=float(t[2]))
        for t in run.truth
    ]

    def blockage() -> None:
        det = BlockageDetector(layout)
        for f, p in zip(frames, poses):
            det.update(p, f.lidar, f.stamp)

    b_cpu, b_wall = _time(blockage, args.repeats)
    b_rate = len(frames) / b_cpu
    print(
        f"blockage detector: {b_rate:8.0f} scans/s "
        f"({1e3 / b_rate:.2f} ms/scan CPU; wall {len(frames) / b_wall:.0f}/s)"
    )

    fits = [k for k, v in results.items() if v >= FLEET_CYCLES]
    print(
        f"50 robots x 20 Hz = {FLEET_CYCLES} cycles/s on one core: "
        f"{'fits with ' + ', '.join(fits) if fits else 'does not fit with any configuration'}"
    )
    print(
        "cycles/s per robot (one core): "
        + ", ".join(f"{k} {v:.0f}" for k, v in results.items())
        + f"; blockage {b_rate:.0f} scans/s; fleet needs {FLEET_CYCLES}"
    )


if __name__ == "__main__":
    main()
