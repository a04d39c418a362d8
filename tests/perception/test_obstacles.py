"""Blockage detection: scripted blockage and clearing, transients, no false positives."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from perception import (
    BlockageConfig,
    BlockageDetector,
    BoxObstacle,
    evaluate_localization,
    generate_scenario,
    logs_from_scenario,
    nominal_config,
)
from perception.raycast import raycast_boxes, raycast_grid
from sim.layout import LayoutConfig, generate_layout
from sim.types import LidarScan, Pose

ANGLES = np.linspace(-np.pi, np.pi, 360, endpoint=False)


@pytest.fixture(scope="module")
def layout():
    return generate_layout(LayoutConfig())


def _scan(layout, pose, boxes, rng):
    world = pose[2] + ANGLES
    r = raycast_grid(layout.occupancy, layout.cell_size, pose[:2], world, 10.0)
    if len(boxes):
        r = np.minimum(
            r, raycast_boxes(pose[:2], world, np.asarray(boxes, dtype=float).reshape(-1, 4))
        )
    r = r + rng.normal(0, 0.01, len(r))
    r[r > 10.0] = np.inf
    return LidarScan(ANGLES, r, 10.0)


def _pose(p, std=0.005, health="ok"):
    return Pose(
        float(p[0]), float(p[1]), float(p[2]), cov=np.diag([std**2, std**2, 1e-4]), health=health
    )


def _replay(layout, det, pose, box, t_on, t_off, t_end, rng, dt=0.05):
    """Stationary robot at ``pose``; ``box`` present over [t_on, t_off). Returns per-stamp outputs."""
    out = []
    for k in range(1, round(t_end / dt) + 1):
        t = k * dt
        boxes = [box] if t_on <= t < t_off else []
        out.append(
            (t, det.update(_pose(pose), _scan(layout, pose, boxes, rng), t), det.transient_cells)
        )
    return out


ROBOT = np.array([7.5, 2.5, np.pi / 2])  # aisle column 7, facing north
BOX = (7.2, 4.2, 7.8, 4.8)  # inside drivable cell (row 4, col 7)


def test_blockage__reported_after_dwell_and_cleared(layout):
    assert layout.is_free(np.array([4, 7]))
    det = BlockageDetector(layout, BlockageConfig(dwell_s=1.0))
    out = _replay(layout, det, ROBOT, BOX, 1.0, 4.0, 6.0, np.random.default_rng(0))
    reported = [(t, b) for t, b, _ in out if b]
    assert reported, "the blockage was never reported"
    t_first, blks = reported[0]
    assert [b.cell for b in blks] == [(4, 7)]
    assert 2.0 - 1e-9 <= t_first <= 2.3  # dwell 1 s after the box appeared at 1.0 s
    assert abs(blks[0].first_seen - 1.0) <= 0.1 and blks[0].last_seen <= 4.0
    assert all(not b for t, b, _ in out if t < 1.95)
    t_clear = min(t for t, b, _ in out if t > t_first and not b)
    assert 4.0 <= t_clear <= 4.6  # cleared when seen free again
    assert not det.blockages() and len(det.transient_cells) == 0


def test_blockage__transient_obstacle_is_not_a_blockage(layout):
    det = BlockageDetector(layout, BlockageConfig(dwell_s=1.0))
    out = _replay(layout, det, ROBOT, BOX, 1.0, 1.6, 3.0, np.random.default_rng(1))
    assert all(not b for _, b, _ in out)
    assert any(len(tc) and (tc == [4, 7]).all(axis=1).any() for t, _, tc in out if 1.1 < t < 1.6)


def test_blockage__known_robots_excluded(layout):
    det = BlockageDetector(layout)
    rng = np.random.default_rng(2)
    centre = np.array([[7.5, 4.5]])
    for k in range(1, 60):
        det.update(_pose(ROBOT), _scan(layout, ROBOT, [BOX], rng), 0.05 * k, exclude_xy=centre)
    assert not det.blockages() and len(det.transient_cells) == 0


def test_blockage__lost_or_uncertain_pose_ignored(layout):
    det = BlockageDetector(layout)
    rng = np.random.default_rng(3)
    for k in range(1, 60):
        scan = _scan(layout, ROBOT, [BOX], rng)
        det.update(_pose(ROBOT, health="lost"), scan, 0.05 * k)
        det.update(_pose(ROBOT, std=0.5), scan, 0.05 * k)
    assert not det.blockages() and np.all(det.occupancy == 0.5)


def test_blockage__static_map_gives_no_false_positives(layout):
    """A robot driving a 20 s route with perfect-ish poses sees only the known map."""
    sc = generate_scenario(layout, nominal_config(20.0), np.random.default_rng(4))
    run = sc.runs[0]
    det = BlockageDetector(layout)
    for f, t in zip(run.frames, run.truth):
        if f.lidar is not None:
            assert not det.update(_pose(t), f.lidar, f.stamp)
    assert len(det.transient_cells) == 0


def test_blockage_evaluation__precision_recall_latency(layout):
    """Two robots, estimated poses, other robots excluded by their estimated poses; one
    pallet appears in a cross-aisle cell the robots drive along."""
    box = BoxObstacle(9.25, 3.25, 9.75, 3.75, t0=4.0, t1=14.0)  # cell (3, 9)
    cfg = dataclasses.replace(
        nominal_config(20.0, n_robots=2), obstacles=(box,), start_cells=((2, 2), (3, 17))
    )
    sc = generate_scenario(layout, cfg, np.random.default_rng(9))
    logs, injected = logs_from_scenario(sc, layout.cell_size)
    res = evaluate_localization(layout, logs, kinds=("ekf",), blockages=injected)
    b = res.blockage
    assert b is not None and b.injected == 1
    assert b.recall == 1.0 and b.precision == 1.0
    assert 1.0 <= b.latency_s[0] <= 10.0


def test_blockage__a_pallet_wide_obstacle_is_reported_sooner_a_person_sized_one_is_not(layout):
    """A pallet (0.84 m face, sim.warehouse.PALLET_HALF) is reported after ``wide_dwell_s``;
    a person-sized box (0.5 m) still waits the full ``dwell_s``."""
    cfg = BlockageConfig(dwell_s=1.0, wide_dwell_s=0.2)
    pallet = (7.08, 4.08, 7.92, 4.92)
    person = (7.25, 4.25, 7.75, 4.75)
    firsts = {}
    for name, box in (("pallet", pallet), ("person", person)):
        det = BlockageDetector(layout, cfg)
        out = _replay(layout, det, ROBOT, box, 1.0, 4.0, 4.5, np.random.default_rng(5))
        firsts[name] = min(t for t, b, _ in out if b)
        assert [b.cell for b in det.blockages()] == [] and all(
            [b.cell for b in bl] == [(4, 7)] for t, bl, _ in out if bl)
    assert 1.2 - 1e-9 <= firsts["pallet"] <= 1.4
    assert 2.0 - 1e-9 <= firsts["person"] <= 2.3
    with pytest.raises(ValueError, match="wide_dwell_s"):
        BlockageConfig(dwell_s=1.0, wide_dwell_s=2.0)
