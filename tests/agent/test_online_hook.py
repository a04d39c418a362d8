"""The agent hosting the online learner (agent.online_hook): real PyBullet episodes, the
real OnlineLearner; the learner observes the searches, the agent plans with the learner's
production evaluator, and nothing the learner does (a raising thread, a killed worker
process, a raising observe) stops it."""

from __future__ import annotations

import dataclasses
import functools
import os
import signal
import threading
import time

import numpy as np
import pytest
import torch

from agent.agent import Agent, AgentConfig
from agent.online_hook import OnlineHook
from agent.runner import RunConfig, run_episodes
from learning.evaluator import load_network_evaluator
from learning.online import OnlineConfig, OnlineLearner, make_learner
from sim.config import SimConfig
from sim.layout import LayoutConfig, generate_layout

SMALL = OnlineConfig(recent_size=512, reservoir_size=512, batch_size=16, steps_per_update=3,
                     min_samples=4, min_new_samples=4, update_interval_s=0.0, gate_situations=3,
                     gate_horizon=10, kpi_window=1)
RUN = RunConfig(SimConfig(n_robots=2, duration_s=12.0), episodes=2, seed=0)


class CountingEvaluator:
    """Delegates to a network evaluator and counts batched calls."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, 0

    def evaluate(self, obs):
        self.calls += 1
        return self.inner.evaluate(obs)


def _hook(cfg: OnlineConfig = SMALL, *, background: bool = False, kpi_period_s: float = 5.0):
    torch.set_num_threads(1)
    learner = OnlineLearner(cfg, load_network_evaluator(), layout=generate_layout(LayoutConfig()),
                            background=background)
    return OnlineHook(learner, background=background, kpi_period_s=kpi_period_s, seed=0)


def _agents(hook: OnlineHook):
    return functools.partial(Agent, AgentConfig(planner="mcts_rl", num_simulations=4), online=hook)


def test_online_hook__episodes_feed_the_learner_search_targets_and_kpis():
    hook = _hook()
    made = []
    make = _agents(hook)
    res = run_episodes(RUN, lambda: made.append(make()) or made[-1], progress=False)
    hook.close()
    decisions = sum(a.decisions for a in made)
    st = hook.learner.stats
    assert decisions > 0 and res.episodes[0].ticks > 0
    assert st["observed"] >= decisions and st["rejected_inputs"] == 0 and st["dropped"] == 0
    store = hook.learner.store
    assert 0 < len(store) < st["observed"]  # episode 1's data drained at episode 2's start
    assert len(store) + len(hook.learner._queue) == st["observed"]
    batch = store.sample(8, replay_fraction=0.0)
    assert batch.has_policy.all() and batch.has_value.all()  # MCTS targets, expert iteration
    np.testing.assert_allclose(batch.policy.sum(1), 1.0, atol=1e-5)
    assert st["updates"] == 1  # one update between the two episodes
    assert not hook.failed and hook.summary()["stats"] == st


def test_online_hook__every_search_reads_the_learners_current_evaluator():
    hook = _hook()
    first = CountingEvaluator(hook.learner.evaluator)
    second = CountingEvaluator(hook.learner.evaluator)
    prod = hook.learner._prod
    hook.learner._prod = dataclasses.replace(prod, evaluator=first)
    agent = _agents(hook)()
    swapped = threading.Event()

    class SwapAt:  # a swap in the middle of the episode, as the learner thread does
        name = "swap"

        def reset(self, fleet):
            agent.reset(fleet)

        def act(self, frames, t):
            if t >= 6.0 and not swapped.is_set():
                hook.learner._prod = dataclasses.replace(prod, evaluator=second)
                swapped.set()
            return agent.act(frames, t)

    run_episodes(dataclasses.replace(RUN, episodes=1), SwapAt, progress=False)
    hook.close()
    assert first.calls > 0 and second.calls > 0  # before and after the swap


@pytest.mark.parametrize("worker", ["thread", "process"])
def test_online_hook__agent_keeps_deciding_when_the_learner_crashes(worker):
    """thread: the learner thread's next update raises; process: the worker process is
    killed (SIGKILL) while the episode runs."""
    cfg = dataclasses.replace(SMALL, min_samples=4, min_new_samples=4)
    torch.set_num_threads(1)
    learner = make_learner(cfg, load_network_evaluator(), layout=generate_layout(LayoutConfig()),
                           background=True, worker=worker)
    hook = OnlineHook(learner, background=True, kpi_period_s=5.0, seed=0)
    before = hook.learner.evaluator
    make = _agents(hook)
    made = []
    if worker == "thread":
        def boom():
            raise RuntimeError("learner exploded")

        hook.learner.step = boom  # the thread's next update raises

        def factory():
            return made.append(make()) or made[-1]
    else:
        assert learner.wait_ready(120) and learner.alive

        class KillAt:  # kills the worker in the middle of the episode
            name = "kill"

            killed = False

            def __init__(self) -> None:
                self.agent = make()
                made.append(self.agent)

            def reset(self, fleet):
                self.agent.reset(fleet)

            def act(self, frames, t):
                if t >= 5.0 and not KillAt.killed:
                    KillAt.killed = True
                    os.kill(learner.pid, signal.SIGKILL)
                return self.agent.act(frames, t)

        factory = KillAt
    run_episodes(dataclasses.replace(RUN, episodes=1, sim=dataclasses.replace(RUN.sim, duration_s=15.0)),
                 factory, progress=False)
    deadline = time.monotonic() + 10
    while not hook.learner.crashed and time.monotonic() < deadline:
        time.sleep(0.05)
    hook.close()
    assert hook.learner.crashed and hook.learner.log[-1]["event"] == "crash"
    assert ("learner exploded" if worker == "thread" else "exit code -9") in hook.learner.log[-1]["error"]
    assert hook.learner.evaluator is before  # last good weights
    assert made[0].decisions > 5 and not hook.failed
    if worker == "process":  # the decisions after the kill were still recorded, as drops
        assert hook.learner.stats["dropped"] > 0 and hook.summary()["worker"] == "process"


def test_online_hook__a_raising_learner_never_reaches_the_control_loop():
    hook = _hook()
    before = hook.learner.evaluator

    def bad_observe(*a, **k):
        raise ValueError("bad transition")

    hook.learner.observe = bad_observe
    made = []
    make = _agents(hook)
    res = run_episodes(dataclasses.replace(RUN, episodes=1), lambda: made.append(make()) or made[-1],
                       progress=False)
    hook.close()
    assert hook.failed and hook.errors[0]["where"] == "record" and "bad transition" in hook.errors[0]["error"]
    assert hook.evaluator is before
    assert made[0].decisions > 1 and res.episodes[0].sim_s >= 11.9  # the episode ran to the end


class _Order:
    def __init__(self, i: int, status: str) -> None:
        self.id, self.status = i, status


class _FakeLearner:
    evaluator = object()
    version, crashed = 0, False

    def __init__(self) -> None:
        self.kpis, self.layouts, self.steps, self.log, self.stats = [], [], 0, [], {}

    def report_kpis(self, k):
        self.kpis.append(dict(k))

    def set_layout(self, lay):
        self.layouts.append(lay)

    def step(self):
        self.steps += 1

    def close(self):
        pass


class _Fleet:
    def __init__(self, occupancy) -> None:
        self.layout = type("L", (), {"occupancy": occupancy})()
        self.time = 0.0


@pytest.mark.parametrize("background", [True, False])
def test_online_hook__kpi_windows_layout_changes_and_between_episode_updates(background):
    fl = _FakeLearner()
    hook = OnlineHook(fl, background=background, kpi_period_s=10.0)
    occ = np.zeros((4, 4), bool)
    f1 = _Fleet(occ)
    hook.reset(f1)
    orders = [_Order(0, "delivered"), _Order(1, "assigned")]
    hook.tick(5.0, orders)
    assert fl.kpis == []  # not due yet
    hook.tick(10.0, orders)
    assert fl.kpis == [{"completion_rate": 1.0, "orders_per_hour": 360.0}]
    orders += [_Order(2, "expired")]
    orders[1].status = "delivered"
    hook.tick(20.0, orders)
    assert fl.kpis[-1] == {"completion_rate": 0.5, "orders_per_hour": 360.0}
    hook.tick(30.0, orders)
    assert len(fl.kpis) == 2  # nothing finished in the window: no report
    f1.time = 40.0
    orders.append(_Order(3, "delivered"))
    hook.reset(_Fleet(occ.copy()))  # same layout: the last window is flushed, no layout change
    assert fl.kpis[-1] == {"completion_rate": 1.0, "orders_per_hour": 360.0}
    assert fl.layouts == []
    closed = occ.copy()
    closed[1, 2] = True
    f3 = _Fleet(closed)
    hook.reset(f3)
    assert fl.layouts == [f3.layout]
    assert fl.steps == (0 if background else 2)


def test_cli__online_learning_needs_a_network_planner(tmp_path, capsys):
    from agent.cli import main

    with pytest.raises(SystemExit) as e:
        main(["run", "+experiment=smoke", "learning=online", "planner=classic", f"hydra.run.dir={tmp_path / 'o'}"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert "learning.online=true: needs a network planner (mcts_rl, policy)" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("planner,gate", [("policy", 0), ("mcts_rl", 16)])
def test_online_hook__the_gate_plays_the_way_production_plans(planner, gate):
    """``learning=online`` gates with MCTS at 16 simulations; a greedy ``policy`` fleet is
    gated on greedy play (what production runs), not on a search it never does."""
    from agent.cli import compose_config
    from agent.config import build_app_config
    from agent.online_hook import build_online_hook
    from learning.evaluator import load_network_evaluator

    data, _ = compose_config(["learning=online", "learning.background=false", f"planner={planner}"])
    app = build_app_config(data)
    assert app.learning.learner.gate_simulations == 16
    hook = build_online_hook(app, load_network_evaluator())
    try:
        assert hook.gate_simulations == gate and hook.learner.cfg.gate_simulations == gate
        assert hook.summary()["gate_simulations"] == gate
    finally:
        hook.close()
