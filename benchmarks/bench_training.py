"""RLlib training throughput: env steps/s with 1 and 2 env runners, learner updates/s.

What is measured (one process, one loopback Ray with ``runners + 1`` logical CPUs per
configuration): PPO on ``forklift/GridFleetMA-v0`` (4 robots, the shared
PolicyValueNet) built by the adapter from ``configs/train/local.yaml``'s defaults
(``--batch`` env steps per iteration, ``--minibatch``, ``--epochs``), first with 1 remote
env runner, then with 2. Each configuration runs ``--warmup`` iterations (not timed:
actor start-up, first weight sync), then ``--iters`` timed ones. Per configuration:

* sampled env steps/s = env steps sampled / seconds the iteration waited for samples
  (RLlib's ``env_runner_sampling_timer``; an env step moves all 4 robots);
* iteration env steps/s = env steps / wall seconds of the whole iteration (sampling +
  learner update + weight sync);
* learner updates/s = SGD minibatch updates / seconds in the learner update.

Scaling efficiency = sampled steps/s with 2 runners / (2 x with 1 runner). With
``--cartpole`` the same is measured for RLlib's stock PPO on CartPole-v1 (the reference).
The learner runs in this process (``num_learners=0``); every process uses one torch
thread. The machine may be shared: the load average is printed with the results.

Run: ``python benchmarks/bench_training.py [--cartpole]``. The last line prints the
numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import torch

from agent.config import TrainSection
from learning import rllib_adapter as rl


def measure(sec: TrainSection, *, warmup: int, iters: int, cartpole: bool) -> dict[str, float]:
    """Sampled/iteration env steps per second and learner updates per second of one config."""
    import ray

    ray.shutdown()
    rl.init_ray(sec)
    if cartpole:
        algo = rl.cartpole_reference_config(sec).build_algo()
    else:
        algo = rl.build_algorithm(sec, stage="grid", seed=0, init_weights=None)
    try:
        for _ in range(warmup):
            algo.train()
        steps = sample_s = wall_s = learn_s = updates = 0.0
        for _ in range(iters):
            t0 = time.perf_counter()
            m = rl.iteration_metrics(algo.train())
            wall_s += time.perf_counter() - t0
            steps += m["env_steps"] or 0.0
            sample_s += m["sample_s"] or 0.0
            learn_s += m["learn_s"] or 0.0
            if m["minibatch"]:
                updates += round((m["module_steps"] or 0.0) / m["minibatch"])
    finally:
        algo.stop()
        ray.shutdown()
    return {"sampled_sps": steps / max(sample_s, 1e-9), "iteration_sps": steps / max(wall_s, 1e-9),
            "updates_per_s": updates / max(learn_s, 1e-9), "env_steps": steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=2000, help="env steps per iteration")
    ap.add_argument("--minibatch", type=int, default=250)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--cartpole", action="store_true", help="also measure RLlib's CartPole PPO")
    args = ap.parse_args()
    torch.set_num_threads(1)
    base = TrainSection(train_batch_size=args.batch, minibatch_size=args.minibatch, num_epochs=args.epochs)
    envs = [("grid", False)] + ([("cartpole", True)] if args.cartpole else [])
    summary = []
    for name, cartpole in envs:
        res = {}
        for n in (1, 2):
            sec = dataclasses.replace(base, num_env_runners=n, num_cpus=n + 1)
            res[n] = measure(sec, warmup=args.warmup, iters=args.iters, cartpole=cartpole)
            r = res[n]
            print(f"{name:8s} runners={n}: sampled {r['sampled_sps']:7.0f} env steps/s, iteration "
                  f"{r['iteration_sps']:7.0f} env steps/s, learner {r['updates_per_s']:6.1f} updates/s "
                  f"({r['env_steps']:.0f} steps timed)", flush=True)
        eff = res[2]["sampled_sps"] / (2 * res[1]["sampled_sps"])
        summary.append(f"{name}: {res[1]['sampled_sps']:.0f} / {res[2]['sampled_sps']:.0f} env steps/s "
                       f"(1 / 2 runners), scaling efficiency {100 * eff:.0f}%, learner "
                       f"{res[1]['updates_per_s']:.1f} updates/s")
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs")
    print("; ".join(summary))


if __name__ == "__main__":
    main()
