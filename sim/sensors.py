"""Simulated sensors of N robots, vectorised across robots.

Every reading is computed from ground truth (joint states of the physics world) plus
seeded noise; each purpose has its own ``np.random.Generator`` spawned from the sim
seed. A sensor that is disabled in its config or failed by a fault window is ``None``
in the :class:`~sim.types.SensorFrame`.

Inputs per tick are a :class:`TruthTick` (all arrays ``[N, ...]``, including the pressed
bumper sectors the sim derives from the tick's physics contacts); the only physics
queries are the lidar's one batched ray cast per tick (all robots) and, when enabled,
the camera renders (through :class:`sim.world.World`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.config import RobotConfig, SensorsConfig
from sim.layout import Layout
from sim.robot import twist_to_wheels, wheels_to_twist
from sim.types import (
    BumperReading,
    CameraImage,
    FiducialReading,
    ImuReading,
    LidarScan,
    OdomReading,
    SensorFrame,
    UwbReading,
    wrap_angle,
)
from sim.world import World

SENSOR_KINDS: tuple[str, ...] = (
    "odom", "imu", "lidar", "camera", "uwb", "fiducial", "load", "bumper"
)
_STREAMS: tuple[str, ...] = ("odom", "imu", "lidar", "camera", "uwb", "fiducial")


@dataclass(frozen=True)
class TruthTick:
    """Ground truth handed to the sensors at the end of a control tick.

    Attributes:
        t: sim time (s); tick: control tick index.
        state: [N, 6] (x, y, yaw, vx, vy, w) world pose (m, rad) and velocity (m/s, rad/s).
        prev_vel: [N, 2] world velocity (m/s) at the end of the previous tick.
        wheel_cmd: [N, 2] commanded (left, right) wheel ground speeds (m/s).
        carrying: [N] bool.
        failed: sensor kind -> [N] bool outage mask.
        slip: [N] extra wheel spin fraction from slip bursts (0 = none).
        bumper: [N, 4] bool pressed bumper sectors (front, left, back, right) from the
            physics contacts; None = no contact anywhere.
    """

    t: float
    tick: int
    state: np.ndarray
    prev_vel: np.ndarray
    wheel_cmd: np.ndarray
    carrying: np.ndarray
    failed: dict[str, np.ndarray]
    slip: np.ndarray
    bumper: np.ndarray | None = None


def beam_angles(n_beams: int, fov: float) -> np.ndarray:
    """[B] beam angles (rad), robot frame; a full circle has no duplicated end beam."""
    if fov >= 2 * np.pi - 1e-9:
        return -np.pi + 2 * np.pi * np.arange(n_beams) / n_beams
    return np.linspace(-fov / 2, fov / 2, n_beams)


class Sensors:
    """All sensors of all robots.

    Args:
        cfg: sensor configs.
        layout: floor plan (fiducials, UWB anchors).
        robot: robot config (footprint, wheel geometry).
        n_robots: N.
        dt: control period (s).
    """

    def __init__(
        self, cfg: SensorsConfig, *, layout: Layout, robot: RobotConfig, n_robots: int, dt: float
    ) -> None:
        self.cfg, self.layout, self.robot, self.n, self.dt = cfg, layout, robot, n_robots, dt
        lc = cfg.lidar
        self.angles = beam_angles(lc.n_beams, lc.fov)  # [B]
        self.angles.setflags(write=False)
        # Rays start at the lidar (the robot centre), inside the robot's own body: Bullet's
        # ray test ignores a convex body that contains the ray's start, so the robot never
        # sees itself (tests/sim/test_sensors.py), while anything touching or slightly
        # penetrating the hull is still seen (no near-field blind zone at the hull).
        self.rng: dict[str, np.random.Generator] = {}
        self.reset(np.random.SeedSequence(0))

    def reset(self, seed_seq: np.random.SeedSequence) -> None:
        """Re-seed the noise streams and draw per-robot biases."""
        kids = seed_seq.spawn(len(_STREAMS))
        self.rng = {k: np.random.default_rng(s) for k, s in zip(_STREAMS, kids)}
        oc, ic = self.cfg.odom, self.cfg.imu
        self.wheel_scale = 1.0 + self.rng["odom"].normal(0.0, oc.scale_error, (self.n, 2))  # [N, 2]
        self.gyro_bias = self.rng["imu"].normal(0.0, ic.gyro_bias_init, self.n)  # [N] rad/s
        self._slip_left = np.zeros(self.n)  # [N] s of background slip left
        self._slip_gain = np.zeros(self.n)

    # ---- individual sensors (vectorised) -------------------------------------------
    def odometry(self, tt: TruthTick) -> np.ndarray:
        """[N, 2] (v m/s, w rad/s) from noisy wheel encoders."""
        oc, rng = self.cfg.odom, self.rng["odom"]
        yaw = tt.state[:, 2]
        v_true = tt.state[:, 3] * np.cos(yaw) + tt.state[:, 4] * np.sin(yaw)
        wheels = twist_to_wheels(v_true, tt.state[:, 5], self.robot.track_width)  # [N, 2]
        if oc.spin_when_blocked:
            wheels = np.where(np.abs(tt.wheel_cmd - wheels) > 0.1, tt.wheel_cmd, wheels)
        slip = tt.slip + self._background_slip()
        wheels = wheels * (1.0 + slip[:, None]) + 0.2 * slip[:, None] * np.sign(wheels)
        moving = np.abs(wheels) > 1e-4
        noise = wheels * rng.normal(0.0, oc.sigma_rel, wheels.shape) + rng.normal(
            0.0, oc.sigma_abs, wheels.shape
        )
        meas = (wheels + noise * moving) * self.wheel_scale
        v, w = wheels_to_twist(meas, self.robot.track_width)
        return np.stack([v, w], axis=-1)

    def _background_slip(self) -> np.ndarray:
        oc, rng = self.cfg.odom, self.rng["odom"]
        if oc.slip_rate_hz <= 0:
            return np.zeros(self.n)
        start = (self._slip_left <= 0) & (rng.random(self.n) < oc.slip_rate_hz * self.dt)
        self._slip_left = np.where(
            start, rng.uniform(*oc.slip_duration_s, self.n), self._slip_left - self.dt
        )
        self._slip_gain = np.where(start, rng.uniform(*oc.slip_gain, self.n), self._slip_gain)
        return np.where(self._slip_left > 0, self._slip_gain, 0.0)

    def imu(self, tt: TruthTick) -> tuple[np.ndarray, np.ndarray]:
        """(gyro_z [N] rad/s, accel [N, 2] m/s^2 body frame forward/left)."""
        ic, rng = self.cfg.imu, self.rng["imu"]
        self.gyro_bias = self.gyro_bias + rng.normal(
            0.0, ic.gyro_bias_walk * np.sqrt(self.dt), self.n
        )
        gyro = tt.state[:, 5] + self.gyro_bias + rng.normal(0.0, ic.gyro_sigma, self.n)
        a = (tt.state[:, 3:5] - tt.prev_vel) / self.dt  # [N, 2] world
        c, s = np.cos(tt.state[:, 2]), np.sin(tt.state[:, 2])
        body = np.stack([c * a[:, 0] + s * a[:, 1], -s * a[:, 0] + c * a[:, 1]], axis=-1)
        return gyro, body + rng.normal(0.0, ic.accel_sigma, body.shape)

    def lidar_rays(self, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ray segments of all beams of the given robots: (origins, ends) [N*B, 3].

        Rays start at the robot centre (inside its own body, which rays ignore)."""
        lc = self.cfg.lidar
        th = state[:, 2:3] + self.angles[None, :]  # [N, B]
        c, s = np.cos(th), np.sin(th)
        n, b = th.shape
        org = np.empty((n, b, 3))
        end = np.empty((n, b, 3))
        org[..., 0] = state[:, 0:1]
        org[..., 1] = state[:, 1:2]
        end[..., 0] = state[:, 0:1] + lc.range_max * c
        end[..., 1] = state[:, 1:2] + lc.range_max * s
        org[..., 2] = end[..., 2] = lc.mount_height
        return org.reshape(-1, 3), end.reshape(-1, 3)

    def lidar(self, world: World, state: np.ndarray) -> np.ndarray:
        """[N, B] ranges (m) from the centre; inf = no return, nan = dropout."""
        lc, rng = self.cfg.lidar, self.rng["lidar"]
        n, b = len(state), len(self.angles)
        if n == 0:
            return np.empty((0, b))
        org, end = self.lidar_rays(state)
        hit, frac = world.ray_batch(org, end)
        r = frac.reshape(n, b) * lc.range_max
        r = r + rng.normal(0.0, lc.sigma, r.shape)
        r = np.where(hit.reshape(n, b) < 0, np.inf, np.maximum(r, 0.0))
        return np.where(rng.random(r.shape) < lc.dropout_prob, np.nan, r)

    def uwb(self, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(in-range mask [N, K], ranges [N, K] m) to all anchors."""
        uc, rng = self.cfg.uwb, self.rng["uwb"]
        anc = self.layout.uwb_anchors  # [K, 3]
        d = np.sqrt(
            (state[:, None, 0] - anc[None, :, 0]) ** 2
            + (state[:, None, 1] - anc[None, :, 1]) ** 2
            + (uc.tag_height - anc[None, :, 2]) ** 2
        )
        nlos = rng.random(d.shape) < uc.nlos_prob
        bias = rng.uniform(uc.nlos_bias[0], uc.nlos_bias[1], d.shape)
        r = d + rng.normal(0.0, uc.sigma, d.shape) + nlos * bias
        return d <= uc.max_range, r

    def fiducial(self, state: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(marker id [N] or -1, (dx, dy) [N, 2] m, yaw [N] rad) of the code under each robot."""
        fc, rng = self.cfg.fiducial, self.rng["fiducial"]
        fid = self.layout.fiducials  # [M, 2]
        noise = rng.normal(0.0, 1.0, (self.n, 3))
        if len(fid) == 0:
            return np.full(len(state), -1), np.zeros((len(state), 2)), state[:, 2].copy()
        diff = state[:, None, :2] - fid[None, :, :]  # [N, M, 2]
        d2 = (diff**2).sum(-1)
        k = d2.argmin(axis=1)
        rows = np.arange(len(state))
        ids = np.where(d2[rows, k] <= fc.read_radius**2, k, -1)
        dxy = diff[rows, k] + fc.sigma * noise[:, :2]
        yaw = wrap_angle(state[:, 2] + fc.yaw_sigma * noise[:, 2])
        return ids, dxy, yaw

    def camera(self, world: World, pose: np.ndarray) -> CameraImage:
        """Forward RGB-D image of one robot at pose (x, y, yaw)."""
        cc = self.cfg.camera
        c, s = np.cos(pose[2]), np.sin(pose[2])
        f = self.robot.size / 2 + 0.01
        eye = [pose[0] + f * c, pose[1] + f * s, cc.mount_height]
        tgt = [eye[0] + c, eye[1] + s, cc.mount_height]
        rgb, depth = world.camera(
            eye, tgt, width=cc.width, height=cc.height, fov_deg=cc.fov_deg, near=cc.near, far=cc.far
        )
        if cc.depth_sigma > 0:
            depth = depth + self.rng["camera"].normal(0.0, cc.depth_sigma, depth.shape).astype(
                np.float32
            )
        return CameraImage(rgb=rgb, depth=depth)

    # ---- all together ----------------------------------------------------------------
    def read(self, world: World, tt: TruthTick) -> list[SensorFrame]:
        """One :class:`SensorFrame` per robot for this tick."""
        c = self.cfg
        on = {k: ~tt.failed.get(k, np.zeros(self.n, bool)) for k in SENSOR_KINDS}
        odom = self.odometry(tt) if c.odom.enabled else None
        gyro, acc = self.imu(tt) if c.imu.enabled else (None, None)
        ranges = None
        if c.lidar.enabled and on["lidar"].any():
            ranges = np.full((self.n, len(self.angles)), np.nan)
            ranges[on["lidar"]] = self.lidar(world, tt.state[on["lidar"]])
        uwb = self.uwb(tt.state) if c.uwb.enabled else None
        fid = self.fiducial(tt.state) if c.fiducial.enabled else None
        cam_tick = c.camera.enabled and tt.tick % c.camera.every_k == 0
        bump = None
        if c.bumper.enabled:
            bump = np.zeros((self.n, 4), bool) if tt.bumper is None else np.asarray(tt.bumper, bool)
        frames = []
        for i in range(self.n):
            frames.append(
                SensorFrame(
                    stamp=tt.t,
                    robot_id=i,
                    odom=OdomReading(float(odom[i, 0]), float(odom[i, 1]), self.dt)
                    if odom is not None and on["odom"][i]
                    else None,
                    imu=ImuReading(float(gyro[i]), acc[i])
                    if gyro is not None and on["imu"][i]
                    else None,
                    lidar=LidarScan(self.angles, ranges[i], c.lidar.range_max)
                    if ranges is not None and on["lidar"][i]
                    else None,
                    camera=self.camera(world, tt.state[i, :3])
                    if cam_tick and on["camera"][i]
                    else None,
                    uwb=self._uwb_reading(uwb, i) if uwb is not None and on["uwb"][i] else None,
                    fiducial=FiducialReading(
                        int(fid[0][i]), float(fid[1][i, 0]), float(fid[1][i, 1]), float(fid[2][i])
                    )
                    if fid is not None and fid[0][i] >= 0 and on["fiducial"][i]
                    else None,
                    load=bool(tt.carrying[i]) if c.load.enabled and on["load"][i] else None,
                    bumper=self._bumper_reading(bump[i])
                    if bump is not None and on["bumper"][i]
                    else None,
                )
            )
        return frames

    @staticmethod
    def _bumper_reading(sectors: np.ndarray) -> BumperReading:
        sec = np.array(sectors, dtype=bool)  # own copy, read-only
        sec.setflags(write=False)
        return BumperReading(contact=bool(sec.any()), sectors=sec)

    @staticmethod
    def _uwb_reading(uwb: tuple[np.ndarray, np.ndarray], i: int) -> UwbReading | None:
        ok, r = uwb[0][i], uwb[1][i]
        if not ok.any():
            return None
        return UwbReading(anchor_ids=np.flatnonzero(ok).astype(np.int64), ranges=r[ok])
