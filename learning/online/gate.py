"""Promotion gate and live KPI monitor of the online learner.

**Shadow evaluation** (:class:`ShadowGate`): a candidate network plays the same seeded
grid-model situations as the production network, closed loop, with common random numbers
(same world draws for both), on two suites: *recent* (situations of the layout the robots
work in now) and *held-out* (situations of earlier layouts, sampled once and never trained
on). Per suite it measures the mean undiscounted return (what the policy achieves) and the
value error over the visited states against the discounted return that followed in the grid
model, calibrated by an affine fit so it is scale-free (:class:`SuiteScore`; what the search
trusts; the grid model's rewards are ground truth, so a network
trained on corrupted rewards shows here even when its greedy policy has not moved yet).
Common situations and draws make every situation one *paired* difference (candidate -
production); a candidate is promoted only if it is not worse on *both* suites by either
criterion (``margin``, ``value_margin``) **and** it is better on the recent suite by more
than ``z`` standard errors of the paired difference (return, or per-situation value MSE):
a candidate that differs from production by noise only is not swapped in. The evidence
(all scores, paired differences and their standard errors, margins) goes into the log.

**KPI monitor** (:class:`KpiMonitor`): after a swap, production KPIs (completion rate,
...) reported by the host are compared with the mean of the ``window`` reports before the
swap; a relative drop above ``drop`` on any watched KPI asks for a rollback to the last
good weights. ``window`` reports without a drop confirm the new weights as good.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from planning.batch import tree_map
from planning.grid_model import GridModel, GridModelConfig, GridState
from planning.mcts import MCTS, MCTSConfig
from planning.protocols import Evaluator
from planning.situations import sample_situations
from sim.layout import Layout
from sim.types import MacroAction

__all__ = [
    "GateResult", "KpiMonitor", "ShadowGate", "SituationSuite", "SuiteScore", "ValueCheck",
    "calibrated_residual", "paired",
]


@dataclass(frozen=True)
class SituationSuite:
    """Seeded grid-model situations a network is scored on.

    Attributes:
        name: "recent" or "heldout" (or any label).
        model: the grid model (its plan table has one row per situation).
        states: [N] initial states.
        seed: world randomness of the episodes.
        horizon: steps per episode at most.
    """

    name: str
    model: GridModel
    states: GridState
    seed: int
    horizon: int

    @classmethod
    def sample(
        cls,
        name: str,
        layout: Layout,
        *,
        n: int,
        seed: int,
        horizon: int,
        kinds: Sequence[str],
        model_config: GridModelConfig | None = None,
    ) -> SituationSuite:
        """``n`` situations of ``layout``, kinds round robin, from ``seed``."""
        mcfg = replace(
            model_config or GridModelConfig(), terminate_on_delivery=True, horizon_steps=horizon
        )
        row_kinds = [kinds[i % len(kinds)] for i in range(n)]
        model, states = sample_situations(
            layout, row_kinds, np.random.default_rng(seed), config=mcfg
        )
        return cls(name, model, states, seed, horizon)


def calibrated_residual(values: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """[S] ``targets - (a * values + b)`` for the least-squares affine fit with ``a >= 0``.

    A value that orders states the way their returns do leaves a small residual whatever
    its scale and offset (the search normalises Q by its min-max range, so those are not
    what it trusts); a flat or anti-correlated value leaves the returns' own spread.
    """
    v, g = np.asarray(values, np.float64), np.asarray(targets, np.float64)
    if len(v) == 0:
        return np.zeros(0)
    vc = v - v.mean()
    var = float(vc @ vc)
    a = max(float(vc @ (g - g.mean())) / var, 0.0) if var > 1e-12 else 0.0
    return g - (a * v + (g.mean() - a * v.mean()))


@dataclass(frozen=True)
class SuiteScore:
    """Per-situation outcome of one network's closed-loop play of one suite.

    Attributes:
        returns: [N] undiscounted return of each situation's episode.
        obs: encoded observations of every visited state (all situations pooled, [S, ...]).
        values: [S] the network's value of those states.
        targets: [S] the discounted return that followed each state (truncated at the
            suite's horizon).
        rows: [S] the situation each state belongs to.
    """

    returns: np.ndarray
    obs: dict[str, np.ndarray]
    values: np.ndarray
    targets: np.ndarray
    rows: np.ndarray

    @property
    def mean_return(self) -> float:
        return float(self.returns.mean())


@dataclass(frozen=True)
class ValueCheck:
    """Both networks' value errors on the *same* states and targets (one suite).

    The states are those either network visited in its closed-loop play, each with the
    discounted return that followed it there; each network's values on all of them are
    calibrated by :func:`calibrated_residual` (pooled over the suite). Common states make
    the comparison paired (a network that wanders visits easy states and would otherwise
    score a low error for it); calibration makes it scale-free, so networks with different
    value semantics are gated by one rule: grid_pv's value is the return up to the first
    delivery (the gate's suites end there), rl_pv's the continuing fleet return (every
    later order included). Poisoned rewards turn the value against the returns: a large
    residual.

    Attributes:
        production_rmse, candidate_rmse: calibrated RMSE over all the states (return units).
        production_raw_rmse, candidate_raw_rmse: uncalibrated (for the log).
        gain: [N] per-situation calibrated MSE reduction (production - candidate).
    """

    production_rmse: float
    candidate_rmse: float
    production_raw_rmse: float
    candidate_raw_rmse: float
    gain: np.ndarray

    @classmethod
    def of(cls, production: Evaluator, p: SuiteScore, candidate: Evaluator, c: SuiteScore) -> ValueCheck:
        obs_p_on_c = production.evaluate(c.obs)[1] if len(c.values) else np.zeros(0)
        obs_c_on_p = candidate.evaluate(p.obs)[1] if len(p.values) else np.zeros(0)
        g = np.concatenate([p.targets, c.targets])
        rows = np.concatenate([p.rows, c.rows])
        vp = np.concatenate([p.values, np.asarray(obs_p_on_c, np.float64)])
        vc = np.concatenate([np.asarray(obs_c_on_p, np.float64), c.values])
        n = len(p.returns)

        def per_row(res: np.ndarray) -> np.ndarray:
            return np.bincount(rows, res**2, n) / np.maximum(np.bincount(rows, minlength=n), 1)

        def rms(x: np.ndarray) -> float:
            return float(np.sqrt(np.mean(x**2))) if len(x) else 0.0

        rp, rc = calibrated_residual(vp, g), calibrated_residual(vc, g)
        return cls(rms(rp), rms(rc), rms(vp - g), rms(vc - g), per_row(rp) - per_row(rc))


def _rollout_rows(
    suite: SituationSuite, evaluator: Evaluator, simulations: int, discount: float,
    search: Mapping[str, Any] | None = None,
) -> SuiteScore:
    """Closed-loop play of every situation; per-situation returns and value errors.

    Actions: the argmax of the network's logits (``simulations`` 0) or an MCTS search on
    the network. The world is re-seeded per step from ``(suite.seed, t)`` (common random
    numbers: every network sees the same draws). The value error compares the network's
    value of every visited state with the discounted return that followed it in the
    grid model (truncated at the horizon): poisoned rewards corrupt exactly this.
    ``search``: further :class:`MCTSConfig` fields (the host planner's rule, depth, ...).
    """
    model, states = suite.model, suite.states
    b = len(states)
    mcts = (
        MCTS(model, evaluator, MCTSConfig(num_simulations=simulations, discount=discount,
                                          **dict(search or {})))
        if simulations > 0
        else None
    )
    alive = np.ones(b, bool)
    rewards, values, masks, seen = [], [], [], []
    for t in range(suite.horizon):
        if not alive.any():
            break
        enc = model.encode(states)
        seen.append({k: np.asarray(x)[alive] for k, x in enc.items()})
        logits, v = evaluator.evaluate(enc)
        if mcts is None:
            act = np.asarray(logits).argmax(-1)
        else:
            act = mcts.search(states, seed=suite.seed * 7919 + t).action
        act = np.where(alive, act, int(MacroAction.WAIT))
        nxt, r, d = model.step(states, act, np.random.default_rng([suite.seed, t]))
        rewards.append(np.where(alive, r, 0.0))
        values.append(np.asarray(v, np.float64))
        masks.append(alive.copy())
        keep = alive.reshape(-1, 1)
        states = tree_map(lambda a, n: np.where(keep.reshape(-1, *[1] * (a.ndim - 1)), n, a),
                          states, nxt)
        alive &= ~d
    if not rewards:
        z = np.zeros(0)
        return SuiteScore(np.zeros(b), {}, z, z.copy(), z.astype(np.int64))
    rew, val, live = np.array(rewards), np.array(values), np.array(masks)  # [T, B]
    togo = np.zeros_like(rew)
    acc = np.zeros(b)
    for t in range(len(rew) - 1, -1, -1):
        acc = rew[t] + discount * acc
        togo[t] = acc
    # time-major boolean selection matches the order ``seen`` was collected in
    rows = np.broadcast_to(np.arange(b), live.shape)
    obs = {k: np.concatenate([o[k] for o in seen]) for k in seen[0]}
    return SuiteScore(rew.sum(0), obs, val[live], togo[live], rows[live].astype(np.int64))


def paired(diff: np.ndarray) -> tuple[float, float]:
    """(mean, standard error) of per-situation paired differences (SE 0 for one row)."""
    d = np.asarray(diff, np.float64)
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
    return float(d.mean()), se


@dataclass(frozen=True)
class GateResult:
    """One gate decision with its evidence.

    Attributes:
        accepted: promote the candidate.
        scores: suite -> {"production", "candidate": mean return; "production_value_rmse",
            "candidate_value_rmse"; "diff", "diff_se": mean and standard error of the
            per-situation paired return difference (candidate - production);
            "value_gain", "value_gain_se": the same of the per-situation value-MSE
            reduction (production - candidate)}.
        margin: tolerated mean-return loss per suite (reward units).
        n_situations: suite -> situations played.
        reason: "better on recent, not worse on every suite", or why not.
        z: standard errors a gain must clear (``gate_z``).
    """

    accepted: bool
    scores: dict[str, dict[str, float]]
    margin: float
    n_situations: dict[str, int]
    reason: str
    z: float = 0.0

    def evidence(self) -> dict[str, Any]:
        """JSON-able summary for the log."""
        return {
            "scores": self.scores,
            "margin": self.margin,
            "z": self.z,
            "n_situations": self.n_situations,
            "reason": self.reason,
        }


class ShadowGate:
    """Scores candidates against production on the recent and held-out suites.

    Both networks play the same situations with the same world draws, so every situation
    gives one *paired* difference; the decision uses their mean and standard error (SE):

    - **not worse** on each suite (both must hold): mean return difference
      ``>= -margin`` and value RMSE ``cand <= prod + value_margin`` (point estimates: a
      loss is never excused as noise; more situations make it less noisy);
    - **better** on the recent suite (``require_gain``): the mean return gain, or the mean
      per-situation value-MSE reduction, exceeds ``z`` standard errors of its paired
      difference (and 0; a value-MSE reduction also at least ``min_value_gain``). A
      candidate that only differs from production by noise (or not at all), or by a
      significant but negligible value fit, is not swapped in: a swap must buy something
      measurable.

    Args:
        recent: situations of the current layout.
        heldout: situations of earlier layouts (never replaced by :meth:`set_recent`).
        margin: tolerated mean-return loss per suite (reward units).
        value_margin: tolerated value-RMSE increase per suite (reward units).
        simulations: MCTS simulations per decision (0 = greedy policy). Production plans
            with a search, so the gate should too: the greedy policy's outcomes flip on
            tiny weight changes and are far noisier than the searched ones.
        discount: discount of the value targets (the search's).
        z: standard errors of the paired difference a gain must clear.
        require_gain: False = the old rule (not worse is enough; tests of what the
            learner does without the gate).
        search: further :class:`MCTSConfig` fields of the gate's search (the host
            planner's ``rule``, ``max_depth``, ...; default MCTSConfig's).
        min_value_gain: the smallest value-MSE reduction (calibrated, reward units
            squared) that counts as a gain (0 = any significant one).
    """

    def __init__(
        self,
        recent: SituationSuite,
        heldout: SituationSuite,
        *,
        margin: float,
        value_margin: float,
        simulations: int,
        discount: float = 0.99,
        z: float = 2.0,
        require_gain: bool = True,
        search: Mapping[str, Any] | None = None,
        min_value_gain: float = 0.0,
    ) -> None:
        self.recent, self.heldout = recent, heldout
        self.min_value_gain = float(min_value_gain)
        self.margin, self.value_margin = float(margin), float(value_margin)
        self.simulations, self.discount = int(simulations), float(discount)
        self.z, self.require_gain = float(z), bool(require_gain)
        self.search = dict(search or {})
        self._prod_cache: dict[tuple[int, str], SuiteScore] = {}

    def set_recent(self, suite: SituationSuite) -> None:
        """New current-layout situations (the held-out suite stays)."""
        self.recent = suite
        self._prod_cache.clear()

    def suites(self) -> tuple[SituationSuite, SituationSuite]:
        """(recent, heldout)."""
        return self.recent, self.heldout

    def compare(
        self, candidate: Evaluator, production: Evaluator, production_version: int
    ) -> GateResult:
        """Gate decision: better on the recent suite, not worse anywhere (class docstring)."""
        scores, worse, gain = {}, [], []
        for s in self.suites():
            key = (production_version, s.name)
            if key not in self._prod_cache:
                self._prod_cache[key] = _rollout_rows(s, production, self.simulations, self.discount, self.search)
            p = self._prod_cache[key]
            c = _rollout_rows(s, candidate, self.simulations, self.discount, self.search)
            d, d_se = paired(c.returns - p.returns)
            vc = ValueCheck.of(production, p, candidate, c)
            g, g_se = paired(vc.gain)
            scores[s.name] = {
                "production": p.mean_return, "candidate": c.mean_return,
                "production_value_rmse": vc.production_rmse,
                "candidate_value_rmse": vc.candidate_rmse,
                "production_raw_value_rmse": vc.production_raw_rmse,
                "candidate_raw_value_rmse": vc.candidate_raw_rmse,
                "diff": d, "diff_se": d_se, "value_gain": g, "value_gain_se": g_se,
            }
            if d < -self.margin:
                worse.append(f"{s.name} return")
            if vc.candidate_rmse > vc.production_rmse + self.value_margin:
                worse.append(f"{s.name} value error")
            if s is self.recent:
                if d > 0 and d > self.z * d_se:
                    gain.append("return")
                if g > 0 and g > self.z * g_se and g >= self.min_value_gain:
                    gain.append("value error")
        if worse:
            reason = f"worse on {', '.join(worse)}"
        elif self.require_gain and not gain:
            reason = (f"no gain on recent beyond {self.z:g} standard errors (noise)"
                      f"{'' if self.min_value_gain <= 0 else f' and a value gain >= {self.min_value_gain:g}'}")
        else:
            reason = ("better on recent " + " and ".join(gain) + ", not worse on every suite"
                      if gain else "not worse on every suite")
        return GateResult(
            accepted=not worse and (bool(gain) or not self.require_gain),
            scores=scores,
            margin=self.margin,
            n_situations={s.name: len(s.states) for s in self.suites()},
            reason=reason,
            z=self.z,
        )


@dataclass
class KpiMonitor:
    """Watches production KPIs after a swap and asks for a rollback on a drop.

    Args:
        keys: watched KPI names; a leading "-" means lower is better.
        window: reports averaged before (baseline) and after a swap.
        drop: relative drop (of the baseline's magnitude) that triggers a rollback.
    """

    keys: tuple[str, ...]
    window: int
    drop: float
    history: list[dict[str, float]] = field(default_factory=list)
    _baseline: dict[str, float] | None = None
    _after: list[dict[str, float]] = field(default_factory=list)
    watching: bool = False

    def on_swap(self) -> None:
        """A new production version: the last ``window`` reports become the baseline."""
        before = self.history[-self.window :]
        self._baseline = _mean(before, self.keys) if before else None
        self._after = []
        self.watching = self._baseline is not None

    def stop(self) -> None:
        """Stops watching (after a rollback: the restored version is trusted)."""
        self.watching, self._after = False, []

    def report(self, kpis: Mapping[str, float]) -> dict[str, Any] | None:
        """Adds one report. Returns the rollback evidence on a drop, else None.

        Evidence: {"baseline", "after", "drop", "kpi", "relative_drop", "window"}.
        Non-finite or missing watched KPIs are ignored in the means.
        """
        row = {k.lstrip("-"): float(v) for k, v in kpis.items() if np.isfinite(float(v))}
        self.history.append(row)
        del self.history[: -4 * self.window]
        if not self.watching or self._baseline is None:
            return None
        self._after.append(row)
        if len(self._after) < self.window:
            return None
        after = _mean(self._after, self.keys)
        self.watching = False  # one verdict per swap: rollback now, or confirmed good
        for key in self.keys:
            name, sign = key.lstrip("-"), (-1.0 if key.startswith("-") else 1.0)
            b, a = self._baseline.get(name), after.get(name)
            if b is None or a is None:
                continue
            rel = sign * (b - a) / max(abs(b), 1e-9)
            if rel > self.drop:
                return {
                    "kpi": name,
                    "baseline": self._baseline,
                    "after": after,
                    "relative_drop": rel,
                    "drop": self.drop,
                    "window": self.window,
                }
        return None

    @property
    def confirmed(self) -> bool:
        """The last swap was watched for a full window without a drop."""
        return not self.watching and len(self._after) >= self.window


def _mean(rows: Sequence[Mapping[str, float]], keys: Sequence[str]) -> dict[str, float]:
    out = {}
    for key in keys:
        name = key.lstrip("-")
        vals = [r[name] for r in rows if name in r]
        if vals:
            out[name] = float(np.mean(vals))
    return out
