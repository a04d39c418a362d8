"""Exception monitor: what went wrong for which robot, when, and when it was resolved.

Works from what the agent knows (sensor frames, pose health, its belief and plans), never
from ground truth, so the same log comes out of a simulated run and a ROS deployment.
Kinds (one open episode per robot and kind at a time):

- ``sensor_failed``: a modality is absent from the frame (odom, imu, lidar); resolved
  when every modality is back;
- ``localization``: pose health not ``ok``; resolved when ``ok`` again;
- ``blocked_route``: a perceived blockage lies on the robot's announced plan; resolved when
  the plan is free again (replanned around, or the blockage cleared);
- ``load_dropped``: the order says carried but the load sensor says empty; resolved when the
  load sensor reads carried again (re-picked);
- ``stuck``: a robot with a goal has not changed cell for ``stuck_s``; resolved when it moves.
- ``breakdown``: marked by the agent (:meth:`ExceptionMonitor.mark`) when a robot told to
  drive reads still wheels; resolved when they turn again (detail: the hand-over).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sim.types import Pose, SensorFrame

__all__ = ["ExceptionMonitor", "ExceptionRecord"]

Cell = tuple[int, int]


@dataclass
class ExceptionRecord:
    """One exception episode (times in s; ``resolved_t`` None while open)."""

    kind: str
    robot: int
    onset_t: float
    resolved_t: float | None = None
    detail: str = ""

    def as_dict(self) -> dict:
        return {"kind": self.kind, "robot": self.robot, "onset_t": self.onset_t,
                "resolved_t": self.resolved_t, "detail": self.detail,
                "duration_s": None if self.resolved_t is None else self.resolved_t - self.onset_t}


class ExceptionMonitor:
    """Per-robot exception episodes (see the module docstring).

    Args:
        n_robots: fleet size.
        stuck_s: no cell change for this long with a goal -> ``stuck`` (s).
    """

    def __init__(self, n_robots: int, *, stuck_s: float = 8.0) -> None:
        self.n = n_robots
        self.stuck_s = stuck_s
        self.records: list[ExceptionRecord] = []
        self._open: dict[tuple[int, str], ExceptionRecord] = {}
        self._last_cell: list[Cell | None] = [None] * n_robots
        self._since = np.zeros(n_robots)

    def _set(self, robot: int, kind: str, active: bool, t: float, detail: str = "") -> None:
        key = (robot, kind)
        rec = self._open.get(key)
        if active and rec is None:
            rec = ExceptionRecord(kind, robot, t, detail=detail)
            self._open[key] = rec
            self.records.append(rec)
        elif not active and rec is not None:
            rec.resolved_t = t
            del self._open[key]

    def mark(self, robot: int, kind: str, active: bool, t: float, detail: str = "") -> None:
        """Open (``active``) or resolve ``robot``'s ``kind`` episode at time ``t`` (s): for
        exceptions the caller detects itself (e.g. ``breakdown``)."""
        self._set(robot, kind, active, t, detail)

    def active(self, robot: int, kind: str) -> bool:
        """Whether ``robot`` has an open ``kind`` episode."""
        return (robot, kind) in self._open

    def update(self, t: float, frames: Sequence[SensorFrame], poses: Sequence[Pose],
               cells: Sequence[Cell], plans: Sequence[Sequence[Cell]], blocked: np.ndarray,
               carrying: Sequence[bool], orders: Sequence[int | None]) -> None:
        """One control tick of evidence for every robot."""
        for i in range(self.n):
            fr = frames[i]
            missing = [m for m in ("odom", "imu", "lidar") if getattr(fr, m) is None]
            self._set(i, "sensor_failed", bool(missing), t, ",".join(missing))
            self._set(i, "localization", poses[i].health != "ok", t, poses[i].health)
            on_route = any(blocked[c] for c in plans[i][1:]) if len(plans[i]) > 1 else False
            self._set(i, "blocked_route", on_route, t)
            self._set(i, "load_dropped", bool(carrying[i]) and fr.load is False, t)
            if cells[i] != self._last_cell[i]:
                self._last_cell[i], self._since[i] = cells[i], t
            has_goal = orders[i] is not None and len(plans[i]) > 1
            self._set(i, "stuck", has_goal and t - self._since[i] >= self.stuck_s, t)

    def log(self) -> list[dict]:
        """Every episode so far (open ones with ``resolved_t`` None)."""
        return [r.as_dict() for r in self.records]

    def summary(self) -> dict[str, dict[str, float]]:
        """Per kind: count and mean duration of the resolved episodes (s)."""
        out: dict[str, dict[str, float]] = {}
        for r in self.records:
            d = out.setdefault(r.kind, {"count": 0, "resolved": 0, "mean_s": 0.0})
            d["count"] += 1
            if r.resolved_t is not None:
                d["resolved"] += 1
                d["mean_s"] += (r.resolved_t - r.onset_t - d["mean_s"]) / d["resolved"]
        return out
