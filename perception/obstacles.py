"""Obstacle and blockage perception from lidar against the known static map.

:class:`BlockageDetector` keeps a log-odds occupancy grid over the layout at
``subdivision`` x ``subdivision`` fine cells per layout cell (0.2 m for 1 m cells),
covering drivable cells only (walls and shelves are the static map's business).

Per scan (:meth:`BlockageDetector.update`):

1. valid returns (finite, ``min_range`` <= r < ``range_max``) go to the world frame with
   the localizer's pose; a return farther than ``unexplained_dist + pose_std_gain *
   position std`` from the static map (signed distance field of
   :mod:`perception.scan_match`) is an *unexplained* point: an obstacle;
2. fine cells holding unexplained points gain ``l_hit``; fine cells crossed by any
   beam before its end (hits, or ``free_range`` for no-return beams) gain ``l_miss``
   (ray-traced free space); log-odds are clamped to [l_min, l_max];
3. a layout cell is *occupied* while any of its fine cells is above ``l_occ``; it
   becomes a reported :class:`Blockage` once continuously occupied for ``dwell_s``
   seconds (``first_seen`` = when it became occupied), or for ``wide_dwell_s`` once one
   scan's obstacle returns in it span ``wide_extent_m`` along x or y (a pallet's face is
   0.84 m; a person 0.5 m; other robots' returns are excluded), and is
   cleared (dropped, its timer reset) as soon as free-space observations pull it back
   below ``l_occ``.
   Cells out of view keep their state: a blockage persists until seen free; its
   ``last_seen`` tells the planner how fresh it is.

Other robots and people are unexplained points too: they show as transient obstacles
(:attr:`BlockageDetector.transient_cells`) and become blockages only when they stay
put for ``dwell_s`` (a robot parked in an aisle *is* a blockage for planning). Known
robot positions can be passed as ``exclude_xy`` to ignore their returns entirely.

Scans are ignored while the pose is "lost" or its position std exceeds
``max_pose_std`` (a wrong pose would paint the map). One detector can serve a whole
fleet: call :meth:`update` with every robot's scan.

TODO(camera): fuse the forward depth camera (``SensorFrame.camera.depth``) by turning
its floor-plane-projected points into the same hit / free-space updates (catches
obstacles below the lidar plane).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from perception.motion import position_std
from perception.raycast import ray_cells
from perception.readings import check_lidar
from perception.scan_match import MapField
from sim.layout import Layout
from sim.types import LidarScan, Pose


@dataclass(frozen=True)
class BlockageConfig:
    """Knobs of :class:`BlockageDetector` (metres, seconds, log-odds)."""

    subdivision: int = 5  # fine cells per layout cell side
    unexplained_dist: float = 0.10  # m from the static map
    pose_std_gain: float = 3.0  # threshold += gain * position std
    max_pose_std: float = 0.10  # m; worse poses skip the update
    min_range: float = 0.35  # m; shorter returns hit the robot itself
    free_range: float = 6.0  # m; free-space carving length of no-return beams (and cap)
    l_hit: float = 0.85
    l_miss: float = -0.4
    l_min: float = -1.0  # a seen-free cell turns occupied after two hits
    l_max: float = 3.5
    l_occ: float = 0.6  # occupied above this
    dwell_s: float = 1.0  # s occupied before a blockage is reported
    wide_extent_m: float = 0.7  # m spanned by one scan's returns in a cell: pallet-sized, reported sooner
    wide_dwell_s: float = 0.2  # s occupied (while that wide) before it is reported
    exclude_radius: float = 0.45  # m around ``exclude_xy`` robots
    lidar_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)  # lidar pose in robot frame
    field_resolution: float = 0.02  # m, shared with the localizer's field

    def __post_init__(self) -> None:
        if self.subdivision < 1:
            raise ValueError(f"blockage.subdivision: {self.subdivision}; allowed >= 1")
        if not self.l_min < self.l_occ < self.l_max:
            raise ValueError("blockage.l_occ: must lie strictly between l_min and l_max")
        if self.dwell_s < 0:
            raise ValueError(f"blockage.dwell_s: {self.dwell_s}; allowed >= 0")
        if not 0 <= self.wide_dwell_s <= self.dwell_s:
            raise ValueError(f"blockage.wide_dwell_s: {self.wide_dwell_s}; allowed in [0, dwell_s]")
        if not self.wide_extent_m > 0:
            raise ValueError(f"blockage.wide_extent_m: {self.wide_extent_m}; allowed > 0 (inf disables)")


@dataclass(frozen=True)
class Blockage:
    """A drivable layout cell blocked for at least the dwell time.

    Attributes:
        cell: (row, col) layout cell.
        first_seen: s, when the cell became (continuously) occupied.
        last_seen: s, last scan with an obstacle return in the cell.
    """

    cell: tuple[int, int]
    first_seen: float
    last_seen: float


class BlockageDetector:
    """Log-odds obstacle grid + dwell-time blockage reports (see the module docstring).

    Args:
        layout: the warehouse.
        cfg: knobs.
    """

    def __init__(self, layout: Layout, cfg: BlockageConfig | None = None) -> None:
        self.layout = layout
        self.cfg = cfg or BlockageConfig()
        self._field = MapField.of(layout, self.cfg.field_resolution)
        sub = self.cfg.subdivision
        h, w = layout.shape
        self._res = layout.cell_size / sub
        self._fine_shape = (h * sub, w * sub)
        self._drivable_fine = np.repeat(np.repeat(layout.free, sub, axis=0), sub, axis=1)
        self._logodds = np.zeros(self._fine_shape)
        self._first = np.full((h, w), np.nan)  # occupied since (s), nan = not occupied
        self._last = np.full((h, w), np.nan)  # last obstacle return (s)
        self._wide = np.zeros((h, w), bool)  # occupied and seen pallet-wide since
        self._stamp = -math.inf

    # ---- public API ----------------------------------------------------------------------

    def update(
        self, pose: Pose, scan: LidarScan, stamp: float, *, exclude_xy: np.ndarray | None = None
    ) -> list[Blockage]:
        """Integrate one scan taken at ``pose``; returns the current blockages.

        Args:
            pose: robot pose (from the localizer) at the scan time.
            scan: the lidar scan (REP 117 conventions).
            stamp: scan time (s).
            exclude_xy: [R, 2] positions (m) of other known robots whose returns are ignored.

        Returns:
            Blockages sorted by cell.
        """
        checked = check_lidar(scan) if scan is not None else None
        std = _pos_std(pose)
        if (
            checked is None
            or pose.health == "lost"
            or not math.isfinite(std)
            or std > self.cfg.max_pose_std
            or not math.isfinite(stamp)
        ):
            return self.blockages()
        self._stamp = max(self._stamp, float(stamp))
        origin, ends, hit, valid = self._beams(pose, checked)
        obstacle = self._unexplained(ends, hit, std, exclude_xy)
        self._integrate(origin, ends, hit, valid, obstacle, float(stamp))
        return self.blockages()

    def blockages(self) -> list[Blockage]:
        """Cells occupied for at least ``dwell_s`` (as of the latest scan)."""
        ok = self._reported()
        return [
            Blockage(
                cell=(int(r), int(c)),
                first_seen=float(self._first[r, c]),
                last_seen=float(self._last[r, c]),
            )
            for r, c in np.argwhere(ok)
        ]

    @property
    def transient_cells(self) -> np.ndarray:
        """[K, 2] (row, col) cells occupied now but not (yet) for ``dwell_s``."""
        return np.argwhere(~np.isnan(self._first) & ~self._reported())

    def _reported(self) -> np.ndarray:
        """[H, W] bool: occupied for ``dwell_s``, or for ``wide_dwell_s`` while pallet-wide."""
        with np.errstate(invalid="ignore"):
            age = self._stamp - self._first  # nan where not occupied
            return (age >= self.cfg.dwell_s - 1e-9) | (self._wide & (age >= self.cfg.wide_dwell_s - 1e-9))

    @property
    def occupancy(self) -> np.ndarray:
        """[H * sub, W * sub] occupancy probability of the fine grid (0.5 = unknown)."""
        return 1.0 / (1.0 + np.exp(-self._logodds))

    def reset(self) -> None:
        """Forget everything."""
        self._logodds[:] = 0.0
        self._first[:] = np.nan
        self._last[:] = np.nan
        self._wide[:] = False
        self._stamp = -math.inf

    # ---- internals ----------------------------------------------------------------------

    def _beams(
        self, pose: Pose, scan: LidarScan
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(origin [2], beam ends [N, 2], hit [N] bool, valid [N] bool) in the world frame."""
        cfg = self.cfg
        ox, oy, oyaw = cfg.lidar_offset
        c, s = math.cos(pose.yaw), math.sin(pose.yaw)
        origin = np.array([pose.x + c * ox - s * oy, pose.y + s * ox + c * oy])
        r = scan.ranges
        hit = np.isfinite(r) & (r >= cfg.min_range) & (r < scan.range_max)
        no_ret = np.isposinf(r) | (np.isfinite(r) & (r >= scan.range_max))
        valid = hit | no_ret
        length = np.where(
            hit, np.nan_to_num(r, nan=0.0, posinf=0.0), min(cfg.free_range, scan.range_max)
        )
        ang = pose.yaw + oyaw + scan.angles
        ends = origin + length[:, None] * np.stack([np.cos(ang), np.sin(ang)], axis=-1)
        return origin, ends, hit, valid

    def _unexplained(
        self, ends: np.ndarray, hit: np.ndarray, std: float, exclude_xy: np.ndarray | None
    ) -> np.ndarray:
        """[N] bool: hit points the static map does not explain (and no known robot does)."""
        out = np.zeros(len(ends), dtype=bool)
        idx = np.flatnonzero(hit)
        if len(idx) == 0:
            return out
        d = self._field.distance(ends[idx])
        out[idx] = d > self.cfg.unexplained_dist + self.cfg.pose_std_gain * std
        if exclude_xy is not None and len(exclude_xy):
            ex = np.asarray(exclude_xy, dtype=np.float64).reshape(-1, 2)
            near = np.min(
                np.hypot(ends[:, None, 0] - ex[None, :, 0], ends[:, None, 1] - ex[None, :, 1]),
                axis=1,
            )
            out &= near > self.cfg.exclude_radius
        return out

    def _integrate(
        self,
        origin: np.ndarray,
        ends: np.ndarray,
        hit: np.ndarray,
        valid: np.ndarray,
        obstacle: np.ndarray,
        stamp: float,
    ) -> None:
        cfg, shape = self.cfg, self._fine_shape
        # free space: crossed cells of every valid beam, capped at free_range
        seg = ends[valid] - origin
        length = np.hypot(seg[:, 0], seg[:, 1])
        cap = np.minimum(length, cfg.free_range)[:, None] / np.maximum(length, 1e-9)[:, None]
        fr, fc = ray_cells(origin, origin + seg * cap, self._res, shape)
        free_mask = np.zeros(shape, dtype=bool)
        free_mask[fr, fc] = True
        # hits: fine cells with unexplained points
        pts = ends[obstacle]
        hr = np.floor(pts[:, 1] / self._res).astype(np.int64)
        hc = np.floor(pts[:, 0] / self._res).astype(np.int64)
        inb = (hr >= 0) & (hr < shape[0]) & (hc >= 0) & (hc < shape[1])
        hit_mask = np.zeros(shape, dtype=bool)
        hit_mask[hr[inb], hc[inb]] = True
        self._mark_wide(pts)
        free_mask &= ~hit_mask
        L = self._logodds
        L[free_mask & self._drivable_fine] += cfg.l_miss
        L[hit_mask & self._drivable_fine] += cfg.l_hit
        np.clip(L, cfg.l_min, cfg.l_max, out=L)
        self._update_cells(hit_mask & self._drivable_fine, stamp)

    def _mark_wide(self, pts: np.ndarray) -> None:
        """Latch ``_wide`` for layout cells where the obstacle points [K, 2] (world xy, m)
        of one scan span ``wide_extent_m`` along x or y."""
        if len(pts) < 2 or not math.isfinite(self.cfg.wide_extent_m):
            return
        cs = self.layout.cell_size
        rc = np.floor(pts[:, ::-1] / cs).astype(np.int64)  # (row, col) per point
        h, w = self.layout.shape
        ok = (rc[:, 0] >= 0) & (rc[:, 0] < h) & (rc[:, 1] >= 0) & (rc[:, 1] < w)
        rc, pts = rc[ok], pts[ok]
        key = rc[:, 0] * w + rc[:, 1]
        order = np.argsort(key, kind="stable")
        key, pts = key[order], pts[order]
        starts = np.r_[0, np.nonzero(np.diff(key))[0] + 1]
        lo = np.minimum.reduceat(pts, starts, axis=0)
        hi = np.maximum.reduceat(pts, starts, axis=0)
        wide = (hi - lo).max(axis=1) >= self.cfg.wide_extent_m - 1e-9
        cells = key[starts][wide]
        self._wide[cells // w, cells % w] = True

    def _update_cells(self, hit_fine: np.ndarray, stamp: float) -> None:
        sub = self.cfg.subdivision
        h, w = self.layout.shape
        occ = (self._logodds > self.cfg.l_occ).reshape(h, sub, w, sub).any(
            axis=(1, 3)
        ) & self.layout.free
        self._wide &= occ
        hit = hit_fine.reshape(h, sub, w, sub).any(axis=(1, 3))
        newly = occ & np.isnan(self._first)
        self._first[newly] = stamp
        self._first[~occ] = np.nan
        self._last[hit] = stamp


def _pos_std(pose: Pose) -> float:
    """Std (m) along the worst position axis of ``pose.cov``; inf when unusable."""
    cov = np.asarray(pose.cov, dtype=np.float64)
    if cov.shape != (3, 3) or not np.isfinite(cov).all():
        return math.inf
    return position_std(cov)
