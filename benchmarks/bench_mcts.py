"""Simulations per second of planning.MCTS, side by side with DeepMind's mctx (JAX, CPU).

Same trivial problem for both: a deterministic random-transition MDP (1000 states,
A = 7 actions, table lookups for next state and reward), a zero-cost evaluator (flat
prior, zero value), 64 simulations, discount 0.99, no root noise. Batches 1, 16, 256;
PUCT vs ``mctx.muzero_policy`` and Gumbel vs ``mctx.gumbel_muzero_policy``. mctx is
jit-compiled once per batch size before timing; ours runs one untimed search first too
(numba kernels: loaded from the on-disk cache, or compiled once, ~15 s, after a change
of ``planning/search_jit.py``). Timings alternate ours / mctx and keep each side's best
of several repeats, so background load hurts both alike.

Run: ``python benchmarks/bench_mcts.py [--seconds 1.0]``. Without mctx / jax installed
(``pip install -e .[bench]``) only our numbers are printed. The last line prints the
ratios ours / mctx.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from planning import MCTS, MCTSConfig, UniformEvaluator

N_STATES, N_ACTIONS, N_SIMS, DISCOUNT = 1000, 7, 64, 0.99
BATCHES = (1, 16, 256)


class TableModel:
    """Deterministic random MDP: next state and reward from [S, A] tables."""

    deterministic = True
    num_actions = N_ACTIONS

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.next = rng.integers(0, N_STATES, (N_STATES, N_ACTIONS))
        self.reward = rng.uniform(-1.0, 0.0, (N_STATES, N_ACTIONS))

    def legal_actions(self, s: np.ndarray) -> np.ndarray:
        return np.ones((len(s), N_ACTIONS), bool)

    def step(self, s: np.ndarray, a: np.ndarray, rng: np.random.Generator):
        return self.next[s, a], self.reward[s, a], np.zeros(len(s), bool)

    def encode(self, s: np.ndarray) -> np.ndarray:
        return s


class FlatEvaluator(UniformEvaluator):
    """Flat prior, zero value, straight from the raw states (no encoding)."""

    def evaluate_states(self, states: np.ndarray, rng: np.random.Generator):
        return np.zeros((len(states), N_ACTIONS), np.float32), np.zeros(len(states))


def ours(model: TableModel, rule: str, batch: int):
    mcts = MCTS(
        model,
        FlatEvaluator(N_ACTIONS),
        MCTSConfig(num_simulations=N_SIMS, rule=rule, discount=DISCOUNT),
    )
    roots = np.arange(batch) % N_STATES
    counter = iter(range(1 << 30))
    return lambda: mcts.search(roots, seed=next(counter)).action


def theirs(model: TableModel, rule: str, batch: int):
    import functools

    import jax
    import jax.numpy as jnp
    import mctx

    nxt, rew = jnp.asarray(model.next, jnp.int32), jnp.asarray(model.reward, jnp.float32)

    def recurrent_fn(params, key, action, emb):
        b = emb.shape[0]
        out = mctx.RecurrentFnOutput(
            reward=rew[emb, action],
            discount=jnp.full((b,), DISCOUNT),
            prior_logits=jnp.zeros((b, N_ACTIONS)),
            value=jnp.zeros((b,)),
        )
        return out, nxt[emb, action]

    root = mctx.RootFnOutput(
        prior_logits=jnp.zeros((batch, N_ACTIONS)),
        value=jnp.zeros((batch,)),
        embedding=jnp.arange(batch, dtype=jnp.int32) % N_STATES,
    )
    if rule == "puct":
        policy = functools.partial(mctx.muzero_policy, dirichlet_fraction=0.0)
    else:
        policy = mctx.gumbel_muzero_policy
    fn = jax.jit(functools.partial(policy, recurrent_fn=recurrent_fn, num_simulations=N_SIMS))
    keys = iter(range(1 << 30))
    run = lambda: jax.block_until_ready(fn(None, jax.random.PRNGKey(next(keys)), root).action)
    run()  # compile
    return run


def best_time(fn, seconds: float) -> float:
    """Best wall time of one call over repeats filling ``seconds``."""
    fn()
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=1.0, help="timing budget per side and round"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds per configuration"
    )
    args = parser.parse_args()
    model = TableModel()
    try:
        import mctx  # noqa: F401

        have_mctx = True
    except ImportError:
        have_mctx = False
        print("mctx / jax not installed: comparison skipped (pip install -e .[bench])")
    ratios = []
    print(f"{'rule':7s} {'batch':>5s} {'ours sims/s':>13s} {'mctx sims/s':>13s} {'ratio':>7s}")
    for rule in ("puct", "gumbel"):
        for batch in BATCHES:
            f_ours = ours(model, rule, batch)
            f_theirs = theirs(model, rule, batch) if have_mctx else None
            t_ours = t_theirs = float("inf")
            for _ in range(args.rounds):
                t_ours = min(t_ours, best_time(f_ours, args.seconds))
                if f_theirs is not None:
                    t_theirs = min(t_theirs, best_time(f_theirs, args.seconds))
            rate = batch * N_SIMS / t_ours
            if f_theirs is None:
                print(f"{rule:7s} {batch:5d} {rate:13.0f}")
                continue
            ref = batch * N_SIMS / t_theirs
            ratios.append(f"{rule} B={batch} {rate / ref:.2f}x")
            print(f"{rule:7s} {batch:5d} {rate:13.0f} {ref:13.0f} {rate / ref:6.2f}x", flush=True)
    print("ratio ours/mctx (sims/s): " + (", ".join(ratios) if ratios else "n/a (mctx missing)"))


if __name__ == "__main__":
    main()
