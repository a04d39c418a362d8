"""Agent-steps per second of the grid warehouse, side by side with RWARE.

What is measured, for every env: ``gymnasium.make(id)`` as a user gets it (the
``OrderEnforcing`` and ``PassiveEnvChecker`` wrappers that make adds; no ``TimeLimit``
is registered for any of them), stepped with ``env.action_space.sample()`` (random,
illegal actions included) and reset on termination or truncation, all inside the timed
window; reported as agent-steps per second (env steps x agents per step), best of
``--rounds`` alternating windows of ``--seconds`` each (the machine may be shared: load
hurts every entry alike, the best window is the least disturbed one).

- ``GridWarehouse-v0``: our gymnasium env, one robot per step (+ 3 scripted others that
  replan with A* when their plan ends); 1 agent-step per env step. Its A* answers are
  memoised per layout (``planning.situations.StaticPaths``): the memo fills as (start,
  goal) pairs recur (the default layout has 168^2 of them, mostly seen after ~10^5
  steps), so the rate grows over a run. Two bounds: ``(warm A* memo)`` fills the memo
  with every pair before timing (the steady state of a long training run);
  ``(cold A* memo)`` clears its own memo before every 20 steps (a fresh process).
- ``GridFleet-v0``: our fleet env, 4 robots per step, random actions.
- ``GridModel B=256``: the vectorised model, ``step`` + ``encode`` (observations) of 256
  independent robots per call, random legal actions: 256 agent-steps per call.
- ``rware-tiny-2ag-v2`` / ``rware-small-4ag-v2`` (robotic-warehouse, when installed):
  random actions; n_agents agent-steps per env step.

Run: ``python benchmarks/bench_grid.py``. Without ``rware`` (``pip install -e .[bench]``)
the comparison is skipped. The last line prints our rates divided by RWARE's best.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable

import gymnasium as gym
import numpy as np

import planning  # noqa: F401  (registers the envs)
from planning.evaluators import random_legal_actions
from planning.situations import StaticPaths, sample_situations
from sim.layout import LayoutConfig, generate_layout


def env_loop(env_id: str, paths: str = "", **kw) -> tuple[Callable[[int], None], int]:
    """``paths``: "warm" (every A* pair memoised first) or "cold" (memo cleared every run)."""
    env = gym.make(env_id, **kw)
    env.reset(seed=0)
    env.action_space.seed(0)
    sample = env.action_space.sample
    cold_paths = paths == "cold"
    if paths:  # a private memo
        sp = env.unwrapped._paths = StaticPaths(env.unwrapped.layout.free)
        if paths == "warm":
            for start in sp.free_cells:
                for goal in sp.free_cells:
                    sp.astar(start, goal)

    def run(n: int) -> None:
        if cold_paths:
            env.unwrapped._paths._memo.clear()
        for _ in range(n):
            _, _, term, trunc, _ = env.step(sample())
            if (np.any(term) if isinstance(term, (list, tuple)) else term) or (
                np.any(trunc) if isinstance(trunc, (list, tuple)) else trunc
            ):
                env.reset()

    agents = getattr(env.unwrapped, "n_agents", getattr(env.unwrapped, "n_robots", 1))
    return run, int(agents)


def model_loop(batch: int) -> tuple[Callable[[int], None], int]:
    layout = generate_layout(LayoutConfig())
    kinds = [("open", "blocked", "congested")[i % 3] for i in range(batch)]
    model, states = sample_situations(layout, kinds, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    box = [states]

    def run(n: int) -> None:
        st = box[0]
        for _ in range(n):
            st, _, _ = model.step(st, random_legal_actions(model.legal_actions(st), rng), rng)
            model.encode(st)
        box[0] = st

    return run, batch


def rate(run: Callable[[int], None], agents: int, seconds: float) -> float:
    """Agent-steps per second over a window of ``seconds``."""
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run(20)
        n += 20
    return n * agents / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    # rware returns a list of per-agent rewards; gymnasium's checker warns about it once
    warnings.filterwarnings("ignore", message=".*reward returned by `step\\(\\)` must be")
    print(
        "agent-steps/s of gymnasium.make(id) (OrderEnforcing + PassiveEnvChecker), "
        "action_space.sample() actions, resets included; "
        f"best of {args.rounds} windows of {args.seconds:g} s"
    )
    ours = {
        "GridWarehouse-v0 (warm A* memo)": env_loop("forklift/GridWarehouse-v0", paths="warm"),
        "GridWarehouse-v0 (cold A* memo)": env_loop("forklift/GridWarehouse-v0", paths="cold"),
        "GridFleet-v0 (4 robots)": env_loop("forklift/GridFleet-v0", n_robots=4),
        "GridModel B=256 step+encode": model_loop(256),
    }
    theirs = {}
    try:
        import rware  # noqa: F401

        for env_id in ("rware-tiny-2ag-v2", "rware-small-4ag-v2"):
            theirs[env_id] = env_loop(env_id)
    except ImportError:
        print("rware not installed: comparison skipped (pip install -e .[bench])")
    loops = {**ours, **theirs}
    results = dict.fromkeys(loops, 0.0)
    for run, _ in loops.values():
        run(5)  # warm up
    for _ in range(args.rounds):  # alternate, keep each one's best: load hurts all alike
        for name, (run, agents) in loops.items():
            results[name] = max(results[name], rate(run, agents, args.seconds))
    for name, value in results.items():
        print(f"{name:32s} {value:12.0f} agent-steps/s")
    if not theirs:
        print("ratio vs rware: n/a (rware missing)")
        return
    ref_name = max(theirs, key=lambda k: results[k])
    ref = results[ref_name]
    ratios = ", ".join(f"{name} {results[name] / ref:.1f}x" for name in ours)
    print(f"ratio vs {ref_name} ({ref:.0f} agent-steps/s): {ratios}")


if __name__ == "__main__":
    main()
