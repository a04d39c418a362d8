"""Sensor models: noise statistics against their configs, geometry, failures -> None."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from sim.config import (
    CameraConfig,
    FaultsConfig,
    FiducialConfig,
    ImuConfig,
    LidarConfig,
    OdomConfig,
    OrdersConfig,
    RobotConfig,
    SensorsConfig,
    SimConfig,
    UwbConfig,
)
from sim.layout import LayoutConfig, generate_layout
from sim.sensors import SENSOR_KINDS, Sensors, TruthTick, beam_angles
from sim.types import TwistCmd
from sim.warehouse import WarehouseSim

LAYOUT = generate_layout(LayoutConfig())
DT = 0.05


def make(n: int, seed: int = 0, **cfg) -> Sensors:
    s = Sensors(SensorsConfig(**cfg), layout=LAYOUT, robot=RobotConfig(), n_robots=n, dt=DT)
    s.reset(np.random.SeedSequence(seed))
    return s


def truth(
    state: np.ndarray,
    *,
    t: float = 0.0,
    tick: int = 0,
    prev_vel=None,
    failed=None,
    slip=None,
    wheel_cmd=None,
) -> TruthTick:
    n = len(state)
    return TruthTick(
        t=t,
        tick=tick,
        state=state,
        prev_vel=np.zeros((n, 2)) if prev_vel is None else prev_vel,
        wheel_cmd=np.zeros((n, 2)) if wheel_cmd is None else wheel_cmd,
        carrying=np.zeros(n, bool),
        failed=failed or {},
        slip=np.zeros(n) if slip is None else slip,
    )


def still(n: int, xy=(5.5, 3.0)) -> np.ndarray:
    st = np.zeros((n, 6))
    st[:, 0], st[:, 1] = xy
    return st


# ---- UWB --------------------------------------------------------------------------------------


def test_uwb__residual_std_matches_sigma_without_nlos() -> None:
    s = make(2000, uwb=UwbConfig(nlos_prob=0.0))
    st = still(2000)
    ok, r = s.uwb(st)
    anc = LAYOUT.uwb_anchors
    d = np.sqrt(((st[:1, :2] - anc[:, :2]) ** 2).sum(1) + (s.cfg.uwb.tag_height - anc[:, 2]) ** 2)
    res = r - d[None, :]
    assert ok.all()
    assert abs(res.std() - 0.07) <= 0.15 * 0.07
    assert abs(res.mean()) < 0.01


def test_uwb__nlos_outliers_are_positive_with_configured_rate() -> None:
    s = make(4000, uwb=UwbConfig(sigma=0.01, nlos_prob=0.05, nlos_bias=(0.3, 1.0)))
    st = still(4000)
    _, r = s.uwb(st)
    _, r0 = make(4000, uwb=UwbConfig(sigma=0.0, nlos_prob=0.0)).uwb(st)
    res = r - r0
    out = res > 0.2
    assert out.mean() == pytest.approx(0.05, abs=0.01)
    assert res[out].min() >= 0.25 and res[out].max() <= 1.05
    assert (res < -0.1).sum() == 0


# ---- IMU / odometry ------------------------------------------------------------------------------


def test_imu__gyro_bias_random_walk_grows_like_sqrt_time() -> None:
    n, steps = 2000, 400
    s = make(n, imu=ImuConfig(gyro_bias_init=0.0))
    st = still(n)
    for k in range(steps):
        s.imu(truth(st, tick=k))
    expected = 1e-4 * np.sqrt(steps * DT)
    assert abs(s.gyro_bias.std() - expected) <= 0.15 * expected


def test_imu__gyro_noise_and_accel_match_truth() -> None:
    n = 3000
    s = make(n, imu=ImuConfig(gyro_bias_init=0.0, gyro_bias_walk=0.0, accel_sigma=0.05))
    st = still(n)
    st[:, 2] = np.pi / 2  # facing +y
    st[:, 5] = 0.3
    st[:, 4] = 0.1  # +y velocity now, from rest: forward accel 2 m/s^2
    gyro, acc = s.imu(truth(st))
    assert abs((gyro - 0.3).std() - 0.005) <= 0.15 * 0.005
    assert acc[:, 0].mean() == pytest.approx(2.0, abs=0.01)
    assert abs(acc[:, 1].mean()) < 0.01
    assert abs(acc[:, 0].std() - 0.05) <= 0.15 * 0.05


def test_odom__relative_noise_and_scale_error_match_config() -> None:
    n = 4000
    s = make(n, odom=OdomConfig(sigma_rel=0.02, sigma_abs=0.0, scale_error=0.01))
    st = still(n)
    st[:, 3] = 1.0  # 1 m/s along +x, yaw 0
    vw = s.odometry(truth(st, wheel_cmd=np.ones((n, 2))))
    # v = mean of two wheels, each (1 + e_scale)(1 + e_noise): var = (0.01^2 + 0.02^2) / 2
    expected = np.sqrt((0.01**2 + 0.02**2) / 2)
    assert abs(vw[:, 0].std() - expected) <= 0.15 * expected
    assert vw[:, 0].mean() == pytest.approx(1.0, abs=0.003)
    assert abs(s.wheel_scale.std() - 0.01) <= 0.15 * 0.01


def test_odom__standing_still_reads_zero_and_blocked_wheels_spin() -> None:
    s = make(3)
    st = still(3)
    vw = s.odometry(truth(st))
    np.testing.assert_array_equal(vw, 0.0)
    cmd = np.array([[1.0, 1.0], [0.0, 0.0], [1.0, 1.0]])
    st[2, 3] = 1.0  # robot 2 moves, robot 0 pushes a wall
    vw = s.odometry(truth(st, wheel_cmd=cmd))
    assert vw[0, 0] == pytest.approx(1.0, abs=0.1) and vw[1, 0] == 0.0


def test_odom__slip_burst_overreports_speed() -> None:
    s = make(1000, odom=OdomConfig(sigma_rel=0.0, sigma_abs=0.0, scale_error=0.0))
    st = still(1000)
    st[:, 3] = 0.5
    vw = s.odometry(truth(st, slip=np.full(1000, 0.4), wheel_cmd=np.full((1000, 2), 0.5)))
    assert np.all(vw[:, 0] > 0.5 * 1.3)


# ---- fiducials ----------------------------------------------------------------------------------


def test_fiducial__reads_only_near_a_code_with_configured_noise() -> None:
    n = 2000
    s = make(n, fiducial=FiducialConfig(sigma=0.003, yaw_sigma=np.deg2rad(0.2)))
    st = still(n, xy=LAYOUT.fiducials[10] + np.array([0.04, -0.02]))
    st[:, 2] = 0.7
    ids, dxy, yaw = s.fiducial(st)
    assert np.all(ids == 10)
    assert dxy.mean(0) == pytest.approx([0.04, -0.02], abs=5e-4)
    assert abs(dxy[:, 0].std() - 0.003) <= 0.15 * 0.003
    assert abs((yaw - 0.7).std() - np.deg2rad(0.2)) <= 0.15 * np.deg2rad(0.2)
    far = still(1, xy=LAYOUT.fiducials[10] + np.array([0.3, 0.3]))
    assert make(1).fiducial(far)[0][0] == -1


# ---- lidar (in the physics world) ------------------------------------------------------------------


def _lidar_sim(y: float = 3.0, **lidar) -> WarehouseSim:
    cfg = SimConfig(
        n_robots=1,
        orders=OrdersConfig(rate_per_min=0.0, n_initial=0),
        sensors=SensorsConfig(lidar=LidarConfig(**lidar)),
    )
    return WarehouseSim(cfg, seed=1, start_poses=np.array([[1.5, y, 0.0]]))


def test_lidar__geometry_excludes_own_body_and_sees_walls() -> None:
    sim = _lidar_sim(sigma=0.0, dropout_prob=0.0)
    scan = sim.reset()[0].lidar
    assert scan.angles.shape == (180,) and scan.ranges.shape == (180,)
    back = np.argmin(np.abs(np.abs(scan.angles) - np.pi))  # beam pointing west, at the wall x = 1.0
    assert scan.ranges[back] == pytest.approx(0.5, abs=1e-3)
    south = np.argmin(np.abs(scan.angles + np.pi / 2))  # south wall face y = 1.0
    assert scan.ranges[south] == pytest.approx(2.0, abs=1e-3)
    assert np.nanmin(scan.ranges) > sim.cfg.robot.size / 2
    sim.close()


def test_lidar__sees_other_robots() -> None:
    cfg = SimConfig(
        n_robots=2,
        orders=OrdersConfig(rate_per_min=0.0, n_initial=0),
        sensors=SensorsConfig(lidar=LidarConfig(sigma=0.0, dropout_prob=0.0)),
    )
    sim = WarehouseSim(cfg, seed=0, start_poses=np.array([[3.0, 3.0, 0.0], [5.0, 3.0, 0.7]]))
    r = sim.reset()[0].lidar.ranges
    ahead = np.argmin(np.abs(sim.reset()[0].lidar.angles))
    assert r[ahead] == pytest.approx(2.0 - 0.3 / np.cos(0.7), abs=0.02)  # rotated square's edge
    sim.close()


def test_lidar__sees_what_touches_the_hull() -> None:
    """No blind zone at the body: a person pressed against the robot's left side is seen."""
    cfg = SimConfig(
        n_robots=1,
        orders=OrdersConfig(rate_per_min=0.0, n_initial=0),
        sensors=SensorsConfig(lidar=LidarConfig(sigma=0.0, dropout_prob=0.0)),
        faults=FaultsConfig(enabled=True, n_people=1),
    )
    sim = WarehouseSim(cfg, seed=0, start_poses=np.array([[2.0, 3.0, 0.0]]))
    sim._people._wait[0] = 1e9  # standing still, touching the robot's left face (y = 3.3)
    sim._people._paths[0] = []
    for gap in (0.0, -0.01):  # touching, then pressed 1 cm into the hull
        sim._people.xy[0] = (2.0, 3.0 + 0.3 + 0.25 + gap)
        f = sim.step([TwistCmd(0.0, 0.0)])[0]
        left = np.argmin(np.abs(f.lidar.angles - np.pi / 2))
        assert f.lidar.ranges[left] == pytest.approx(0.3 + gap, abs=0.02)
    sim.close()


