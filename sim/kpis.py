"""Episode KPIs: pure, vectorised functions over arrays, and the :class:`KpiReport` record.

Definitions (DESIGN.md "KPIs", docs/CONTRACTS_SIM.md):
- completion_rate = delivered / released, over orders released at least
  ``order_deadline_s`` before the end of the episode.
- exception handling time = resolved_t - onset_t per exception; unresolved ones count
  ``t_end - onset_t`` and are flagged. ``people`` encounters are reported apart. When an
  exception counts as resolved is decided per kind in :mod:`sim.faults` (e.g. a breakdown
  never before its window end; at the window end if the robot has no order then, else
  when it has moved 0.2 m again or its order was picked by another robot).
- localisation error = RMS position (m) and yaw (deg) error of the reported estimates
  against ground truth at the same tick, per robot.
- collisions are counted on contact onset, per category.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from sim.faults import EXCEPTION_KINDS, ExceptionEvent
from sim.types import wrap_angle

COLLISION_KINDS: tuple[str, ...] = ("robot_robot", "robot_static", "robot_person", "robot_pallet")


def completion_rate(
    release_t: np.ndarray, delivered: np.ndarray, deadline_s: float, t_end: float
) -> tuple[float, int, int]:
    """(rate, eligible, delivered-eligible) over orders released by ``t_end - deadline_s``.

    Args:
        release_t: [O] s. delivered: [O] bool. Rate is 0.0 when nothing is eligible.
    """
    elig = np.asarray(release_t) <= t_end - deadline_s + 1e-9
    n = int(elig.sum())
    d = int((elig & np.asarray(delivered, dtype=bool)).sum())
    return (d / n if n else 0.0), n, d


def handling_times(
    onset: np.ndarray, resolved: np.ndarray, t_end: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per exception: (time [E] s, unresolved [E] bool); ``resolved`` is nan when unresolved."""
    onset, resolved = np.asarray(onset, float), np.asarray(resolved, float)
    unres = np.isnan(resolved)
    return np.where(unres, t_end, resolved) - onset, unres


