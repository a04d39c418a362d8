"""Pure-pursuit path follower for a differential-drive robot (pure numpy, no PyBullet).

Shared by the classic baseline (``agent``) and the simulator's gymnasium env, which turns
macro actions (grid moves) into twist commands with it.

Behaviour, in the spirit of Nav2's Regulated Pure Pursuit:

* **Rotate in place** while the heading error to the carrot exceeds
  ``yaw_align_threshold`` (with hysteresis), decelerating first: a diff-drive robot on a
  grid turns on the spot rather than swinging wide into shelves.
* Otherwise **pure pursuit** towards a carrot ``lookahead_m`` ahead of the robot's
  projection on the path; the final segment is extended past the goal so the carrot never
  collapses onto the robot (stable heading at the end).
* Forward speed is the minimum of ``max_speed``, a curvature limit (lateral acceleration
  and yaw-rate limits), an approach limit ``sqrt(2 * max_accel * remaining)`` so the robot
  stops exactly at the last waypoint, an optional external ``speed_cap`` (safety stop,
  speed zones), and the acceleration limit relative to the current speed.
* Final approach: once the along-track distance is within tolerance but the robot is
  still laterally off (or overshot), it backs up straight onto a goal just behind it, or
  rotates to face the goal and drives straight at it.
* **Reverse**: ``set_path(path, reverse=True)`` drives the path rear first, at most
  ``reverse_drive_speed``: the same controller on the robot turned by pi (pose yaw + pi,
  speed negated), its command's speed negated back. A caller uses it for a short straight
  that lies behind the robot (back up one or two cells instead of turning twice).

Example:
    >>> import numpy as np
    >>> f = PurePursuitFollower(FollowerConfig())
    >>> f.set_path(np.array([[0.5, 0.5], [1.5, 0.5], [2.5, 0.5]]))
    >>> cmd, prog = f.step(np.array([0.5, 0.5, 0.0]), v_current=0.0)
    >>> bool(cmd.v > 0), prog.done
    (True, False)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sim.types import TwistCmd, wrap_angle

__all__ = [
    "FollowerConfig", "FollowerProgress", "PurePursuitFollower", "ramped_speed", "rear_first", "stopping_speed", "unicycle_step",
]


@dataclass(frozen=True)
class FollowerConfig:
    """Follower limits and gains (SI units).

    Attributes:
        lookahead_m: maximum carrot distance ahead of the robot's projection on the path (m).
        min_lookahead_m: minimum carrot distance (m); the lookahead is
            ``clip(|v| * lookahead_time_s, min_lookahead_m, lookahead_m)`` (tight tracking
            when slow, smooth when fast).
        lookahead_time_s: speed-proportional lookahead gain (s).
        corner_speed: speed (m/s) to slow down to before a waypoint whose turn exceeds
            ``yaw_align_threshold`` (grid corners); the robot then turns nearly on the spot
            instead of cutting the corner into a shelf.
        max_speed: forward speed limit (m/s).
        max_accel: |dv/dt| limit for normal driving and the goal approach (m/s^2).
        max_yaw_rate: |w| limit (rad/s).
        goal_tolerance_m: the path is done when the robot centre is this close to the last
            waypoint (m).
        yaw_align_threshold: heading error to the carrot above which the robot stops and
            rotates in place (rad).
        yaw_align_exit: heading error below which in-place rotation ends (rad);
            ``< yaw_align_threshold`` (hysteresis).
        yaw_gain: proportional gain of the in-place rotation (1/s).
        max_lateral_accel: curvature speed limit ``v <= sqrt(a_lat / |kappa|)`` (m/s^2).
        min_approach_speed: creep speed floor while approaching the goal, so discrete
            control does not stall just outside the tolerance (m/s).
        max_reverse_speed: speed limit when backing up onto an overshot goal (m/s).
        reverse_drive_speed: speed limit (m/s) when a whole path is driven in reverse
            (``set_path(..., reverse=True)``).
        dt: default control period (s).
    """

    lookahead_m: float = 0.6
    min_lookahead_m: float = 0.3
    lookahead_time_s: float = 0.6
    corner_speed: float = 0.25
    max_speed: float = 1.5
    max_accel: float = 1.0
    max_yaw_rate: float = 2.0
    goal_tolerance_m: float = 0.05
    yaw_align_threshold: float = 0.6
    yaw_align_exit: float = 0.1
    yaw_gain: float = 3.0
    max_lateral_accel: float = 1.0
    min_approach_speed: float = 0.05
    max_reverse_speed: float = 0.2
    reverse_drive_speed: float = 0.5
    dt: float = 0.05

    def __post_init__(self) -> None:
        for name in ("lookahead_m", "min_lookahead_m", "lookahead_time_s", "corner_speed", "max_speed", "max_accel", "max_yaw_rate", "goal_tolerance_m",
                     "yaw_align_threshold", "yaw_gain", "max_lateral_accel", "reverse_drive_speed", "dt"):
            if not getattr(self, name) > 0:
                raise ValueError(f"FollowerConfig.{name}={getattr(self, name)}: must be > 0")
        if self.min_lookahead_m > self.lookahead_m:
            raise ValueError("FollowerConfig.min_lookahead_m: must be <= lookahead_m")
        if not 0 <= self.yaw_align_exit < self.yaw_align_threshold:
            raise ValueError("FollowerConfig.yaw_align_exit: must be in [0, yaw_align_threshold)")


@dataclass(frozen=True)
class FollowerProgress:
    """Where the robot is along the path after one step.

    Attributes:
        nearest_index: index of the waypoint nearest to the robot (monotone along the path);
            -1 without a path.
        done: the robot is within ``goal_tolerance_m`` of the last waypoint (or there is no
            path); the returned command is zero.
        remaining_m: path length left from the robot's projection to the goal (m); negative
            after an overshoot.
        rotating: the command is an in-place rotation.
        straight_m: distance (m) ahead along the path to the next sharp turn or the goal,
            whichever comes first (how far a forward safety check should look).
    """

    nearest_index: int
    done: bool
    remaining_m: float
    rotating: bool = False
    straight_m: float = 0.0


STOP = TwistCmd(0.0, 0.0)


def stopping_speed(dist: float, max_accel: float, dt: float) -> float:
    """Largest speed (m/s) from which braking at ``max_accel`` in steps of ``dt`` stops
    within ``dist`` metres (discrete-time version of ``sqrt(2 a d)``)."""
    if dist <= 0:
        return 0.0
    a_dt = max_accel * dt
    return float(a_dt * (np.sqrt(2.0 * dist / (a_dt * dt) + 0.25) - 0.5))


def ramped_speed(v_now: float, v_cmd: float, max_accel: float, dt: float) -> float:
    """Forward speed (m/s) the base reaches after one control tick of ``v_cmd`` from
    ``v_now``, its speed changing by at most ``max_accel * dt`` per tick.

    What a controller knows of its own drive: a safety cap can cut the *command* to 0 in
    one tick, but the wheels brake at the acceleration limit, so the speed a guard must
    stop from is this one, not the last command. Feeding the last command back as the
    current speed made the lidar guard look only as far as the stopping distance of the
    command (0.5 m at 0.6 m/s) while the robot still ran at 1.4 m/s.
    """
    dv = max_accel * dt
    return float(v_now + np.clip(v_cmd - v_now, -dv, dv))


def rear_first(pose: np.ndarray) -> np.ndarray:
    """(x, y, yaw + pi) [3]: the pose of a robot driving rear first, seen as driving forward."""
    return np.array([pose[0], pose[1], float(wrap_angle(float(pose[2]) + np.pi))])


def unicycle_step(pose: np.ndarray, cmd: TwistCmd, dt: float) -> np.ndarray:
    """Integrate a unicycle (x, y, yaw) [3] for ``dt`` seconds (exact arcs); returns [3]."""
    x, y, th = (float(p) for p in pose)
    if abs(cmd.w) < 1e-9:
        return np.array([x + cmd.v * dt * np.cos(th), y + cmd.v * dt * np.sin(th), th])
    r = cmd.v / cmd.w
    th2 = th + cmd.w * dt
    return np.array([x + r * (np.sin(th2) - np.sin(th)), y - r * (np.cos(th2) - np.cos(th)),
                     float(wrap_angle(th2))])


class PurePursuitFollower:
    """Stateful pure-pursuit follower for one robot (see the module docstring).

    State: the path [K, 2] (world xy, m), its cumulative arc length, the monotone progress
    index, the in-place-rotation flag (hysteresis) and the last commanded speed (used
    when the caller does not pass the measured one).
    """

    def __init__(self, cfg: FollowerConfig | None = None) -> None:
        self.cfg = cfg or FollowerConfig()
        self._path = np.zeros((0, 2))
        self._pts: list[tuple[float, float]] = []
        self._s = np.zeros(0)  # [K] cumulative arc length (m)
        self._corner_s = np.zeros(0)  # [C] arc length of sharp turns (m)
        self._idx = 0  # nearest waypoint
        self._seg = 0  # first segment of the projection search window
        self._s_here = 0.0  # arc length of the robot's projection at the last step (m)
        self._rotating = False
        self._final = False  # final go-to-point approach
        self._last_v = 0.0
        self._reverse = False  # drive the path rear first
        self._vmax = self.cfg.max_speed

    # ---- path -----------------------------------------------------------------
    @property
    def path(self) -> np.ndarray:
        """[K, 2] current path (world xy, m); empty when idle."""
        return self._path

    @property
    def has_path(self) -> bool:
        return len(self._path) > 0

    @property
    def reversing(self) -> bool:
        """The current path is driven rear first."""
        return self._reverse and self.has_path

    def set_path(self, path_xy: np.ndarray, *, reverse: bool = False) -> None:
        """Follow ``path_xy`` [K, 2] (m) from its start; consecutive duplicates are dropped.
        ``reverse``: drive it rear first, at most ``reverse_drive_speed``."""
        self._reverse = bool(reverse)
        self._vmax = self.cfg.reverse_drive_speed if reverse else self.cfg.max_speed
        p = np.asarray(path_xy, dtype=np.float64).reshape(-1, 2)
        if len(p) > 1:
            keep = np.r_[True, np.linalg.norm(np.diff(p, axis=0), axis=1) > 1e-9]
            p = p[keep]
        self._path = p
        self._pts = [(float(a), float(b)) for a, b in p]  # python copy for the projection loop
        seg = np.linalg.norm(np.diff(p, axis=0), axis=1) if len(p) > 1 else np.zeros(0)
        self._s = np.r_[0.0, np.cumsum(seg)] if len(p) else np.zeros(0)
        self._corner_s = self._corner_arclengths(p)
        self._idx = 0
        self._seg = 0
        self._s_here = 0.0
        self._rotating = False
        self._final = False

    @property
    def progress_index(self) -> int:
        """Index of the waypoint nearest to the robot at the last :meth:`step` (monotone)."""
        return self._idx if self.has_path else -1

    def last_index_within(self, dist: float) -> int:
        """Last waypoint index at most ``dist`` metres of arc length ahead of the robot's
        projection (last :meth:`step`); -1 without a path."""
        if not self.has_path:
            return -1
        return int(np.searchsorted(self._s, self._s_here + dist, side="right")) - 1

    def distance_to(self, index: int) -> float:
        """Arc length (m) from the robot's projection (last :meth:`step`) to waypoint
        ``index``; negative once passed."""
        if not self.has_path:
            return 0.0
        return float(self._s[min(max(int(index), 0), len(self._s) - 1)] - self._s_here)

    def clear(self) -> None:
        """Drop the path (the next :meth:`step` returns a stop and ``done``)."""
        self.set_path(np.zeros((0, 2)))

    # ---- control ---------------------------------------------------------------
    def step(self, pose: np.ndarray, v_current: float | None = None, *, dt: float | None = None,
             speed_cap: float | None = None) -> tuple[TwistCmd, FollowerProgress]:
        """One control step.

        Args:
            pose: (x, y, yaw) [3] (m, m, rad).
            v_current: current forward speed (m/s); ``None`` = last commanded speed.
            dt: control period (s); default ``cfg.dt``.
            speed_cap: extra forward-speed limit (m/s), e.g. 0 for a safety stop. A cap
                below the current speed is obeyed at once (not rate limited).

        Returns:
            The twist command and the progress along the path.
        """
        v0 = self._last_v if v_current is None else float(v_current)
        pose = np.asarray(pose, dtype=np.float64)
        if not self._reverse:
            return self._step(pose, v0, dt, speed_cap)
        # rear first: the same controller on the robot turned by pi, its speed negated
        cmd, prog = self._step(rear_first(pose), -v0, dt, speed_cap)
        return self._emit(TwistCmd(-cmd.v, cmd.w), prog)

    def _step(self, pose: np.ndarray, v0: float, dt: float | None, speed_cap: float | None
              ) -> tuple[TwistCmd, FollowerProgress]:
        dt = self.cfg.dt if dt is None else dt
        if not self.has_path:
            return self._emit(STOP, FollowerProgress(-1, True, 0.0))
        seg, t, remaining = self._project(pose[:2])
        goal = self._path[-1]
        if np.hypot(*(goal - pose[:2])) <= self.cfg.goal_tolerance_m:  # arrived: brake to rest
            v = float(np.sign(v0) * max(abs(v0) - self.cfg.max_accel * dt, 0.0))
            return self._emit(TwistCmd(v, 0.0), FollowerProgress(len(self._path) - 1, v == 0.0, remaining))
        if remaining < self.cfg.goal_tolerance_m or self._final:
            self._final = True  # along-track done but laterally off (or overshot): go to point
            cmd, rotating = self._go_to_point(pose, goal, v0, dt, speed_cap)
            return self._emit(cmd, FollowerProgress(self._idx, False, remaining, rotating,
                                                    max(remaining, 0.0)))
        carrot = self._carrot(seg, t, self._lookahead(v0))
        local = _to_local(pose, carrot)
        heading_err = float(np.arctan2(local[1], local[0]))
        to_corner = self._to_next_corner(self._s[-1] - remaining)
        straight = min(to_corner, remaining)
        if self._update_rotating(heading_err):
            return self._emit(self._rotate_cmd(heading_err, v0, dt),
                              FollowerProgress(self._idx, False, remaining, True, straight))
        v, w = self._pursuit(local, v0, dt, remaining, to_corner, speed_cap)
        return self._emit(TwistCmd(v, w), FollowerProgress(self._idx, False, remaining, False, straight))

    def rotate_to(self, yaw: float, pose: np.ndarray, *, tolerance: float = 0.05
                  ) -> tuple[TwistCmd, bool]:
        """Rotate in place towards world heading ``yaw`` (rad).

        Args:
            yaw: target heading (rad).
            pose: (x, y, yaw) [3].
            tolerance: |heading error| (rad) at which the rotation is done.

        Returns:
            (command, done); the command is a stop once done.
        """
        err = float(wrap_angle(yaw - float(np.asarray(pose)[2])))
        if abs(err) <= tolerance:
            return self._emit(STOP, None)[0], True
        return self._emit(self._rotate_cmd(err, self._last_v, self.cfg.dt), None)[0], False

    # ---- internals -------------------------------------------------------------
    def _emit(self, cmd: TwistCmd, prog: FollowerProgress | None) -> tuple[TwistCmd, FollowerProgress]:
        self._last_v = cmd.v
        return cmd, prog  # type: ignore[return-value]

    def _project(self, xy: np.ndarray) -> tuple[int, float, float]:
        """Project ``xy`` on the path near the current progress.

        Returns:
            (segment index i, fraction t in [0, 1] on segment i -> i+1 (t may exceed 1 on the
            last segment: overshoot), remaining arc length (m)).
        """
        p = self._path
        if len(p) == 1:
            d = p[0] - xy
            self._s_here = -float(np.hypot(*d))
            return 0, 0.0, float(np.hypot(*d))
        lo = min(self._seg, len(p) - 2)
        hi = min(len(p) - 1, int(np.searchsorted(self._s, self._s[lo] + 2 * self.cfg.lookahead_m + 1.0)) + 1)
        # plain-python loop: the window holds a handful of segments (numpy call overhead dominates)
        x, y = float(xy[0]), float(xy[1])
        pts = self._pts
        best = (float("inf"), lo, 0.0, 1.0)
        for j in range(lo, hi):
            ax, ay = pts[j]
            bx, by = pts[j + 1]
            dx, dy = bx - ax, by - ay
            ll = max(dx * dx + dy * dy, 1e-12)
            t = ((x - ax) * dx + (y - ay) * dy) / ll
            t = max(t, 0.0) if j == len(p) - 2 else min(max(t, 0.0), 1.0)
            ex, ey = ax + t * dx - x, ay + t * dy - y
            d2 = ex * ex + ey * ey
            if d2 < best[0]:
                best = (d2, j, t, math.sqrt(ll))
        _, i, ti, seg_len = best
        s_here = float(self._s[i]) + ti * seg_len
        self._s_here = s_here
        self._seg = i
        self._idx = i if ti < 0.5 else min(i + 1, len(p) - 1)
        return i, ti, float(self._s[-1] - s_here)

    @staticmethod
    def _corner_arclengths(p: np.ndarray) -> np.ndarray:
        """[C] arc length (m) of interior waypoints where the path turns sharply."""
        if len(p) < 3:
            return np.zeros(0)
        d = np.diff(p, axis=0)
        h = np.arctan2(d[:, 1], d[:, 0])
        turn = np.abs(wrap_angle(np.diff(h)))  # [K-2] at waypoints 1..K-2
        s = np.r_[0.0, np.cumsum(np.linalg.norm(d, axis=1))]
        return s[1:-1][turn > 0.5]  # > ~30 deg

    def _to_next_corner(self, s_here: float) -> float:
        """Distance (m) to the next sharp turn ahead, ``inf`` if none."""
        ahead = self._corner_s[self._corner_s > s_here + 0.02]
        return float(ahead[0] - s_here) if len(ahead) else float("inf")

    def _lookahead(self, v: float) -> float:
        c = self.cfg
        return _clip(abs(v) * c.lookahead_time_s, c.min_lookahead_m, c.lookahead_m)

    def _carrot(self, seg: int, t: float, lookahead: float) -> np.ndarray:
        """Point ``lookahead`` (m) further along the path, final segment extended past the goal."""
        p = self._path
        if len(p) == 1:
            return p[0]
        s_here = self._s[seg] + t * (self._s[seg + 1] - self._s[seg])
        s_target = s_here + lookahead
        if s_target <= self._s[-1]:
            j = min(max(int(np.searchsorted(self._s, s_target)) - 1, 0), len(p) - 2)
            f = (s_target - self._s[j]) / max(self._s[j + 1] - self._s[j], 1e-12)
            return p[j] + f * (p[j + 1] - p[j])
        d = p[-1] - p[-2]
        return p[-1] + d / np.linalg.norm(d) * (s_target - self._s[-1])

    def _update_rotating(self, heading_err: float) -> bool:
        c = self.cfg
        if self._rotating:
            self._rotating = abs(heading_err) > c.yaw_align_exit
        else:
            self._rotating = abs(heading_err) > c.yaw_align_threshold
        return self._rotating

    def _rotate_cmd(self, err: float, v0: float, dt: float) -> TwistCmd:
        c = self.cfg
        v = float(np.sign(v0) * max(abs(v0) - c.max_accel * dt, 0.0))
        if abs(v) > 1e-3:  # brake first, then turn
            return TwistCmd(v, 0.0)
        w_max = min(c.max_yaw_rate, abs(err) / dt)  # never overshoot within one tick
        return TwistCmd(0.0, _clip(c.yaw_gain * err, -w_max, w_max))

    def _pursuit(self, local: np.ndarray, v0: float, dt: float, remaining: float, to_corner: float,
                 speed_cap: float | None) -> tuple[float, float]:
        c = self.cfg
        l2 = float(local @ local)
        kappa = 2.0 * local[1] / max(l2, 1e-9)  # pure-pursuit curvature (1/m)
        v_lim = self._vmax
        if abs(kappa) > 1e-6:
            v_lim = min(v_lim, np.sqrt(c.max_lateral_accel / abs(kappa)), c.max_yaw_rate / abs(kappa))
        v_goal = stopping_speed(remaining, c.max_accel, dt)
        v_corner = max(stopping_speed(to_corner, c.max_accel, dt), c.corner_speed) if np.isfinite(to_corner) else v_lim
        v_lim = min(v_lim, max(v_goal, c.min_approach_speed), v_corner)
        v = min(v_lim, v0 + c.max_accel * dt)
        v = max(v, v0 - c.max_accel * dt)  # deceleration limit (the approach profile respects it)
        v = min(v, remaining / dt)  # hard: never pass the goal within one tick
        if speed_cap is not None:
            v = min(v, float(speed_cap))
        v = max(v, 0.0)
        w = _clip(v * kappa, -c.max_yaw_rate, c.max_yaw_rate)
        return float(v), w

    def _go_to_point(self, pose: np.ndarray, goal: np.ndarray, v0: float, dt: float,
                     speed_cap: float | None) -> tuple[TwistCmd, bool]:
        """Final approach onto the last waypoint: back up straight if it lies just behind,
        otherwise rotate to face it and drive straight at it. Returns (command, rotating)."""
        c = self.cfg
        local = _to_local(pose, goal)
        d = float(np.hypot(*local))
        if local[0] < 0 and abs(local[1]) < c.goal_tolerance_m:  # overshot: creep backwards
            if v0 > 1e-3:
                return TwistCmd(max(v0 - c.max_accel * dt, 0.0), 0.0), False
            back = min(c.max_reverse_speed, stopping_speed(-local[0], c.max_accel, dt), -local[0] / dt,
                       -v0 + c.max_accel * dt)
            back = 0.0 if speed_cap is not None and speed_cap <= 0 else max(float(back), 0.0)
            return TwistCmd(-back, 0.0), False
        err = float(np.arctan2(local[1], local[0]))
        if self._update_rotating(err):
            return self._rotate_cmd(err, v0, dt), True
        v = min(max(stopping_speed(d, c.max_accel, dt), c.min_approach_speed), v0 + c.max_accel * dt,
                self._vmax, d / dt)
        v = max(min(v, float(speed_cap)) if speed_cap is not None else v, 0.0)
        w = _clip(c.yaw_gain * err, -c.max_yaw_rate, c.max_yaw_rate)
        return TwistCmd(float(v), w), False

def _clip(x: float, lo: float, hi: float) -> float:
    return float(min(max(x, lo), hi))


def _to_local(pose: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """World point ``xy`` [2] in the robot frame of ``pose`` (x, y, yaw) -> [2] (fwd, left)."""
    d = np.asarray(xy) - pose[:2]
    c, s = np.cos(pose[2]), np.sin(pose[2])
    return np.array([c * d[0] + s * d[1], -s * d[0] + c * d[1]])
