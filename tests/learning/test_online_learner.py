"""The online learner: forgetting with/without replay, poisoned data, rollback, NaN skips,
crash isolation, background swaps, save/resume; the same in a worker process (swaps as
safetensors, host-side rollback, bounded queue, a raising or killed worker). Real grid-model
data, small settings."""

from __future__ import annotations

import copy
import os
import signal
import time

import numpy as np
import pytest
import torch
from learning_helpers import small_net
from online_helpers import expert_transitions, fast_config

from learning.evaluator import GRID_PV_WEIGHTS, RL_PV_WEIGHTS, NetworkEvaluator, load_network_evaluator
from learning.grid_data import GridDataConfig, make_datasets
from learning.online import OnlineLearner, ProcessLearner, check_worker, load_ewc, make_learner, weights_digest
from learning.pretrain import PretrainConfig, evaluate_dataset, train_policy_value
from sim.layout import LayoutConfig, generate_layout

#: the gate lets everything through (tests of what the learner does without it)
OPEN_GATE = {"gate_margin": 1e9, "gate_value_margin": 1e9, "max_rel_change": 1e9,
             "gate_situations": 3, "gate_horizon": 10, "gate_require_gain": False}


def _feed_targets(learner: OnlineLearner, data, rows=None) -> None:
    """Streams expert-target samples (search policy and value given: expert iteration)."""
    for i in range(len(data)) if rows is None else rows:
        o = {k: v[i] for k, v in data.obs.items()}
        learner.observe(o, int(data.policy[i].argmax()), 0.0, o, True,
                        search_policy=data.policy[i], search_value=float(data.value[i]))


@pytest.fixture(scope="module")
def tasks(layout):
    """A small net trained on layout A; expert data of A (train, held-out) and of layout B."""
    torch.set_num_threads(1)
    dc = GridDataConfig(n_situations=240, n_groups=0)
    a_train, _ = make_datasets(layout, dc, np.random.default_rng(0))
    a_val, _ = make_datasets(layout, dc, np.random.default_rng(1))
    lay_b = generate_layout(LayoutConfig(shelf_rows=3, shelf_cols=2, block_length=3.0))
    b_train, _ = make_datasets(lay_b, dc, np.random.default_rng(2))
    net = small_net(0)
    cfg = PretrainConfig(steps=300, batch_size=64, group_batch=0, lr=3e-3)
    train_policy_value(net, a_train, cfg, torch.Generator().manual_seed(0))
    return net, a_train, a_val, b_train


def _forgetting(tasks, layout, replay_fraction: float) -> float:
    """Relative increase of the policy loss on held-out layout-A data after learning B.

    Full-weights mode with EWC off, so replay is the only protection measured (LoRA's low
    rank and EWC limit forgetting on their own).
    """
    net, a_train, a_val, b_train = tasks
    cfg = fast_config(replay_fraction=replay_fraction, lr=3e-3, min_new_samples=200,
                      mode="full", ewc_lambda=0.0, **OPEN_GATE)
    learner = OnlineLearner(cfg, NetworkEvaluator(copy.deepcopy(net)), layout=layout,
                            background=False)
    before = evaluate_dataset(learner.evaluator.net, a_val)["policy_loss"]
    _feed_targets(learner, a_train)  # the past: layout A (ends up in the reservoir)
    for chunk in np.array_split(np.arange(len(b_train)), 6):  # the present: layout B
        _feed_targets(learner, b_train, chunk)
        learner.step()
    assert learner.stats["swaps"] == 6 and learner.version == 6
    after = evaluate_dataset(learner.evaluator.net, a_val)["policy_loss"]
    return (after - before) / before


MAX_FORGETTING = 0.05  # policy loss on the old layout may rise by 5 % at most


def test_online__replay_keeps_forgetting_small_and_no_replay_forgets(tasks, layout):
    with_replay = _forgetting(tasks, layout, 0.5)
    without = _forgetting(tasks, layout, 0.0)
    assert with_replay < MAX_FORGETTING, with_replay
    assert without > MAX_FORGETTING, without  # the same check fails without replay


