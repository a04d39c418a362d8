"""Extended Kalman filter backend over filterpy's :class:`ExtendedKalmanFilter`.

A backend owns one filterpy filter and exposes the four operations the localizer needs:
``add_noise`` (random-walk half-step, ``P += Q``), ``propagate`` (nonlinear pose
propagation), ``innovation`` (predicted measurement, innovation covariance and
Mahalanobis distance computed *before* any update, for gating) and ``update`` (apply a
gated subset of the measurement through filterpy's own update, Joseph form).

filterpy only computes the Mahalanobis distance inside ``update``, after the state has
already moved; :meth:`EkfBackend.innovation` computes it from the prior and hands the
Jacobian and prediction to ``update`` so nothing is evaluated twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from filterpy.kalman import ExtendedKalmanFilter

from perception.motion import (
    IKS,
    IWA,
    IYAW,
    N_STATE,
    WHEEL_ASYM_BOUNDS,
    WHEEL_SCALE_BOUNDS,
    MeasurementModel,
    propagate_jacobian,
    propagate_one,
    wrap,
    wrap_scalar,
)


@dataclass(frozen=True)
class Innovation:
    """Innovation of one measurement against the current prior.

    Attributes:
        model: the measurement model.
        z: measurement [m].
        R: measurement noise [m, m].
        y: innovation ``z - h(x)`` [m] (angles wrapped).
        S: innovation covariance [m, m].
        cache: backend-specific pieces reused by ``update`` (Jacobian or sigma points).
    """

    model: MeasurementModel
    z: np.ndarray
    R: np.ndarray
    y: np.ndarray
    S: np.ndarray
    cache: Any

    def mahalanobis2(self, mask: np.ndarray | None = None) -> float:
        """Squared Mahalanobis distance of the (masked) innovation."""
        y, S = (self.y, self.S) if mask is None else (self.y[mask], self.S[np.ix_(mask, mask)])
        return float(y @ np.linalg.solve(S, y))

    def component_d2(self) -> np.ndarray:
        """[m] squared normalised innovation of each component alone (``y_i^2 / S_ii``)."""
        return self.y * self.y / np.maximum(np.diag(self.S), 1e-300)


_VAR_CAPS = np.array([1e6, 1e6, np.pi**2, 100.0, 100.0, 1.0, 1.0, 1.0])  # per state, SI^2


def repair_covariance(P: np.ndarray, caps: np.ndarray = _VAR_CAPS) -> tuple[np.ndarray, bool]:
    """Symmetrise, cap absurd variances by a congruence (keeps definiteness), and clamp the
    eigenvalues of an indefinite matrix to 1e-12.

    Returns:
        (P [n, n], True when the eigenvalue clamp was needed).
    """
    P = 0.5 * (P + P.T)
    d = np.diag(P)
    if np.any(d > caps):
        D = np.sqrt(np.minimum(1.0, caps / np.maximum(d, 1e-300)))
        P = P * np.outer(D, D)
    try:
        np.linalg.cholesky(P)
        return P, False
    except np.linalg.LinAlgError:
        w, V = np.linalg.eigh(P)
        P = (V * np.maximum(w, 1e-12)) @ V.T
        return 0.5 * (P + P.T), True


class FilterBackend:
    """Shared state handling of the EKF and UKF backends (a thin base, not a tower)."""

    kind: str = "base"

    @property
    def x(self) -> np.ndarray:
        """State [8] (copy)."""
        raise NotImplementedError

    @property
    def P(self) -> np.ndarray:
        """Covariance [8, 8] (copy)."""
        raise NotImplementedError

    def set_state(self, x: np.ndarray, P: np.ndarray) -> None:
        """Overwrite mean [8] and covariance [8, 8]."""
        raise NotImplementedError

    @property
    def xv(self) -> np.ndarray:
        """State [8] as a view into the filter (writes go through; no copy)."""
        raise NotImplementedError

    @property
    def Pv(self) -> np.ndarray:
        """Covariance [8, 8], the filter's own array (no copy)."""
        raise NotImplementedError

    def add_noise(self, Q: np.ndarray) -> None:
        """Random-walk half-step: mean unchanged, ``P += Q`` (exact for an identity model)."""
        self.Pv[...] += Q

    def normalise(self) -> None:
        """Wrap yaw and clamp the wheel scale and asymmetry, in place."""
        x = self.xv
        x[IYAW] = wrap_scalar(float(x[IYAW]))
        x[IKS] = min(max(float(x[IKS]), WHEEL_SCALE_BOUNDS[0]), WHEEL_SCALE_BOUNDS[1])
        x[IWA] = min(max(float(x[IWA]), WHEEL_ASYM_BOUNDS[0]), WHEEL_ASYM_BOUNDS[1])


