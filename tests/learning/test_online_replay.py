"""Replay store: bounded memory, recent window, seeded reservoir of older data, mixing."""

from __future__ import annotations

import numpy as np
import pytest

from learning.online import ReplayStore, Transition

SPEC = {"proprio": [3], "action_mask": [7]}


def _t(i: int) -> Transition:
    obs = {"proprio": np.full(3, i, np.float32), "action_mask": np.ones(7, np.float32)}
    return Transition(obs, i % 7, float(i), obs, False)


def _store(recent=10, reservoir=50, seed=0) -> ReplayStore:
    return ReplayStore(SPEC, 7, recent, reservoir, np.random.default_rng(seed))


def test_replay__memory_is_bounded_and_preallocated():
    store = _store()
    before = store.nbytes
    for i in range(5000):
        store.add(_t(i))
    assert store.nbytes == before
    assert (store.n_recent, store.n_reservoir, len(store)) == (10, 50, 60)
    assert store.n_added == 5000 and store.n_evicted == 4990


def test_replay__recent_window_holds_the_newest():
    store = _store()
    for i in range(137):
        store.add(_t(i))
    b = store.sample(400, replay_fraction=0.0)
    assert set(b.reward.astype(int)) == set(range(127, 137))
    assert not b.from_reservoir.any()


def test_replay__reservoir_is_uniform_over_evicted_history():
    """Each evicted transition is kept with probability R / n_evicted (algorithm R)."""
    n, keeps = 1010, np.zeros(1000)
    for seed in range(200):
        store = _store(seed=seed)
        for i in range(n):
            store.add(_t(i))
        kept = store.sample(2000, replay_fraction=1.0).reward.astype(int)
        keeps[np.unique(kept)] += 1
    share = keeps / 200  # ~ 50 / 1000 each
    first, last = share[:500].mean(), share[500:].mean()
    assert abs(first - 0.05) < 0.01 and abs(last - 0.05) < 0.01


def test_replay__mixes_reservoir_and_recent_by_fraction():
    store = _store()
    for i in range(500):
        store.add(_t(i))
    b = store.sample(100, replay_fraction=0.3)
    assert b.from_reservoir.sum() == 30
    assert (b.reward[b.from_reservoir] < 490).all() and (b.reward[~b.from_reservoir] >= 490).all()


def test_replay__seeded_determinism():
    a, b = _store(seed=3), _store(seed=3)
    for i in range(300):
        a.add(_t(i))
        b.add(_t(i))
    np.testing.assert_array_equal(
        a.sample(64, replay_fraction=0.5).reward, b.sample(64, replay_fraction=0.5).reward
    )


def test_replay__search_targets_are_kept_and_flagged():
    store = _store()
    t = _t(1)
    pol = np.eye(7, dtype=np.float32)[2]
    store.add(Transition(t.obs, 2, 0.5, t.next_obs, True, pol, 0.7))
    store.add(_t(2))
    b = store.sample(50, replay_fraction=0.0)
    rows = b.has_policy
    assert rows.any() and (~rows).any()
    np.testing.assert_array_equal(b.policy[rows][0], pol)
    assert np.allclose(b.value[b.has_value], 0.7) and (b.value[~b.has_value] == 0).all()


def test_replay__bad_input():
    with pytest.raises(ValueError, match="replay"):
        _store().sample(4, replay_fraction=0.5)
    with pytest.raises(ValueError, match="allowed"):
        ReplayStore(SPEC, 7, 0, 1, np.random.default_rng(0))