@pytest.mark.parametrize("weights", [GRID_PV_WEIGHTS, RL_PV_WEIGHTS], ids=["grid_pv", "rl_pv"])
def test_online__poisoned_rewards_are_rejected_by_the_gate(layout, weights):
    """Inverted rewards (AWR + TD on them) never reach production; the evidence says why.
    Both shipped networks: their values mean different returns (grid_pv: up to the first
    delivery, as the gate's suites; rl_pv: the continuing fleet return), and the gate's
    calibrated value check must catch the poison in either."""
    ev = load_network_evaluator(weights)
    digest = weights_digest(ev.net)
    # max_rel_change off: the gate, not the update-size bound, has to catch it
    cfg = fast_config(steps_per_update=100, lr=3e-3, gate_situations=24, min_new_samples=200,
                      max_rel_change=1.0)
    learner = OnlineLearner(cfg, ev, layout=layout, background=False)
    data = expert_transitions(layout, 30, 40, seed=4, invert=True)
    for chunk in np.array_split(np.arange(len(data)), 3):
        for i in chunk:
            learner.observe(*data[i])
        entry = learner.step()
        assert entry["event"] == "reject", entry
        ev_ = entry["evidence"]
        assert ev_["reason"].startswith("worse on")
        assert any(
            s["candidate"] < s["production"] - cfg.gate_margin
            or s["candidate_value_rmse"] > s["production_value_rmse"] + cfg.gate_value_margin
            for s in ev_["scores"].values()
        )
    assert learner.stats["swaps"] == 0 and learner.stats["rejections"] == 3
    assert learner.evaluator is ev and weights_digest(learner.evaluator.net) == digest
    assert not [e for e in learner.log if e["event"] == "swap"]


def test_online__gate_swaps_in_a_candidate_trained_on_search_targets(layout):
    """Control for the poisoning test: the same gate promotes good data. Production is the
    shipped net with its policy head zeroed (flat prior), so the expert targets make a gain
    the gate can measure; the shipped net itself already plays these situations as well
    as its targets, and the gate does not swap in a candidate that is only not worse."""
    ev = load_network_evaluator()
    with torch.no_grad():
        for p in ev.net.policy_head.parameters():
            p.zero_()
    cfg = fast_config(steps_per_update=40, lr=3e-3, gate_situations=24, min_new_samples=200,
                      max_rel_change=1.0)
    learner = OnlineLearner(cfg, ev, layout=layout, background=False)
    data, _ = make_datasets(layout, GridDataConfig(n_situations=80, n_groups=0),
                            np.random.default_rng(3))
    _feed_targets(learner, data)
    entry = learner.step()
    assert entry["event"] == "swap", entry
    assert learner.version == 1 and learner.evaluator is not ev
    s = entry["evidence"]["scores"]
    assert all(v["candidate"] >= v["production"] - cfg.gate_margin for v in s.values())
    assert s["recent"]["diff"] > cfg.gate_z * s["recent"]["diff_se"]


def _swapped_learner(layout, tasks, **kw) -> OnlineLearner:
    net, a_train, _, _ = tasks
    cfg = fast_config(lr=3e-3, **{**OPEN_GATE, **kw})
    learner = OnlineLearner(cfg, NetworkEvaluator(copy.deepcopy(net)), layout=layout,
                            background=False)
    _feed_targets(learner, a_train, range(300))
    return learner


def test_online__kpi_drop_after_a_swap_rolls_back(layout, tasks):
    learner = _swapped_learner(layout, tasks)
    v0 = learner.evaluator
    for _ in range(2):
        learner.report_kpis({"completion_rate": 0.9})
    assert learner.step()["event"] == "swap" and learner.evaluator is not v0
    assert learner.report_kpis({"completion_rate": 0.5}) is None  # window 2: not yet
    entry = learner.report_kpis({"completion_rate": 0.6})
    assert entry is not None and entry["event"] == "rollback"
    assert learner.evaluator is v0 and learner.version == 0
    assert entry["evidence"]["kpi"] == "completion_rate"
    assert entry["evidence"]["baseline"]["completion_rate"] == pytest.approx(0.9)
    assert entry["evidence"]["after"]["completion_rate"] == pytest.approx(0.55)
    assert learner.stats["rollbacks"] == 1


