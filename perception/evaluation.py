"""Localization and blockage evaluation: the pure part of ``forklift eval task=localization``.

:func:`evaluate_localization` takes, per robot, the sensor frames and ground-truth poses
(from :mod:`perception.synthetic` now, from the PyBullet simulator later), runs the EKF,
the UKF and dead reckoning side by side, and returns a typed
:class:`LocalizationEvalResult`; :func:`evaluate_synthetic` builds the logs with the
synthetic generator (``sensors="nominal" | "degraded"``, ``episodes=N``);
:func:`plot_errors` draws error over time with outage windows shaded (PNG, Agg).

Metric definitions (also in ``LocalizationEvalResult.to_dict()``):

* position / yaw RMSE over all frames of all robots (cm / deg), p95 and max position
  error (cm); frames within ``kidnap_grace_s`` after a kidnapping are excluded from the
  error statistics (they are the kidnap's own recovery, reported separately);
* divergence: a robot episode whose position error exceeds 0.5 m, or whose NEES stays
  above ``nees_blowup`` for ``nees_blowup_s`` seconds, outside kidnap grace windows;
* gating rejections: summed ``stats.rejected`` per sensor;
* time to recover after an outage window: seconds from the window's end until the error
  is <= 2 cm and stays so for ``hold_s`` (0 if it never left; inf if never back);
* kidnap recovery: seconds from the teleport until the error is <= 2 cm (held);
* blockages (fleet-level :class:`~perception.obstacles.BlockageDetector` fed with every
  robot's scan and EKF pose, other robots' poses excluded): a reported blockage is a
  true positive when its cell belongs to an injected blockage and its ``first_seen``
  falls in the injection interval (+- ``match_tol_s``); precision = TP / reported,
  recall = injected blockages with a TP / injected; latency = first report time minus
  injection start (includes the dwell time and the time until a robot looks).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from perception.localization import Localizer, LocalizerConfig
from perception.motion import wrap
from perception.obstacles import BlockageConfig, BlockageDetector
from sim.layout import Layout
from sim.types import Pose, SensorFrame

KINDS: tuple[str, ...] = ("ekf", "ukf", "dead_reckoning")


@dataclass(frozen=True)
class OutageWindow:
    """Sensor ``sensor`` absent over ``[t0, t1)`` seconds."""

    sensor: str
    t0: float
    t1: float


@dataclass(frozen=True)
class RobotLog:
    """One robot's episode.

    Attributes:
        robot_id: robot index.
        frames: T sensor frames in time order.
        truth: [T, 3] true (x, y, yaw) at each frame's stamp (m, m, rad).
        initial_pose: pose (with covariance, stamp) the localizers start from.
        outages: outage windows that apply to this robot.
        kidnap_times: seconds at which the robot was teleported.
    """

    robot_id: int
    frames: Sequence[SensorFrame]
    truth: np.ndarray
    initial_pose: Pose
    outages: tuple[OutageWindow, ...] = ()
    kidnap_times: tuple[float, ...] = ()


@dataclass(frozen=True)
class InjectedBlockage:
    """Ground truth: layout cells [C, 2] (row, col) blocked over ``[t0, t1)`` seconds."""

    cells: np.ndarray
    t0: float
    t1: float


@dataclass(frozen=True)
class Trace:
    """Per-frame errors of one filter on one robot: stamps, errors (m, rad), NEES, health."""

    kind: str
    robot_id: int
    stamps: np.ndarray  # [T] s
    pos_err: np.ndarray  # [T] m
    yaw_err: np.ndarray  # [T] rad (signed)
    nees: np.ndarray  # [T]
    health: tuple[str, ...]


@dataclass(frozen=True)
class FilterMetrics:
    """Aggregate KPIs of one filter kind over all robots and episodes (see module doc)."""

    kind: str
    pos_rmse_cm: float
    yaw_rmse_deg: float
    pos_p95_cm: float
    pos_max_cm: float
    mean_nees: float
    divergences: int
    episodes: int
    rejections: Mapping[str, int]
    relocalizations: int
    kidnaps_detected: int
    recovery_s: tuple[float, ...]  # one per outage window per robot episode
    kidnap_recovery_s: tuple[float, ...]
    frames_per_s: float  # wall-clock filter throughput (this machine, incl. scan matching)

    @property
    def max_recovery_s(self) -> float:
        """Worst time to recover after an outage (0 without outages)."""
        return max(self.recovery_s, default=0.0)


@dataclass(frozen=True)
class BlockageMetrics:
    """Blockage detection quality (see module doc)."""

    precision: float
    recall: float
    latency_s: tuple[float, ...]  # per detected injected blockage
    reported: int
    true_positives: int
    injected: int
    detected: int

    @property
    def mean_latency_s(self) -> float:
        return float(np.mean(self.latency_s)) if self.latency_s else math.nan


@dataclass(frozen=True)
class LocalizationEvalResult:
    """Everything ``forklift eval task=localization`` reports."""

    metrics: Mapping[str, FilterMetrics]
    blockage: BlockageMetrics | None
    traces: tuple[Trace, ...]
    outages: Mapping[int, tuple[OutageWindow, ...]] = field(default_factory=dict)  # per trace index

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (for report.json); inf/nan become None."""

        def clean(v: Any) -> Any:
            if isinstance(v, float):
                return v if math.isfinite(v) else None
            if isinstance(v, (tuple, list)):
                return [clean(x) for x in v]
            if isinstance(v, Mapping):
                return {k: clean(x) for k, x in v.items()}
            return v

        out: dict[str, Any] = {}
        for k, m in self.metrics.items():
            out[k] = clean(
                {
                    "pos_rmse_cm": m.pos_rmse_cm,
                    "yaw_rmse_deg": m.yaw_rmse_deg,
                    "pos_p95_cm": m.pos_p95_cm,
                    "pos_max_cm": m.pos_max_cm,
                    "mean_nees": m.mean_nees,
                    "divergences": m.divergences,
                    "episodes": m.episodes,
                    "rejections": dict(m.rejections),
                    "relocalizations": m.relocalizations,
                    "kidnaps_detected": m.kidnaps_detected,
                    "recovery_s": list(m.recovery_s),
                    "max_recovery_s": m.max_recovery_s,
                    "kidnap_recovery_s": list(m.kidnap_recovery_s),
                    "frames_per_s": m.frames_per_s,
                }
            )
        if self.blockage is not None:
            b = self.blockage
            out["blockage"] = clean(
                {
                    "precision": b.precision,
                    "recall": b.recall,
                    "latency_s": list(b.latency_s),
                    "mean_latency_s": b.mean_latency_s,
                    "reported": b.reported,
                    "true_positives": b.true_positives,
                    "injected": b.injected,
                    "detected": b.detected,
                }
            )
        return out

    def summary(self) -> str:
        """One line per filter kind (plus blockages), human readable."""
        lines = []
        for k, m in self.metrics.items():
            lines.append(
                f"{k:>15}: pos RMSE {m.pos_rmse_cm:.2f} cm, yaw RMSE {m.yaw_rmse_deg:.3f} deg, "
                f"p95 {m.pos_p95_cm:.2f} cm, max {m.pos_max_cm:.2f} cm, NEES {m.mean_nees:.2f}, "
                f"divergences {m.divergences}/{m.episodes}, max recovery {m.max_recovery_s:.2f} s, "
                f"rejections {sum(m.rejections.values())}"
            )
        if self.blockage is not None:
            b = self.blockage
            lines.append(
                f"{'blockages':>15}: precision {b.precision:.2f}, recall {b.recall:.2f}, "
                f"mean latency {b.mean_latency_s:.2f} s ({b.detected}/{b.injected} detected)"
            )
        return "\n".join(lines)


