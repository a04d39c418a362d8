"""Global fixes for relocalization: robust UWB multilateration and candidate poses.

:func:`multilaterate` solves for the tag's (x, y) from >= 3 ranges to anchors at known
3D positions: a linear least-squares start (range equations differenced against their
mean), Gauss-Newton on the 3D ranges, then NLOS rejection (the largest positive
residual is dropped while the residual chi-square fails and enough anchors remain). The
fix is only returned when it passes the chi-square consistency test with at least
``min_anchors`` ranges, so a relocalization never jumps on a fix that its own
measurements contradict.

The ``*_candidate`` functions turn the sensors of one frame into a full pose candidate
``(pose [3], cov [3, 3])`` for a lost localizer, each checked against the other
sensors: a floor fiducial (direct pose) must agree with the UWB ranges (median
residual <= 3 sigma) and the lidar (a scan match from it that fits and stays within
10 cm); a UWB fix gets its heading from a lidar yaw search whose result must agree with
the fix (chi-square), or keeps the current heading with a yaw variance of pi^2 when
there is no lidar; a yaw search alone re-finds the heading at a trusted position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import chi2

from perception.scan_match import MapField, ScanMatchConfig, match_scan, scan_points, search_yaw
from sim.layout import Layout

Candidate = tuple[np.ndarray, np.ndarray]  # (pose [3] (x, y, yaw), cov [3, 3])


@dataclass(frozen=True)
class PositionFix:
    """A multilateration fix.

    Attributes:
        xy: [2] position (m).
        cov: [2, 2] covariance (m^2).
        used: [K] bool, ranges kept (False = rejected as NLOS/outlier).
        chi2: residual chi-square of the kept ranges.
    """

    xy: np.ndarray
    cov: np.ndarray
    used: np.ndarray
    chi2: float


def _gauss_newton(
    a: np.ndarray, r: np.ndarray, dz2: np.ndarray, xy: np.ndarray, iters: int = 8
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Refine xy [2]; returns (xy, residuals [K] = measured - predicted, J [K, 2])."""
    for _ in range(iters):
        d = xy - a[:, :2]
        pred = np.sqrt(np.sum(d * d, axis=1) + dz2)
        J = d / np.maximum(pred, 1e-6)[:, None]
        res = r - pred
        step, *_ = np.linalg.lstsq(J, res, rcond=None)
        xy = xy + np.clip(step, -5.0, 5.0)
        if np.all(np.abs(step) < 1e-5):
            break
    d = xy - a[:, :2]
    pred = np.sqrt(np.sum(d * d, axis=1) + dz2)
    return xy, r - pred, d / np.maximum(pred, 1e-6)[:, None]


def _linear_start(a: np.ndarray, r: np.ndarray, dz2: np.ndarray) -> np.ndarray | None:
    rh2 = np.maximum(r * r - dz2, 0.0)  # horizontal range^2
    # |p|^2 - 2 a.p + |a|^2 = rh^2 ; subtract the mean equation -> linear in p
    A = -2.0 * (a[:, :2] - a[:, :2].mean(axis=0))
    b = rh2 - rh2.mean() - (np.sum(a[:, :2] ** 2, axis=1) - np.sum(a[:, :2] ** 2, axis=1).mean())
    if np.linalg.matrix_rank(A) < 2:
        return None
    xy, *_ = np.linalg.lstsq(A, b, rcond=None)
    return xy


def multilaterate(
    anchors: np.ndarray,
    ranges: np.ndarray,
    *,
    tag_height: float,
    sigma: float,
    min_anchors: int = 4,
    chi2_prob: float = 0.99,
) -> PositionFix | None:
    """Robust 2D position of a tag at ``tag_height`` from 3D ranges.

    Args:
        anchors: [K, 3] anchor positions (m).
        ranges: [K] measured 3D ranges (m).
        tag_height: tag height (m).
        sigma: range noise std (m).
        min_anchors: ranges that must survive outlier rejection (>= 3; 4 gives a check).
        chi2_prob: consistency test probability.

    Returns:
        The fix, or None when too few consistent ranges remain or the geometry is
        degenerate (collinear anchors).
    """
    a = np.asarray(anchors, dtype=np.float64)
    r = np.asarray(ranges, dtype=np.float64)
    used = np.ones(len(r), dtype=bool)
    if len(r) < max(min_anchors, 3):
        return None
    dz2 = (tag_height - a[:, 2]) ** 2
    while used.sum() >= max(min_anchors, 3):
        xy0 = _linear_start(a[used], r[used], dz2[used])
        if xy0 is None:
            return None
        xy, res, J = _gauss_newton(a[used], r[used], dz2[used], xy0)
        c2 = float(np.sum((res / sigma) ** 2))
        dof = int(used.sum()) - 2
        if dof <= 0 or c2 <= chi2.ppf(chi2_prob, dof):
            JtJ = J.T @ J
            if np.linalg.cond(JtJ) > 1e8:
                return None
            cov = np.linalg.inv(JtJ) * sigma**2
            return PositionFix(xy=xy, cov=0.5 * (cov + cov.T), used=used.copy(), chi2=c2)
        # NLOS makes ranges too long: drop the most positive residual
        idx = np.flatnonzero(used)
        used[idx[int(np.argmax(res))]] = False
    return None


def _uwb_consistent(
    anchors: np.ndarray,
    uwb: tuple[np.ndarray, np.ndarray],
    xy: np.ndarray,
    *,
    tag_height: float,
    uwb_sigma: float,
) -> bool:
    ids, ranges = uwb
    a = anchors[ids]
    pred = np.sqrt(np.sum((a[:, :2] - xy) ** 2, axis=1) + (tag_height - a[:, 2]) ** 2)
    return bool(np.median(np.abs(ranges - pred)) <= 3.0 * uwb_sigma)