def test_online__steady_kpis_confirm_the_swap(layout, tasks):
    learner = _swapped_learner(layout, tasks, kpi_keys=("completion_rate", "-latency_ms"))
    for _ in range(2):
        learner.report_kpis({"completion_rate": 0.9, "latency_ms": 10.0})
    learner.step()
    v1 = learner.evaluator
    for _ in range(2):
        assert learner.report_kpis({"completion_rate": 0.89, "latency_ms": 10.5}) is None
    assert [e["event"] for e in learner.log][-1] == "confirmed"
    # lower-is-better KPI: a latency rise is a drop
    _feed_targets(learner, tasks[1], range(300, 400))
    assert learner.step()["event"] == "swap"
    learner.report_kpis({"completion_rate": 0.9, "latency_ms": 20.0})
    entry = learner.report_kpis({"completion_rate": 0.9, "latency_ms": 20.0})
    assert entry["event"] == "rollback" and entry["evidence"]["kpi"] == "latency_ms"
    assert learner.evaluator is v1  # back to the confirmed version, not the original


def test_online__non_finite_updates_are_skipped(layout, tasks):
    """A finite but exploding reward (3e38: its square overflows) gives inf losses."""
    net = tasks[0]
    learner = OnlineLearner(fast_config(**OPEN_GATE), NetworkEvaluator(copy.deepcopy(net)),
                            layout=layout, background=False)
    v0 = learner.evaluator
    data = expert_transitions(layout, 12, 10, seed=0)
    assert not learner.observe(*data[0][:2], float("nan"), *data[0][3:])  # rejected at once
    for obs, a, _, nxt, d in data:
        learner.observe(obs, a, 3e38, nxt, d)
    entry = learner.step()
    assert entry["event"] == "discard" and entry["reason"] == "every step non-finite"
    assert learner.stats["skipped_nonfinite"] == learner.cfg.steps_per_update
    assert learner.stats["rejected_inputs"] == 1 and learner.stats["steps"] == 0
    assert learner.evaluator is v0


def test_online__learner_crash_leaves_the_host_on_the_last_good_weights(layout, tasks):
    net = tasks[0]
    learner = OnlineLearner(fast_config(**OPEN_GATE), NetworkEvaluator(copy.deepcopy(net)),
                            layout=layout)
    v0 = learner.evaluator
    enc = {k: v[:4] for k, v in tasks[2].obs.items()}
    want = v0.evaluate(enc)
    learner.set_layout(object())  # not a layout: the learner thread fails resampling the gate
    data = expert_transitions(layout, 12, 10, seed=0)
    for tr in data:
        learner.observe(*tr)
    deadline = time.monotonic() + 30
    while learner.alive and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not learner.alive and learner.crashed and learner.stats["crashes"] == 1
    assert learner.log[-1]["event"] == "crash" and "AttributeError" in learner.log[-1]["error"]
    # the host keeps running: observing, planning, reporting, closing
    assert learner.observe(*data[0])
    got = learner.evaluator.evaluate(enc)
    assert learner.evaluator is v0
    np.testing.assert_array_equal(got[0], want[0])
    assert learner.report_kpis({"completion_rate": 0.1}) is None
    learner.close()
    learner.close()


def test_online__background_thread_swaps_atomically(layout, tasks):
    net, a_train, _, _ = tasks
    learner = OnlineLearner(fast_config(lr=3e-3, **OPEN_GATE),
                            NetworkEvaluator(copy.deepcopy(net)), layout=layout)
    v0 = learner.evaluator
    enc = {k: v[:8] for k, v in tasks[2].obs.items()}
    _feed_targets(learner, a_train, range(200))
    deadline = time.monotonic() + 60
    seen = set()
    while learner.stats["swaps"] == 0 and time.monotonic() < deadline:
        ev = learner.evaluator  # the host's read: always a whole evaluator
        logits, values = ev.evaluate(enc)
        assert np.isfinite(values).all() and logits.shape == (8, 7)
        seen.add(id(ev))
        time.sleep(0.01)
    learner.close()
    assert learner.stats["swaps"] >= 1 and learner.evaluator is not v0
    assert learner.log[-1]["event"] in ("swap", "confirmed") or learner.stats["swaps"] >= 1


