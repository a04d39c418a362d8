"""Pure-pursuit follower against a unicycle integrator with first-order speed tracking."""

from __future__ import annotations

import numpy as np
import pytest

from sim.follower import FollowerConfig, PurePursuitFollower, unicycle_step
from sim.types import TwistCmd, wrap_angle

DT = 0.05

# name -> (start pose (x, y, yaw), path [K, 2]) on a 1 m grid (cell centres).
PATHS = {
    "straight": ((0.5, 0.5, 0.0), [[0.5, 0.5], [1.5, 0.5], [2.5, 0.5], [3.5, 0.5], [4.5, 0.5]]),
    "corner": ((0.5, 0.5, 0.0), [[0.5, 0.5], [1.5, 0.5], [2.5, 0.5], [2.5, 1.5], [2.5, 2.5]]),
    "u_turn": ((2.5, 0.5, 0.0), [[2.5, 0.5], [1.5, 0.5], [0.5, 0.5]]),
    "zigzag": ((0.5, 0.5, np.pi / 2), [[0.5, 0.5], [0.5, 1.5], [1.5, 1.5], [1.5, 2.5], [2.5, 2.5],
                                      [2.5, 3.5]]),
    "one_cell": ((0.5, 0.5, 0.0), [[0.5, 0.5], [0.5, 1.5]]),
    "single_point_behind": ((1.0, 1.0, 0.0), [[0.5, 1.0]]),
    "offset_start": ((0.6, 0.42, 0.2), [[0.5, 0.5], [1.5, 0.5], [2.5, 0.5], [3.5, 0.5]]),
}


def simulate(cfg: FollowerConfig, start, path, *, max_t: float = 30.0, speed_cap=None, lag: float = 0.0):
    """Run follower + unicycle until done; returns (poses [T, 3], cmds [T, 2], done)."""
    f = PurePursuitFollower(cfg)
    f.set_path(np.asarray(path, dtype=float))
    pose = np.asarray(start, dtype=float)
    v_act, w_act = 0.0, 0.0
    poses, cmds = [pose], []
    for _ in range(int(max_t / DT)):
        cmd, prog = f.step(pose, v_act, dt=DT, speed_cap=speed_cap)
        cmds.append((cmd.v, cmd.w))
        if prog.done:
            return np.array(poses), np.array(cmds), True
        v_act = lag * v_act + (1 - lag) * cmd.v  # lag=0: ideal tracking
        w_act = lag * w_act + (1 - lag) * cmd.w
        pose = unicycle_step(pose, TwistCmd(v_act, w_act), DT)
        poses.append(pose)
    return np.array(poses), np.array(cmds), False


@pytest.mark.parametrize("name", sorted(PATHS))
def test_follower__reaches_goal_within_tolerance(name):
    cfg = FollowerConfig()
    start, path = PATHS[name]
    poses, cmds, done = simulate(cfg, start, path)
    assert done, f"{name}: not done, final pose {poses[-1]}"
    assert np.hypot(*(poses[-1, :2] - np.asarray(path[-1]))) <= cfg.goal_tolerance_m + 1e-9
    assert cmds[-1].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("name", sorted(PATHS))
def test_follower__respects_speed_accel_and_yaw_limits(name):
    cfg = FollowerConfig()
    start, path = PATHS[name]
    _, cmds, _ = simulate(cfg, start, path)
    v, w = cmds[:, 0], cmds[:, 1]
    assert np.all(v <= cfg.max_speed + 1e-9)
    assert np.all(v >= -cfg.max_reverse_speed - 1e-9)
    assert np.all(np.abs(w) <= cfg.max_yaw_rate + 1e-9)
    dv = np.diff(np.r_[0.0, v])
    assert np.all(np.abs(dv) <= cfg.max_accel * DT + 1e-9)


def test_follower__stays_near_the_grid_path_at_corners():
    """Straying more than 0.2 m (half aisle - half footprint) would hit a shelf in a 1 m aisle."""
    start, path = PATHS["corner"]
    poses, _, _ = simulate(FollowerConfig(), start, path)
    p = np.asarray(path, dtype=float)
    seg_a, seg_b = p[:-1], p[1:]
    for xy in poses[:, :2]:
        ab = seg_b - seg_a
        t = np.clip(np.einsum("ij,ij->i", xy - seg_a, ab) / np.einsum("ij,ij->i", ab, ab), 0, 1)
        d = np.min(np.linalg.norm(seg_a + t[:, None] * ab - xy, axis=1))
        assert d < 0.2


def test_follower__rotates_in_place_when_facing_away():
    f = PurePursuitFollower(FollowerConfig())
    f.set_path(np.array([[2.5, 0.5], [1.5, 0.5], [0.5, 0.5]]))
    cmd, prog = f.step(np.array([2.5, 0.5, 0.0]), 0.0, dt=DT)
    assert prog.rotating and cmd.v == 0.0 and abs(cmd.w) > 0


def test_follower__speed_cap_zero_stops_at_once():
    f = PurePursuitFollower(FollowerConfig())
    f.set_path(np.array([[0.5, 0.5], [5.5, 0.5]]))
    cmd, _ = f.step(np.array([1.5, 0.5, 0.0]), 1.2, dt=DT, speed_cap=0.0)
    assert cmd.v == 0.0


def test_follower__speed_cap_limits_cruise_speed():
    start, path = PATHS["straight"]
    _, cmds, done = simulate(FollowerConfig(), start, path, speed_cap=0.3)
    assert done and np.max(cmds[:, 0]) <= 0.3 + 1e-9


def test_follower__tolerates_actuator_lag():
    for name in ("straight", "corner", "zigzag", "u_turn"):
        start, path = PATHS[name]
        _, _, done = simulate(FollowerConfig(), start, path, lag=0.5)
        assert done, name


def test_follower__empty_path_is_done_and_stops():
    f = PurePursuitFollower()
    cmd, prog = f.step(np.zeros(3), 0.5)
    assert prog.done and cmd == TwistCmd(0.0, 0.0)


def test_follower__progress_index_is_monotone():
    f = PurePursuitFollower(FollowerConfig())
    start, path = PATHS["zigzag"]
    f.set_path(np.asarray(path, dtype=float))
    pose, v, idx = np.asarray(start, dtype=float), 0.0, []
    for _ in range(600):
        cmd, prog = f.step(pose, v, dt=DT)
        idx.append(prog.nearest_index)
        if prog.done:
            break
        v = cmd.v
        pose = unicycle_step(pose, cmd, DT)
    assert prog.done and np.all(np.diff(idx) >= 0) and idx[-1] == len(path) - 1


def test_follower__rotate_to_reaches_heading():
    f = PurePursuitFollower(FollowerConfig())
    pose = np.array([0.0, 0.0, 0.0])
    for _ in range(200):
        cmd, done = f.rotate_to(np.pi / 2, pose, tolerance=0.02)
        if done:
            break
        assert abs(cmd.w) <= 2.0 + 1e-9 and cmd.v == 0.0
        pose = unicycle_step(pose, cmd, DT)
    assert done and abs(wrap_angle(pose[2] - np.pi / 2)) <= 0.02


def test_follower__config_rejects_nonpositive_limits():
    with pytest.raises(ValueError, match="max_speed"):
        FollowerConfig(max_speed=0.0)
