"""The shadow gate's statistics: paired differences on common situations, a swap needs a
gain beyond the noise; the learner keeps a rejected candidate's progress."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
from online_helpers import expert_transitions, fast_config

from learning.evaluator import NetworkEvaluator, load_network_evaluator
from learning.online import OnlineLearner, ShadowGate, SituationSuite
from learning.online.gate import calibrated_residual, paired

KINDS = ("open", "blocked", "congested")


def _gate(layout, *, n=12, horizon=30, value_margin=0.02, **kw) -> ShadowGate:
    mk = lambda name, seed: SituationSuite.sample(name, layout, n=n, seed=seed, horizon=horizon,  # noqa: E731
                                                  kinds=KINDS)
    return ShadowGate(mk("recent", 1), mk("heldout", 0), margin=0.02, value_margin=value_margin,
                      simulations=0, **kw)


def _blunted(ev: NetworkEvaluator) -> NetworkEvaluator:
    """The same network with its policy and value heads zeroed (flat prior, value 0)."""
    net = copy.deepcopy(ev.net)
    with torch.no_grad():
        for head in (net.policy_head, net.value_head):
            for p in head.parameters():
                p.zero_()
    return NetworkEvaluator(net)


def test_paired__mean_and_standard_error_of_the_differences():
    d = np.array([0.1, -0.1, 0.3, 0.1])
    m, se = paired(d)
    assert m == pytest.approx(0.1) and se == pytest.approx(np.std(d, ddof=1) / 2)
    assert paired(np.array([0.5])) == (0.5, 0.0)


def test_value_check__calibration_is_scale_free_and_an_inverted_value_scores_the_spread():
    rng = np.random.default_rng(0)
    g = rng.normal(size=200)
    v = g + 0.1 * rng.normal(size=200)
    base = np.sqrt(np.mean(calibrated_residual(v, g) ** 2))
    assert base < 0.11
    # any positive scale and offset (another value semantics) scores the same
    assert np.sqrt(np.mean(calibrated_residual(10 * v + 3, g) ** 2)) == pytest.approx(base)
    # a value turned against the returns (poison) or flat gets the slope 0: the returns' spread
    for bad in (-v, np.full_like(v, 2.0)):
        assert np.sqrt(np.mean(calibrated_residual(bad, g) ** 2)) == pytest.approx(g.std())


class _Shifted:
    """An evaluator whose values are another's scaled and shifted (same policy)."""

    def __init__(self, ev: NetworkEvaluator, scale: float, shift: float) -> None:
        self.ev, self.scale, self.shift = ev, scale, shift

    def evaluate(self, obs):
        logits, v = self.ev.evaluate(obs)
        return logits, np.asarray(v) * self.scale + self.shift


def test_gate__value_check_compares_both_nets_on_the_same_states_and_is_scale_free(layout):
    ev = load_network_evaluator()
    gate = _gate(layout)
    # a value on another scale (continuing returns vs first delivery) is not "worse"
    res = gate.compare(_Shifted(ev, 3.0, 1.5), ev, production_version=0)
    for s in res.scores.values():
        assert s["candidate_value_rmse"] == pytest.approx(s["production_value_rmse"])
        assert s["candidate_raw_value_rmse"] > s["production_raw_value_rmse"]
    # the inverted value is, on every suite, though its policy is production's
    res = gate.compare(_Shifted(ev, -1.0, 0.0), ev, production_version=0)
    assert not res.accepted and "recent value error" in res.reason and "heldout value error" in res.reason


def test_gate__a_candidate_equal_to_production_is_not_swapped_in(layout):
    """Identical weights: zero difference on every situation. The old rule ("not worse")
    promoted it; the gate now asks for a gain beyond the noise."""
    prod = load_network_evaluator()
    same = NetworkEvaluator(copy.deepcopy(prod.net))
    res = _gate(layout).compare(same, prod, 0)
    assert not res.accepted and res.reason.startswith("no gain on recent"), res.reason
    assert all(s["diff"] == 0.0 and s["diff_se"] == 0.0 for s in res.scores.values())
    assert _gate(layout, require_gain=False).compare(same, prod, 0).accepted  # the old rule


def test_gate__a_real_gain_passes_and_the_same_gain_inside_the_noise_does_not(layout):
    """Blunted production (flat prior, zero value) vs the shipped net: a large paired gain
    on recent, clear of 2 standard errors; asking for more standard errors than the
    measured t statistic rejects the same candidate as noise. (Value errors are off here:
    the blunted net's constant 0 is close to the returns of the episodes it fails.)"""
    good = load_network_evaluator()
    bad = _blunted(good)
    res = _gate(layout, value_margin=1e9).compare(good, bad, 0)
    rec = res.scores["recent"]
    assert res.accepted, res.evidence()
    assert rec["diff"] > 2 * rec["diff_se"] > 0 or rec["value_gain"] > 2 * rec["value_gain_se"] > 0
    t = max(rec["diff"] / max(rec["diff_se"], 1e-12), rec["value_gain"] / max(rec["value_gain_se"], 1e-12))
    strict = _gate(layout, value_margin=1e9, z=t * 1.01).compare(good, bad, 0)
    assert not strict.accepted and strict.reason.startswith("no gain"), strict.reason
    # the reverse swap (shipped -> blunted) is worse, never promoted
    assert not _gate(layout).compare(bad, good, 0).accepted


class _Jittered:
    """``ev`` with a small deterministic per-state error on its value (same policy)."""

    def __init__(self, ev: NetworkEvaluator, eps: float) -> None:
        self.ev, self.eps = ev, eps

    def evaluate(self, obs):
        logits, v = self.ev.evaluate(obs)
        key = np.asarray(obs["proprio"], np.float64).reshape(len(v), -1).sum(1)
        return logits, np.asarray(v) + self.eps * np.sin(997.0 * key)