# ---- running filters ------------------------------------------------------------------------


def _run_filter(
    layout: Layout, log: RobotLog, cfg: LocalizerConfig
) -> tuple[Trace, list[Pose], Any, float]:
    loc = Localizer(layout, cfg, log.initial_pose)
    poses: list[Pose] = []
    t0 = time.perf_counter()
    for f in log.frames:
        poses.append(loc.update(f))
    wall = time.perf_counter() - t0
    est = np.array([[p.x, p.y, p.yaw] for p in poses]).reshape(-1, 3)
    truth = np.asarray(log.truth, dtype=np.float64).reshape(-1, 3)
    e = est - truth
    e[:, 2] = wrap(e[:, 2])
    covs = np.stack([p.cov for p in poses]) if poses else np.zeros((0, 3, 3))
    nees = (
        np.einsum("ti,ti->t", e, np.linalg.solve(covs, e[..., None])[..., 0])
        if poses
        else np.zeros(0)
    )
    trace = Trace(
        kind=cfg.kind,
        robot_id=log.robot_id,
        stamps=np.array([f.stamp for f in log.frames]),
        pos_err=np.hypot(e[:, 0], e[:, 1]),
        yaw_err=e[:, 2],
        nees=nees,
        health=tuple(p.health for p in poses),
    )
    return trace, poses, loc.stats, wall


