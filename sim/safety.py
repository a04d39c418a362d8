"""Lidar-based safety layer (a small Nav2 ``collision_monitor``): slow down / stop before
anything inside the robot's swept footprint, and check the rotation circle before turning
in place. Pure numpy over one scan.

Robot frame: x forward, y left (REP 103/117). The lidar sits at the robot centre.

Example:
    >>> import numpy as np
    >>> pts = np.array([[1.0, 0.0]])            # obstacle 1 m straight ahead
    >>> cap = safe_speed(pts, SafetyConfig(), check_len_m=2.0, dt=0.05)
    >>> 0.0 < cap < 1.5
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from sim.follower import stopping_speed
from sim.layout import Layout
from sim.types import BumperReading, LidarScan, TwistCmd

__all__ = ["BumperGuard", "LidarGuard", "SafetyConfig", "StaticRaster", "blind_junction", "bumper_command", "forward_obstacle",
           "junction_cap", "rotation_clear", "safe_speed", "scan_points", "static_mask"]


@dataclass(frozen=True)
class SafetyConfig:
    """Footprint and stopping parameters (SI).

    Attributes:
        footprint_m: square robot side (m).
        lateral_margin_m: extra half-width of the forward corridor (m).
        stop_margin_m: gap kept to an obstacle after braking (m).
        brake_decel: deceleration assumed for the stopping distance (m/s^2).
        rotate_margin_m: extra radius of the in-place rotation circle (m).
        blind_speed_cap: speed limit (m/s) while the safety lidar is absent (failed). 0 = a
            protective stop until it returns, as ISO 3691-4 asks of a driverless truck whose
            personnel-detection sensor fails; a positive value lets it creep on its reserved
            route (blind: it will touch whatever stands there).
        junction_speed: speed (m/s) at which the robot may enter a blind junction, a cell
            where a side lane joins behind a shelf corner that hides it from the lidar; the
            robot brakes towards it so that someone stepping out of the side lane can be
            stopped for (the intersection speed zones of industrial AMRs). 0.5: a person in
            the crossing row can stand 0.25 m past the cell edge (half a cell less half a
            person), and v^2 / (2 a) + v dt <= 0.25 m at 1 m/s^2 and 20 Hz needs v <= 0.58;
            at 0.75 (the old value) the robot stopped touching a person who stepped into its
            corridor at the junction (scenario=exceptions seed 7, rl_pv).
        backup_speed: reverse speed (m/s) to make room when an obstacle in front blocks
            turning in place.
        near_field_m: an obstacle seen this close to the front (m) is remembered when it
            vanishes into the lidar's blind zone at the hull.
        near_memory_s: how long such an obstacle is remembered (s).
        static_tolerance_m: scan points within this distance of a static map cell are
            walls/shelves (ignored by the rotation check; the grid keeps them clear).
        bumper_hold_s: protective stop on bumper contact: stay stopped this long after a
            contact starts and after it ends (let a person step away), see
            :func:`bumper_command`.
        warning_length_m, warning_lateral_m, warning_speed: the warning field of a safety
            scanner (beside the protective corridor): a return that is not a wall or shelf
            within ``warning_length_m`` ahead of the front and ``warning_lateral_m`` beside
            the body caps the speed at ``warning_speed`` (m/s), so that someone stepping
            into the corridor from the side (a person crossing at a junction) can be
            stopped for; 0 length disables it.
    """

    footprint_m: float = 0.6
    lateral_margin_m: float = 0.04
    stop_margin_m: float = 0.25
    brake_decel: float = 1.0
    rotate_margin_m: float = 0.03
    blind_speed_cap: float = 0.0
    junction_speed: float = 0.5
    backup_speed: float = 0.1
    near_field_m: float = 0.1
    near_memory_s: float = 3.0
    static_tolerance_m: float = 0.08
    bumper_hold_s: float = 1.0
    warning_length_m: float = 1.5
    warning_lateral_m: float = 1.0
    warning_speed: float = 0.6


def scan_points(scan: LidarScan | None) -> np.ndarray | None:
    """Valid returns of ``scan`` as robot-frame points [N, 2] (m); None if the scan is absent."""
    if scan is None:
        return None
    r = np.asarray(scan.ranges, dtype=np.float64)
    ok = np.isfinite(r) & (r < scan.range_max)
    a = np.asarray(scan.angles, dtype=np.float64)[ok]
    return np.stack([r[ok] * np.cos(a), r[ok] * np.sin(a)], axis=-1)


def to_world(points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Robot-frame points [N, 2] -> world frame [N, 2] for ``pose`` (x, y, yaw)."""
    c, s = np.cos(pose[2]), np.sin(pose[2])
    rot = np.array([[c, -s], [s, c]])
    return points @ rot.T + pose[:2]