def test_lidar__noise_dropout_and_no_return() -> None:
    ref, noisy = _lidar_sim(sigma=0.0, dropout_prob=0.0), _lidar_sim(sigma=0.01, dropout_prob=0.05)
    res, nan = [], []
    for _ in range(20):
        a = ref.step([TwistCmd(0.0, 0.0)])[0].lidar.ranges
        b = noisy.step([TwistCmd(0.0, 0.0)])[0].lidar.ranges
        ok = np.isfinite(a) & np.isfinite(b)
        res.append(b[ok] - a[ok])
        nan.append(np.isnan(b).mean())
    res = np.concatenate(res)
    assert abs(res.std() - 0.01) <= 0.15 * 0.01 and abs(res.mean()) < 0.002
    assert np.mean(nan) == pytest.approx(0.05, abs=0.015)
    ref.close()
    noisy.close()
    short = _lidar_sim(range_max=0.45, sigma=0.0, dropout_prob=0.0)
    r = short.reset()[0].lidar.ranges
    assert np.isinf(r).sum() > 100 and np.all(np.isinf(r) | (r <= 0.45))
    short.close()


def test_lidar__beam_angles_cover_fov_without_duplicate() -> None:
    a = beam_angles(8, 2 * np.pi)
    assert a[0] == -np.pi and a[-1] < np.pi and np.allclose(np.diff(a), np.pi / 4)
    b = beam_angles(5, np.pi)
    assert b[0] == -np.pi / 2 and b[-1] == np.pi / 2