def _held_below(
    stamps: np.ndarray, err: np.ndarray, start: float, thresh: float, hold_s: float
) -> float:
    """Seconds from ``start`` until ``err <= thresh`` holds for ``hold_s``; inf if never."""
    idx = np.flatnonzero(stamps >= start)
    ok = err[idx] <= thresh
    run_start = None
    for i, good in zip(idx, ok):
        if good:
            run_start = stamps[i] if run_start is None else run_start
            if stamps[i] - run_start >= hold_s - 1e-9:
                return max(float(run_start - start), 0.0)
        else:
            run_start = None
    if run_start is not None and idx.size and stamps[idx[-1]] - run_start >= 0:
        return max(float(run_start - start), 0.0)  # held until the end of the episode
    return math.inf


def _diverged(tr: Trace, mask: np.ndarray, nees_blowup: float, nees_blowup_s: float) -> bool:
    if np.any(tr.pos_err[mask] > 0.5):
        return True
    bad = (tr.nees > nees_blowup) & mask
    run = 0.0
    for i in range(1, len(bad)):
        run = run + (tr.stamps[i] - tr.stamps[i - 1]) if bad[i] else 0.0
        if run >= nees_blowup_s:
            return True
    return False


def _kind_metrics(
    kind: str,
    runs: list[tuple[RobotLog, Trace, Any, float]],
    *,
    recover_cm: float,
    hold_s: float,
    kidnap_grace_s: float,
    nees_blowup: float,
    nees_blowup_s: float,
) -> FilterMetrics:
    errs, yerrs, nees = [], [], []
    rec, kid_rec, rej = [], [], {}
    div = reloc = kid = 0
    frames = wall = 0.0
    for log, tr, stats, w in runs:
        mask = np.ones(len(tr.stamps), dtype=bool)
        for tk in log.kidnap_times:
            mask &= ~((tr.stamps >= tk) & (tr.stamps < tk + kidnap_grace_s))
            kid_rec.append(_held_below(tr.stamps, tr.pos_err, tk, recover_cm / 100, hold_s))
        errs.append(tr.pos_err[mask])
        yerrs.append(tr.yaw_err[mask])
        nees.append(tr.nees[mask])
        div += _diverged(tr, mask, nees_blowup, nees_blowup_s)
        for o in log.outages:
            if o.t1 <= tr.stamps[-1]:
                rec.append(_held_below(tr.stamps, tr.pos_err, o.t1, recover_cm / 100, hold_s))
        for s, n in stats.rejected.items():
            rej[s] = rej.get(s, 0) + n
        reloc += stats.relocalizations
        kid += stats.kidnaps_detected
        frames += len(tr.stamps)
        wall += w
    e, ye, ne = np.concatenate(errs), np.concatenate(yerrs), np.concatenate(nees)
    return FilterMetrics(
        kind=kind,
        pos_rmse_cm=float(np.sqrt(np.mean(e**2)) * 100),
        yaw_rmse_deg=float(np.degrees(np.sqrt(np.mean(ye**2)))),
        pos_p95_cm=float(np.percentile(e, 95) * 100),
        pos_max_cm=float(e.max() * 100),
        mean_nees=float(np.mean(ne)),
        divergences=div,
        episodes=len(runs),
        rejections=MappingProxyType(rej),
        relocalizations=reloc,
        kidnaps_detected=kid,
        recovery_s=tuple(rec),
        kidnap_recovery_s=tuple(kid_rec),
        frames_per_s=float(frames / wall) if wall > 0 else math.inf,
    )


# ---- blockages ------------------------------------------------------------------------------


