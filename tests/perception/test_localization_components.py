"""Oracles for the localization building blocks: Jacobians, unscented transform, sigma
points, signed distance field, ray casting, scan matching, multilateration."""

from __future__ import annotations

import numpy as np
import pytest
from filterpy.kalman import MerweScaledSigmaPoints
from filterpy.kalman import unscented_transform as filterpy_ut

from nees_band import nees, nees_band, nees_consistent
from perception import MapField, ScanMatchConfig, match_scan, multilaterate, scan_points
from perception import motion as mm
from perception.raycast import raycast_boxes, raycast_grid
from perception.ukf import _Points, unscented_transform
from sim.layout import LayoutConfig, generate_layout
from sim.types import LidarScan


@pytest.fixture(scope="module")
def layout():
    return generate_layout(LayoutConfig())


@pytest.fixture(scope="module")
def field(layout):
    return MapField.of(layout)


def _state(rng):
    return np.array(
        [3.2, 4.1, rng.uniform(-3, 3), rng.uniform(-1, 1), rng.uniform(-1, 1), 0.01, 1.02, 0.03]
    )


_MODELS = {
    "odom_gyro": lambda: mm.odom_gyro_model(True, True),
    "odom": lambda: mm.odom_gyro_model(True, False),
    "gyro": lambda: mm.odom_gyro_model(False, True),
    "pose": lambda: mm.pose_model("lidar"),
    "uwb": lambda: mm.uwb_model(
        np.array([[0.5, 0.5, 2.5], [10.0, 0.5, 2.5], [5.0, 9.0, 2.4]]), 0.35
    ),
}


@pytest.mark.parametrize("name", sorted(_MODELS))
def test_measurement_jacobians__match_finite_differences(name):
    rng = np.random.default_rng(0)
    model = _MODELS[name]()
    for _ in range(5):
        x = _state(rng)
        assert np.allclose(model.jacobian(x), mm.numerical_jacobian(model, x), atol=1e-6)


@pytest.mark.parametrize("offsets", [(0.0, 0.0), (0.1, -0.2)])
def test_propagate_jacobian__matches_finite_differences(offsets):
    rng = np.random.default_rng(1)
    for _ in range(5):
        x, dt = _state(rng), 0.05
        num = np.stack(
            [
                (mm.propagate(x + d, dt, *offsets) - mm.propagate(x - d, dt, *offsets)) / 2e-6
                for d in np.eye(mm.N_STATE) * 1e-6
            ],
            axis=-1,
        )
        num[mm.IYAW] = mm.wrap(num[mm.IYAW] * 2e-6) / 2e-6
        assert np.allclose(mm.propagate_jacobian(x, dt, *offsets), num, atol=1e-6)
        assert np.allclose(mm.propagate_one(x, dt, *offsets), mm.propagate(x, dt, *offsets))


def test_propagate__straight_and_arc():
    x = np.zeros(mm.N_STATE)
    x[[mm.IV, mm.IKS]] = 1.0, 1.0
    assert np.allclose(mm.propagate(x, 0.5)[:3], [0.5, 0.0, 0.0])
    x[mm.IW] = np.pi  # half a turn per second on a circle of radius 1/pi
    end = x
    for _ in range(100):
        end = mm.propagate(end, 0.01)
    assert np.allclose(end[:2], [0.0, 2 / np.pi], atol=1e-4) and np.isclose(
        abs(end[2]), np.pi, atol=1e-9
    )


def test_wrap__range():
    a = np.array([-3 * np.pi, -np.pi, 0.0, np.pi, 3 * np.pi, 7.0])
    w = mm.wrap(a)
    assert np.all((w > -np.pi) & (w <= np.pi))
    assert all(np.isclose(mm.wrap_scalar(float(v)), float(u)) for v, u in zip(a, w))


def test_sigma_points__match_filterpy():
    rng = np.random.default_rng(2)
    A = rng.normal(size=(mm.N_STATE, mm.N_STATE))
    P, x = A @ A.T + np.eye(mm.N_STATE), rng.normal(size=mm.N_STATE)
    for alpha, kappa in ((1.0, 0.0), (0.5, 1.0)):
        ref = MerweScaledSigmaPoints(mm.N_STATE, alpha, 2.0, kappa).sigma_points(x, P)
        assert np.allclose(_Points(mm.N_STATE, alpha, 2.0, kappa).sigma_points(x, P), ref)


def test_unscented_transform__matches_filterpy():
    rng = np.random.default_rng(3)
    pts = MerweScaledSigmaPoints(4, 1.0, 2.0, 0.0)
    sig = rng.normal(size=(9, 4))
    noise = np.eye(4) * 0.1
    ref_x, ref_P = filterpy_ut(sig, pts.Wm, pts.Wc, noise)
    x, P = unscented_transform(sig, pts.Wm, pts.Wc, noise)
    assert np.allclose(x, ref_x) and np.allclose(P, ref_P)