class _EKF(ExtendedKalmanFilter):
    """filterpy EKF whose state prediction is the nonlinear arc model (filterpy's hook)."""

    dt: float = 0.0
    offsets: tuple[float, float] = (0.0, 0.0)

    def predict_x(self, u: Any = 0) -> None:
        self.x = propagate_one(self.x[:, 0], self.dt, *self.offsets)[:, None]


class EkfBackend(FilterBackend):
    """EKF: linearised prediction (F from :func:`propagate_jacobian`) and updates."""

    kind = "ekf"

    def __init__(self, x0: np.ndarray, P0: np.ndarray) -> None:
        self._f = _EKF(dim_x=N_STATE, dim_z=1)
        self.set_state(x0, P0)

    @property
    def x(self) -> np.ndarray:
        return self._f.x[:, 0].copy()

    @property
    def P(self) -> np.ndarray:
        return np.array(self._f.P, dtype=np.float64, copy=True)

    @property
    def xv(self) -> np.ndarray:
        return self._f.x[:, 0]

    @property
    def Pv(self) -> np.ndarray:
        return self._f.P

    def set_state(self, x: np.ndarray, P: np.ndarray) -> None:
        self._f.x = np.asarray(x, dtype=np.float64).reshape(N_STATE, 1).copy()
        self._f.P = np.asarray(P, dtype=np.float64).copy()

    def propagate(self, dt: float, Q: np.ndarray, dv: float = 0.0, dw: float = 0.0) -> None:
        """Pose propagation over ``dt`` s, process noise ``Q`` [8, 8], speed offsets (dv, dw)."""
        self._f.F = propagate_jacobian(self._f.x[:, 0], dt, dv, dw)
        self._f.Q = Q
        self._f.dt = dt
        self._f.offsets = (dv, dw)
        self._f.predict()

    def innovation(self, model: MeasurementModel, z: np.ndarray, R: np.ndarray) -> Innovation:
        """Linearised innovation at the current prior (no state change)."""
        x = self._f.x[:, 0]
        H = model.jacobian(x)
        hx = model.h(x[None])[0]
        S = H @ self._f.P @ H.T + R
        return Innovation(model, z, R, model.residual(z, hx), S, (H, hx))

    def update(self, inn: Innovation, mask: np.ndarray | None = None) -> None:
        """filterpy update with the components selected by ``mask`` [m] bool (all if None)."""
        H, hx = inn.cache
        z, R = inn.z, inn.R
        if mask is not None:
            H, hx, z, R = H[mask], hx[mask], z[mask], R[np.ix_(mask, mask)]
        angle = inn.model.angle_mask if mask is None else inn.model.angle_mask[mask]

        def residual(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            d = a - b
            if angle.any():
                d[angle, 0] = wrap(d[angle, 0])
            return d

        self._f.update(
            z.reshape(-1, 1),
            HJacobian=lambda _x: H,
            Hx=lambda _x: hx.reshape(-1, 1),
            R=R,
            residual=residual,
        )