def _blockage_metrics(
    layout: Layout,
    logs: Sequence[RobotLog],
    poses: Sequence[list[Pose]],
    injected: Sequence[InjectedBlockage],
    cfg: BlockageConfig,
    match_tol_s: float,
) -> BlockageMetrics:
    det = BlockageDetector(layout, cfg)
    order = sorted(
        ((f.stamp, i, k) for i, log in enumerate(logs) for k, f in enumerate(log.frames))
    )
    events: dict[
        tuple[tuple[int, int], float], float
    ] = {}  # (cell, first_seen) -> first report time
    for stamp, i, k in order:
        f = logs[i].frames[k]
        if f.lidar is None:
            continue
        others = np.array(
            [
                [poses[j][min(k, len(poses[j]) - 1)].x, poses[j][min(k, len(poses[j]) - 1)].y]
                for j in range(len(logs))
                if j != i
            ]
        ).reshape(-1, 2)
        for b in det.update(poses[i][k], f.lidar, stamp, exclude_xy=others):
            events.setdefault((b.cell, b.first_seen), stamp)
    tp = 0
    latency = []
    hit = [math.inf] * len(injected)
    for (cell, first), reported in events.items():
        match = [
            j
            for j, inj in enumerate(injected)
            if any((inj.cells == np.array(cell)).all(axis=1))
            and inj.t0 - match_tol_s <= first <= inj.t1 + match_tol_s
        ]
        tp += bool(match)
        for j in match:
            hit[j] = min(hit[j], reported - injected[j].t0)
    latency = [h for h in hit if math.isfinite(h)]
    return BlockageMetrics(
        precision=tp / len(events) if events else 1.0,
        recall=len(latency) / len(injected) if injected else 1.0,
        latency_s=tuple(latency),
        reported=len(events),
        true_positives=tp,
        injected=len(injected),
        detected=len(latency),
    )


# ---- public entry points --------------------------------------------------------------------


def evaluate_localization(
    layout: Layout,
    logs: Sequence[RobotLog],
    *,
    kinds: Iterable[str] = KINDS,
    config: LocalizerConfig | None = None,
    blockages: Sequence[InjectedBlockage] | None = None,
    blockage_config: BlockageConfig | None = None,
    recover_cm: float = 2.0,
    hold_s: float = 0.5,
    kidnap_grace_s: float = 5.0,
    nees_blowup: float = 100.0,
    nees_blowup_s: float = 1.0,
    match_tol_s: float = 0.5,
) -> LocalizationEvalResult:
    """Run every filter kind over every robot log and score them against ground truth.

    Args:
        layout: the warehouse.
        logs: robot episodes (frames + ground truth).
        kinds: filter kinds to compare.
        config: base localizer config (its ``kind`` is replaced per kind).
        blockages: injected blockages; None = skip blockage scoring. The detector uses
            the EKF's poses (the first kind's if "ekf" is not run).
        blockage_config: detector knobs.
        recover_cm, hold_s: recovery criterion (error <= recover_cm held for hold_s).
        kidnap_grace_s: seconds after a kidnapping excluded from error statistics.
        nees_blowup, nees_blowup_s: NEES divergence criterion.
        match_tol_s: time tolerance when matching reported to injected blockages.

    Returns:
        The typed result; ``metrics`` keyed by kind.
    """
    base = config or LocalizerConfig()
    kinds = tuple(kinds)
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"kinds: {k!r}; allowed {', '.join(KINDS)}")
    metrics: dict[str, FilterMetrics] = {}
    traces: list[Trace] = []
    outages: dict[int, tuple[OutageWindow, ...]] = {}
    poses_for_blockage: list[list[Pose]] = []
    for kind in kinds:
        cfg = replace(base, kind=kind)  # type: ignore[arg-type]
        runs = []
        for log in logs:
            tr, poses, stats, wall = _run_filter(layout, log, cfg)
            outages[len(traces)] = tuple(log.outages)
            traces.append(tr)
            runs.append((log, tr, stats, wall))
            if kind == ("ekf" if "ekf" in kinds else kinds[0]):
                poses_for_blockage.append(poses)
        metrics[kind] = _kind_metrics(
            kind,
            runs,
            recover_cm=recover_cm,
            hold_s=hold_s,
            kidnap_grace_s=kidnap_grace_s,
            nees_blowup=nees_blowup,
            nees_blowup_s=nees_blowup_s,
        )
    blk = None
    if blockages is not None:
        blk = _blockage_metrics(
            layout,
            logs,
            poses_for_blockage,
            blockages,
            blockage_config or BlockageConfig(),
            match_tol_s,
        )
    return LocalizationEvalResult(
        metrics=MappingProxyType(metrics),
        blockage=blk,
        traces=tuple(traces),
        outages=MappingProxyType(outages),
    )


