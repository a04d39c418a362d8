"""Action-selection rules on gathered edge blocks ``E [m, 5, A]`` (see :class:`SearchTree`).

- PUCT (MuZero, Schrittwieser et al. 2020, App. B): ``argmax Qn + P * sqrt(N) / (1 + n) *
  (c1 + log((N + c2 + 1) / c2))`` with ``Qn`` the edge Q min-max normalised over the whole
  tree of that row; unvisited edges score the parent's evaluator value (first-play
  value, ``unvisited_value="parent"``) or ``Qn = 0`` (the
  minimum, MuZero's choice; ``unvisited_value="min"``). FPU_CLIP: the first-play value is
  normalised with the row's bounds and clipped into [0, 1]; the parent's value is not part
  of the bounds, so unclipped a parent value below every seen Q scored about -1e8 once all
  seen Qs were equal (scale 1 / 1e-8) and its unvisited siblings were never tried.
- Gumbel MuZero (Danihelka et al. 2022): completed Q with the mixed value (App. D),
  rescaled to [0, 1] over the legal actions, ``sigma = (c_visit + max n) * c_scale * q``;
  the root runs Sequential Halving with Gumbel noise, interior nodes use the deterministic
  selection ``argmax softmax(logp + sigma) - n / (1 + sum n)``. Same formulas as mctx.

Every function is a few array ops over all ``m`` rows at once (no per-row Python); the
``*_row`` variants run one row on Python floats. :func:`normalise_logits` /
:func:`normalise_row` turn evaluator logits into the stored prior, log-prior and mask.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from planning.tree import (
    E_LOGP,
    E_MASK,
    E_VALUE,
    E_VISITS,
    N_EMAX,
    N_PQ,
    N_PSUM,
    N_RAW,
    N_VISITS,
)

__all__ = [
    "completed_sigma",
    "considered_visits_table",
    "gumbel_interior",
    "gumbel_interior_row",
    "gumbel_root",
    "gumbel_root_row",
    "gumbel_root_score",
    "masked_argmax",
    "normalise_logits",
    "normalise_row",
    "puct_row",
    "puct_select",
]

_EPS = 1e-8


def masked_argmax(score: np.ndarray, legal: np.ndarray) -> np.ndarray:
    """[m, A] -> [m] int64 argmax over legal entries (first index on ties)."""
    return np.argmax(np.where(legal, score, -np.inf), axis=1)


def puct_select(
    e: np.ndarray,
    nd: np.ndarray,
    qnorm: np.ndarray,
    prior: np.ndarray,
    *,
    c1: float,
    c2: float,
    parent_fpu: bool,
) -> np.ndarray:
    """PUCT actions.

    Args:
        e: [m, 5, A] gathered edge blocks.
        nd: [m, N_COLS] gathered node rows (for the visit count N).
        qnorm: [m, 2] (offset, scale) min-max normalisation per row.
        prior: [m, A] prior probabilities (noised at the root).
        c1, c2: PUCT constants.
        parent_fpu: unvisited edges score the parent's evaluator value (else the minimum).

    Returns:
        [m] int64 actions.
    """
    n = e[:, E_VISITS]
    big_n = nd[:, N_VISITS]
    if parent_fpu:  # unvisited edges take the parent's evaluator value
        q = (e[:, E_VALUE] + (n == 0) * nd[:, N_RAW, None]) / np.maximum(n, 1.0)
        qn = (q - qnorm[:, :1]) * qnorm[:, 1:]
        qn = np.where(n == 0, np.clip(qn, 0.0, 1.0), qn)  # see FPU_CLIP in the module docstring
    else:  # (w - qmin * n) / n == Q - qmin if visited, exactly 0 (the minimum) if not
        qn = (e[:, E_VALUE] - qnorm[:, :1] * n) * (qnorm[:, 1:] / np.maximum(n, 1.0))
    scale = np.sqrt(big_n) * (c1 + np.log((big_n + (c2 + 1.0)) / c2))
    score = qn + prior * (scale[:, None] / (n + 1.0)) + e[:, E_MASK]
    return score.argmax(axis=1)


def puct_row(
    e: list[list[float]],
    nd: list[float],
    qoff: float,
    qscale: float,
    prior: list[float],
    c1: float,
    c2: float,
    parent_fpu: bool,
) -> int:
    """:func:`puct_select` for one node, on Python floats (the small-batch path)."""
    n, w, mask = e[E_VISITS], e[E_VALUE], e[E_MASK]
    big_n = nd[N_VISITS]
    raw = nd[N_RAW]
    scale = math.sqrt(big_n) * (c1 + math.log((big_n + (c2 + 1.0)) / c2))
    best, best_a = -math.inf, 0
    for a in range(len(n)):
        if mask[a] != 0.0:
            continue
        na = n[a]
        if parent_fpu:
            qn = ((w[a] + (na == 0) * raw) / max(na, 1.0) - qoff) * qscale
            if na == 0:
                qn = min(max(qn, 0.0), 1.0)
        else:
            qn = (w[a] - qoff * na) * (qscale / max(na, 1.0))
        s = qn + prior[a] * (scale / (na + 1.0))
        if s > best:
            best, best_a = s, a
    return best_a


def completed_sigma(
    e: np.ndarray, nd: np.ndarray, *, c_visit: float, c_scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """sigma(completed Q) and its upper bound.

    Args:
        e: [m, 5, A] gathered edge blocks.
        nd: [m, N_COLS] node rows (raw value, visits, psum, pq, emax).
        c_visit, c_scale: sigma constants.

    Returns:
        ([m, A] sigma, in [0, bound] on legal actions (undefined on illegal ones),
        [m, 1] bound = (c_visit + max n) * c_scale).
    """
    n = e[:, E_VISITS]
    big_n = nd[:, N_VISITS]
    wq = nd[:, N_PQ] / np.maximum(nd[:, N_PSUM], 1e-300)
    mixed = (nd[:, N_RAW] + (big_n - 1.0) * wq) / big_n
    cq = np.where(n > 0, e[:, E_VALUE] / np.maximum(n, 1.0), mixed[:, None])
    mask = e[:, E_MASK]
    lo = (cq - mask).min(axis=1, keepdims=True)
    hi = (cq + mask).max(axis=1, keepdims=True)
    bound = ((c_visit + nd[:, N_EMAX]) * c_scale)[:, None]
    return (cq - lo) * (bound / np.maximum(hi - lo, _EPS)), bound


def _sigma_row(
    e: list[list[float]], nd: list[float], c_visit: float, c_scale: float
) -> tuple[list[float], float]:
    n, w, mask = e[E_VISITS], e[E_VALUE], e[E_MASK]
    big_n = nd[N_VISITS]
    wq = nd[N_PQ] / max(nd[N_PSUM], 1e-300)
    mixed = (nd[N_RAW] + (big_n - 1.0) * wq) / big_n
    cq = [w[a] / max(n[a], 1.0) if n[a] > 0 else mixed for a in range(len(n))]
    legal = [cq[a] for a in range(len(n)) if mask[a] == 0.0]
    lo, hi = min(legal), max(legal)
    bound = (c_visit + nd[N_EMAX]) * c_scale
    k = bound / max(hi - lo, _EPS)
    return [(c - lo) * k for c in cq], bound


def gumbel_interior(e: np.ndarray, nd: np.ndarray, *, c_visit: float, c_scale: float) -> np.ndarray:
    """Deterministic Gumbel MuZero selection at non-root nodes: [m] int64 actions."""
    sigma, bound = completed_sigma(e, nd, c_visit=c_visit, c_scale=c_scale)
    z = np.exp(e[:, E_LOGP] + (sigma - bound))  # <= 1: softmax without a max pass
    probs = z / np.maximum(z.sum(axis=1, keepdims=True), 1e-300)
    score = probs - e[:, E_VISITS] / nd[:, N_VISITS][:, None] + e[:, E_MASK]
    return score.argmax(axis=1)


def gumbel_interior_row(
    e: list[list[float]], nd: list[float], c_visit: float, c_scale: float
) -> int:
    """:func:`gumbel_interior` for one node, on Python floats."""
    sigma, bound = _sigma_row(e, nd, c_visit, c_scale)
    logp, n, mask = e[E_LOGP], e[E_VISITS], e[E_MASK]
    z = [math.exp(logp[a] + (sigma[a] - bound)) if mask[a] == 0.0 else 0.0 for a in range(len(n))]
    total = max(sum(z), 1e-300)
    big_n = nd[N_VISITS]
    best, best_a = -math.inf, 0
    for a in range(len(n)):
        if mask[a] != 0.0:
            continue
        s = z[a] / total - n[a] / big_n
        if s > best:
            best, best_a = s, a
    return best_a


@lru_cache(maxsize=64)
def considered_visits_table(max_considered: int, num_simulations: int) -> np.ndarray:
    """Sequential Halving schedule: [max_considered + 1, num_simulations] int visit targets.

    Row ``m`` gives, for each simulation index, the visit count an action must have to be
    considered when ``m`` actions are considered (mctx ``get_table_of_considered_visits``).
    """
    table = np.zeros((max_considered + 1, num_simulations), np.int64)
    for m in range(max_considered + 1):
        table[m] = _considered_sequence(m, num_simulations)
    table.setflags(write=False)
    return table


def _considered_sequence(m: int, num_simulations: int) -> list[int]:
    if m <= 1:
        return list(range(num_simulations))
    log2max = math.ceil(math.log2(m))
    seq: list[int] = []
    visits = [0] * m
    considered = m
    while len(seq) < num_simulations:
        extra = max(1, int(num_simulations / (log2max * considered)))
        for _ in range(extra):
            seq.extend(visits[:considered])
            for i in range(considered):
                visits[i] += 1
        considered = max(2, considered // 2)
    return seq[:num_simulations]


def gumbel_root_score(
    logp: np.ndarray,
    gumbel: np.ndarray,
    sigma: np.ndarray,
    visits: np.ndarray,
    considered_visit: np.ndarray,
    legal: np.ndarray,
) -> np.ndarray:
    """Sequential-halving score ``g + logp + sigma`` restricted to legal actions with the
    considered visit count: [m, A], -inf elsewhere. Rows where no legal action has that
    count fall back to all legal actions."""
    base = np.where(legal, np.maximum(-1e9, gumbel + np.where(legal, logp, -1e9) + sigma), -np.inf)
    score = np.where(visits == considered_visit[:, None], base, -np.inf)
    stuck = ~np.isfinite(score).any(axis=1)
    if stuck.any():
        score[stuck] = base[stuck]
    return score


def gumbel_root(
    e: np.ndarray,
    nd: np.ndarray,
    gumbel: np.ndarray,
    visits_this: np.ndarray,
    table: np.ndarray,
    *,
    max_considered: int,
    c_visit: float,
    c_scale: float,
) -> np.ndarray:
    """Sequential Halving with Gumbel at the roots: [m] int64 actions.

    Args:
        e: [m, 5, A] root edge blocks.
        nd: [m, N_COLS] root node rows.
        gumbel: [m, A] root Gumbel noise (times gumbel_scale).
        visits_this: [m, A] root visits made in the current search (reuse-aware).
        table: considered-visits table for this search's simulation budget.
        max_considered: the maximum number of considered actions.
        c_visit, c_scale: sigma constants.
    """
    legal = e[:, E_MASK] == 0
    m = np.minimum(max_considered, legal.sum(axis=1))
    sim = np.minimum(visits_this.sum(axis=1).astype(np.int64), table.shape[1] - 1)
    sigma, _ = completed_sigma(e, nd, c_visit=c_visit, c_scale=c_scale)
    score = gumbel_root_score(e[:, E_LOGP], gumbel, sigma, visits_this, table[m, sim], legal)
    return score.argmax(axis=1)


def gumbel_root_row(
    e: list[list[float]],
    nd: list[float],
    gumbel: list[float],
    visits_this: list[float],
    table: np.ndarray,
    max_considered: int,
    c_visit: float,
    c_scale: float,
) -> int:
    """:func:`gumbel_root` for one root, on Python floats."""
    mask, logp = e[E_MASK], e[E_LOGP]
    legal = [a for a in range(len(mask)) if mask[a] == 0.0]
    m = min(max_considered, len(legal))
    target = table[m, min(int(sum(visits_this)), table.shape[1] - 1)]
    sigma, _ = _sigma_row(e, nd, c_visit, c_scale)
    base = {a: max(-1e9, gumbel[a] + logp[a] + sigma[a]) for a in legal}
    pool = [a for a in legal if visits_this[a] == target] or legal
    return max(pool, key=lambda a: (base[a], -a))


def normalise_logits(logits: np.ndarray, legal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masked log-softmax and softmax: ([m, A] logp, -inf off legal; [m, A] probs, 0 off legal).

    Rows without a legal action get logp -inf and probs 0.
    """
    x = np.where(legal, np.asarray(logits, np.float64), -np.inf)
    mx = x.max(axis=1, keepdims=True)
    if not np.isfinite(mx).all():
        mx[~np.isfinite(mx)] = 0.0
    z = np.exp(x - mx)
    s = z.sum(axis=1, keepdims=True)
    s[s == 0] = 1.0
    return x - mx - np.log(s), z / s


def normalise_row(x: list[float], legal: list[bool]) -> tuple[list[float], ...]:
    """:func:`normalise_logits` for one row on Python floats: (prior, logp, mask)."""
    xs = [v if ok else -math.inf for v, ok in zip(x, legal)]
    mx = max(xs)
    if mx == -math.inf:
        n = len(x)
        return [0.0] * n, [-math.inf] * n, [-math.inf] * n
    z = [math.exp(v - mx) for v in xs]
    s = 0.0
    for v in z:
        s += v
    log_s = math.log(s)
    prior = [v / s for v in z]
    logp = [v - mx - log_s if ok else -math.inf for v, ok in zip(xs, legal)]
    return prior, logp, [0.0 if ok else -math.inf for ok in legal]