# ---- failures and camera ----------------------------------------------------------------------------


def test_sensors__failed_sensors_are_none() -> None:
    sim = _lidar_sim(y=3.5)  # on a floor code
    s = sim._sensors
    failed = {k: np.ones(1, bool) for k in SENSOR_KINDS}
    frame = s.read(sim.world, truth(sim._state, failed=failed))[0]
    for k in SENSOR_KINDS:
        assert getattr(frame, k) is None, k
    frame = s.read(sim.world, truth(sim._state))[0]
    for k in ("odom", "imu", "lidar", "uwb", "fiducial", "load", "bumper"):
        assert getattr(frame, k) is not None, k
    assert frame.camera is None  # off by default
    sim.close()


def test_sensors__disabled_in_config_are_none() -> None:
    off = SensorsConfig(lidar=LidarConfig(enabled=False), uwb=UwbConfig(enabled=False))
    sim = WarehouseSim(SimConfig(n_robots=1, sensors=off), seed=0)
    f = sim.step([TwistCmd(0.0, 0.0)])[0]
    assert f.lidar is None and f.uwb is None and f.odom is not None
    sim.close()


def _bump_sim(poses, **sensors) -> WarehouseSim:
    cfg = SimConfig(
        n_robots=len(poses),
        orders=OrdersConfig(rate_per_min=0.0, n_initial=0),
        sensors=SensorsConfig(**sensors),
    )
    return WarehouseSim(cfg, seed=0, start_poses=np.array(poses, dtype=float))


