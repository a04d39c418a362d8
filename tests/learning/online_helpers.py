"""Helpers of the online-learning tests: real grid-model transitions, small learners."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from learning.expert import ShortestPathExpert
from learning.online import OnlineConfig
from planning.evaluators import random_legal_actions
from planning.grid_model import GridModelConfig
from planning.situations import sample_situations

EVAL_MODEL = GridModelConfig(terminate_on_delivery=True, horizon_steps=60)

#: small, fast learner settings (tests on 2 cores); every other field is the default.
FAST = OnlineConfig(
    recent_size=256, reservoir_size=1024, batch_size=32, steps_per_update=20,
    min_samples=64, min_new_samples=32, update_interval_s=0.0, gate_situations=9,
    gate_horizon=40, kpi_window=2, fisher_samples=32,
)


def fast_config(**kw) -> OnlineConfig:
    return replace(FAST, **kw)


def expert_transitions(
    layout, n: int, steps: int, seed: int, *, epsilon: float = 0.3, invert: bool = False
) -> list[tuple]:
    """Transitions of an epsilon-greedy shortest-path expert played in the grid model.

    Returns:
        (obs, action, reward, next_obs, done) per robot step, rows of ``n`` situations
        played ``steps`` steps (finished rows stop); rewards negated when ``invert``.
    """
    rng = np.random.default_rng(seed)
    kinds = ["open", "blocked", "congested"] * (n // 3 + 1)
    model, states = sample_situations(layout, kinds[:n], rng, config=EVAL_MODEL)
    expert = ShortestPathExpert(model)
    alive = np.ones(n, bool)
    out = []
    for _ in range(steps):
        enc = model.encode(states)
        act = expert.act(states, rng)
        rand = random_legal_actions(model.legal_actions(states), rng)
        act = np.where(rng.random(n) < epsilon, rand, act)
        nxt, r, d = model.step(states, act, rng)
        enc2 = model.encode(nxt)
        for i in np.flatnonzero(alive):
            obs = {k: v[i] for k, v in enc.items()}
            nobs = {k: v[i] for k, v in enc2.items()}
            out.append((obs, int(act[i]), float(-r[i] if invert else r[i]), nobs, bool(d[i])))
        alive &= ~d
        states = nxt
        if not alive.any():
            break
    return out
