"""State layout, process model and measurement models of the localization filters.

Pure numpy, shared by the EKF (:mod:`perception.ekf`) and the UKF (:mod:`perception.ukf`).
Every model is written for a batch of states ``[S, N_STATE]`` (the UKF's sigma points)
and comes with an analytic Jacobian at one state ``[N_STATE]`` (the EKF).

State vector ``x`` [7] (SI units):

=====  ===========  ===========================================================
index  name         meaning
=====  ===========  ===========================================================
0      x            position east (m)
1      y            position north (m)
2      yaw          heading (rad), wrapped to (-pi, pi]
3      v            forward speed over the current control period (m/s)
4      w            yaw rate over the current control period (rad/s)
5      gyro_bias    additive gyro bias (rad/s): ``gyro_z = w + gyro_bias``
6      wheel_scale  odometry scale factor: ``odom = wheel_scale * (v, w)``
=====  ===========  ===========================================================

One control period is filtered as two half-steps (both exact Bayesian steps):
``velocity_noise`` (v, w and the biases random-walk), the odometry/IMU updates of
(v, w), then ``propagate`` (the pose moves with the freshly updated v, w along an
arc). Integrating the odometry of the period that just ended, instead of the one
before it, removes the one-period velocity lag of a constant-velocity model.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Callable

import numpy as np

IX, IY, IYAW, IV, IW, IBG, IKS = range(7)
N_STATE: int = 7
STATE_NAMES: tuple[str, ...] = ("x", "y", "yaw", "v", "w", "gyro_bias", "wheel_scale")
WHEEL_SCALE_BOUNDS: tuple[float, float] = (0.7, 1.3)

TWO_PI = 2.0 * np.pi


def wrap(a: np.ndarray | float) -> np.ndarray | float:
    """Wrap angles (rad) to (-pi, pi], any shape."""
    return np.pi - np.mod(np.pi - np.asarray(a, dtype=np.float64), TWO_PI) if isinstance(
        a, np.ndarray
    ) else float(np.pi - np.mod(np.pi - a, TWO_PI))


def wrap_scalar(a: float) -> float:
    """Wrap one angle (rad) to (-pi, pi] with scalar math."""
    return math.pi - math.fmod(math.fmod(math.pi - a, TWO_PI) + TWO_PI, TWO_PI)


# ---- process model ------------------------------------------------------------------


def propagate(xs: np.ndarray, dt: float) -> np.ndarray:
    """Move the pose along the arc given by (v, w) for ``dt`` seconds (midpoint rule).

    Args:
        xs: states [..., 7].
        dt: seconds.

    Returns:
        New states [..., 7]; yaw wrapped; v, w and biases unchanged.
    """
    out = np.array(xs, dtype=np.float64, copy=True)
    yaw, v, w = out[..., IYAW], out[..., IV], out[..., IW]
    mid = yaw + 0.5 * w * dt
    out[..., IX] += v * dt * np.cos(mid)
    out[..., IY] += v * dt * np.sin(mid)
    out[..., IYAW] = wrap(yaw + w * dt)
    return out


def propagate_one(x: np.ndarray, dt: float) -> np.ndarray:
    """:func:`propagate` of one state [7] with scalar math (the EKF's hot path)."""
    out = x.copy()
    yaw, v, w = float(x[IYAW]), float(x[IV]), float(x[IW])
    mid = yaw + 0.5 * w * dt
    out[IX] += v * dt * math.cos(mid)
    out[IY] += v * dt * math.sin(mid)
    out[IYAW] = wrap_scalar(yaw + w * dt)
    return out


def propagate_jacobian(x: np.ndarray, dt: float) -> np.ndarray:
    """Jacobian [7, 7] of :func:`propagate` at state ``x`` [7]."""
    yaw, v, w = float(x[IYAW]), float(x[IV]), float(x[IW])
    mid = yaw + 0.5 * w * dt
    c, s = math.cos(mid), math.sin(mid)
    F = np.eye(N_STATE)
    F[IX, IYAW] = -v * dt * s
    F[IY, IYAW] = v * dt * c
    F[IX, IV] = dt * c
    F[IY, IV] = dt * s
    F[IX, IW] = -0.5 * v * dt * dt * s
    F[IY, IW] = 0.5 * v * dt * dt * c
    F[IYAW, IW] = dt
    return F


def velocity_noise(dt: float, *, accel_psd: float, yaw_accel_psd: float,
                   gyro_bias_psd: float, wheel_scale_psd: float) -> np.ndarray:
    """Process noise [7, 7] of the random-walk half-step (continuous white-noise PSDs).

    Args:
        dt: seconds.
        accel_psd: forward acceleration PSD ((m/s)^2 / s).
        yaw_accel_psd: yaw acceleration PSD ((rad/s)^2 / s).
        gyro_bias_psd: gyro-bias random-walk PSD ((rad/s)^2 / s).
        wheel_scale_psd: wheel-scale random-walk PSD (1 / s).
    """
    q = np.zeros(N_STATE)
    q[IV] = accel_psd * dt
    q[IW] = yaw_accel_psd * dt
    q[IBG] = gyro_bias_psd * dt
    q[IKS] = wheel_scale_psd * dt
    return np.diag(q)


def pose_noise(dt: float, *, pos_psd: float, yaw_psd: float) -> np.ndarray:
    """Process noise [7, 7] of the pose propagation (model error: arc approximation, bumps)."""
    q = np.zeros(N_STATE)
    q[IX] = q[IY] = pos_psd * dt
    q[IYAW] = yaw_psd * dt
    return np.diag(q)


# ---- measurement models --------------------------------------------------------------


@dataclass(frozen=True)
class MeasurementModel:
    """A measurement ``z = h(x) + noise`` with ``m`` components.

    Attributes:
        name: sensor name ("odom", "imu", "uwb", "fiducial", "lidar").
        h: batched measurement function, states [S, 7] -> predictions [S, m].
        jacobian: Jacobian at one state, [7] -> [m, 7].
        angle_mask: [m] bool, components that are angles (residuals wrapped).
    """

    name: str
    h: Callable[[np.ndarray], np.ndarray]
    jacobian: Callable[[np.ndarray], np.ndarray]
    angle_mask: np.ndarray

    @property
    def dim(self) -> int:
        """Number of components m."""
        return int(self.angle_mask.shape[0])

    def residual(self, z: np.ndarray, zp: np.ndarray) -> np.ndarray:
        """``z - zp`` with angle components wrapped; any leading shape ``[..., m]``."""
        d = np.asarray(z, dtype=np.float64) - zp
        if self.angle_mask.any():
            d = np.array(d, copy=True)
            d[..., self.angle_mask] = wrap(d[..., self.angle_mask])
        return d


_NO_ANGLE = {m: np.zeros(m, dtype=bool) for m in range(1, 4)}


def odom_model() -> MeasurementModel:
    """Wheel odometry ``(v_odom, w_odom) = wheel_scale * (v, w)``."""

    def h(xs: np.ndarray) -> np.ndarray:
        return xs[..., [IV, IW]] * xs[..., IKS, None]

    def jac(x: np.ndarray) -> np.ndarray:
        H = np.zeros((2, N_STATE))
        H[0, IV] = H[1, IW] = x[IKS]
        H[0, IKS] = x[IV]
        H[1, IKS] = x[IW]
        return H

    return MeasurementModel("odom", h, jac, _NO_ANGLE[2])


def odom_gyro_model(has_odom: bool = True, has_gyro: bool = True) -> MeasurementModel:
    """Odometry and gyro in one measurement: rows (v_odom, w_odom) and/or gyro_z."""
    rows = ([0, 1] if has_odom else []) + ([2] if has_gyro else [])

    def h(xs: np.ndarray) -> np.ndarray:
        k = xs[..., IKS]
        full = np.stack([xs[..., IV] * k, xs[..., IW] * k, xs[..., IW] + xs[..., IBG]], axis=-1)
        return full[..., rows]

    def jac(x: np.ndarray) -> np.ndarray:
        H = np.zeros((3, N_STATE))
        H[0, IV] = H[1, IW] = x[IKS]
        H[0, IKS] = x[IV]
        H[1, IKS] = x[IW]
        H[2, IW] = H[2, IBG] = 1.0
        return H[rows]

    return MeasurementModel("odom_gyro", h, jac, np.zeros(len(rows), dtype=bool))


def gyro_model() -> MeasurementModel:
    """Gyro ``gyro_z = w + gyro_bias``."""
    H = np.zeros((1, N_STATE))
    H[0, IW] = H[0, IBG] = 1.0

    def h(xs: np.ndarray) -> np.ndarray:
        return (xs[..., IW] + xs[..., IBG])[..., None]

    return MeasurementModel("imu", h, lambda x: H, _NO_ANGLE[1])


_POSE_H = np.eye(3, N_STATE)
_POSE_MASK = np.array([False, False, True])


def pose_model(name: str) -> MeasurementModel:
    """Direct pose measurement ``(x, y, yaw)`` (floor fiducial, scan match)."""

    def h(xs: np.ndarray) -> np.ndarray:
        return xs[..., :3]

    return MeasurementModel(name, h, lambda x: _POSE_H, _POSE_MASK)


def uwb_model(anchors: np.ndarray, tag_height: float) -> MeasurementModel:
    """UWB ranges: 3D distances from the tag at ``(x, y, tag_height)`` to ``anchors``.

    Args:
        anchors: [K, 3] world positions (m) of the anchors measured in this reading.
        tag_height: tag height above the floor (m).
    """
    a = np.asarray(anchors, dtype=np.float64)
    dz2 = (tag_height - a[:, 2]) ** 2  # [K]

    def h(xs: np.ndarray) -> np.ndarray:
        dx = xs[..., IX, None] - a[:, 0]
        dy = xs[..., IY, None] - a[:, 1]
        return np.sqrt(dx * dx + dy * dy + dz2)

    def jac(x: np.ndarray) -> np.ndarray:
        dx = x[IX] - a[:, 0]
        dy = x[IY] - a[:, 1]
        r = np.maximum(np.sqrt(dx * dx + dy * dy + dz2), 1e-6)
        H = np.zeros((len(a), N_STATE))
        H[:, IX] = dx / r
        H[:, IY] = dy / r
        return H

    return MeasurementModel("uwb", h, jac, np.zeros(len(a), dtype=bool))


def numerical_jacobian(model: MeasurementModel, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central-difference Jacobian [m, 7] of ``model.h`` (test oracle)."""
    cols = []
    for i in range(N_STATE):
        d = np.zeros(N_STATE)
        d[i] = eps
        cols.append(model.residual(model.h((x + d)[None])[0], model.h((x - d)[None])[0]) / (2 * eps))
    return np.stack(cols, axis=-1)