def rms_errors(
    est: np.ndarray, truth: np.ndarray, robot: np.ndarray, n_robots: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-robot RMS errors.

    Args:
        est, truth: [S, 3] (x, y, yaw). robot: [S] int.

    Returns:
        (position RMS [N] m, yaw RMS [N] deg, samples [N]); 0 where a robot has no sample.
    """
    est, truth = np.asarray(est, float).reshape(-1, 3), np.asarray(truth, float).reshape(-1, 3)
    robot = np.asarray(robot, dtype=np.int64)
    pos2 = ((est[:, :2] - truth[:, :2]) ** 2).sum(axis=1)
    yaw2 = np.rad2deg(wrap_angle(est[:, 2] - truth[:, 2])) ** 2
    cnt = np.bincount(robot, minlength=n_robots).astype(float)
    safe = np.maximum(cnt, 1.0)
    return (
        np.sqrt(np.bincount(robot, pos2, n_robots) / safe),
        np.sqrt(np.bincount(robot, yaw2, n_robots) / safe),
        cnt,
    )


def path_length(xy: np.ndarray) -> np.ndarray:
    """[T, N, 2] positions (m) -> [N] distance travelled (m)."""
    xy = np.asarray(xy, float)
    if len(xy) < 2:
        return np.zeros(xy.shape[1] if xy.ndim == 3 else 0)
    return np.hypot(*np.moveaxis(np.diff(xy, axis=0), -1, 0)).sum(axis=0)


@dataclass(frozen=True)
class HandlingStats:
    """Exception handling times of one kind (s); unresolved ones count until the end."""

    count: int
    resolved: int
    unresolved: int
    mean_s: float
    p50_s: float
    max_s: float


def handling_stats(times: np.ndarray, unresolved: np.ndarray) -> HandlingStats:
    """Summary of :func:`handling_times` output (zeros when empty)."""
    n = len(times)
    if n == 0:
        return HandlingStats(0, 0, 0, 0.0, 0.0, 0.0)
    u = int(np.sum(unresolved))
    return HandlingStats(
        n, n - u, u, float(np.mean(times)), float(np.median(times)), float(np.max(times))
    )


@dataclass(frozen=True)
class KpiReport:
    """KPIs of one episode (see module docstring).

    Attributes:
        duration_s: sim time covered (s). n_robots, scenario.
        orders_released, orders_eligible, orders_delivered (all), orders_delivered_eligible,
        orders_late (delivered after deadline), orders_expired.
        completion_rate: delivered / eligible (0 when none eligible).
        orders_per_hour: delivered per sim hour.
        exceptions: kind -> HandlingStats, plus "overall" (all kinds but ``people``).
        any_unresolved: some exception is unresolved at the end.
        loc_rms_pos_m, loc_rms_yaw_deg: [N] per robot. loc_samples: [N].
        loc_rms_pos_m_all, loc_rms_yaw_deg_all: over all samples of all robots.
        pose_source: "estimate" or "ground_truth" (no estimate reported: errors are 0).
        collisions: kind -> count, plus "total".
        distance_m: [N] per robot (m).
    """

    duration_s: float
    n_robots: int
    scenario: str
    orders_released: int
    orders_eligible: int
    orders_delivered: int
    orders_delivered_eligible: int
    orders_late: int
    orders_expired: int
    completion_rate: float
    orders_per_hour: float
    exceptions: dict[str, HandlingStats]
    any_unresolved: bool
    loc_rms_pos_m: tuple[float, ...]
    loc_rms_yaw_deg: tuple[float, ...]
    loc_samples: tuple[int, ...]
    loc_rms_pos_m_all: float
    loc_rms_yaw_deg_all: float
    pose_source: str
    collisions: dict[str, int]
    distance_m: tuple[float, ...]
    extra: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-able dict (floats, ints, strings, lists, dicts only)."""
        d = asdict(self)
        d["exceptions"] = {k: asdict(v) for k, v in self.exceptions.items()}
        for k in ("loc_rms_pos_m", "loc_rms_yaw_deg", "loc_samples", "distance_m"):
            d[k] = list(d[k])
        return d


def exception_stats(
    events: Sequence[ExceptionEvent], t_end: float
) -> tuple[dict[str, HandlingStats], bool]:
    """Per-kind and overall handling stats; people encounters are kept out of "overall"."""
    out: dict[str, HandlingStats] = {}
    onset = np.array([e.onset_t for e in events], dtype=float)
    res = np.array([np.nan if e.resolved_t is None else e.resolved_t for e in events], dtype=float)
    kinds = np.array([e.kind for e in events], dtype=object)
    times, unres = handling_times(onset, res, t_end)
    for k in EXCEPTION_KINDS:
        m = kinds == k
        out[k] = handling_stats(times[m], unres[m])
    m = kinds != "people"
    out["overall"] = handling_stats(times[m], unres[m])
    return out, bool(unres[m].any()) if len(events) else False


def build_report(
    *,
    t_end: float,
    n_robots: int,
    scenario: str,
    orders: dict[str, np.ndarray],
    n_expired: int,
    deadline_s: float,
    events: Sequence[ExceptionEvent],
    pose_est: np.ndarray,
    pose_truth: np.ndarray,
    pose_robot: np.ndarray,
    collisions: dict[str, int],
    distance_m: np.ndarray,
) -> KpiReport:
    """Assemble a :class:`KpiReport` from episode logs (see :meth:`OrderBook.arrays`)."""
    rate, elig, d_elig = completion_rate(
        orders["release_t"], orders["delivered"], deadline_s, t_end
    )
    delivered = int(np.sum(orders["delivered"]))
    late = int(np.sum(orders["delivered_t"] > orders["deadline_t"]))  # nan compares False
    stats, unresolved = exception_stats(events, t_end)
    pos, yaw, cnt = rms_errors(pose_est, pose_truth, pose_robot, n_robots)
    est = np.asarray(pose_est, float).reshape(-1, 3)
    if len(est):
        all_pos = float(np.sqrt(((est[:, :2] - pose_truth[:, :2]) ** 2).sum(1).mean()))
        all_yaw = float(np.sqrt((np.rad2deg(wrap_angle(est[:, 2] - pose_truth[:, 2])) ** 2).mean()))
    else:
        all_pos = all_yaw = 0.0
    coll = {k: int(collisions.get(k, 0)) for k in COLLISION_KINDS}
    coll["total"] = sum(coll.values())
    return KpiReport(
        duration_s=float(t_end),
        n_robots=n_robots,
        scenario=scenario,
        orders_released=len(orders["release_t"]),
        orders_eligible=elig,
        orders_delivered=delivered,
        orders_delivered_eligible=d_elig,
        orders_late=late,
        orders_expired=int(n_expired),
        completion_rate=float(rate),
        orders_per_hour=float(delivered / (t_end / 3600.0)) if t_end > 0 else 0.0,
        exceptions=stats,
        any_unresolved=unresolved,
        loc_rms_pos_m=tuple(float(v) for v in pos),
        loc_rms_yaw_deg=tuple(float(v) for v in yaw),
        loc_samples=tuple(int(v) for v in cnt),
        loc_rms_pos_m_all=all_pos,
        loc_rms_yaw_deg_all=all_yaw,
        pose_source="estimate" if len(est) else "ground_truth",
        collisions=coll,
        distance_m=tuple(float(v) for v in np.asarray(distance_m)),
    )