def static_mask(points_world: np.ndarray, layout: Layout, tol: float) -> np.ndarray:
    """[N] bool: the point lies on or within ``tol`` m of a static (wall/shelf) cell."""
    out = np.zeros(len(points_world), dtype=bool)
    for dx, dy in ((0.0, 0.0), (tol, 0.0), (-tol, 0.0), (0.0, tol), (0.0, -tol)):
        cells = layout.xy_to_cell(points_world + np.array([dx, dy]))
        inside = layout.in_bounds(cells)
        occ = np.ones(len(cells), dtype=bool)  # outside the grid = wall
        occ[inside] = layout.occupancy[cells[inside, 0], cells[inside, 1]]
        out |= occ
    return out


class StaticRaster:
    """A fine raster of "near a wall/shelf" for fast :func:`static_mask` lookups.

    A raster pixel of side ``res`` m is static if any point of it lies within ``tol`` m
    (box distance) of an occupied grid cell; built once per (layout, tol).
    """

    _cache: ClassVar[dict[tuple[int, float], tuple[Layout, StaticRaster]]] = {}

    def __init__(self, layout: Layout, tol: float, res: float = 0.05) -> None:
        h, w = layout.shape
        cs = layout.cell_size
        self.res = res
        nx, ny = int(np.ceil(w * cs / res)), int(np.ceil(h * cs / res))
        xs = (np.arange(nx) + 0.5) * res
        ys = (np.arange(ny) + 0.5) * res
        gx, gy = np.meshgrid(xs, ys)
        pts = np.stack([gx.ravel(), gy.ravel()], axis=-1)
        self.mask = static_mask(pts, layout, tol + res).reshape(ny, nx)  # [ny, nx]

    @classmethod
    def of(cls, layout: Layout, tol: float) -> StaticRaster:
        key = (id(layout), float(tol))
        hit = cls._cache.get(key)
        if hit is None or hit[0] is not layout:  # the cache keeps the layout alive: ids stay unique
            if len(cls._cache) > 16:
                cls._cache.clear()
            hit = cls._cache[key] = (layout, cls(layout, tol))
        return hit[1]

    def near(self, points_world: np.ndarray) -> np.ndarray:
        """[N] bool: world points [N, 2] near a static cell (outside the map counts)."""
        ij = np.floor(np.asarray(points_world)[:, ::-1] / self.res).astype(np.int64)
        ny, nx = self.mask.shape
        inside = (ij[:, 0] >= 0) & (ij[:, 0] < ny) & (ij[:, 1] >= 0) & (ij[:, 1] < nx)
        out = np.ones(len(ij), dtype=bool)
        out[inside] = self.mask[ij[inside, 0], ij[inside, 1]]
        return out


def forward_obstacle(points: np.ndarray, cfg: SafetyConfig, check_len_m: float) -> tuple[float, np.ndarray]:
    """Nearest obstacle in the forward corridor.

    Args:
        points: robot-frame points [N, 2] (m).
        cfg: safety parameters.
        check_len_m: corridor length beyond the robot's front (m).

    Returns:
        (gap from the robot's front to the nearest point in the corridor (m), ``inf`` if
        none; the corridor points [M, 2]).
    """
    half = cfg.footprint_m / 2
    front = half
    sel = (points[:, 0] > 0.0) & (np.abs(points[:, 1]) <= half + cfg.lateral_margin_m) & (
        points[:, 0] <= front + check_len_m)
    hits = points[sel]
    if len(hits) == 0:
        return float("inf"), hits
    return float(hits[:, 0].min() - front), hits


def safe_speed(points: np.ndarray | None, cfg: SafetyConfig, *, check_len_m: float, dt: float) -> float:
    """Forward-speed cap (m/s) that stops ``stop_margin_m`` short of the nearest obstacle.

    Args:
        points: robot-frame scan points [N, 2] (m); None = lidar absent.
        cfg: safety parameters.
        check_len_m: how far ahead of the front to look (m): the stopping distance at the
            current speed, limited by the route (the next turn or the goal).
        dt: control period (s).

    Returns:
        ``inf`` if the corridor is clear, 0 if an obstacle is within the stop margin.
    """
    if points is None:
        return cfg.blind_speed_cap
    gap, _ = forward_obstacle(points, cfg, check_len_m)
    if not np.isfinite(gap):
        return float("inf")
    return stopping_speed(gap - cfg.stop_margin_m, cfg.brake_decel, dt)