def test_online__pause_stops_background_updates_until_resume(layout, tasks):
    net, a_train, _, _ = tasks
    learner = OnlineLearner(fast_config(lr=3e-3, **OPEN_GATE),
                            NetworkEvaluator(copy.deepcopy(net)), layout=layout)
    learner.pause()
    _feed_targets(learner, a_train, range(200))
    time.sleep(1.0)  # the thread polls every 20 ms: it would have updated by now
    assert learner.stats["updates"] == 0 and len(learner._queue) == 200
    learner.resume()
    deadline = time.monotonic() + 60
    while learner.stats["updates"] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    learner.pause()  # returns only once the update under way has finished
    n = learner.stats["updates"]
    log_len = len(learner.log)
    assert n >= 1 and log_len >= 1  # the update logged its outcome before pause returned
    time.sleep(0.3)
    learner.close()
    assert learner.stats["updates"] == n


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_online__state_is_saved_and_resumed_in_safetensors(layout, tasks, tmp_path, mode):
    net = tasks[0]
    learner = _swapped_learner(layout, tasks, mode=mode, ewc_lambda=10.0)
    assert learner.step()["event"] == "swap"
    files = learner.save(tmp_path)
    assert all(p.suffix == ".safetensors" and p.exists() for p in files.values())
    assert set(files) == ({"production", "adapters"} if mode == "lora" else {"production", "ewc"})
    fresh = OnlineLearner(learner.cfg, NetworkEvaluator(copy.deepcopy(net)), layout=layout,
                          background=False)
    fresh.restore(tmp_path)
    assert fresh.version == 1
    assert weights_digest(fresh.evaluator.net) == weights_digest(learner.evaluator.net)
    if mode == "full":
        state, lam = load_ewc(files["ewc"])
        assert lam == 10.0
        for k, v in learner._ewc.fisher.items():
            assert torch.equal(fresh._ewc.fisher[k], v) and torch.equal(state.fisher[k], v)
    else:
        other = OnlineLearner(learner.cfg, NetworkEvaluator(small_net(7)), layout=layout,
                              background=False)
        with pytest.raises(ValueError, match="another base"):
            other.restore(tmp_path)


# ---- the learner in a worker process (learning/online/worker.py) ---------------------------
def _process_learner(net, layout, **kw) -> ProcessLearner:
    learner = ProcessLearner(fast_config(lr=3e-3, **{**OPEN_GATE, **kw}),
                             NetworkEvaluator(copy.deepcopy(net)), layout=layout)
    assert learner.wait_ready(120) and learner.pid != os.getpid()
    return learner