def test_bumper__front_contact_with_a_wall() -> None:
    sim = _bump_sim([[18.4, 12.5, 0.0]])  # east wall face at x = 19.0, robot front at 18.7
    f = sim.step([TwistCmd(0.0, 0.0)])[0]
    assert f.bumper is not None and not f.bumper.contact and not f.bumper.sectors.any()
    for _ in range(40):
        f = sim.step([TwistCmd(0.5, 0.0)])[0]
    assert f.bumper.contact and f.bumper.sectors.tolist() == [True, False, False, False]
    assert not f.bumper.sectors.flags.writeable
    for _ in range(40):
        f = sim.step([TwistCmd(-0.3, 0.0)])[0]
    assert not f.bumper.contact
    assert sim.collisions["robot_static"] == 1
    sim.close()


def test_bumper__side_and_back_sectors_and_robot_robot_contact() -> None:
    # robot 1 drives south into robot 0's left side; robot 2 reverses into robot 0's back
    sim = _bump_sim([[5.5, 11.5, 0.0], [5.7, 12.6, -np.pi / 2], [4.6, 11.5, np.pi]])
    for _ in range(50):
        fr = sim.step([TwistCmd(0.0, 0.0), TwistCmd(0.4, 0.0), TwistCmd(-0.4, 0.0)])
    assert fr[0].bumper.sectors.tolist() == [False, True, True, False]  # left (r1), back (r2)
    assert fr[1].bumper.sectors.tolist() == [True, False, False, False]
    assert fr[2].bumper.sectors.tolist() == [False, False, True, False]
    assert sim.collisions["robot_robot"] == 2
    sim.close()


def test_bumper__disabled_or_failed_is_none() -> None:
    from sim.config import BumperConfig

    sim = _bump_sim([[5.5, 12.5, 0.0]], bumper=BumperConfig(enabled=False))
    assert sim.step([TwistCmd(0.0, 0.0)])[0].bumper is None
    sim.close()


def test_camera__rgbd_every_k_ticks() -> None:
    cam = SensorsConfig(camera=CameraConfig(enabled=True, every_k=2, width=32, height=24))
    sim = WarehouseSim(
        SimConfig(n_robots=1, sensors=cam), seed=0, start_poses=np.array([[1.5, 3.0, np.pi]])
    )
    f0 = sim.reset()[0].camera
    assert f0 is not None and f0.rgb.shape == (24, 32, 3) and f0.rgb.dtype == np.uint8
    assert f0.depth.shape == (24, 32) and f0.depth.dtype == np.float32
    assert np.nanmedian(f0.depth) == pytest.approx(
        0.5 - 0.31, abs=0.05
    )  # wall 0.19 m ahead of the lens
    assert sim.step([TwistCmd(0.0, 0.0)])[0].camera is None
    assert sim.step([TwistCmd(0.0, 0.0)])[0].camera is not None
    sim.close()


def test_sensors__noise_streams_depend_on_seed_only() -> None:
    a, b, c = make(3, seed=1), make(3, seed=1), make(3, seed=2)
    st = still(3)
    np.testing.assert_array_equal(a.uwb(st)[1], b.uwb(st)[1])
    assert not np.array_equal(a.uwb(st)[1], c.uwb(st)[1])
    assert replace(SensorsConfig()).lidar.n_beams == 180
