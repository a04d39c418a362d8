"""Episodes of a planner comparison, serially or in parallel on Ray, with identical results.

A task is (planner entry, episode index). Whoever runs it (this process, or a Ray worker)
builds the planner's controller from the validated config with the planner registry
(:func:`agent.planners.controller_factory`), never from a pickled controller, and runs one
seeded episode (:func:`agent.runner.run_episode`, seed ``app.seed + episode``). Only
configs go to the workers and only results (KPI dicts, trajectories, frames, latencies)
come back, so a parallel run gives the same KPIs as a serial one with the same seeds
(tested); wall-clock numbers (decision latency, wall time) differ, and with several
workers sharing a CPU they are contended: quote latency from serial runs (``eval.workers=1``).

Ray: ``eval.workers=N`` (N > 1) starts a local Ray bound to loopback
(``ray.init(num_cpus=N, include_dashboard=False, _node_ip_address="127.0.0.1")``) unless
one is already initialised; ``ray.address=auto`` (or ``host:port``) connects to an
existing cluster instead, whose nodes must have this package installed.

Example:
    >>> tasks = [EpisodeTask(PlannerEntry.parse("classic"), k) for k in range(2)]  # doctest: +SKIP
    >>> results = run_tasks(app, tasks, workers=2, progress=False)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.config import AppConfig, ConfigError, to_run_config
from agent.runner import EpisodeResult

__all__ = ["EpisodeTask", "PlannerEntry", "TaskResult", "TimedController", "planner_factory", "planner_names",
           "run_task", "run_tasks"]

def planner_names() -> tuple[str, ...]:
    """The names the planner registry knows (``agent.planners.PLANNER_NAMES``)."""
    from agent.planners import PLANNER_NAMES

    return tuple(PLANNER_NAMES)


def planner_factory(app: AppConfig, planner: str) -> Callable[[], Any]:
    """A factory of fresh controllers for ``planner`` (the one switch to the registry).

    Raises:
        ConfigError: unknown planner, or its weights cannot be loaded (one line).
    """
    from agent.planners import controller_factory

    return controller_factory(app, planner)


@dataclass(frozen=True)
class PlannerEntry:
    """One column of the comparison: a planner name, optionally at another simulation count.

    ``mcts_rollout@64`` is ``mcts_rollout`` with ``planner.num_simulations=64`` (so
    ``planners=[mcts_rl,mcts_rollout@64]`` compares at 4x the simulations on the same seeds).

    Attributes:
        label: as written (the report's key); name: registry name; num_simulations: or None.
    """

    label: str
    name: str
    num_simulations: int | None = None

    @staticmethod
    def parse(text: str) -> PlannerEntry:
        """Parse ``name`` or ``name@sims``.

        Raises:
            ConfigError: unknown name or a bad simulation count (one line).
        """
        label = str(text).strip()
        name, _, sims = label.partition("@")
        allowed = planner_names()
        if name not in allowed:
            raise ConfigError("planners", f"unknown planner; allowed {', '.join(allowed)} (optionally name@sims)",
                              label)
        n = None
        if sims:
            if not sims.isdigit() or int(sims) < 1:
                raise ConfigError("planners", "simulation count after @ must be an integer >= 1", label)
            n = int(sims)
        return PlannerEntry(label=label, name=name, num_simulations=n)

    def app_for(self, app: AppConfig) -> AppConfig:
        """The config this entry runs under (``planner.num_simulations`` replaced if given)."""
        if self.num_simulations is None:
            return app
        return dataclasses.replace(app, planner=dataclasses.replace(app.planner, num_simulations=self.num_simulations))


@dataclass(frozen=True)
class EpisodeTask:
    """One episode of one planner entry (seed ``app.seed + episode``)."""

    entry: PlannerEntry
    episode: int


@dataclass(frozen=True)
class TaskResult:
    """What comes back from a task.

    Attributes:
        label: the planner entry's label; name: the controller's own name.
        result: the episode (KPIs, trajectories, frames of episode 0 with video).
        latencies_ms: [T] wall ms of each ``controller.act`` call (whole fleet per tick).
    """

    label: str
    name: str
    result: EpisodeResult
    latencies_ms: np.ndarray


class TimedController:
    """Wraps a controller; records the wall time of every ``act`` (ms) for exact pooled
    percentiles (the runner itself keeps only per-episode p50/p99)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = str(getattr(inner, "name", type(inner).__name__))
        self.latencies_ms: list[float] = []

    def reset(self, sim: Any) -> None:
        self.latencies_ms.clear()
        self.inner.reset(sim)

    def act(self, frames: Sequence[Any], t: float) -> list[Any]:
        t0 = time.perf_counter()
        out = self.inner.act(frames, t)
        self.latencies_ms.append((time.perf_counter() - t0) * 1e3)
        return out


def run_task(app: AppConfig, task: EpisodeTask, *, factory: Callable[[], Any] | None = None,
             on_tick: Callable[[float], None] | None = None) -> TaskResult:
    """Run one task here: controller from the registry (or ``factory``), one seeded episode."""
    from agent.runner import run_episode

    own = task.entry.app_for(app)
    make = factory if factory is not None else planner_factory(own, task.entry.name)
    ctrl = TimedController(make())
    res = run_episode(to_run_config(own), ctrl, task.episode, on_tick=on_tick)
    return TaskResult(task.entry.label, ctrl.name, res, np.asarray(ctrl.latencies_ms, dtype=np.float64))


def _remote_task(app: AppConfig, task: EpisodeTask) -> TaskResult:  # runs in a Ray worker
    return run_task(app, task)


def run_tasks(app: AppConfig, tasks: Sequence[EpisodeTask], *, workers: int = 1, address: str | None = None,
              num_cpus: int | None = None, progress: bool = True) -> list[TaskResult]:
    """Run every task; results in task order.

    Args:
        app: the validated config.
        tasks: (planner entry, episode) pairs.
        workers: 1 = serially in this process; N > 1 = N episodes at a time on Ray.
        address: Ray cluster address (``auto``, ``host:port``); None = a local Ray on loopback.
        num_cpus: local Ray's CPUs (default ``workers``).
        progress: a rich progress bar over sim seconds on stderr.

    Raises:
        ConfigError: a planner that cannot be built (checked here, before any episode runs).
    """
    factories = {}
    for t in tasks:  # fail fast, one line, before anything runs (and before Ray starts)
        if t.entry.label not in factories:
            factories[t.entry.label] = planner_factory(t.entry.app_for(app), t.entry.name)
    bar = _Bar(len(tasks), app.duration_s, enabled=progress)
    with bar:
        if workers <= 1 and address is None:
            out = []
            for t in tasks:
                bar.start(t)
                out.append(run_task(app, t, factory=factories[t.entry.label], on_tick=bar.tick))
                bar.finish()
            return out
        return _run_on_ray(app, tasks, workers=workers, address=address, num_cpus=num_cpus, bar=bar)


def _run_on_ray(app: AppConfig, tasks: Sequence[EpisodeTask], *, workers: int, address: str | None,
                num_cpus: int | None, bar: _Bar) -> list[TaskResult]:
    import ray

    started = False
    if not ray.is_initialized():
        if address is None:
            ray.init(num_cpus=num_cpus or workers, include_dashboard=False, _node_ip_address="127.0.0.1",
                     log_to_driver=False, configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        started = True
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(_remote_task)
        pending: dict[Any, int] = {}
        out: list[TaskResult | None] = [None] * len(tasks)
        todo = list(range(len(tasks)))
        while todo or pending:
            while todo and len(pending) < max(1, workers):  # at most `workers` episodes at a time
                i = todo.pop(0)
                pending[remote.remote(app, tasks[i])] = i
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                i = pending.pop(ref)
                out[i] = ray.get(ref)
                bar.done_one(tasks[i])
        return [r for r in out if r is not None]
    finally:
        if started:
            ray.shutdown()


class _Bar:
    """A rich progress bar over sim seconds of all tasks (no-op when disabled)."""

    def __init__(self, n_tasks: int, duration_s: float, *, enabled: bool) -> None:
        self.enabled, self.total, self.duration = enabled, n_tasks * duration_s, duration_s
        self._bar: Any = None
        self._task: Any = None
        self._done = 0.0

    def __enter__(self) -> _Bar:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.completed:>6.0f}/{task.total:.0f} sim s"),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                                 transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task("eval", total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def start(self, t: EpisodeTask) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=f"{t.entry.label} episode {t.episode + 1}")

    def tick(self, sim_t: float) -> None:
        if self._bar is not None and int(sim_t * 20) % 20 == 0:  # ~1 update per sim second
            self._bar.update(self._task, completed=self._done + sim_t)

    def finish(self) -> None:
        self._done += self.duration
        if self._bar is not None:
            self._bar.update(self._task, completed=self._done)

    def done_one(self, t: EpisodeTask) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=f"{t.entry.label} episode {t.episode + 1} done")
        self.finish()