def _wait(cond, timeout_s=60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_online__worker_process_swaps_safetensors_weights_and_rolls_back_on_the_host(layout, tasks, tmp_path):
    net, a_train, _, _ = tasks
    learner = _process_learner(net, layout)
    try:
        v0 = learner.evaluator
        enc = {k: v[:8] for k, v in tasks[2].obs.items()}
        for _ in range(2):
            learner.report_kpis({"completion_rate": 0.9})
        _feed_targets(learner, a_train, range(200))
        _wait(lambda: learner.stats["swaps"] >= 1 or learner.crashed)
        learner.pause()
        assert learner.stats["swaps"] == 1 and learner.version == 1 and not learner.crashed
        v1 = learner.evaluator
        assert isinstance(v1, NetworkEvaluator) and v1 is not v0
        assert weights_digest(v1.net) != weights_digest(v0.net)
        logits, values = v1.evaluate(enc)
        assert np.isfinite(values).all() and logits.shape == (8, 7)
        swap = [e for e in learner.log if e["event"] == "swap"]
        assert len(swap) == 1 and swap[0]["from_version"] == 0 and "evidence" in swap[0]
        assert learner.stats["updates"] >= 1 and learner.stats["steps"] > 0  # the worker's counters
        # what came back is what the files hold (safetensors), and a fresh learner resumes it
        learner.save(tmp_path)
        fresh = OnlineLearner(learner.cfg, NetworkEvaluator(copy.deepcopy(net)), layout=layout, background=False)
        fresh.restore(tmp_path)
        assert fresh.version == 1 and weights_digest(fresh.evaluator.net) == weights_digest(v1.net)
        # the KPI monitor is the host's: a drop rolls back at once; the worker trains on from v0
        learner.report_kpis({"completion_rate": 0.5})
        entry = learner.report_kpis({"completion_rate": 0.5})
        assert entry is not None and entry["event"] == "rollback" and learner.evaluator is v0
        learner.resume()
        _feed_targets(learner, a_train, range(200, 300))
        _wait(lambda: learner.stats["swaps"] >= 2 or learner.crashed)
        swaps = [e for e in learner.log if e["event"] == "swap"]
        assert len(swaps) == 2 and swaps[1]["from_version"] == 0 and learner.version == 1
    finally:
        learner.close()
    assert not learner.alive and not learner.crashed


def test_online__worker_queue_is_bounded_and_pause_holds_updates(layout, tasks):
    net, a_train, _, _ = tasks
    learner = _process_learner(net, layout, queue_size=100)
    try:
        learner.pause()
        _feed_targets(learner, a_train, range(130))  # nothing drains while paused
        assert learner.stats["dropped"] == 30 and learner.stats["observed"] == 130
        time.sleep(0.5)
        assert learner.stats["updates"] == 0
        learner.resume()
        _wait(lambda: learner.stats["updates"] >= 1 or learner.crashed)
        learner.pause()  # returns once the update under way has finished
        n = learner.stats["updates"]
        assert n >= 1 and not learner.crashed
        time.sleep(0.3)
        assert learner.stats["updates"] == n
    finally:
        learner.close()


@pytest.mark.parametrize("how", ["raises", "killed"])
def test_online__worker_crash_leaves_the_host_on_the_last_good_weights(layout, tasks, how):
    net = tasks[0]
    learner = _process_learner(net, layout)
    v0 = learner.evaluator
    enc = {k: v[:4] for k, v in tasks[2].obs.items()}
    want = v0.evaluate(enc)
    data = expert_transitions(layout, 12, 10, seed=0)
    if how == "raises":
        learner.set_layout(object())  # not a layout: the worker fails resampling the gate
        for tr in data:
            learner.observe(*tr)
    else:
        os.kill(learner.pid, signal.SIGKILL)
    _wait(lambda: learner.crashed, 30)
    assert learner.crashed and not learner.alive and learner.stats["crashes"] == 1
    crash = learner.log[-1]
    assert crash["event"] == "crash"
    assert ("AttributeError" in crash["error"] and "traceback" in crash) if how == "raises" else \
        "exit code -9" in crash["error"]
    # the host keeps running: observing (dropped now), planning, reporting, closing
    dropped = learner.stats["dropped"]
    assert not learner.observe(*data[0]) and learner.stats["dropped"] == dropped + 1
    assert learner.evaluator is v0
    np.testing.assert_array_equal(learner.evaluator.evaluate(enc)[0], want[0])
    assert learner.report_kpis({"completion_rate": 0.1}) is None
    learner.pause()  # returns at once: no worker to wait for
    learner.close()
    learner.close()


def test_online__worker_choice_and_its_one_line_error(layout, tasks):
    net = tasks[0]
    ev = NetworkEvaluator(copy.deepcopy(net))
    with pytest.raises(ValueError, match=r"^online\.worker: 'fiber'; allowed process, thread$"):
        make_learner(fast_config(), ev, layout=layout, worker="fiber")
    with pytest.raises(ValueError, match=r"^learning\.worker: 3; allowed process, thread$"):
        check_worker(3, "learning.worker")
    inline = make_learner(fast_config(), ev, layout=layout, background=False, worker="process")
    assert isinstance(inline, OnlineLearner) and inline.worker == "inline" and not inline.alive
    thread = make_learner(fast_config(), ev, layout=layout, worker="thread")
    assert isinstance(thread, OnlineLearner) and thread.worker == "thread" and thread.alive
    thread.close()
