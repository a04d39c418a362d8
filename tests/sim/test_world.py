"""Physics world and WarehouseSim core: facade, drive limits, collisions, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from sim.config import OrdersConfig, SensorsConfig, SimConfig
from sim.faults import bfs_path
from sim.robot import DiffDrive, goto_twist, limit_twist
from sim.types import TwistCmd
from sim.warehouse import WarehouseSim
from sim.world import RobotBodySpec, World, merge_rectangles

# default layout: 14 x 20 cells, cross-aisle row 12 free from col 1 to 18, walls outside.
ROW12_Y = 12.5


def quiet(n_robots: int = 1, **kw) -> SimConfig:
    """A config without orders (no load bodies) for clean physics tests."""
    return SimConfig(n_robots=n_robots, orders=OrdersConfig(rate_per_min=0.0, n_initial=0), **kw)


def drive_cells(
    sim: WarehouseSim, robot: int, cells: list, *, max_ticks: int = 3000, tol: float = 0.1
) -> int:
    """Follow a cell path with the proportional controller; others stand still. Returns ticks."""
    k = 0
    for tick in range(max_ticks):
        gt = sim.ground_truth()[robot]
        wp = sim.layout.cell_to_xy(np.array(cells[k]))
        last = k == len(cells) - 1
        if np.hypot(*(wp - gt[:2])) < (tol if last else 0.35):
            if last:
                return tick
            k += 1
            continue
        v, w = goto_twist(gt, wp)
        cmds = [TwistCmd(0.0, 0.0)] * sim.n_robots
        cmds[robot] = TwistCmd(v, w)
        sim.step(cmds)
    return max_ticks


# ---- facade ---------------------------------------------------------------------------------


def test_world__close_is_idempotent_and_guards_use() -> None:
    w = World()
    w.add_floor()
    w.close()
    w.close()
    assert w.closed
    with pytest.raises(RuntimeError):
        w.step()


def test_world__bodies_are_addressed_by_name() -> None:
    with World() as w:
        w.add_box("crate", [0.2, 0.2, 0.2], [1.0, 2.0, 0.2])
        w.add_robot("r", 3.0, 4.0, 0.5, RobotBodySpec())
        assert w.has("crate") and w.kind_of(w.body("r")) == "robot"
        assert w.names("static") == ["crate"]
        np.testing.assert_allclose(w.robot_state("r")[:3], [3.0, 4.0, 0.5])
        with pytest.raises(ValueError):
            w.add_box("crate", [0.1] * 3, [0, 0, 0])
        w.remove("crate")
        assert not w.has("crate")


def test_world__merge_rectangles_covers_mask_exactly() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((9, 13)) < 0.5
    cover = np.zeros_like(mask, dtype=int)
    for r0, c0, r1, c1 in merge_rectangles(mask):
        cover[r0:r1, c0:c1] += 1
    np.testing.assert_array_equal(cover, mask.astype(int))


def test_world__several_worlds_do_not_interfere() -> None:
    cmds = [TwistCmd(1.0, 0.3), TwistCmd(0.5, -0.2)]
    alone = WarehouseSim(quiet(2), seed=3)
    for _ in range(30):
        alone.step(cmds)
    ref = alone.ground_truth()
    alone.close()
    a, b = WarehouseSim(quiet(2), seed=3), WarehouseSim(quiet(2), seed=4)
    assert a.world.client != b.world.client
    for _ in range(30):
        a.step(cmds)
        b.step([TwistCmd(-1.0, 1.0)] * 2)
    np.testing.assert_array_equal(a.ground_truth(), ref)
    a.close()
    b.close()
    b.close()


def test_world__rays_starting_inside_a_body_ignore_it() -> None:
    """The lidar relies on it: rays from the robot centre never hit the robot itself."""
    rng = np.random.default_rng(0)
    with World() as w:
        w.add_floor()
        poses = [(3.0 + 2 * k, 3.0, float(rng.uniform(-np.pi, np.pi))) for k in range(8)]
        for k, (x, y, yaw) in enumerate(poses):
            w.add_robot(f"r{k}", x, y, yaw, RobotBodySpec())
        w.step()
        ang = np.linspace(-np.pi, np.pi, 90, endpoint=False)
        for k, (x, y, yaw) in enumerate(poses):
            for start in (0.0, 0.15, 0.29):  # centre .. just inside the hull (half side 0.3)
                for h in (0.02, 0.2, 0.29):
                    org = np.stack(
                        [x + start * np.cos(ang), y + start * np.sin(ang), np.full(90, h)], -1
                    )
                    end = np.stack([x + 0.9 * np.cos(ang), y + 0.9 * np.sin(ang), np.full(90, h)], -1)
                    hit, _ = w.ray_batch(org, end)
                    assert not np.any(hit == w.body(f"r{k}"))
        hit, frac = w.ray_batch(np.array([[0.0, 3.0, 0.2]]), np.array([[3.0, 3.0, 0.2]]))
        assert hit[0] == w.body("r0") and frac[0] < 0.95  # from outside it is seen


def test_world__contacts_of_the_whole_world_in_one_query() -> None:
    with World() as w:
        w.add_floor()
        w.add_box("crate", [0.2, 0.2, 0.2], [1.0, 2.0, 0.2], mass=1.0, kind="load")
        w.add_robot("r", 3.0, 2.0, 0.0, RobotBodySpec())
        w.add_box("wall", [0.1, 1.0, 0.5], [3.41, 2.0, 0.5])  # 1 cm from the robot's front
        w.step(5)
        c = w.contacts()
        pairs = {tuple(sorted((int(a), int(b)))) for a, b in zip(c.body_a, c.body_b)}
        floor, crate = w.body("floor"), w.body("crate")
        assert pairs == {tuple(sorted((floor, crate)))}  # robot floats; 1 cm is no contact
        assert c.pos_a.shape == (len(c), 3) and np.all(c.distance <= 1e-3)
        w.drive("r", 0.3, 0.0, 0.0)
        w.step(60)
        c = w.contacts()
        r, wall = w.body("r"), w.body("wall")
        rows = ((c.body_a == r) & (c.body_b == wall)) | ((c.body_a == wall) & (c.body_b == r))
        assert rows.any()
        on_robot = np.where((c.body_a == r)[:, None], c.pos_a, c.pos_b)[rows]
        assert np.allclose(on_robot[:, 0], 3.31, atol=0.01)  # the robot's front face


# ---- drive ----------------------------------------------------------------------------------


def test_drive__limit_twist_respects_wheel_speed() -> None:
    v, w = limit_twist(np.array([3.0, 1.5, 0.0]), np.array([0.0, 2.0, 10.0]), SimConfig().robot)
    rc = SimConfig().robot
    assert np.all(np.abs(v) + 0.5 * rc.track_width * np.abs(w) <= rc.max_speed + 1e-12)
    assert np.all(np.abs(w) <= rc.max_yaw_rate)
    assert v[1] / w[1] == pytest.approx(1.5 / 2.0)  # curvature kept


def test_drive__acceleration_is_bounded() -> None:
    d = DiffDrive(SimConfig().robot, 1, 0.05)
    v, _ = d.update(np.array([1.5]), np.array([0.0]))
    assert v[0] == pytest.approx(0.05)


def test_robot__speed_and_acceleration_stay_within_limits() -> None:
    sim = WarehouseSim(quiet(1), seed=0, start_poses=np.array([[2.0, 3.0, 0.0]]))  # open south band
    rc = sim.cfg.robot
    vel = [sim.velocities()[0]]
    for k in range(170):
        cmd = (
            TwistCmd(5.0, 0.0)
            if k < 60
            else TwistCmd(-5.0, 0.0)
            if k < 120
            else TwistCmd(0.0, 10.0)
        )
        sim.step([cmd])
        vel.append(sim.velocities()[0])
    vel = np.array(vel)
    assert np.abs(vel[:, 0]).max() <= rc.max_speed + 1e-3
    assert np.abs(vel[:, 0]).max() >= rc.max_speed - 1e-2  # reached top speed
    assert np.abs(vel[:, 2]).max() <= rc.max_yaw_rate + 1e-3
    acc = np.abs(np.diff(vel[:, 0])) / sim.dt
    yacc = np.abs(np.diff(vel[:, 2])) / sim.dt
    assert acc.max() <= rc.max_accel * 1.05 + 0.05
    assert yacc.max() <= rc.max_yaw_accel * 1.05 + 0.05
    assert np.abs(vel[:, 1]).max() < 0.05  # no side slip in free driving
    assert np.abs(vel[:, 2]).max() >= rc.max_yaw_rate - 1e-2
    assert sim.collisions["robot_static"] == 0
    sim.close()


def test_robot__proportional_controller_reaches_goal_cell() -> None:
    sim = WarehouseSim(quiet(1), seed=0)
    start = tuple(int(v) for v in sim.robot_cells()[0])
    path = bfs_path(sim.layout, start, (1, 5))
    ticks = drive_cells(sim, 0, path)
    assert ticks < 3000
    assert tuple(sim.robot_cells()[0]) == (1, 5)
    assert sim.collisions["robot_static"] == 0
    assert sim.kpis().distance_m[0] >= (len(path) - 1) * 0.9
    sim.close()


def test_robot__wall_at_max_speed_is_a_counted_collision_without_tunnelling() -> None:
    sim = WarehouseSim(quiet(1), seed=0, start_poses=np.array([[1.5, ROW12_Y, 0.0]]))
    wall_x = 19.0  # east wall face
    half = sim.cfg.robot.size / 2
    xs, vmax = [], 0.0
    for _ in range(300):
        sim.step([TwistCmd(1.5, 0.0)])
        xs.append(sim.ground_truth()[0, 0])
        vmax = max(vmax, sim.velocities()[0, 0])
    assert vmax == pytest.approx(1.5, abs=0.01)
    assert max(xs) <= wall_x - half + 0.01
    assert xs[-1] >= wall_x - half - 0.02  # pressed against the wall
    assert sim.collisions["robot_static"] == 1  # one onset, not one per tick
    sim.close()


def test_robot__robot_robot_collision_is_counted_once() -> None:
    poses = np.array([[5.5, ROW12_Y, 0.0], [8.5, ROW12_Y, np.pi]])
    sim = WarehouseSim(quiet(2), seed=0, start_poses=poses)
    for _ in range(80):
        sim.step([TwistCmd(1.0, 0.0), TwistCmd(1.0, 0.0)])
    gt = sim.ground_truth()
    assert gt[1, 0] - gt[0, 0] >= sim.cfg.robot.size - 0.01  # no interpenetration
    assert sim.collisions["robot_robot"] == 1
    assert sim.collision_log[0][2] == "robot_robot"
    sim.close()


def test_robot__broken_contract_inputs_raise() -> None:
    sim = WarehouseSim(quiet(2), seed=0)
    with pytest.raises(ValueError, match="cmds"):
        sim.step([TwistCmd(0.0, 0.0)])
    with pytest.raises(ValueError, match="robot_id"):
        sim.pick(5)
    with pytest.raises(ValueError, match="start_poses"):
        WarehouseSim(quiet(2), seed=0, start_poses=np.zeros((1, 3)))
    sim.close()


# ---- determinism and lifecycle ---------------------------------------------------------------


def _rollout(seed: int, n: int = 40) -> tuple[list, np.ndarray]:
    cfg = SimConfig(n_robots=3)
    sim = WarehouseSim(cfg, seed=seed)
    frames = sim.reset()
    out = [frames]
    for k in range(n):
        out.append(
            sim.step(
                [TwistCmd(1.0, 0.2 * np.sin(0.1 * k)), TwistCmd(0.5, 0.5), TwistCmd(-0.3, 0.0)]
            )
        )
    gt = sim.ground_truth()
    sim.close()
    return out, gt


def _flat(frames: list) -> list:
    vals = []
    for fr in frames:
        for f in fr:
            vals += [
                f.stamp,
                f.odom.v,
                f.odom.w,
                f.imu.gyro_z,
                f.imu.accel,
                f.lidar.ranges,
                f.uwb.ranges if f.uwb else None,
                f.fiducial,
                f.load,
            ]
    return vals


def test_sim__same_seed_same_commands_are_bit_identical() -> None:
    (fa, ga), (fb, gb) = _rollout(11), _rollout(11)
    np.testing.assert_array_equal(ga, gb)
    for x, y in zip(_flat(fa), _flat(fb)):
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y)
        else:
            assert x == y
    fc, _ = _rollout(12, n=2)
    assert not np.array_equal(fa[1][0].lidar.ranges, fc[1][0].lidar.ranges, equal_nan=True)


def test_sim__reset_reproduces_episode_and_next_episode_differs() -> None:
    sim = WarehouseSim(SimConfig(n_robots=1), seed=5)
    f0 = sim.reset()[0]
    sim.step([TwistCmd(1.0, 0.0)])
    f0b = sim.reset(seed=5)[0]
    np.testing.assert_array_equal(f0.lidar.ranges, f0b.lidar.ranges)
    assert sim.time == 0.0
    f1 = sim.reset()[0]
    assert not np.array_equal(f0.lidar.ranges, f1.lidar.ranges, equal_nan=True)
    sim.close()


def test_sim__double_close_and_context_manager() -> None:
    with WarehouseSim(quiet(1), seed=0) as sim:
        sim.step([TwistCmd(0.0, 0.0)])
    sim.close()
    assert sim.world.closed


def test_sim__render_state_and_render() -> None:
    sim = WarehouseSim(SimConfig(n_robots=2), seed=0)
    sim.announce_route(0, [(12, 4), (12, 5), (12, 6)])
    st = sim.render_state()
    assert st.poses.shape == (2, 3) and st.carrying.shape == (2,)
    assert st.load_cells.shape == (sim.cfg.orders.n_initial, 2)
    assert len(st.routes) == 2 and st.routes[0].shape == (3, 2)
    img = sim.render(width_px=200)
    assert img.dtype == np.uint8 and img.shape[1] == 200 and img.shape[2] == 3
    sim.close()


@pytest.mark.parametrize("bad", [{"n_robots": 0}, {"duration_s": 0.0}])
def test_sim__invalid_config_names_the_field(bad: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        WarehouseSim(SimConfig(**bad), seed=0)


def test_sim__sensors_config_defaults_match_issue() -> None:
    s = SensorsConfig()
    assert (s.lidar.n_beams, s.lidar.range_max, s.lidar.sigma) == (180, 10.0, 0.01)
    assert s.uwb.sigma == 0.07 and s.uwb.nlos_prob == 0.05 and s.uwb.nlos_bias == (0.3, 1.0)
    assert s.odom.sigma_rel == 0.02 and s.odom.scale_error == 0.01
    assert s.imu.gyro_sigma == 0.005 and s.imu.gyro_bias_walk == 1e-4
    assert not s.camera.enabled


def test_drive__ramped_speed_is_what_the_drive_does_after_a_cut_command() -> None:
    """A controller that feeds the last command back as the current speed believes the robot
    stopped when the drive is still braking; ``ramped_speed`` follows the drive exactly."""
    from sim.follower import ramped_speed

    rc = SimConfig().robot
    d = DiffDrive(rc, 1, 0.05)
    est = 0.0
    cmds = [1.5] * 40 + [0.6] * 3 + [0.0] * 10  # full speed, a warning cap, a stop
    for c in cmds:
        v, _ = d.update(np.array([c]), np.array([0.0]))
        est = ramped_speed(est, c, rc.max_accel, 0.05)
        assert est == pytest.approx(v[0])
    assert ramped_speed(1.4, 0.0, 1.0, 0.05) == pytest.approx(1.35)  # brakes, does not jump
