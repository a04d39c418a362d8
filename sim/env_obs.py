"""Observation encoding of the simulator envs: sensor modalities + grid task features.

One robot's observation is a flat ``dict[str, np.ndarray]`` (a ``gymnasium.spaces.Dict``).
Sensor keys exist only for sensors enabled in the ``SimConfig``; a sensor that is enabled
but absent this tick (fault, dropout, no fix) reads zeros with its mask at 0, never
garbage, so a fusion encoder can mask it out ("a failed camera and an imagined MCTS state
are the same case": the grid model simply has no sensor keys).

Sensor keys (float32 unless noted; robot frame, SI units):

=================  ==========  ==============================================================
key                shape       meaning
=================  ==========  ==============================================================
``lidar``          [B]         ranges (m) in beam order (angles from ``-fov/2`` counter-
                               clockwise); no return (``inf``) -> ``range_max``; invalid
                               beam (``nan``) or lidar absent -> 0
``lidar_mask``     [B]         1 = the beam is valid (a return or a clean no-return)
``uwb``            [K]         range (m) to anchor k (``Layout.uwb_anchors[k]``); 0 if none
``uwb_mask``       [K]         1 = anchor k was ranged this tick
``odom``           [2]         wheel odometry (v m/s, w rad/s), clipped to +-(5, 10)
``imu``            [3]         (gyro_z rad/s, accel forward m/s^2, accel left m/s^2), clipped
                               to +-(10, 50, 50)
``fiducial``       [3]         pose read from a floor code: marker (x, y) + offset (m), yaw (rad);
                               zeros when no code is under the robot
``load``           [1]         load sensor: 1 = carrying
``camera_rgb``     [H, W, 3]   uint8 RGB of the latest camera frame (only if enabled)
``camera_depth``   [H, W]      depth (m), ``inf`` -> ``far`` (only if enabled)
``sensor_mask``    [7]         presence of (odom, imu, lidar, camera, uwb, fiducial, load)
                               this step; 0 for disabled or failed sensors
=================  ==========  ==============================================================

The camera renders only every ``every_k`` ticks; the env keeps the latest image and
marks it present while it is at most ``every_k`` ticks old.

``perception.fusion.FusionEncoder`` wants raw ranges (``inf`` = no return, ``nan`` =
invalid); recover them with
``np.where(lidar_mask == 0, nan, np.where(lidar >= range_max, inf, lidar))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from sim.config import SensorsConfig
from sim.layout import Layout
from sim.types import CameraImage, SensorFrame

SENSOR_KINDS: tuple[str, ...] = ("odom", "imu", "lidar", "camera", "uwb", "fiducial", "load")
_F32 = np.float32
ODOM_LIMIT = np.array([5.0, 10.0], dtype=np.float32)  # |v| m/s, |w| rad/s (clipped)
IMU_LIMIT = np.array([10.0, 50.0, 50.0], dtype=np.float32)  # |gyro| rad/s, |accel| m/s^2 (clipped)


def _box(low: float, high: float, shape: tuple[int, ...], dtype: type = _F32) -> gym.spaces.Box:
    return gym.spaces.Box(low=low, high=high, shape=shape, dtype=dtype)


@dataclass(frozen=True)
class SensorEncoder:
    """Encodes one :class:`SensorFrame` into the sensor keys of the observation.

    Args:
        cfg: the sim's sensor config (which sensors exist, beam count, camera size).
        layout: floor plan (number of UWB anchors, fiducial positions).
    """

    cfg: SensorsConfig
    layout: Layout

    def spaces(self) -> dict[str, gym.spaces.Space]:
        """Sensor part of the observation space."""
        c, out = self.cfg, {}
        if c.lidar.enabled:
            out["lidar"] = _box(0.0, c.lidar.range_max, (c.lidar.n_beams,))
            out["lidar_mask"] = _box(0.0, 1.0, (c.lidar.n_beams,))
        if c.uwb.enabled:
            k = len(self.layout.uwb_anchors)
            out["uwb"] = _box(0.0, self.uwb_max, (k,))
            out["uwb_mask"] = _box(0.0, 1.0, (k,))
        if c.odom.enabled:
            out["odom"] = gym.spaces.Box(-ODOM_LIMIT, ODOM_LIMIT, dtype=_F32)
        if c.imu.enabled:
            out["imu"] = gym.spaces.Box(-IMU_LIMIT, IMU_LIMIT, dtype=_F32)
        if c.fiducial.enabled:
            w, h = self.layout.size_m
            out["fiducial"] = gym.spaces.Box(np.array([0.0, 0.0, -np.pi], _F32),
                                             np.array([w, h, np.pi], _F32), dtype=_F32)
        if c.load.enabled:
            out["load"] = _box(0.0, 1.0, (1,))
        if c.camera.enabled:
            out["camera_rgb"] = _box(0, 255, (c.camera.height, c.camera.width, 3), np.uint8)
            out["camera_depth"] = _box(0.0, c.camera.far, (c.camera.height, c.camera.width))
        out["sensor_mask"] = _box(0.0, 1.0, (len(SENSOR_KINDS),))
        return out

    @property
    def uwb_max(self) -> float:
        """Upper bound of a UWB range (m): max range plus the largest NLOS bias, plus slack."""
        return float(self.cfg.uwb.max_range + self.cfg.uwb.nlos_bias[1] + 1.0)

    def encode(self, frame: SensorFrame, camera: CameraImage | None = None) -> dict[str, np.ndarray]:
        """Sensor keys for one robot.

        Args:
            frame: this tick's readings.
            camera: the latest camera image still considered fresh (``None`` = absent);
                defaults to ``frame.camera``.
        """
        c, out = self.cfg, {}
        present = np.zeros(len(SENSOR_KINDS), dtype=_F32)
        camera = frame.camera if camera is None else camera
        if c.lidar.enabled:
            out["lidar"], out["lidar_mask"] = self._lidar(frame)
            present[2] = frame.lidar is not None
        if c.uwb.enabled:
            k = len(self.layout.uwb_anchors)
            r, m = np.zeros(k, _F32), np.zeros(k, _F32)
            if frame.uwb is not None:
                r[frame.uwb.anchor_ids] = np.clip(frame.uwb.ranges, 0.0, self.uwb_max)
                m[frame.uwb.anchor_ids] = 1.0
            out["uwb"], out["uwb_mask"] = r, m
            present[4] = frame.uwb is not None
        if c.odom.enabled:
            o = frame.odom
            out["odom"] = np.clip(np.array([o.v, o.w] if o is not None else [0.0, 0.0], dtype=_F32),
                                  -ODOM_LIMIT, ODOM_LIMIT)
            present[0] = o is not None
        if c.imu.enabled:
            i = frame.imu
            out["imu"] = (np.clip(np.array([i.gyro_z, *np.asarray(i.accel)[:2]], dtype=_F32),
                                  -IMU_LIMIT, IMU_LIMIT) if i is not None else np.zeros(3, _F32))
            present[1] = i is not None
        if c.fiducial.enabled:
            f = frame.fiducial
            out["fiducial"] = np.zeros(3, _F32)
            if f is not None:
                mx, my = self.layout.fiducials[f.marker_id]
                w, h = self.layout.size_m
                out["fiducial"] = np.array([np.clip(mx + f.dx, 0.0, w), np.clip(my + f.dy, 0.0, h),
                                            np.clip(f.yaw, -np.pi, np.pi)], dtype=_F32)
            present[5] = f is not None
        if c.load.enabled:
            out["load"] = np.array([1.0 if frame.load else 0.0], dtype=_F32)
            present[6] = frame.load is not None
        if c.camera.enabled:
            shape = (c.camera.height, c.camera.width)
            if camera is not None:
                out["camera_rgb"] = np.asarray(camera.rgb, dtype=np.uint8).reshape(*shape, 3)
                d = np.nan_to_num(np.asarray(camera.depth, dtype=_F32), nan=0.0, posinf=c.camera.far)
                out["camera_depth"] = np.clip(d, 0.0, c.camera.far).reshape(shape)
            else:
                out["camera_rgb"] = np.zeros((*shape, 3), np.uint8)
                out["camera_depth"] = np.zeros(shape, _F32)
            present[3] = camera is not None
        out["sensor_mask"] = present
        return out

    def _lidar(self, frame: SensorFrame) -> tuple[np.ndarray, np.ndarray]:
        n, rmax = self.cfg.lidar.n_beams, self.cfg.lidar.range_max
        if frame.lidar is None:
            return np.zeros(n, _F32), np.zeros(n, _F32)
        r = np.asarray(frame.lidar.ranges, dtype=np.float64)
        valid = ~np.isnan(r)
        ranges = np.clip(np.where(valid, np.minimum(r, rmax), 0.0), 0.0, rmax).astype(_F32)
        return ranges, valid.astype(_F32)
