"""Episode runner: one controller, N seeded episodes of the warehouse simulator, KPIs.

Example:
    >>> from agent.baseline import BaselineController
    >>> from sim.config import SimConfig
    >>> res = run_episodes(RunConfig(SimConfig(n_robots=2, duration_s=5.0), episodes=1),
    ...                    BaselineController, progress=False)  # doctest: +SKIP
    >>> res.aggregate["completion_rate"]["mean"]  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from agent.control import Controller
from sim.config import SimConfig
from sim.layout import Layout

__all__ = ["EpisodeResult", "RunConfig", "RunResult", "aggregate_kpis", "flatten_kpis", "run_episodes"]


@dataclass(frozen=True)
class RunConfig:
    """What to run.

    Attributes:
        sim: simulator config.
        episodes: number of episodes; episode k is seeded ``seed + k``.
        seed: base seed.
        video: keep rendered frames of episode 0 (``sim.render``).
        video_every: render every k control ticks.
        video_width: frame width (px).
        traj_every: record ground-truth poses every k ticks (trajectory plot).
    """

    sim: SimConfig
    episodes: int = 2
    seed: int = 0
    video: bool = False
    video_every: int = 4
    video_width: int = 320
    traj_every: int = 5

    @property
    def seeds(self) -> list[int]:
        return [self.seed + k for k in range(self.episodes)]


@dataclass(frozen=True)
class EpisodeResult:
    """One episode.

    Attributes:
        episode: index; seed: its seed.
        kpis: ``sim.kpis().to_dict()`` (JSON-able).
        latency_ms: decision latency (wall ms from SensorFrame to commands, whole fleet per
            tick): p50, p99, mean, max.
        ticks: control ticks; sim_s: sim seconds; wall_s: wall seconds.
        times: [T] s of the recorded poses; trajectories: [T, N, 3] ground truth (x, y, yaw).
        frames: rendered frames [H, W, 3] uint8 (episode 0 with ``video``; else empty).
    """

    episode: int
    seed: int
    kpis: dict
    latency_ms: dict[str, float]
    ticks: int
    sim_s: float
    wall_s: float
    times: np.ndarray
    trajectories: np.ndarray
    frames: tuple[np.ndarray, ...] = ()


@dataclass(frozen=True)
class RunResult:
    """All episodes of one controller.

    Attributes:
        controller: controller name.
        episodes: per-episode results.
        aggregate: flattened numeric KPI -> {"mean", "std", "min", "max"} over episodes.
        layout: the floor plan (plots).
        wall_s: total wall time (s).
    """

    controller: str
    episodes: tuple[EpisodeResult, ...]
    aggregate: dict[str, dict[str, float]]
    layout: Layout
    wall_s: float
    extra: dict = field(default_factory=dict)


def flatten_kpis(d: dict, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a KPI dict as ``dotted.key -> float``; per-robot lists -> their mean
    (``key.mean``) and sum (``key.sum``); strings are skipped, bools become 0/1."""
    out: dict[str, float] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten_kpis(v, key + "."))
        elif isinstance(v, (bool, int, float)):
            out[key] = float(v)
        elif isinstance(v, (list, tuple)) and v and all(isinstance(x, (int, float)) for x in v):
            out[key + ".mean"] = float(np.mean(v))
            out[key + ".sum"] = float(np.sum(v))
    return out


def aggregate_kpis(kpis: Sequence[dict]) -> dict[str, dict[str, float]]:
    """Mean, std (population), min, max across episodes of every numeric KPI."""
    flat = [flatten_kpis(k) for k in kpis]
    keys = sorted(set().union(*flat)) if flat else []
    out = {}
    for key in keys:
        vals = np.array([f[key] for f in flat if key in f], dtype=np.float64)
        out[key] = {"mean": float(vals.mean()), "std": float(vals.std()), "min": float(vals.min()),
                    "max": float(vals.max())}
    return out


def _latency_stats(ms: list[float]) -> dict[str, float]:
    if not ms:
        return {"p50": 0.0, "p99": 0.0, "mean": 0.0, "max": 0.0}
    a = np.asarray(ms)
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
            "mean": float(a.mean()), "max": float(a.max())}