def rotation_clear(points: np.ndarray | None, cfg: SafetyConfig) -> bool:
    """Whether turning in place is safe: no (non-static) point inside the swept circle.

    Args:
        points: robot-frame points [N, 2] (m), static map points already removed; None =
            lidar absent (then rotation is allowed: the grid keeps shelves clear).
        cfg: safety parameters.
    """
    if points is None or len(points) == 0:
        return True
    radius = cfg.footprint_m / np.sqrt(2.0) + cfg.rotate_margin_m
    return bool(np.all(np.hypot(points[:, 0], points[:, 1]) > radius))


def bumper_command(bumper: BumperReading | None, cfg: SafetyConfig, cmd: TwistCmd, *,
                   pressed_s: float, released_s: float) -> TwistCmd:
    """Protective stop on the contact bumper (overrides the navigation command).

    * pressed in front only: back off at ``backup_speed`` (make room, e.g. for a person);
    * pressed elsewhere: stop for ``bumper_hold_s``; after that let the command through
      unless it drives into a pressed front/back (a pinned robot must still get free);
    * released less than ``bumper_hold_s`` ago: stay stopped (yield).

    Args:
        bumper: the frame's bumper reading (None = no bumper: ``cmd`` unchanged).
        cfg: safety parameters.
        cmd: the navigation command.
        pressed_s: how long the bumper has been pressed (s), while pressed.
        released_s: time since the last contact ended (s); ``inf`` if never pressed.
    """
    if bumper is None:
        return cmd
    stop = TwistCmd(0.0, 0.0)
    if not bumper.contact:
        return stop if released_s < cfg.bumper_hold_s else cmd
    front, _, back, _ = (bool(v) for v in bumper.sectors)
    if front and not back:
        return TwistCmd(-cfg.backup_speed, 0.0)
    if pressed_s < cfg.bumper_hold_s or (back and cmd.v < 0) or (front and cmd.v > 0):
        return stop
    return cmd


def blind_junction(free: np.ndarray, prev: tuple[int, int], cell: tuple[int, int]) -> bool:
    """Whether entering ``cell`` from the adjacent ``prev`` is a blind junction: a free side
    cell of ``cell`` (a lane joining) whose view is hidden by a blocked cell beside ``prev``
    (a shelf corner or wall). ``free``: [H, W] bool drivable cells."""
    h, w = free.shape

    def ok(r: int, c: int) -> bool:
        return 0 <= r < h and 0 <= c < w and bool(free[r, c])

    dr, dc = cell[0] - prev[0], cell[1] - prev[1]
    return any(ok(cell[0] + sr, cell[1] + sc) and not ok(prev[0] + sr, prev[1] + sc)
               for sr, sc in ((dc, dr), (-dc, -dr)))


def junction_cap(gap_m: float, cfg: SafetyConfig, dt: float) -> float:
    """Speed cap (m/s) that reaches ``junction_speed`` when the robot's front has driven
    ``gap_m`` (m) more, i.e. enters a blind junction (a side lane hidden by a shelf
    corner) slowly enough to stop for someone stepping out; braking may start one control
    tick (``dt`` s) late: v^2 = v_j^2 + 2 a (gap - v dt)."""
    a_dt = cfg.brake_decel * dt
    v = -a_dt + math.sqrt(a_dt * a_dt + cfg.junction_speed**2 + 2.0 * cfg.brake_decel * max(gap_m, 0.0))
    return max(v, cfg.junction_speed)


class BumperGuard:
    """Per-robot bumper timing for :func:`bumper_command` (one per fleet controller).

    Args:
        n_robots: fleet size.
        cfg: the safety config passed on to :func:`bumper_command`.
    """

    def __init__(self, n_robots: int, cfg: SafetyConfig) -> None:
        self.cfg = cfg
        self._on = np.full(n_robots, np.nan)  # [N] s: start of the current contact
        self._off = np.full(n_robots, -np.inf)  # [N] s: end of the last contact

    def filter(self, i: int, bumper: BumperReading | None, cmd: TwistCmd, t: float) -> TwistCmd:
        """Robot ``i``'s command after the protective stop / back-off at time ``t`` (s)."""
        if bumper is not None and bumper.contact:
            if np.isnan(self._on[i]):
                self._on[i] = t
            self._off[i] = t
        else:
            self._on[i] = np.nan
        return bumper_command(bumper, self.cfg, cmd, pressed_s=t - self._on[i], released_s=t - self._off[i])


STOP = TwistCmd(0.0, 0.0)


