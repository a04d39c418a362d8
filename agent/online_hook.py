"""The online learner hosted by the agent (``learning=online``; docs/ONLINE.md).

:class:`OnlineHook` is everything :class:`agent.agent.Agent` does for online learning, in
one object the agent calls at four points; it lives as long as the run (all episodes), the
agent only for one episode:

- ``reset(fleet)`` (episode start): the layout changed? -> ``learner.set_layout``; flush
  the KPI window of the last episode; with ``background=False`` run one learner update
  here (between episodes, reproducible from (config, seed));
- ``evaluator`` (read once per fleet decision, before the search): the learner's current
  production evaluator. One attribute read; the learner swaps it atomically, so a search
  never mixes two networks;
- ``record(model, states, actions, result)`` (after the search): the roots' observations,
  the search's improved policy and root value (expert-iteration targets) and the grid
  model's one-step transition of the chosen action go to ``learner.observe`` (copies into
  a bounded queue, never blocks, no torch);
- ``tick(t, orders)`` (every control tick, cheap): every ``kpi_period_s`` sim seconds the
  live KPIs of the window (completion rate = delivered / (delivered + expired) among the
  orders finished in it; orders per hour) go to ``learner.report_kpis`` (may roll back).

Where the learner runs (``learning.background``, worker): in a worker process
(:class:`learning.online.ProcessLearner`, the default: training and the shadow gate never
hold this process's interpreter lock), on a daemon thread of this process
(:class:`learning.online.OnlineLearner`), or, ``background=False``, in ``reset``.

Crash isolation: the learner catches its own exceptions (logged as ``crash``; a worker
process that dies is noticed and logged too; production keeps its weights). Every hook method also catches everything: an error is
logged (``hook_error``), the hook stops feeding the learner, and ``evaluator`` keeps
returning the last production evaluator it read. The control loop never sees an exception
from online learning.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["OnlineHook", "build_online_hook"]


class OnlineHook:
    """Feeds an :class:`learning.online.OnlineLearner` from the agent and serves its weights.

    Args:
        learner: the learner (its thread already started when ``background``).
        background: the learner updates on its own thread; False: one ``learner.step()``
            per episode start (in the host's thread, before the episode's first tick).
        kpi_period_s: sim seconds between two live KPI reports.
        seed: seeds the grid-model steps of the recorded transitions (with the decision
            count).
    """

    def __init__(self, learner: Any, *, background: bool, kpi_period_s: float, seed: int = 0,
                 gate_simulations: int | None = None) -> None:
        self.learner = learner
        self.background = bool(background)
        self.kpi_period_s = float(kpi_period_s)
        self.seed = int(seed)
        #: the gate's MCTS simulations (0: greedy), for the report
        self.gate_simulations = gate_simulations
        self.failed = False
        self.errors: list[dict[str, Any]] = []
        self.kpi_reports: list[dict[str, float]] = []
        self._evaluator = learner.evaluator
        self._layout_occ: np.ndarray | None = None
        self._episodes = 0
        self._records = 0
        self._fleet: Any = None
        self._orders: Sequence[Any] = ()
        self._win_t0 = 0.0
        self._next_report = self.kpi_period_s
        self._counted: set[int] = set()
        self._win = {"delivered": 0, "expired": 0}

    # ---- what the agent calls ------------------------------------------------------------
    @property
    def evaluator(self) -> Any:
        """The production evaluator to search with (read once per fleet decision)."""
        if not self.failed:
            try:
                self._evaluator = self.learner.evaluator
            except Exception as e:  # noqa: BLE001 - never reaches the control loop
                self._fail("evaluator", e)
        return self._evaluator

    def reset(self, fleet: Any) -> None:
        """Episode start: layout change, KPI flush, and (``background=False``) one update."""
        if self.failed:
            return
        try:
            self._flush(final=True)
            self._fleet, self._orders = fleet, ()
            self._counted, self._win_t0, self._next_report = set(), 0.0, self.kpi_period_s
            occ = np.asarray(fleet.layout.occupancy)
            if self._layout_occ is not None and not np.array_equal(occ, self._layout_occ):
                self.learner.set_layout(fleet.layout)
            self._layout_occ = occ.copy()
            if not self.background and self._episodes > 0:
                self.learner.step()
            self._episodes += 1
        except Exception as e:  # noqa: BLE001
            self._fail("reset", e)

    def record(self, model: Any, states: Any, actions: np.ndarray, result: Any = None) -> None:
        """One fleet decision: B roots, the chosen actions [B] and the search result.

        Args:
            model: the grid model the search ran on (``GridModel.with_plans``).
            states: [B] root states.
            actions: [B] chosen macro actions.
            result: ``planning.SearchResult`` (``policy`` [B, A] improved policy,
                ``root_value`` [B]) or None (no search: transitions without targets).
        """
        if self.failed:
            return
        try:
            self._records += 1
            a = np.asarray(actions, np.int64)
            obs = model.encode(states)
            rng = np.random.default_rng([self.seed, self._episodes, self._records])
            nxt, reward, done = model.step(states, a, rng)
            nobs = model.encode(nxt)
            for r in range(len(a)):
                o = {k: v[r] for k, v in obs.items()}
                n = {k: v[r] for k, v in nobs.items()}
                pol = None if result is None else result.policy[r]
                val = None if result is None else float(result.root_value[r])
                self.learner.observe(o, int(a[r]), float(reward[r]), n, bool(done[r]),
                                     search_policy=pol, search_value=val)
        except Exception as e:  # noqa: BLE001
            self._fail("record", e)

    def tick(self, t: float, orders: Sequence[Any]) -> None:
        """Every control tick (sim time ``t`` s, the WMS's orders): KPI report when due."""
        if self.failed:
            return
        self._orders = orders
        if t < self._next_report:
            return
        try:
            self._count(orders)
            self._flush(final=False, t=t)
            self._next_report = t + self.kpi_period_s
        except Exception as e:  # noqa: BLE001
            self._fail("tick", e)

    # ---- run end -------------------------------------------------------------------------
    def close(self) -> None:
        """Flushes the last KPI window and stops the learner (idempotent)."""
        try:
            if not self.failed:
                self._flush(final=True)
        except Exception as e:  # noqa: BLE001
            self._fail("close", e)
        self.learner.close()

    def summary(self) -> dict[str, Any]:
        """JSON-able: learner counters, version, swaps / rollbacks with evidence, hook errors."""
        log = [{k: v for k, v in e.items() if k != "traceback"} for e in self.learner.log]
        return {"version": int(self.learner.version), "worker": str(getattr(self.learner, "worker", "")),
                "gate_simulations": self.gate_simulations,
                "stats": dict(self.learner.stats),
                "crashed": bool(self.learner.crashed), "hook_failed": self.failed,
                "hook_errors": self.errors, "kpi_reports": self.kpi_reports, "log": log,
                "swaps": [e for e in log if e["event"] == "swap"],
                "rollbacks": [e for e in log if e["event"] == "rollback"]}

    def save(self, directory: str | Path) -> dict[str, Path]:
        """The learner's production weights and adapters / EWC state (safetensors)."""
        return self.learner.save(directory)

    # ---- internals ------------------------------------------------------------------------
    def _count(self, orders: Sequence[Any]) -> None:
        for o in orders:
            if o.id in self._counted or o.status not in ("delivered", "expired"):
                continue
            self._counted.add(o.id)
            self._win[o.status] += 1

    def _flush(self, *, final: bool, t: float | None = None) -> None:
        """Report the window's KPIs (if an order finished in it) and open a new window."""
        if final:
            self._count(self._orders)
            t = max(self._win_t0, float(getattr(self._fleet, "time", self._win_t0) or self._win_t0))
        d, x = self._win["delivered"], self._win["expired"]
        span = max(float(t) - self._win_t0, 1e-9)
        if d + x > 0 and span > 0:
            kpis = {"completion_rate": d / (d + x), "orders_per_hour": d / span * 3600.0}
            self.kpi_reports.append({"t": float(t), "episode": self._episodes, **kpis})
            self.learner.report_kpis(kpis)
        self._win = {"delivered": 0, "expired": 0}
        self._win_t0 = float(t)

    def _fail(self, where: str, e: BaseException) -> None:
        self.failed = True
        self.errors.append({"where": where, "error": f"{type(e).__name__}: {e}", "time": time.time(),
                            "traceback": traceback.format_exc(limit=4)})


def build_online_hook(app: Any, evaluator: Any, layout: Any = None) -> OnlineHook:
    """The hook of ``learning.online=true`` from the validated app config.

    Args:
        app: :class:`agent.config.AppConfig`.
        evaluator: the production evaluator to start from (``NetworkEvaluator``).
        layout: the site's layout (default: ``generate_layout(app.layout)``).
    """
    import dataclasses

    import torch

    from learning.online import OnlineConfig, check_worker, make_learner
    from sim.layout import generate_layout

    torch.set_num_threads(1)  # the learner shares the machine with the control loop
    lc = app.learning
    # where the background learner runs: a worker process (default: its training and gate
    # never hold this interpreter's lock) or a thread of this process. ``learning.worker``
    # once the schema has the key (agent.config.LearningSection); until then the default.
    worker = check_worker(getattr(lc, "worker", "process"), "learning.worker")
    if lc.background and worker == "thread":
        # a thread waiting for the GIL gets it after at most the switch interval; 1 ms
        # instead of Python's 5 ms bounds what the learner thread's Python work (the gate's
        # searches) adds to one control decision. Process-wide (both arms of eval
        # task=continual run in this process, so they are compared under the same setting).
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))
    cfg = OnlineConfig(**{**dataclasses.asdict(lc.learner), "seed": app.seed + lc.learner.seed})
    p = app.planner  # the gate searches the way the agent plans (agent.agent's MCTSConfig)
    if p.name == "policy":
        # production plays the network greedily (no search): so does the gate, whatever
        # learning.learner.gate_simulations says for the search planners (docs/ONLINE.md)
        cfg = dataclasses.replace(cfg, gate_simulations=0)
    search = {"rule": p.algorithm, "max_depth": p.max_depth, "gumbel_scale": p.gumbel_scale, "c1": p.c_puct,
              "max_considered_actions": 5}
    learner = make_learner(cfg, evaluator, layout=layout if layout is not None else generate_layout(app.layout),
                           background=lc.background, worker=worker, gate_search=search)
    return OnlineHook(learner, background=lc.background, kpi_period_s=lc.kpi_period_s, seed=cfg.seed,
                      gate_simulations=int(cfg.gate_simulations))