def test_gate__a_value_gain_below_min_value_gain_is_not_a_gain(layout):
    """Same policy (identical play, zero return difference), production's value slightly
    jittered: the clean value's MSE reduction is significant, so it passes with
    min_value_gain 0 and is rejected once min_value_gain exceeds it (a negligible fit is
    not worth a swap: a shift run swapped on 0.0012 +- 0.0006)."""
    ev = load_network_evaluator()
    prod = _Jittered(ev, 0.3)
    res = _gate(layout).compare(ev, prod, 0)
    rec = res.scores["recent"]
    assert rec["diff"] == 0.0 and rec["value_gain"] > 2 * rec["value_gain_se"] > 0
    assert res.accepted and "value error" in res.reason, res.reason
    strict = _gate(layout, min_value_gain=rec["value_gain"] * 1.01).compare(ev, prod, 0)
    assert not strict.accepted and strict.reason.startswith("no gain"), strict.reason


def test_learner__a_rejected_candidates_progress_is_kept_and_a_discard_drops_it(layout):
    """Updates the gate rejects continue from the last candidate (learning accumulates);
    a discarded one (too large) starts over from production."""
    cfg = fast_config(steps_per_update=5, lr=1e-3, min_samples=40, min_new_samples=40, gate_situations=3,
                      gate_horizon=5)
    learner = OnlineLearner(cfg, load_network_evaluator(), layout=layout, background=False)
    learner.gate.compare = lambda *a: type("R", (), {  # a gate that rejects everything
        "accepted": False, "evidence": lambda self: {"reason": "test"}})()
    data = expert_transitions(layout, 24, 30, seed=1)
    assert len(data) >= 200
    entries = []
    for chunk in np.array_split(np.arange(120), 3):
        for i in chunk:
            learner.observe(*data[i])
        entries.append(learner.step())
    assert [e["event"] for e in entries] == ["reject"] * 3
    assert [e["continued"] for e in entries] == [False, True, True]
    assert entries[2]["rel_change"] > entries[0]["rel_change"]  # it moved further each time
    learner.cfg = dataclasses.replace(cfg, max_rel_change=1e-6)
    for i in range(120, 160):
        learner.observe(*data[i])
    assert learner.step()["reason"] == "update too large"
    for i in range(160, 200):
        learner.observe(*data[i])
    assert learner.step()["continued"] is False
    assert learner.version == 0


def test_learner__rehearsal_keeps_every_layouts_expert_data_and_mixes_it_in(layout):
    """rehearsal_situations > 0: the starting layout's expert data at the first update, a
    new layout's on set_layout (the old one moves to the rehearsal reservoir), and the
    configured share of every minibatch comes from it."""
    from agent.eval_continual import closed_layout

    cfg = fast_config(rehearsal_situations=20, rehearsal_fraction=0.25, min_samples=40,
                      min_new_samples=40, batch_size=32, steps_per_update=2,
                      gate_situations=3, gate_horizon=5)
    learner = OnlineLearner(cfg, load_network_evaluator(), layout=layout, background=False)
    data = expert_transitions(layout, 24, 30, seed=1)
    for t in data[:40]:
        learner.observe(*t)
    assert learner.step() is not None
    reh = learner.rehearsal
    first = [e for e in learner.log if e["event"] == "rehearsal"]
    assert len(first) == 1 and reh.n_recent == first[0]["rows"] > 0 and reh.n_reservoir == 0
    b = learner._minibatch()
    assert len(b) == 32 and b.has_policy[-8:].all() and b.has_value[-8:].all()
    np.testing.assert_allclose(b.policy[-8:].sum(1), 1.0, atol=1e-5)
    learner.set_layout(closed_layout(layout, [(5, 7), (6, 7)]))
    for t in data[40:80]:
        learner.observe(*t)
    learner.step()
    second = [e for e in learner.log if e["event"] == "rehearsal"]
    assert len(second) == 2 and second[1]["seed"] != second[0]["seed"]
    assert reh.n_recent == second[1]["rows"] and reh.n_reservoir > 0  # the old map kept
    off = OnlineLearner(fast_config(), load_network_evaluator(), layout=layout, background=False)
    assert off.rehearsal is None  # 0 = off (the default)


@pytest.mark.parametrize("source", ["production", "expert"])
def test_learner__rehearsal_value_targets_come_from_the_configured_source(layout, source):
    """rehearsal_value=production: every rehearsal row's value target is the production
    network's value of that state (rl_pv's value is the continuing return, not the expert's
    return to the first delivery); expert: the expert's targets, which differ from it."""
    cfg = fast_config(rehearsal_situations=12, rehearsal_value=source, min_samples=40,
                      min_new_samples=40, batch_size=32, steps_per_update=1,
                      gate_situations=3, gate_horizon=5)
    ev = load_network_evaluator()
    learner = OnlineLearner(cfg, ev, layout=layout, background=False)
    for t in expert_transitions(layout, 24, 30, seed=1)[:40]:
        learner.observe(*t)
    learner.step()
    b = learner.rehearsal.sample(64, replay_fraction=0.0)
    prod_values = np.asarray(ev.evaluate(b.obs)[1], np.float64)
    log = next(e for e in learner.log if e["event"] == "rehearsal")
    assert log["value"] == source
    if source == "production":
        np.testing.assert_allclose(b.value, prod_values, atol=1e-5)
    else:
        assert np.abs(b.value - prod_values).mean() > 0.1  # the two scales differ
        assert abs(log["value_mean"] - log["expert_value_mean"]) < 1e-6  # float32 data, float64 mean
