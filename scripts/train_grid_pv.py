"""Pre-train the grid policy/value network, and measure planning efficiency with it.

``train`` generates seeded grid-model data (shortest-path expert targets, see
``learning.grid_data``), trains a fresh ``PolicyValueNet`` (``learning.pretrain``) on one
CPU thread and writes the weights as safetensors + JSON metadata. ``eval`` runs
``planning.evaluation.run_planning_eval`` with the network beside the rollout / uniform /
distance evaluators and prints return vs simulations and the planning efficiency.

Usage:
    python scripts/train_grid_pv.py train [--seed 0] [--steps 4000] [--situations 8192]
        [--out learning/weights/grid_pv.safetensors]
    python scripts/train_grid_pv.py eval [--weights learning/weights/grid_pv.safetensors]
        [--evaluators network,rollout,uniform,distance] [--sims 1,2,4,...,256]
        [--situations 24] [--seed 0] [--json out.json] [--plot out.png]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from learning.checkpoint import load_policy_value, save_policy_value
from learning.evaluator import NetworkEvaluator
from learning.grid_data import GridDataConfig
from learning.pretrain import PretrainConfig, action_agreement, pretrain
from planning.evaluation import (
    DEFAULT_SIMS,
    plot_planning_eval,
    run_planning_eval,
    standard_evaluators,
)
from planning.situations import sample_situations
from sim.layout import LayoutConfig, generate_layout

# the behaviour-cloned weights this script writes (the RL warm start; not the shipped default)
GRID_PV = Path(__file__).resolve().parents[1] / "learning" / "weights" / "grid_pv.safetensors"

EVALUATORS = ("network", "rollout", "uniform", "distance")


def _ints(text: str) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}; allowed comma-separated integers") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}; allowed integers >= 1")
    return out


def _names(text: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in text.split(",") if v.strip())
    bad = [n for n in names if n not in EVALUATORS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"{text!r}; allowed a subset of {','.join(EVALUATORS)}")
    return names


def cmd_train(args: argparse.Namespace) -> int:
    data = replace(GridDataConfig(), n_situations=args.situations)
    cfg = PretrainConfig(seed=args.seed, data=data, steps=args.steps)
    layout = generate_layout(LayoutConfig())
    t0 = time.perf_counter()
    net, log, info = pretrain(layout, cfg, log_every=args.log_every)
    model, states = sample_situations(
        layout,
        ["open"] * 500,
        np.random.default_rng(args.seed + 10_000),
        config=data.model_config(),
    )
    info["heldout_open_agreement"] = action_agreement(net, model, states)
    info["wall_s"] = round(time.perf_counter() - t0, 1)
    info["command"] = " ".join(["python", "scripts/train_grid_pv.py", *sys.argv[1:]])
    path = save_policy_value(net, args.out, training=info)
    print(f"validation {json.dumps(log.val)}")
    print(
        f"held-out open-aisle agreement with the shortest path: "
        f"{info['heldout_open_agreement']:.3f}"
    )
    print(
        f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) in {info['wall_s']:.0f} s "
        f"(data {info['data_wall_s']:.0f} s, training {info['train_wall_s']:.0f} s)"
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    layout = generate_layout(LayoutConfig())
    specs = standard_evaluators([n for n in args.evaluators if n != "network"])
    if "network" in args.evaluators:
        net, _ = load_policy_value(args.weights)
        specs = {"network": NetworkEvaluator(net), **specs}
    t0 = time.perf_counter()
    res = run_planning_eval(
        layout, specs, sims=args.sims, n_situations=args.situations, seed=args.seed
    )
    names = list(res.mean_return)
    print("mean return (undiscounted, episode ends at the first delivery or 60 steps)")
    print("sims " + "".join(f"{n:>18s}" for n in names))
    for i, s in enumerate(res.sims):
        print(
            f"{s:4d} "
            + "".join(f"{res.mean_return[n][i]:+10.3f} +-{res.stderr[n][i]:5.3f}" for n in names)
        )
    print(
        "ms/decision (batched over all situations): "
        + ", ".join(f"{n} {np.round(res.decision_ms[n]).astype(int).tolist()}" for n in names)
    )
    print(
        f"best {res.best_return:+.3f}, worst {res.worst_return:+.3f}; simulations to reach "
        "95% of the way from worst to best: "
        + ", ".join(
            f"{n}={res.efficiency[n] if res.efficiency[n] else f'>{res.sims[-1]}'}" for n in names
        )
    )
    print(f"wall {time.perf_counter() - t0:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(res.to_dict(), indent=1))
    if args.plot:
        plot_planning_eval(res, args.plot)
    return 0


def main(argv: list[str] | None = None) -> int:
    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    tr = sub.add_parser("train", help="pre-train and write the weights")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--steps", type=int, default=PretrainConfig().steps)
    tr.add_argument("--situations", type=int, default=GridDataConfig().n_situations)
    tr.add_argument("--out", type=Path, default=GRID_PV)
    tr.add_argument("--log-every", type=int, default=500)
    ev = sub.add_parser("eval", help="planning efficiency: return vs simulations")
    ev.add_argument("--weights", type=Path, default=GRID_PV)
    ev.add_argument("--evaluators", type=_names, default=EVALUATORS)
    ev.add_argument("--sims", type=_ints, default=DEFAULT_SIMS)
    ev.add_argument("--situations", type=int, default=24)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--json", type=str, default=None)
    ev.add_argument("--plot", type=str, default=None)
    args = ap.parse_args(argv)
    try:
        return cmd_train(args) if args.cmd == "train" else cmd_eval(args)
    except ValueError as e:  # bad config values / checkpoints: one line, exit code 2
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
