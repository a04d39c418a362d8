"""Validation of raw sensor readings before they reach a filter.

Each checker turns a reading from :mod:`sim.types` into plain validated numbers, or
returns None when the reading is malformed (wrong types or lengths, NaN/inf where a
number is required, negative ranges, unknown anchor or marker ids). Checkers never
raise; the localizer counts every None as a malformed reading.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.layout import Layout
from sim.types import FiducialReading, ImuReading, LidarScan, OdomReading, SensorFrame, UwbReading

_MAX_SPEED = 10.0  # m/s, anything faster is not a warehouse robot
_MAX_RATE = 20.0  # rad/s


def _finite(*vals: object) -> bool:
    try:
        return all(np.isfinite(float(v)) for v in vals)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def check_odom(odom: OdomReading) -> np.ndarray | None:
    """[2] (v, w) or None (NaN, absurd magnitude, non-positive dt)."""
    if not _finite(odom.v, odom.w, odom.dt) or not 0.0 < float(odom.dt) <= 1.0:
        return None
    if abs(float(odom.v)) > _MAX_SPEED or abs(float(odom.w)) > _MAX_RATE:
        return None
    return np.array([float(odom.v), float(odom.w)])


def check_imu(imu: ImuReading) -> np.ndarray | None:
    """[1] gyro_z or None (NaN gyro, absurd rate, accel not a finite [2])."""
    if not _finite(imu.gyro_z) or abs(float(imu.gyro_z)) > _MAX_RATE:
        return None
    try:
        acc = np.asarray(imu.accel, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if acc.shape != (2,) or not np.all(np.isfinite(acc)):
        return None
    return np.array([float(imu.gyro_z)])


@dataclass(frozen=True)
class CheckedUwb:
    """Valid part of a UWB reading: ids [K'] int, ranges [K'] m, number of bad entries."""

    ids: np.ndarray
    ranges: np.ndarray
    n_bad: int


def check_uwb(uwb: UwbReading, n_anchors: int, max_range: float) -> CheckedUwb | None:
    """Drop bad entries (NaN, <= 0 or > max_range, unknown or duplicate id).

    Returns:
        None when the whole reading is malformed (not 1-D arrays of equal length,
        non-integer ids); otherwise the valid entries and how many were dropped.
    """
    try:
        ids_raw = np.asarray(uwb.anchor_ids)
        rng = np.asarray(uwb.ranges, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if ids_raw.ndim != 1 or rng.ndim != 1 or ids_raw.shape != rng.shape:
        return None
    integral = np.issubdtype(ids_raw.dtype, np.integer) or (
        np.issubdtype(ids_raw.dtype, np.floating)
        and np.all(np.isfinite(ids_raw) & (ids_raw == np.round(ids_raw)))
    )
    if ids_raw.size and not integral:
        return None
    ids = ids_raw.astype(np.int64)
    ok = np.isfinite(rng) & (rng > 0.0) & (rng <= max_range) & (ids >= 0) & (ids < n_anchors)
    if len(set(ids.tolist())) != len(ids):  # duplicates: keep the first of each id
        _, first = np.unique(ids, return_index=True)
        unique = np.zeros(len(ids), dtype=bool)
        unique[first] = True
        ok &= unique
    return CheckedUwb(ids=ids[ok], ranges=rng[ok], n_bad=int((~ok).sum()))


def check_fiducial(
    fid: FiducialReading, n_markers: int, max_offset: float
) -> tuple[int, np.ndarray] | None:
    """(marker id, [3] (dx, dy, yaw)) or None (unknown id, NaN, offset > max_offset)."""
    try:
        mid = int(fid.marker_id)
    except (TypeError, ValueError, OverflowError):
        return None
    if mid != fid.marker_id or not 0 <= mid < n_markers:
        return None
    if not _finite(fid.dx, fid.dy, fid.yaw):
        return None
    d = np.array([float(fid.dx), float(fid.dy), float(fid.yaw)])
    if np.hypot(d[0], d[1]) > max_offset:
        return None
    return mid, d


def check_lidar(scan: LidarScan) -> LidarScan | None:
    """The scan as float arrays, or None (mismatched/empty arrays, bad range_max).

    Individual bad beams (NaN, negative) are not malformed: REP 117 marks invalid beams
    with NaN; negative ranges are turned into NaN.
    """
    try:
        a = np.asarray(scan.angles, dtype=np.float64)
        r = np.asarray(scan.ranges, dtype=np.float64)
        rmax = float(scan.range_max)
    except (TypeError, ValueError):
        return None
    if a.ndim != 1 or r.shape != a.shape or a.size == 0 or not np.isfinite(rmax) or rmax <= 0:
        return None
    if not np.all(np.isfinite(a)):
        return None
    r = np.where(r < 0, np.nan, r)
    return LidarScan(angles=a, ranges=r, range_max=rmax)


def check_exteroceptive(frame: SensorFrame, layout: Layout, cfg) -> tuple:
    """Validated exteroceptive readings of a frame, each as ``(value | None, n_malformed)``.

    Args:
        frame: the sensor frame.
        layout: anchors and fiducial positions.
        cfg: a :class:`~perception.localization_config.LocalizerConfig` (noise, limits).

    Returns:
        ``((z [3] world pose, R [3, 3]) | None, n)`` for the fiducial,
        ``((ids [K], ranges [K]) | None, n)`` for UWB (n = dropped entries),
        ``(LidarScan | None, n)`` for the lidar.
    """
    fid, n_fid = None, 0
    if frame.fiducial is not None:
        chk = check_fiducial(frame.fiducial, len(layout.fiducials), cfg.fiducial_max_offset)
        if chk is None:
            n_fid = 1
        else:
            mid, d = chk
            m = layout.fiducials[mid]
            yaw = float(np.pi - np.mod(np.pi - d[2], 2 * np.pi))
            s, sy = cfg.fiducial_sigma, cfg.fiducial_yaw_sigma
            fid = (np.array([m[0] + d[0], m[1] + d[1], yaw]), np.diag([s * s, s * s, sy * sy]))
    uwb, n_uwb = None, 0
    if frame.uwb is not None:
        cu = check_uwb(frame.uwb, len(layout.uwb_anchors), cfg.uwb_max_range)
        n_uwb = 1 if cu is None else cu.n_bad
        if cu is not None and len(cu.ids):
            uwb = (cu.ids, cu.ranges)
    scan, n_scan = None, 0
    if frame.lidar is not None:
        scan = check_lidar(frame.lidar)
        n_scan = int(scan is None)
    return (fid, n_fid), (uwb, n_uwb), (scan, n_scan)
