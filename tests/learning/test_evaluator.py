"""NetworkEvaluator: the planning Evaluator protocol on GridModel.encode output."""

from __future__ import annotations

import numpy as np
import pytest
from learning_helpers import small_net

from learning.evaluator import NetworkEvaluator
from planning import MCTS, Evaluator, MCTSConfig


def test_evaluator__satisfies_the_protocol() -> None:
    ev = NetworkEvaluator(small_net())
    assert isinstance(ev, Evaluator)
    assert not hasattr(ev, "evaluate_states")  # the search must call evaluate(encode(...))


def test_evaluator__numpy_in_numpy_out(situations) -> None:
    model, states = situations
    logits, values = NetworkEvaluator(small_net()).evaluate(model.encode(states))
    assert isinstance(logits, np.ndarray) and isinstance(values, np.ndarray)
    assert logits.shape == (len(states), 7) and values.shape == (len(states),)
    assert logits.dtype == np.float32 and values.dtype == np.float32
    legal = model.legal_actions(states)
    assert (logits[~legal] < -1e8).all() and np.isfinite(values).all()


def test_evaluator__is_deterministic_and_chunking_invariant(situations) -> None:
    model, states = situations
    enc = model.encode(states)
    net = small_net()
    net.train()  # the evaluator must switch to eval mode itself
    a = NetworkEvaluator(net).evaluate(enc)
    b = NetworkEvaluator(net).evaluate(enc)
    c = NetworkEvaluator(net, max_batch=5).evaluate(enc)
    for x, y, z in zip(a, b, c):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_allclose(x, z, rtol=1e-5, atol=1e-6)


def test_evaluator__drives_a_seeded_search_reproducibly(situations) -> None:
    model, states = situations
    ev = NetworkEvaluator(small_net())
    mcts = MCTS(model, ev, MCTSConfig(num_simulations=8, chance_samples=2))
    r1, r2 = mcts.search(states, seed=3), mcts.search(states, seed=3)
    np.testing.assert_array_equal(r1.action, r2.action)
    np.testing.assert_array_equal(r1.visit_counts, r2.visit_counts)
    assert model.legal_actions(states)[np.arange(len(states)), r1.action].all()


def test_evaluator__missing_proprio_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="proprio"):
        NetworkEvaluator(small_net()).evaluate({"occupancy": np.zeros((1, 11, 11))})


def test_evaluator__bad_max_batch() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        NetworkEvaluator(small_net(), max_batch=0)
