"""The shipped weights: the RL-trained ``rl_pv`` (``DEFAULT_WEIGHTS``: what ``forklift run``
and the planner load) and its behaviour-cloning warm start ``grid_pv`` load, are small, act along shortest paths and value progress."""

from __future__ import annotations

import numpy as np
import pytest
from learning_helpers import EVAL_MODEL, small_net

from learning.checkpoint import load_policy_value, read_metadata
from learning.evaluator import DEFAULT_WEIGHTS, GRID_PV_WEIGHTS, RL_PV_WEIGHTS, NetworkEvaluator
from learning.expert import ShortestPathExpert
from learning.network import PolicyValueConfig
from planning import MCTS, MCTSConfig
from planning.situations import sample_situations

HELD_OUT_SEED = 424242  # training draws its situations from seed 0 (and 10000 for its check)


@pytest.fixture(scope="module", params=[RL_PV_WEIGHTS, GRID_PV_WEIGHTS], ids=["rl_pv", "grid_pv"])
def shipped(request):
    if not request.param.exists():
        pytest.fail(f"missing shipped weights {request.param}")
    return load_policy_value(request.param, expected=PolicyValueConfig())


def test_shipped__rl_pv_is_the_rl_network_and_documented() -> None:
    _, meta = load_policy_value(RL_PV_WEIGHTS)
    t = meta["training"]
    assert RL_PV_WEIGHTS.stat().st_size < 2_000_000
    assert DEFAULT_WEIGHTS == RL_PV_WEIGHTS  # what forklift run and the planner load
    assert t["train"]["algorithm"] == "PPO" and t["command"].startswith("forklift train ")
    # trained clock-free, as the agent's search model encodes (proprio[11] ~ 0)
    assert t["train"]["grid_clock"] is False
    assert t["value_fit"]["command"].startswith("python scripts/fit_rl_value.py")
    assert t["value_fit"]["clock"] is False
    assert read_metadata(RL_PV_WEIGHTS)["sha256"] == meta["sha256"]


def test_shipped__grid_pv_is_the_expert_trained_warm_start() -> None:
    _, meta = load_policy_value(GRID_PV_WEIGHTS)
    assert GRID_PV_WEIGHTS.stat().st_size < 2_000_000
    assert meta["training"]["config"]["data"]["terminate_on_delivery"] is True
    assert read_metadata(GRID_PV_WEIGHTS)["sha256"] == meta["sha256"]


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
    net, _ = shipped
    mcts = MCTS(model, NetworkEvaluator(net), MCTSConfig(num_simulations=1))
    done = np.zeros(16, bool)
    for t in range(60):
        res = mcts.search(states, seed=t)
        states, _, d = model.step(states, res.action, np.random.default_rng(t))
        done |= d & (states.delivered > 0)
    assert done.mean() >= 0.9