def fiducial_candidate(
    field: MapField,
    anchors: np.ndarray,
    z: np.ndarray,
    R: np.ndarray,
    uwb: tuple[np.ndarray, np.ndarray] | None,
    pts: np.ndarray | None,
    *,
    tag_height: float,
    uwb_sigma: float,
    scan_cfg: ScanMatchConfig,
    min_fitness: float,
) -> Candidate | None:
    """The fiducial's pose ``z`` [3] with covariance ``R`` [3, 3], unless UWB ranges
    (``(ids [K], ranges [K])``) or the lidar points ``pts`` [N, 2] (robot frame) contradict it."""
    if (
        uwb is not None
        and len(uwb[0]) >= 3
        and not _uwb_consistent(anchors, uwb, z[:2], tag_height=tag_height, uwb_sigma=uwb_sigma)
    ):
        return None
    if pts is not None:
        m = match_scan(field, pts, z, scan_cfg)
        if m is None or m.fitness < min_fitness or np.hypot(*(m.pose[:2] - z[:2])) > 0.1:
            return None
    return z, R


def uwb_candidate(
    field: MapField,
    anchors: np.ndarray,
    uwb: tuple[np.ndarray, np.ndarray],
    pts: np.ndarray | None,
    yaw_guess: float,
    *,
    tag_height: float,
    uwb_sigma: float,
    scan_cfg: ScanMatchConfig,
    min_fitness: float,
    min_anchors: int,
    chi2_prob: float,
    yaw_seeds: int,
) -> Candidate | None:
    """Multilateration plus (with lidar points) a yaw search at the fix, or the current
    heading ``yaw_guess`` with variance pi^2 (without lidar)."""
    ids, ranges = uwb
    fix = multilaterate(
        anchors[ids],
        ranges,
        tag_height=tag_height,
        sigma=uwb_sigma,
        min_anchors=min_anchors,
        chi2_prob=chi2_prob,
    )
    if fix is None or not np.isfinite(fix.xy).all() or field.distance(fix.xy[None])[0] < -0.1:
        return None
    if pts is None:
        cov = np.diag([0.0, 0.0, np.pi**2])
        cov[:2, :2] = fix.cov
        return np.array([fix.xy[0], fix.xy[1], yaw_guess]), cov
    m = search_yaw(field, pts, fix.xy, scan_cfg, n_seeds=yaw_seeds)
    if m is None or m.fitness < min_fitness:
        return None
    d = m.pose[:2] - fix.xy
    if d @ np.linalg.solve(fix.cov + m.cov[:2, :2], d) > chi2.ppf(chi2_prob, 2) + 4.0:
        return None
    return m.pose, m.cov


def yaw_candidate(
    field: MapField,
    pts: np.ndarray,
    xy: np.ndarray,
    scan_cfg: ScanMatchConfig,
    *,
    min_fitness: float,
    yaw_seeds: int,
) -> Candidate | None:
    """Heading search at a trusted position ``xy`` [2] (the yaw alone was lost)."""
    m = search_yaw(field, pts, xy, scan_cfg, n_seeds=yaw_seeds)
    return (m.pose, m.cov) if m is not None and m.fitness >= min_fitness else None


def find_candidate(
    field: MapField,
    layout: Layout,
    cfg,
    fid: Candidate | None,
    uwb: tuple[np.ndarray, np.ndarray] | None,
    scan,
    pose: np.ndarray,
    *,
    lost_pos: bool,
) -> Candidate | None:
    """Pick and check a relocalization candidate from one frame's validated readings.

    A fiducial wins (full pose); else, when the position is lost, UWB multilateration
    (+ lidar yaw); else (only the heading is lost) a lidar yaw search at ``pose[:2]``.

    Args:
        field: the map's signed distance field.
        layout: anchors.
        cfg: a :class:`~perception.localization_config.LocalizerConfig`.
        fid: fiducial pose measurement (z [3], R [3, 3]) or None.
        uwb: (ids [K], ranges [K]) or None.
        scan: validated LidarScan or None.
        pose: [3] current estimate (x, y, yaw).
        lost_pos: the position (not only the heading) is lost.
    """
    pts = None
    if scan is not None:
        pts = scan_points(scan, cfg.scan, cfg.lidar_offset)
        pts = pts if len(pts) >= cfg.scan.min_points else None
    kw = {
        "tag_height": cfg.uwb_tag_height,
        "uwb_sigma": cfg.uwb_sigma,
        "scan_cfg": cfg.scan,
        "min_fitness": cfg.reloc_min_fitness,
    }
    if fid is not None:
        return fiducial_candidate(field, layout.uwb_anchors, fid[0], fid[1], uwb, pts, **kw)
    if lost_pos and uwb is not None:
        return uwb_candidate(
            field,
            layout.uwb_anchors,
            uwb,
            pts,
            float(pose[2]),
            min_anchors=cfg.reloc_min_anchors,
            chi2_prob=cfg.reloc_chi2_prob,
            yaw_seeds=cfg.reloc_yaw_seeds,
            **kw,
        )
    if pts is not None and not lost_pos:
        return yaw_candidate(
            field,
            pts,
            pose[:2],
            cfg.scan,
            min_fitness=cfg.reloc_min_fitness,
            yaw_seeds=cfg.reloc_yaw_seeds,
        )
    return None
