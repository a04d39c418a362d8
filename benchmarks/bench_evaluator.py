"""The planner's network evaluator: onnxruntime (``planner.runtime=onnx``, the default) vs
eager torch (``runtime=torch``), side by side, on one core.

Two measurements with the shipped weights:

1. one ``evaluate`` call (ms) at batches 1, 4, 16, 64 (rows = robots deciding at once);
2. one fleet decision as the agent makes it: a Gumbel MCTS search of 16 simulations over
   the grid model for 4 robots (seeded situations of the small warehouse), ms per search.

Timings alternate the two runtimes and keep each side's best of ``--repeats`` (load on a
shared machine only ever slows a run down). torch runs with one intra-op thread, ORT with
one intra- and one inter-op thread. The last line prints the ratios torch / onnx.

Run: ``python benchmarks/bench_evaluator.py [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from learning.evaluator import load_network_evaluator
from learning.export import parity_inputs
from learning.onnx_evaluator import load_onnx_evaluator
from planning import MCTS, GridModelConfig, MCTSConfig
from planning.situations import sample_situations
from sim.layout import LayoutConfig, generate_layout

BATCHES = (1, 4, 16, 64)


def _best(fn, n: int, repeats: int) -> float:
    """Best mean ms per call of ``fn`` over ``repeats`` runs of ``n`` calls."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n * 1e3)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--calls", type=int, default=100, help="evaluate calls per timed run")
    ap.add_argument("--searches", type=int, default=10, help="fleet decisions per timed run")
    args = ap.parse_args()
    torch.set_num_threads(1)
    evs = {"torch": load_network_evaluator(), "onnx": load_onnx_evaluator()}
    ratios = []
    for b in BATCHES:
        x = parity_inputs(evs["torch"].net, b, seed=0)
        enc = {k: x[k] for k in ("proprio", "occupancy", "action_mask")}
        ms = {}
        for name, ev in evs.items():
            ev.evaluate(enc)
        for _ in range(2):  # alternate
            for name, ev in evs.items():
                ms[name] = min(ms.get(name, float("inf")), _best(lambda: ev.evaluate(enc), args.calls, args.repeats))
        ratios.append(ms["torch"] / ms["onnx"])
        print(f"evaluate B={b:3d}: torch {ms['torch']:.3f} ms, onnx {ms['onnx']:.3f} ms, ratio {ratios[-1]:.1f}x")
    layout = generate_layout(LayoutConfig())
    model, states = sample_situations(layout, ["open", "blocked", "congested", "open"], np.random.default_rng(0),
                                      config=GridModelConfig(horizon_steps=60))
    cfg = MCTSConfig(num_simulations=16, rule="gumbel", gumbel_scale=0.0, max_depth=24, max_considered_actions=5)
    searches = {name: MCTS(model, ev, cfg) for name, ev in evs.items()}
    ms = {}
    for name, m in searches.items():
        m.search(states, seed=0)
    for _ in range(2):
        for name, m in searches.items():
            ms[name] = min(ms.get(name, float("inf")),
                           _best(lambda: m.search(states, seed=0), args.searches, args.repeats))
    same = np.array_equal(searches["torch"].search(states, seed=0).action, searches["onnx"].search(states, seed=0).action)
    print(f"fleet decision (4 robots, 16 simulations): torch {ms['torch']:.2f} ms, onnx {ms['onnx']:.2f} ms, "
          f"same actions: {same}")
    print(f"ratio torch/onnx: evaluate B=4 {ratios[1]:.1f}x, fleet decision {ms['torch'] / ms['onnx']:.1f}x")


if __name__ == "__main__":
    main()
