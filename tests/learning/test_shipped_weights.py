"""The shipped grid weights: they load, are small, and act along shortest paths."""

from __future__ import annotations

import numpy as np
import pytest
from learning_helpers import EVAL_MODEL, small_net

from learning.checkpoint import load_policy_value, read_metadata
from learning.evaluator import DEFAULT_WEIGHTS, NetworkEvaluator, load_network_evaluator
from learning.expert import ShortestPathExpert
from learning.network import PolicyValueConfig
from planning import MCTS, MCTSConfig
from planning.situations import sample_situations

HELD_OUT_SEED = 424242  # training draws its situations from seed 0 (and 10000 for its check)


@pytest.fixture(scope="module")
def shipped():
    if not DEFAULT_WEIGHTS.exists():
        pytest.fail(
            f"missing shipped weights {DEFAULT_WEIGHTS}; run scripts/train_grid_pv.py train"
        )
    return load_policy_value(DEFAULT_WEIGHTS, expected=PolicyValueConfig())


def test_shipped__load_small_and_documented(shipped) -> None:
    _, meta = shipped
    assert DEFAULT_WEIGHTS.stat().st_size < 2_000_000
    assert meta["training"]["config"]["data"]["terminate_on_delivery"] is True
    assert read_metadata(DEFAULT_WEIGHTS)["sha256"] == meta["sha256"]


def _agreement(net, layout, kind: str, n: int) -> float:
    model, states = sample_situations(
        layout, [kind] * n, np.random.default_rng(HELD_OUT_SEED), config=EVAL_MODEL
    )
    best = ShortestPathExpert(model).optimal_actions(states)
    logits, _ = NetworkEvaluator(net).evaluate(model.encode(states))
    return float(best[np.arange(n), logits.argmax(1)].mean())


def test_shipped__greedy_action_follows_the_shortest_path(shipped, layout) -> None:
    net, _ = shipped
    trained = _agreement(net, layout, "open", 300)
    untrained = _agreement(small_net(), layout, "open", 300)
    assert trained >= 0.95, trained
    assert untrained < 0.6, untrained  # the check can tell a trained net from a random one


def test_shipped__value_ranks_near_the_goal_higher(shipped, layout) -> None:
    """Along a shortest path the value rises (fewer steps left, same order)."""
    net, _ = shipped
    model, states = sample_situations(
        layout, ["open"] * 100, np.random.default_rng(HELD_OUT_SEED), config=EVAL_MODEL
    )
    ex = ShortestPathExpert(model)
    ev = NetworkEvaluator(net)
    _, v0 = ev.evaluate(model.encode(states))
    nxt, _, _ = model.step(
        states, ex.act(states, np.random.default_rng(0)), np.random.default_rng(0)
    )
    _, v1 = ev.evaluate(model.encode(nxt))
    assert (v1 > v0).mean() >= 0.9


def test_shipped__one_simulation_search_delivers_open_orders(shipped, layout) -> None:
    model, states = sample_situations(
        layout, ["open"] * 16, np.random.default_rng(HELD_OUT_SEED), config=EVAL_MODEL
    )
    mcts = MCTS(model, load_network_evaluator(), MCTSConfig(num_simulations=1))
    done = np.zeros(16, bool)
    for t in range(60):
        res = mcts.search(states, seed=t)
        states, _, d = model.step(states, res.action, np.random.default_rng(t))
        done |= d & (states.delivered > 0)
    assert done.mean() >= 0.9