def logs_from_scenario(
    scenario: Any, cell_size: float = 1.0
) -> tuple[list[RobotLog], list[InjectedBlockage]]:
    """Convert a :class:`perception.synthetic.Scenario` into evaluation inputs.

    Args:
        scenario: the synthetic scenario.
        cell_size: the layout's cell size (m), to turn obstacle boxes into cells.
    """
    logs = [
        RobotLog(
            robot_id=r.robot_id,
            frames=r.frames,
            truth=r.truth,
            initial_pose=r.initial_pose,
            outages=tuple(OutageWindow(o.sensor, o.t0, o.t1) for o in r.outages),
            kidnap_times=r.kidnap_times,
        )
        for r in scenario.runs
    ]
    inj = [InjectedBlockage(cells=b.cells(cell_size), t0=b.t0, t1=b.t1) for b in scenario.obstacles]
    return logs, inj


def evaluate_synthetic(
    sensors: Literal["nominal", "degraded"] = "nominal",
    episodes: int = 1,
    *,
    seed: int = 0,
    duration_s: float | None = None,
    n_robots: int = 1,
    layout: Layout | None = None,
    kinds: Iterable[str] = KINDS,
    config: LocalizerConfig | None = None,
) -> LocalizationEvalResult:
    """``forklift eval task=localization sensors=... episodes=N`` on synthetic data.

    Each episode draws a fresh scenario (``np.random.default_rng([seed, episode])``) on
    ``layout`` (default: the generated warehouse of ``sim.layout.LayoutConfig()``).

    Raises:
        ValueError: unknown ``sensors`` or ``episodes`` < 1 (one line naming the field).
    """
    from perception import synthetic as syn  # local: keeps the import graph light
    from sim.layout import LayoutConfig, generate_layout

    if sensors not in ("nominal", "degraded"):
        raise ValueError(f"sensors: {sensors!r}; allowed nominal, degraded")
    if episodes < 1:
        raise ValueError(f"episodes: {episodes}; allowed >= 1")
    layout = layout or generate_layout(LayoutConfig())
    logs: list[RobotLog] = []
    for ep in range(episodes):
        if sensors == "nominal":
            cfg = syn.nominal_config(duration_s or 30.0, n_robots)
        else:
            cfg = syn.degraded_config(duration_s or 60.0, n_robots)
        sc = syn.generate_scenario(layout, cfg, np.random.default_rng([seed, ep]))
        ep_logs, _ = logs_from_scenario(sc, layout.cell_size)
        logs += [replace(lg, robot_id=ep * n_robots + lg.robot_id) for lg in ep_logs]
    return evaluate_localization(layout, logs, kinds=kinds, config=config)


def plot_errors(
    result: LocalizationEvalResult, path: str | Path, *, robot_id: int | None = None
) -> Path:
    """Position error over time per filter kind, outage windows shaded; writes a PNG.

    Args:
        result: an evaluation result.
        path: output file (.png).
        robot_id: robot to plot (default: the first one).

    Returns:
        The written path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rid = result.traces[0].robot_id if robot_id is None else robot_id
    idx = [i for i, t in enumerate(result.traces) if t.robot_id == rid]
    fig, ax = plt.subplots(figsize=(10, 4))
    colors = {
        "uwb": "tab:orange",
        "lidar": "tab:red",
        "fiducial": "tab:green",
        "imu": "tab:purple",
        "odom": "tab:brown",
    }
    shaded = set()
    for i in idx:
        for o in result.outages.get(i, ()):
            label = f"{o.sensor} out" if o.sensor not in shaded else None
            ax.axvspan(o.t0, o.t1, color=colors.get(o.sensor, "grey"), alpha=0.12, label=label)
            shaded.add(o.sensor)
    for i in idx:
        t = result.traces[i]
        ax.semilogy(t.stamps, np.maximum(t.pos_err * 100, 1e-3), label=t.kind, lw=1)
    ax.axhline(2.0, color="k", ls="--", lw=0.8, label="2 cm")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("position error (cm)")
    ax.set_title(f"localization error, robot {rid}")
    ax.legend(loc="upper right", fontsize=8, ncol=2)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
