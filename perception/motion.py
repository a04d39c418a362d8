"""State layout, process model and measurement models of the localization filters.

Pure numpy, shared by the EKF (:mod:`perception.ekf`) and the UKF (:mod:`perception.ukf`).
Every model is written for a batch of states ``[S, N_STATE]`` (the UKF's sigma points)
and comes with an analytic Jacobian at one state ``[N_STATE]`` (the EKF).

State vector ``x`` [8] (SI units):

=====  ===========  ===========================================================
index  name         meaning
=====  ===========  ===========================================================
0      x            position east (m)
1      y            position north (m)
2      yaw          heading (rad), wrapped to (-pi, pi]
3      v            forward speed over the current control period (m/s)
4      w            yaw rate over the current control period (rad/s)
5      gyro_bias    additive gyro bias (rad/s): ``gyro_z = w + gyro_bias``
6      wheel_scale  odometry scale factor: ``v_odom = wheel_scale * v``
7      wheel_asym   odometry yaw-rate coupling (rad/m) from unequal wheel radii:
                    ``w_odom = wheel_scale * w + wheel_asym * v``
=====  ===========  ===========================================================

(With per-wheel scales ``k_l, k_r`` and track ``T``: ``wheel_scale = (k_l + k_r) / 2``,
``wheel_asym = (k_r - k_l) / T``; the tiny ``v_odom`` term ``wheel_asym T^2 w / 4`` is
neglected.)

One control period is filtered as two half-steps (both exact Bayesian steps):
``velocity_noise`` (v, w and the biases random-walk), the odometry/IMU updates of
(v, w), then ``propagate`` (the pose moves with the freshly updated v, w along an
arc). Integrating the odometry of the period that just ended, instead of the one
before it, removes the one-period velocity lag of a constant-velocity model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

IX, IY, IYAW, IV, IW, IBG, IKS, IWA = range(8)
N_STATE: int = 8
STATE_NAMES: tuple[str, ...] = ("x", "y", "yaw", "v", "w", "gyro_bias", "wheel_scale", "wheel_asym")
WHEEL_SCALE_BOUNDS: tuple[float, float] = (0.7, 1.3)
WHEEL_ASYM_BOUNDS: tuple[float, float] = (-0.5, 0.5)  # rad/m

TWO_PI = 2.0 * np.pi


def wrap(a: np.ndarray | float) -> np.ndarray | float:
    """Wrap angles (rad) to (-pi, pi], any shape."""
    return (
        np.pi - np.mod(np.pi - np.asarray(a, dtype=np.float64), TWO_PI)
        if isinstance(a, np.ndarray)
        else float(np.pi - np.mod(np.pi - a, TWO_PI))
    )


def wrap_scalar(a: float) -> float:
    """Wrap one angle (rad) to (-pi, pi] with scalar math."""
    return math.pi - math.fmod(math.fmod(math.pi - a, TWO_PI) + TWO_PI, TWO_PI)


# ---- process model ------------------------------------------------------------------


def propagate(xs: np.ndarray, dt: float, dv: float = 0.0, dw: float = 0.0) -> np.ndarray:
    """Move the pose along the arc of (v - dv, w - dw) for ``dt`` seconds (midpoint rule).

    Args:
        xs: states [..., 8].
        dt: seconds.
        dv, dw: known offsets (m/s, rad/s) between the state's (v, w) and the period's
            mean speeds (half the change over the period when odometry reports the
            velocity at the end of the period).

    Returns:
        New states [..., 8]; yaw wrapped; v, w and biases unchanged.
    """
    out = np.array(xs, dtype=np.float64, copy=True)
    yaw, v, w = out[..., IYAW], out[..., IV] - dv, out[..., IW] - dw
    mid = yaw + 0.5 * w * dt
    out[..., IX] += v * dt * np.cos(mid)
    out[..., IY] += v * dt * np.sin(mid)
    out[..., IYAW] = wrap(yaw + w * dt)
    return out


def propagate_one(x: np.ndarray, dt: float, dv: float = 0.0, dw: float = 0.0) -> np.ndarray:
    """:func:`propagate` of one state [8] with scalar math (the EKF's hot path)."""
    out = x.copy()
    yaw, v, w = float(x[IYAW]), float(x[IV]) - dv, float(x[IW]) - dw
    mid = yaw + 0.5 * w * dt
    out[IX] += v * dt * math.cos(mid)
    out[IY] += v * dt * math.sin(mid)
    out[IYAW] = wrap_scalar(yaw + w * dt)
    return out


def propagate_jacobian(x: np.ndarray, dt: float, dv: float = 0.0, dw: float = 0.0) -> np.ndarray:
    """Jacobian [8, 8] of :func:`propagate` at state ``x`` [8]."""
    yaw, v, w = float(x[IYAW]), float(x[IV]) - dv, float(x[IW]) - dw
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


def velocity_noise(
    dt: float,
    *,
    accel_psd: float,
    yaw_accel_psd: float,
    gyro_bias_psd: float,
    wheel_scale_psd: float,
    wheel_asym_psd: float = 0.0,
) -> np.ndarray:
    """Process noise [8, 8] of the random-walk half-step (continuous white-noise PSDs).

    Args:
        dt: seconds.
        accel_psd: forward acceleration PSD ((m/s)^2 / s).
        yaw_accel_psd: yaw acceleration PSD ((rad/s)^2 / s).
        gyro_bias_psd: gyro-bias random-walk PSD ((rad/s)^2 / s).
        wheel_scale_psd: wheel-scale random-walk PSD (1 / s).
        wheel_asym_psd: wheel-asymmetry random-walk PSD ((rad/m)^2 / s).
    """
    q = np.zeros(N_STATE)
    q[IV] = accel_psd * dt
    q[IW] = yaw_accel_psd * dt
    q[IBG] = gyro_bias_psd * dt
    q[IKS] = wheel_scale_psd * dt
    q[IWA] = wheel_asym_psd * dt
    return np.diag(q)


def pose_noise(dt: float, *, pos_psd: float, yaw_psd: float) -> np.ndarray:
    """Process noise [8, 8] of the pose propagation (model error: arc approximation, bumps)."""
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
        h: batched measurement function, states [S, 8] -> predictions [S, m].
        jacobian: Jacobian at one state, [8] -> [m, 8].
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


def odom_gyro_model(has_odom: bool = True, has_gyro: bool = True) -> MeasurementModel:
    """Odometry and gyro in one measurement.

    Rows: ``v_odom = k v``, ``w_odom = k w + c v`` (odometry), ``gyro_z = w + b`` (gyro),
    with k = wheel_scale, c = wheel_asym, b = gyro_bias; only the rows present are kept.
    """
    rows = ([0, 1] if has_odom else []) + ([2] if has_gyro else [])

    def h(xs: np.ndarray) -> np.ndarray:
        k, v, w = xs[..., IKS], xs[..., IV], xs[..., IW]
        full = np.stack([v * k, w * k + xs[..., IWA] * v, w + xs[..., IBG]], axis=-1)
        return full[..., rows]

    def jac(x: np.ndarray) -> np.ndarray:
        H = np.zeros((3, N_STATE))
        H[0, IV] = H[1, IW] = x[IKS]
        H[0, IKS] = x[IV]
        H[1, IKS] = x[IW]
        H[1, IV] = x[IWA]
        H[1, IWA] = x[IV]
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
    """Central-difference Jacobian [m, 8] of ``model.h`` (test oracle)."""
    cols = []
    for i in range(N_STATE):
        d = np.zeros(N_STATE)
        d[i] = eps
        cols.append(
            model.residual(model.h((x + d)[None])[0], model.h((x - d)[None])[0]) / (2 * eps)
        )
    return np.stack(cols, axis=-1)


def odom_covariance(z: np.ndarray, track: float, sigma_rel: float, sigma_abs: float) -> np.ndarray:
    """[2, 2] covariance of odometry (v, w) from independent per-wheel speed noise.

    Args:
        z: [2] measured (v m/s, w rad/s).
        track: wheel separation (m).
        sigma_rel: wheel-speed noise as a fraction of the wheel speed.
        sigma_abs: absolute wheel-speed noise (m/s).
    """
    vl, vr = z[0] - 0.5 * track * z[1], z[0] + 0.5 * track * z[1]
    sl2 = sigma_abs**2 + (sigma_rel * vl) ** 2
    sr2 = sigma_abs**2 + (sigma_rel * vr) ** 2
    c = 0.5 * (sr2 - sl2) / track  # v = (vl + vr) / 2, w = (vr - vl) / track
    return np.array([[0.25 * (sl2 + sr2), c], [c, (sl2 + sr2) / (track * track)]])


def position_std(P: np.ndarray) -> float:
    """Std (m) along the worst position axis of a covariance whose first block is (x, y)."""
    a, b, c = float(P[0, 0]), float(P[1, 1]), float(P[0, 1])
    lam = 0.5 * (a + b) + math.sqrt(max(0.25 * (a - b) ** 2 + c * c, 0.0))
    return math.sqrt(max(lam, 0.0))