def run_episode(cfg: RunConfig, controller: Controller, episode: int, *,
                on_tick: Callable[[float], None] | None = None, layout: Layout | None = None) -> EpisodeResult:
    """Run one episode with ``controller`` (seed ``cfg.seed + episode``); ``layout``: a
    prebuilt site (e.g. with an aisle closed) instead of ``cfg.sim.layout``'s."""
    from sim.warehouse import WarehouseSim  # imports PyBullet: keep ``agent`` light to import

    seed = cfg.seed + episode
    t_wall = time.perf_counter()
    sim = WarehouseSim(cfg.sim, seed, layout=layout)
    try:
        frames = sim.reset(seed)
        controller.reset(sim)
        lat: list[float] = []
        times, traj, images = [], [], []
        record_video = cfg.video and episode == 0 and hasattr(sim, "render")
        tick = 0
        while not sim.done:
            if tick % cfg.traj_every == 0:
                times.append(sim.time)
                traj.append(sim.ground_truth())
            if record_video and tick % cfg.video_every == 0:
                images.append(sim.render(cfg.video_width))
            t0 = time.perf_counter()
            cmds = controller.act(frames, sim.time)
            lat.append((time.perf_counter() - t0) * 1e3)
            frames = sim.step(cmds)
            tick += 1
            if on_tick is not None:
                on_tick(sim.time)
        times.append(sim.time)
        traj.append(sim.ground_truth())
        kpis = sim.kpis().to_dict()
        kpis["events"] = [_event_dict(e) for e in sim.events]
    finally:
        sim.close()
    return EpisodeResult(episode=episode, seed=seed, kpis=kpis, latency_ms=_latency_stats(lat), ticks=tick,
                         sim_s=float(times[-1]), wall_s=time.perf_counter() - t_wall,
                         times=np.asarray(times), trajectories=np.stack(traj), frames=tuple(images))


def _event_dict(e: object) -> dict:
    keys = ("kind", "robot", "onset_t", "resolved_t", "cell", "detail")
    out = {}
    for k in keys:
        v = getattr(e, k, None)
        out[k] = list(v) if isinstance(v, tuple) else v
    return out


def run_episodes(cfg: RunConfig, controller_factory: Callable[[], Controller], *,
                 progress: bool = True) -> RunResult:
    """Run ``cfg.episodes`` seeded episodes, a fresh controller each, and aggregate KPIs.

    Args:
        cfg: what to run.
        controller_factory: builds a controller (called once per episode).
        progress: show a rich progress bar (sim seconds) on stderr.

    Returns:
        Per-episode results and mean/std KPIs across episodes.
    """
    from sim.layout import generate_layout

    t0 = time.perf_counter()
    results = []
    name = "controller"
    bar = _Progress(cfg, enabled=progress)
    with bar:
        for ep in range(cfg.episodes):
            ctrl = controller_factory()
            name = getattr(ctrl, "name", type(ctrl).__name__)
            bar.start_episode(ep, name)
            results.append(run_episode(cfg, ctrl, ep, on_tick=bar.advance))
    agg = aggregate_kpis([r.kpis for r in results])
    lat = aggregate_kpis([{"latency_ms": r.latency_ms} for r in results])
    agg.update(lat)
    return RunResult(controller=name, episodes=tuple(results), aggregate=agg,
                     layout=generate_layout(cfg.sim.layout), wall_s=time.perf_counter() - t0)


class _Progress:
    """A rich progress bar over sim seconds of all episodes (no-op when disabled)."""

    def __init__(self, cfg: RunConfig, *, enabled: bool) -> None:
        self.enabled = enabled
        self.cfg = cfg
        self._bar = None
        self._task = None
        self._done_before = 0.0

    def __enter__(self) -> _Progress:  # noqa: PYI034
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.completed:>6.0f}/{task.total:.0f} sim s"),
                                 TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=Console(stderr=True), transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task("run", total=self.cfg.episodes * self.cfg.sim.duration_s)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def start_episode(self, ep: int, name: str) -> None:
        self._done_before = ep * self.cfg.sim.duration_s
        if self._bar is not None:
            self._bar.update(self._task, description=f"{name} episode {ep + 1}/{self.cfg.episodes}",
                             completed=self._done_before)

    def advance(self, t: float) -> None:
        if self._bar is not None and int(t * 20) % 20 == 0:  # ~1 update per sim second
            self._bar.update(self._task, completed=self._done_before + t)