class LidarGuard:
    """One robot's lidar safety over a driving command: the one implementation that both
    drivers (the classic ``agent.navigation.Navigator`` and
    :class:`sim.env_parts.GuardedExecutor`, the agent's and the RL envs' macro driver) put
    between their follower and the wheels.

    * :meth:`speed_cap`: the forward speed that stops ``stop_margin_m`` short of the
      nearest obstacle in the swept corridor (:func:`safe_speed`), looking as far as the
      stopping distance but not past the end of the straight being driven (a shelf facing
      the end of a straight is not an obstacle), and 0 while an object seen in the near
      field has vanished into the lidar's blind zone at the hull (:meth:`near_field_cap`).
    * :meth:`rotation`: turning in place with a non-static return inside the rotation
      circle becomes a back-up (obstruction in front, free behind) or a stop.

    Args:
        layout: floor plan (static returns are recognised against it).
        cfg: safety parameters.
        dt: control period (s).
    """

    def __init__(self, layout: Layout, cfg: SafetyConfig, dt: float) -> None:
        self.cfg = cfg
        self.dt = float(dt)
        self.static = StaticRaster.of(layout, cfg.static_tolerance_m)
        self._near: tuple[float, np.ndarray] | None = None  # (time, xy) of the last near-field return

    def speed_cap(self, pose: np.ndarray, v: float, points: np.ndarray | None, t: float, *,
                  straight_m: float) -> float:
        """Forward speed cap (m/s) at speed ``v`` (m/s); ``straight_m`` = distance left on the
        current straight (m); ``points`` robot-frame scan points [N, 2] or None (lidar absent)."""
        sc = self.cfg
        stop_dist = v * v / (2 * sc.brake_decel)
        check = min(stop_dist + sc.stop_margin_m + 0.1, max(straight_m, 0.0) + sc.stop_margin_m)
        return min(safe_speed(points, sc, check_len_m=check, dt=self.dt), self.near_field_cap(pose, points, t),
                   self.warning_cap(pose, points))

    def warning_cap(self, pose: np.ndarray, points: np.ndarray | None) -> float:
        """``warning_speed`` (m/s) while a non-static return is in the warning field, else inf."""
        sc = self.cfg
        if points is None or not len(points) or sc.warning_length_m <= 0.0:
            return float("inf")
        half = sc.footprint_m / 2
        sel = (points[:, 0] > 0.0) & (points[:, 0] <= half + sc.warning_length_m) & (
            np.abs(points[:, 1]) <= half + sc.warning_lateral_m)
        if not sel.any():
            return float("inf")
        near = points[sel]
        dyn = ~self.static.near(to_world(near, pose))
        return sc.warning_speed if bool(dyn.any()) else float("inf")

    def near_field_cap(self, pose: np.ndarray, points: np.ndarray | None, t: float) -> float:
        """The lidar cannot see what touches the body (its rays start at the hull): a
        non-static object (not a wall or shelf of the map) seen within ``near_field_m`` of the
        front is remembered for ``near_memory_s`` (returns 0 = stay stopped, or inf = no
        constraint)."""
        sc = self.cfg
        if points is not None and len(points):
            gap, hits = forward_obstacle(points, sc, sc.near_field_m)
            # a shelf face does not walk into the blind zone: only non-static returns are
            # remembered (a robot turning in place in an aisle swept its front past a shelf
            # corner and then stood 2.5 s in front of an empty aisle: exceptions seed 7)
            if gap <= sc.near_field_m and bool((~self.static.near(to_world(hits, pose))).any()):
                self._near = (t, np.asarray(pose[:2], dtype=float).copy())
                return float("inf")  # visible: the corridor check handles it
        if self._near is None or t - self._near[0] > sc.near_memory_s:
            return float("inf")
        return 0.0

    def rotation(self, pose: np.ndarray, points: np.ndarray | None, cmd: TwistCmd) -> TwistCmd:
        """``cmd`` (a turn in place) if the rotation circle is clear of non-static returns,
        else a back-up or a stop."""
        if cmd.w == 0.0 or points is None:
            return cmd
        dyn = points[~self.static.near(to_world(points, pose))]
        return cmd if rotation_clear(dyn, self.cfg) else self._back_up(dyn)

    def _back_up(self, points: np.ndarray) -> TwistCmd:
        """Turning in place is blocked: creep backwards if the obstruction is in front and
        the space behind is free (Nav2 ``BackUp``), else wait."""
        sc = self.cfg
        radius = sc.footprint_m / np.sqrt(2.0) + sc.rotate_margin_m
        near = points[np.hypot(points[:, 0], points[:, 1]) <= radius]
        behind = points[(points[:, 0] < 0) & (points[:, 0] > -(sc.footprint_m / 2 + sc.stop_margin_m))
                        & (np.abs(points[:, 1]) <= sc.footprint_m / 2 + sc.lateral_margin_m)]
        if len(near) and np.all(near[:, 0] > 0) and len(behind) == 0:
            return TwistCmd(-sc.backup_speed, 0.0)
        return STOP
