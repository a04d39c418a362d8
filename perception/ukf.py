"""Unscented Kalman filter backend over filterpy's :class:`UnscentedKalmanFilter`.

filterpy's UKF is kept as the filter (its ``predict`` and ``update``); four of its
per-sigma-point Python loops are replaced by vectorised equivalents:

* sigma points are drawn in one step (``_Points``, numpy Cholesky; yaw is left
  unwrapped in sigma points, every mean and residual wraps it);
* ``compute_process_sigmas`` is overridden to push all sigma points through the
  batched process model at once;
* ``cross_variance`` is overridden with one matrix product;
* the unscented transform is passed through filterpy's ``UT=`` argument
  (:func:`unscented_transform`, circular mean for angles);
* measurement predictions of all sigma points are computed once in
  :meth:`UkfBackend.innovation` (needed for the pre-update gate anyway) and fed to
  filterpy's ``update`` row by row.

filterpy reuses the sigma points drawn at the end of ``predict`` for every following
``update``; after a first update they are stale. :meth:`UkfBackend.innovation` redraws
them from the current (x, P) before every update.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from filterpy.kalman import MerweScaledSigmaPoints, UnscentedKalmanFilter

from perception.ekf import FilterBackend, Innovation
from perception.motion import IYAW, N_STATE, MeasurementModel, propagate, wrap, wrap_scalar

_STATE_ANGLES = np.zeros(N_STATE, dtype=bool)
_STATE_ANGLES[IYAW] = True


def _circular_mean(sigmas: np.ndarray, Wm: np.ndarray, angle_mask: np.ndarray) -> np.ndarray:
    """Weighted mean [n] of sigma points [S, n]; angle columns averaged around sigma 0."""
    mean = Wm @ sigmas
    for j in np.flatnonzero(angle_mask):
        ref = sigmas[0, j]
        mean[j] = wrap_scalar(float(ref + Wm @ wrap(sigmas[:, j] - ref)))
    return mean


def _angle_residual(angle_mask: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Batched ``a - b`` with the angle components wrapped."""
    idx = np.flatnonzero(angle_mask)
    if len(idx) == 0:
        return np.subtract

    def residual(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        d = np.subtract(a, b, dtype=np.float64)
        d[..., idx] = wrap(d[..., idx])
        return d

    return residual


_STATE_RESIDUAL = _angle_residual(_STATE_ANGLES)


def unscented_transform(
    sigmas: np.ndarray,
    Wm: np.ndarray,
    Wc: np.ndarray,
    noise_cov: np.ndarray | None = None,
    mean_fn: Any = None,
    residual_fn: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised drop-in for filterpy's ``unscented_transform`` (same signature).

    ``mean_fn(sigmas, Wm)`` and ``residual_fn(sigmas [S, n], mean [n])`` must be batched.
    """
    x = Wm @ sigmas if mean_fn is None else mean_fn(sigmas, Wm)
    y = sigmas - x if residual_fn is None else residual_fn(sigmas, x)
    P = (y.T * Wc) @ y
    if noise_cov is not None:
        P = P + noise_cov
    return x, 0.5 * (P + P.T)


class _RowFeeder:
    """``hx`` for filterpy's per-sigma-point loop: returns precomputed rows in order."""

    def __init__(self, rows: np.ndarray) -> None:
        self._rows = rows
        self._i = 0

    def __call__(self, _sigma: np.ndarray) -> np.ndarray:
        row = self._rows[self._i]
        self._i += 1
        return row


class _Points(MerweScaledSigmaPoints):
    """filterpy's scaled sigma points, drawn in one vectorised step (numpy Cholesky)."""

    def sigma_points(self, x: np.ndarray, P: np.ndarray) -> np.ndarray:
        n = self.n
        lambda_ = self.alpha**2 * (n + self.kappa) - n
        L = np.linalg.cholesky((lambda_ + n) * np.asarray(P))  # P = L L^T; rows of L^T
        x = np.asarray(x, dtype=np.float64).reshape(n)
        return np.concatenate([x[None], x + L.T, x - L.T], axis=0)


class _UKF(UnscentedKalmanFilter):
    """filterpy UKF with batched process sigma points and cross variance."""

    def compute_process_sigmas(self, dt: float, fx: Any = None, **fx_args: Any) -> None:
        fx = self.fx if fx is None else fx
        sigmas = self.points_fn.sigma_points(self.x, self.P)
        self.sigmas_f = fx(sigmas, dt, **fx_args)

    def cross_variance(
        self, x: np.ndarray, z: np.ndarray, sigmas_f: np.ndarray, sigmas_h: np.ndarray
    ) -> np.ndarray:
        dx = self.residual_x(sigmas_f, x)
        dz = self.residual_z(sigmas_h, z)
        return (dx.T * self.Wc) @ dz


class UkfBackend(FilterBackend):
    """UKF with Van der Merwe scaled sigma points (2n+1 = 17 points)."""

    kind = "ukf"

    def __init__(
        self,
        x0: np.ndarray,
        P0: np.ndarray,
        *,
        alpha: float = 1.0,
        beta: float = 2.0,
        kappa: float = 0.0,
    ) -> None:
        points = _Points(N_STATE, alpha=alpha, beta=beta, kappa=kappa)
        self._z_angles = np.zeros(1, dtype=bool)
        self._f = _UKF(
            dim_x=N_STATE,
            dim_z=1,
            dt=0.05,
            hx=None,
            fx=propagate,
            points=points,
            x_mean_fn=lambda s, w: _circular_mean(s, w, _STATE_ANGLES),
            z_mean_fn=lambda s, w: _circular_mean(s, w, self._z_angles),
            residual_x=_STATE_RESIDUAL,
            residual_z=lambda a, b: self._z_residual(a, b),
        )
        self._z_residual: Callable[[np.ndarray, np.ndarray], np.ndarray] = np.subtract
        self.set_state(x0, P0)

    @property
    def x(self) -> np.ndarray:
        return np.array(self._f.x, dtype=np.float64, copy=True)

    @property
    def P(self) -> np.ndarray:
        return np.array(self._f.P, dtype=np.float64, copy=True)

    @property
    def xv(self) -> np.ndarray:
        return self._f.x

    @property
    def Pv(self) -> np.ndarray:
        return self._f.P

    def set_state(self, x: np.ndarray, P: np.ndarray) -> None:
        self._f.x = np.asarray(x, dtype=np.float64).reshape(N_STATE).copy()
        self._f.P = np.asarray(P, dtype=np.float64).copy()

    def propagate(self, dt: float, Q: np.ndarray, dv: float = 0.0, dw: float = 0.0) -> None:
        """Pose propagation over ``dt`` s, additive process noise ``Q`` [8, 8], offsets (dv, dw)."""
        self._f.Q = Q
        self._f.predict(dt=dt, UT=unscented_transform, dv=dv, dw=dw)

    def innovation(self, model: MeasurementModel, z: np.ndarray, R: np.ndarray) -> Innovation:
        """Unscented innovation at the current (x, P); redraws the sigma points."""
        f = self._f
        sig = f.points_fn.sigma_points(f.x, f.P)
        f.sigmas_f = sig
        hz = model.h(sig)  # [S, m]
        zp, S = unscented_transform(
            hz,
            f.Wm,
            f.Wc,
            R,
            lambda s, w: _circular_mean(s, w, model.angle_mask),
            _angle_residual(model.angle_mask),
        )
        return Innovation(model, z, R, model.residual(z, zp), S, hz)

    def update(self, inn: Innovation, mask: np.ndarray | None = None) -> None:
        """filterpy update with the components selected by ``mask`` [m] bool (all if None)."""
        hz, z, R, angles = inn.cache, inn.z, inn.R, inn.model.angle_mask
        if mask is not None:
            hz, z, R, angles = hz[:, mask], z[mask], R[np.ix_(mask, mask)], angles[mask]
        self._z_angles = angles
        self._z_residual = _angle_residual(angles)
        self._f.update(z, R=R, UT=unscented_transform, hx=_RowFeeder(hz))
