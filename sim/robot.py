"""Differential-drive kinematics with speed and acceleration limits (pure numpy, [N] robots).

A twist command (v, w) becomes left/right wheel ground speeds ``v -/+ w * track / 2``;
wheel speeds are capped at ``max_speed`` (keeping the curvature), the yaw rate at
``max_yaw_rate``, and the body twist moves towards it by at most ``max_accel * dt`` and
``max_yaw_accel * dt`` per control tick. The result drives the physics motors.
"""

from __future__ import annotations

import numpy as np

from sim.config import RobotConfig


def twist_to_wheels(v: np.ndarray, w: np.ndarray, track: float) -> np.ndarray:
    """[N] v (m/s), w (rad/s) -> [N, 2] (left, right) wheel ground speeds (m/s)."""
    half = 0.5 * track * np.asarray(w)
    return np.stack([v - half, v + half], axis=-1)


def wheels_to_twist(wheels: np.ndarray, track: float) -> tuple[np.ndarray, np.ndarray]:
    """[N, 2] wheel ground speeds (m/s) -> (v [N] m/s, w [N] rad/s)."""
    return 0.5 * (wheels[:, 0] + wheels[:, 1]), (wheels[:, 1] - wheels[:, 0]) / track


def limit_twist(v: np.ndarray, w: np.ndarray, cfg: RobotConfig) -> tuple[np.ndarray, np.ndarray]:
    """Cap a twist to the yaw-rate and per-wheel speed limits, preserving curvature."""
    v = np.asarray(v, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    v = np.where(np.isfinite(v), v, 0.0)  # a NaN/inf command means stop
    w = np.clip(np.where(np.isfinite(w), w, 0.0), -cfg.max_yaw_rate, cfg.max_yaw_rate)
    peak = np.abs(v) + 0.5 * cfg.track_width * np.abs(w)
    scale = np.minimum(1.0, cfg.max_speed / np.maximum(peak, 1e-12))
    return v * scale, w * scale


class DiffDrive:
    """Acceleration-limited drive state of N robots.

    Args:
        cfg: robot limits.
        n: number of robots.
        dt: control period (s).
    """

    def __init__(self, cfg: RobotConfig, n: int, dt: float) -> None:
        self.cfg = cfg
        self.dt = dt
        self.v = np.zeros(n)  # [N] m/s, current commanded body speed
        self.w = np.zeros(n)  # [N] rad/s

    def reset(self) -> None:
        self.v[:] = 0.0
        self.w[:] = 0.0

    def update(
        self, v_cmd: np.ndarray, w_cmd: np.ndarray, enabled: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Move towards the (limited) command; disabled robots brake to zero.

        Returns:
            (v [N] m/s, w [N] rad/s) for this control tick.
        """
        v_t, w_t = limit_twist(v_cmd, w_cmd, self.cfg)
        if enabled is not None:
            v_t = np.where(enabled, v_t, 0.0)
            w_t = np.where(enabled, w_t, 0.0)
        dv = self.cfg.max_accel * self.dt
        dw = self.cfg.max_yaw_accel * self.dt
        self.v = self.v + np.clip(v_t - self.v, -dv, dv)
        self.w = self.w + np.clip(w_t - self.w, -dw, dw)
        return self.v.copy(), self.w.copy()

    def wheel_speeds(self) -> np.ndarray:
        """[N, 2] commanded (left, right) wheel angular speeds (rad/s)."""
        return twist_to_wheels(self.v, self.w, self.cfg.track_width) / self.cfg.wheel_radius


def world_velocity(
    yaw: np.ndarray, v: np.ndarray, w: np.ndarray, dt: float
) -> tuple[np.ndarray, np.ndarray]:
    """Planar world velocity over one tick along the chord of the arc (midpoint heading).

    Returns:
        (vx [N], vy [N]) m/s.
    """
    mid = yaw + 0.5 * w * dt
    return v * np.cos(mid), v * np.sin(mid)


def goto_twist(
    pose: np.ndarray,
    goal_xy: np.ndarray,
    *,
    v_max: float = 1.0,
    k_v: float = 1.0,
    k_w: float = 2.5,
    w_max: float = 2.0,
    turn_in_place: float = 0.6,
) -> tuple[float, float]:
    """Proportional go-to-point controller (scripted robots, tests).

    Turns in place while the heading error exceeds ``turn_in_place`` rad, then drives
    with speed proportional to the distance, slowed by the heading error.

    Args:
        pose: [3] (x, y, yaw) m, rad. goal_xy: [2] m.

    Returns:
        (v m/s, w rad/s).
    """
    dx, dy = float(goal_xy[0] - pose[0]), float(goal_xy[1] - pose[1])
    dist = float(np.hypot(dx, dy))
    err = float(
        np.arctan2(np.sin(np.arctan2(dy, dx) - pose[2]), np.cos(np.arctan2(dy, dx) - pose[2]))
    )
    w = float(np.clip(k_w * err, -w_max, w_max)) if dist > 1e-3 else 0.0
    if abs(err) > turn_in_place:
        return 0.0, w
    return float(min(v_max, k_v * dist) * np.cos(err)), w
