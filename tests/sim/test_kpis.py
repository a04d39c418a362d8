"""KPI functions: vectorised results against plain-loop oracles, and the report record."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sim.config import SimConfig
from sim.faults import ExceptionEvent
from sim.kpis import (
    build_report,
    completion_rate,
    exception_stats,
    handling_times,
    path_length,
    rms_errors,
)
from sim.types import Pose, TwistCmd
from sim.warehouse import WarehouseSim


def test_kpis__rms_errors_match_loop_oracle() -> None:
    rng = np.random.default_rng(0)
    s, n = 500, 4
    est, truth = rng.normal(size=(s, 3)), rng.normal(size=(s, 3))
    est[:, 2] = truth[:, 2] + rng.uniform(-np.pi, np.pi, s)
    robot = rng.integers(0, n - 1, s)  # robot 3 has no sample
    pos, yaw, cnt = rms_errors(est, truth, robot, n)
    for i in range(n):
        m = robot == i
        if not m.any():
            assert pos[i] == 0.0 and yaw[i] == 0.0 and cnt[i] == 0
            continue
        e_pos = [np.hypot(*(est[k, :2] - truth[k, :2])) for k in np.flatnonzero(m)]
        e_yaw = [
            np.degrees(np.arctan2(np.sin(est[k, 2] - truth[k, 2]), np.cos(est[k, 2] - truth[k, 2])))
            for k in np.flatnonzero(m)
        ]
        assert pos[i] == pytest.approx(np.sqrt(np.mean(np.square(e_pos))))
        assert yaw[i] == pytest.approx(np.sqrt(np.mean(np.square(e_yaw))))


def test_kpis__yaw_error_wraps() -> None:
    _, yaw, _ = rms_errors(
        np.array([[0, 0, np.pi - 0.01]]), np.array([[0, 0, -np.pi + 0.01]]), np.array([0]), 1
    )
    assert yaw[0] == pytest.approx(np.degrees(0.02))


def test_kpis__completion_rate_counts_only_eligible_orders() -> None:
    release = np.array([0.0, 10.0, 100.0, 200.0, 250.0])
    delivered = np.array([True, False, True, True, True])
    rate, elig, d = completion_rate(release, delivered, deadline_s=120.0, t_end=300.0)
    assert (elig, d) == (3, 2) and rate == pytest.approx(2 / 3)
    assert completion_rate(np.zeros(0), np.zeros(0, bool), 120.0, 60.0) == (0.0, 0, 0)


@pytest.mark.parametrize(
    "onset,resolved,t_end,expected",
    [
        ([1.0, 5.0], [3.0, np.nan], 10.0, [2.0, 5.0]),
        ([], [], 10.0, []),
        ([0.0], [0.0], 1.0, [0.0]),
    ],
)
def test_kpis__handling_times_table(onset, resolved, t_end, expected) -> None:
    times, unres = handling_times(np.array(onset), np.array(resolved), t_end)
    np.testing.assert_allclose(times, expected)
    np.testing.assert_array_equal(unres, np.isnan(np.array(resolved, float)))


def test_kpis__exception_stats_keep_people_apart() -> None:
    ev = [
        ExceptionEvent(0, "breakdown", 0, 1.0, 4.0),
        ExceptionEvent(1, "breakdown", 1, 2.0, None),
        ExceptionEvent(2, "people", 0, 0.0, 50.0),
    ]
    stats, unresolved = exception_stats(ev, t_end=10.0)
    assert stats["breakdown"].count == 2 and stats["breakdown"].unresolved == 1
    assert (
        stats["breakdown"].mean_s == pytest.approx((3.0 + 8.0) / 2)
        and stats["breakdown"].max_s == 8.0
    )
    assert stats["overall"].count == 2 and stats["people"].count == 1 and unresolved


def test_kpis__path_length_matches_loop() -> None:
    xy = np.random.default_rng(1).normal(size=(20, 3, 2))
    loop = [sum(np.hypot(*(xy[t + 1, i] - xy[t, i])) for t in range(19)) for i in range(3)]
    np.testing.assert_allclose(path_length(xy), loop)


def test_kpis__report_is_json_and_ground_truth_flag() -> None:
    rep = build_report(
        t_end=60.0,
        n_robots=2,
        scenario="nominal",
        orders={
            "release_t": np.array([0.0]),
            "deadline_t": np.array([120.0]),
            "delivered": np.array([True]),
            "delivered_t": np.array([50.0]),
        },
        n_expired=0,
        deadline_s=120.0,
        events=[],
        pose_est=np.zeros((0, 3)),
        pose_truth=np.zeros((0, 3)),
        pose_robot=np.zeros(0, int),
        collisions={"robot_static": 2},
        distance_m=np.array([1.0, 2.0]),
    )
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["pose_source"] == "ground_truth" and d["loc_rms_pos_m"] == [0.0, 0.0]
    assert d["collisions"]["total"] == 2 and d["orders_per_hour"] == pytest.approx(60.0)
    assert d["exceptions"]["overall"]["count"] == 0


def test_kpis__sim_localization_error_from_reported_estimates() -> None:
    sim = WarehouseSim(SimConfig(n_robots=2), seed=0)
    for _ in range(5):
        sim.step([TwistCmd(0.5, 0.0), TwistCmd(0.0, 0.0)])
        gt = sim.ground_truth()
        sim.report_pose_estimate(
            0, Pose(gt[0, 0] + 0.03, gt[0, 1] - 0.04, gt[0, 2] + np.radians(2.0))
        )
    rep = sim.kpis()
    assert rep.pose_source == "estimate" and rep.loc_samples == (5, 0)
    assert rep.loc_rms_pos_m[0] == pytest.approx(0.05) and rep.loc_rms_yaw_deg[0] == pytest.approx(
        2.0
    )
    assert rep.distance_m[0] == pytest.approx(sum(0.05 * k * 0.05 for k in range(1, 6)), rel=0.1)
    sim.close()