def test_map_field__exact_signed_distances(field):
    # walls: row 0 and col 0 (y < 1, x < 1); shelf block rows 5-6, cols 3-6
    pts = np.array([[1.5, 1.2], [1.02, 4.0], [0.9, 4.0], [3.03, 4.02], [5.0, 5.5]])
    expect = np.array([0.2, 0.02, -0.1, 0.98, -0.5])
    assert np.allclose(field.distance(pts), expect, atol=1e-6)
    _d, g = field.lookup(np.array([[1.3, 4.0]]))
    assert np.allclose(g, [[1.0, 0.0]], atol=1e-6)  # gradient points away from the wall


def test_raycast_grid__matches_brute_force_march(layout):
    rng = np.random.default_rng(4)
    origin = np.array([2.3, 4.4])
    ang = rng.uniform(-np.pi, np.pi, 40)
    r = raycast_grid(layout.occupancy, layout.cell_size, origin, ang, 10.0)
    for a, ri in zip(ang, r):
        s = np.arange(0.0, 10.0, 5e-4)
        p = origin + s[:, None] * [np.cos(a), np.sin(a)]
        cells = np.floor(p[:, ::-1] / layout.cell_size).astype(int)
        hit = np.flatnonzero(~layout.is_free(cells))  # outside the grid counts as solid
        expect = s[hit[0]] if len(hit) else np.inf
        assert (np.isinf(ri) and np.isinf(expect)) or abs(ri - expect) < 1e-3


def test_raycast_boxes__slab_cases():
    box = np.array([[3.0, 4.0, 3.5, 4.5]])
    ang = np.array([0.0, np.pi, np.pi / 2])
    r = raycast_boxes(np.array([2.3, 4.2]), ang, box)
    assert np.isclose(r[0], 0.7) and np.isinf(r[1]) and np.isinf(r[2])
    assert np.all(raycast_boxes(np.array([3.2, 4.2]), ang, box) == 0.0)


def _scan_at(layout, pose, rng, n=180, sigma=0.01):
    ang = np.linspace(-np.pi, np.pi, n, endpoint=False)
    r = raycast_grid(layout.occupancy, layout.cell_size, pose[:2], pose[2] + ang, 10.0)
    return LidarScan(ang, r + rng.normal(0, sigma, n), 10.0)


def test_scan_match__recovers_pose_with_consistent_covariance(layout, field):
    """Accurate poses, and a covariance that is chi-square consistent (95% band of the
    mean of 40 3-dof NEES samples) with the inflation calibrated on this synthetic lidar
    (0.7; the library default 1.0 is conservative for PyBullet). Halving or doubling the
    covariance leaves the band: the check catches a matcher twice over- or underconfident."""
    rng = np.random.default_rng(5)
    cfg = ScanMatchConfig(cov_inflation=0.7)
    errors, covs = [], []
    for _ in range(40):
        truth = np.array(
            [
                rng.uniform(1.5, 18.5),
                rng.choice([1.5, 2.5, 4.5, 8.5, 11.5]),
                rng.uniform(-np.pi, np.pi),
            ]
        )
        pts = scan_points(_scan_at(layout, truth, rng), cfg)
        m = match_scan(field, pts, truth + rng.normal(0, [0.05, 0.05, 0.03]), cfg)
        assert m is not None and m.fitness > 0.9
        e = m.pose - truth
        e[2] = mm.wrap(e[2])
        assert np.hypot(e[0], e[1]) < 0.01 and abs(e[2]) < 0.005
        errors.append(e)
        covs.append(m.cov)
    samples = nees(np.array(errors), np.array(covs))
    assert nees_consistent(samples, dof=3), (np.mean(samples), nees_band(40, 3))
    for scale in (0.5, 2.0):
        assert not nees_consistent(nees(np.array(errors), np.array(covs), cov_scale=scale), dof=3), scale


def test_scan_match__too_few_points_returns_none(field):
    scan = LidarScan(np.linspace(0, 1, 10), np.full(10, 2.0), 10.0)
    assert (
        match_scan(
            field,
            scan_points(scan, ScanMatchConfig()),
            np.array([2.0, 2.0, 0.0]),
            ScanMatchConfig(),
        )
        is None
    )


def test_multilaterate__recovers_position_and_rejects_nlos(layout):
    rng = np.random.default_rng(6)
    a = layout.uwb_anchors
    xy = np.array([7.3, 8.1])
    d = np.sqrt(np.sum((a[:, :2] - xy) ** 2, axis=1) + (0.35 - a[:, 2]) ** 2)
    fix = multilaterate(a, d + rng.normal(0, 0.05, len(a)), tag_height=0.35, sigma=0.05)
    assert fix is not None and np.hypot(*(fix.xy - xy)) < 0.1 and fix.used.all()
    bad = d + rng.normal(0, 0.05, len(a))
    bad[2] += 1.2  # NLOS
    fix = multilaterate(a, bad, tag_height=0.35, sigma=0.05)
    assert fix is not None and not fix.used[2] and np.hypot(*(fix.xy - xy)) < 0.1
    assert multilaterate(a[:3], d[:3], tag_height=0.35, sigma=0.05, min_anchors=4) is None
    line = np.array([[0.0, 0.0, 2.5], [5.0, 0.0, 2.5], [10.0, 0.0, 2.5], [15.0, 0.0, 2.5]])
    assert multilaterate(line, np.full(4, 6.0), tag_height=0.35, sigma=0.05) is None
