"""Chi-square consistency of a filter's covariance (NEES), shared by the localization tests.

For an unbiased estimator whose covariance ``P`` is right, the normalised estimation error
squared ``e^T P^-1 e`` of a ``d``-dof error is chi2(d); the mean of ``n`` independent
samples is chi2(d n) / n. A filter twice overconfident (reports ``P / 2``) has mean NEES
``2 d``, twice conservative ``d / 2``: with ``d n`` large enough both leave the band.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import chi2


def nees(errors: np.ndarray, covs: np.ndarray, *, cov_scale: float = 1.0) -> np.ndarray:
    """NEES samples ``e_k^T (s P_k)^-1 e_k``.

    Args:
        errors: [N, d] estimation errors (angles already wrapped).
        covs: [N, d, d] reported covariances.
        cov_scale: factor ``s`` on the covariances (0.5 = a filter twice overconfident).

    Returns:
        [N] NEES values.
    """
    e = np.asarray(errors, dtype=float)
    p = np.asarray(covs, dtype=float) * cov_scale
    return np.einsum("ni,ni->n", e, np.linalg.solve(p, e[..., None])[..., 0])


def nees_band(n: int, dof: int, level: float = 0.95) -> tuple[float, float]:
    """Two-sided ``level`` acceptance interval of the mean of ``n`` chi2(``dof``) samples."""
    lo, hi = chi2.ppf([(1 - level) / 2, (1 + level) / 2], dof * n) / n
    return float(lo), float(hi)


def nees_consistent(samples: np.ndarray, dof: int, level: float = 0.95) -> bool:
    """True iff the mean NEES lies in the chi-square band (neither over- nor underconfident)."""
    lo, hi = nees_band(len(samples), dof, level)
    return bool(lo <= float(np.mean(samples)) <= hi)
