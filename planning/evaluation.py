"""Planning evaluation: return reached as a function of simulations, per evaluator.

``run_planning_eval`` plays every evaluator at every simulation budget on the same
seeded grid-model situations (open aisles, blocked aisles, congestion), closed loop:
search, act, let the model sample the world (common random numbers: the world's rng is
re-seeded identically for every configuration), until the first order is delivered
or ``horizon_steps`` pass. It reports the mean undiscounted return per budget and the
*planning efficiency*: the fewest simulations at which an evaluator's mean return reaches
95 % of the way from the worst to the best mean return of any configuration
(``(R - R_worst) / (R_best - R_worst) >= 0.95``), None if it never does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from planning.batch import tree_map, tree_take
from planning.evaluators import RolloutEvaluator, UniformEvaluator
from planning.grid_model import GridModel, GridModelConfig, GridState
from planning.mcts import MCTS, MCTSConfig
from planning.paths import bfs_distances
from planning.protocols import Evaluator
from planning.situations import SITUATION_KINDS, sample_situations
from sim.layout import Layout

__all__ = [
    "DEFAULT_SIMS",
    "DistanceEvaluator",
    "EvaluatorSpec",
    "PlanningEvalResult",
    "plot_planning_eval",
    "run_planning_eval",
    "standard_evaluators",
]

DEFAULT_SIMS: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)
EvaluatorSpec = Evaluator | Callable[[GridModel], Evaluator]


@dataclass(frozen=True)
class PlanningEvalResult:
    """Curves of mean return against simulations.

    Attributes:
        sims: simulation budgets, ascending.
        kinds: situation kinds, in row order of ``per_kind``.
        mean_return: evaluator -> [len(sims)] mean undiscounted return over situations.
        stderr: evaluator -> [len(sims)] standard error of that mean.
        per_kind: evaluator -> [len(kinds), len(sims)] mean return per situation kind.
        decision_ms: evaluator -> [len(sims)] mean wall milliseconds per batched search.
        best_return: the best mean return of any (evaluator, sims).
        worst_return: the worst mean return of any (evaluator, sims).
        efficiency: evaluator -> simulations to reach 95 % (see module docstring) or None.
        n_situations, horizon_steps, seed: the setup.
    """

    sims: tuple[int, ...]
    kinds: tuple[str, ...]
    mean_return: dict[str, np.ndarray]
    stderr: dict[str, np.ndarray]
    per_kind: dict[str, np.ndarray]
    decision_ms: dict[str, np.ndarray]
    best_return: float
    worst_return: float
    efficiency: dict[str, int | None]
    n_situations: int
    horizon_steps: int
    seed: int
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary."""
        arr = lambda d: {k: np.asarray(v).tolist() for k, v in d.items()}
        return {
            "sims": list(self.sims),
            "kinds": list(self.kinds),
            "mean_return": arr(self.mean_return),
            "stderr": arr(self.stderr),
            "per_kind": arr(self.per_kind),
            "decision_ms": arr(self.decision_ms),
            "best_return": self.best_return,
            "worst_return": self.worst_return,
            "efficiency": dict(self.efficiency),
            "n_situations": self.n_situations,
            "horizon_steps": self.horizon_steps,
            "seed": self.seed,
            **self.meta,
        }


class DistanceEvaluator:
    """Value from exact shortest-path distances on the static map (a strong heuristic).

    ``V = -c * (1 - g**d) / (1 - g) + g**d * (delivery_reward [+ pick_reward])`` where d is
    the steps left to finish the current order (to the pick cell, pick, to the station,
    drop) ignoring blockages and robots, ``c`` the time cost per step and ``g`` the
    discount. Flat prior.

    Args:
        model: the grid model.
        discount: the search's discount.
    """

    def __init__(self, model: GridModel, discount: float = 0.99) -> None:
        self.model, self.discount, self.num_actions = model, float(discount), model.num_actions
        lay = model.layout
        targets = np.unique(np.concatenate([model.pick_cells, model.station_cells]))
        self._id = np.full(lay.free.size, -1, np.int64)
        self._id[targets] = np.arange(len(targets))
        cells = model.to_cells(targets)
        dist = np.stack([bfs_distances(lay.free, (int(r), int(c))).ravel() for r, c in cells])
        self._dist = np.where(dist < 0, 10 * lay.free.size, dist).astype(np.float64)

    def evaluate(self, encoded: Any) -> tuple[np.ndarray, np.ndarray]:
        raise TypeError("DistanceEvaluator needs raw states; the search calls evaluate_states")

    def _d(self, frm: np.ndarray, to: np.ndarray) -> np.ndarray:
        return self._dist[self._id[to], frm]

    def evaluate_states(
        self, states: GridState, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        cfg, g = self.model.config, self.discount
        to_station = self._d(states.pos, states.station) + 1.0
        via_pick = (
            self._d(states.pos, states.pick) + 1.0 + self._d(states.pick, states.station) + 1.0
        )
        d = np.where(states.load, to_station, via_pick)
        gain = cfg.delivery_reward + np.where(states.load, 0.0, cfg.pick_reward)
        cost = cfg.time_cost_per_s * self.model.step_s
        geo = (1.0 - g**d) / (1.0 - g) if g < 1.0 else d
        value = -cost * geo + g**d * gain
        return np.zeros((len(d), self.num_actions), np.float32), value


def standard_evaluators(
    names: Sequence[str] = ("uniform", "rollout"),
    *,
    discount: float = 0.99,
    rollout_depth: int = 20,
    network: Evaluator | None = None,
) -> dict[str, EvaluatorSpec]:
    """Evaluator specs by name: "uniform", "rollout", "distance", "network" (needs ``network``).

    Raises:
        ValueError: an unknown name, or "network" without a network evaluator.
    """
    out: dict[str, EvaluatorSpec] = {}
    for name in names:
        if name == "uniform":
            out[name] = lambda m: UniformEvaluator(m.num_actions)
        elif name == "rollout":
            out[name] = lambda m: RolloutEvaluator(m, depth=rollout_depth, discount=discount)
        elif name == "distance":
            out[name] = lambda m: DistanceEvaluator(m, discount)
        elif name == "network" and network is not None:
            out[name] = network
        else:
            raise ValueError(
                f"evaluator: {name!r}; allowed uniform, rollout, distance, network "
                "(network needs a network evaluator)"
            )
    return out


def _play(
    model: GridModel, states: GridState, mcts: MCTS, seed: int, horizon: int
) -> tuple[np.ndarray, float]:
    """Closed-loop episodes of all rows; returns (returns [B], mean ms per search)."""
    b = len(states)
    ret = np.zeros(b)
    alive = np.ones(b, bool)
    spent, calls = 0.0, 0
    for t in range(horizon):
        idx = np.flatnonzero(alive)
        if not len(idx):
            break
        sub = tree_take(states, idx) if len(idx) < b else states
        t0 = time.perf_counter()
        res = mcts.search(sub, seed=seed * 7919 + t)
        spent, calls = spent + time.perf_counter() - t0, calls + 1
        # Common random numbers: every configuration sees the same world draws per step.
        step_rng = np.random.default_rng([seed, t])
        nxt, r, d = model.step(states, _full_actions(b, idx, res.action), step_rng)
        states = _merge(states, nxt, alive)
        ret[idx] += r[idx]
        alive &= ~d
    return ret, 1000.0 * spent / max(calls, 1)


def _full_actions(b: int, idx: np.ndarray, actions: np.ndarray) -> np.ndarray:
    out = np.full(b, 4, np.int64)  # finished rows WAIT (their steps are discarded)
    out[idx] = actions
    return out


def _merge(old: GridState, new: GridState, alive: np.ndarray) -> GridState:
    """Rows still alive take the new state; finished rows keep theirs."""

    def pick(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        mask = alive.reshape(-1, *([1] * (a.ndim - 1)))
        return np.where(mask, b, a)

    return tree_map(pick, old, new)


def run_planning_eval(
    layout: Layout,
    evaluators: Mapping[str, EvaluatorSpec],
    *,
    sims: Sequence[int] = DEFAULT_SIMS,
    n_situations: int = 24,
    seed: int = 0,
    horizon_steps: int = 60,
    kinds: Sequence[str] = SITUATION_KINDS,
    model_config: GridModelConfig | None = None,
    mcts_config: MCTSConfig | None = None,
    n_others: int = 4,
) -> PlanningEvalResult:
    """Mean return reached against simulations, per evaluator, on seeded situations.

    Args:
        layout: the warehouse.
        evaluators: name -> an Evaluator, or a factory ``fn(model) -> Evaluator`` for
            evaluators that need the grid model (rollouts); see :func:`standard_evaluators`.
        sims: simulation budgets (each >= 1).
        n_situations: situations, kinds assigned round robin (>= 1).
        seed: seeds the situations and the world's randomness.
        horizon_steps: steps per episode at most (episodes end at the first delivery).
        kinds: situation kinds to cycle through.
        model_config: grid-model settings (``terminate_on_delivery`` is forced on).
        mcts_config: search settings except ``num_simulations`` (default: PUCT,
            discount 0.99, one sampled child per edge).
        n_others: other-robot slots per situation.

    Returns:
        The :class:`PlanningEvalResult`.

    Raises:
        ValueError: empty ``evaluators`` or ``sims``, a budget < 1, ``n_situations`` < 1.
    """
    sims = tuple(sorted(int(s) for s in sims))
    if not evaluators:
        raise ValueError("evaluators: empty; allowed a non-empty name -> evaluator mapping")
    if not sims or sims[0] < 1:
        raise ValueError(f"sims: {sims}; allowed a non-empty list of integers >= 1")
    if n_situations < 1:
        raise ValueError(f"n_situations: {n_situations}; allowed >= 1")
    mcfg = replace(
        model_config or GridModelConfig(),
        terminate_on_delivery=True,
        horizon_steps=max(horizon_steps, 1),
    )
    base = mcts_config or MCTSConfig(discount=0.99)
    row_kinds = [kinds[i % len(kinds)] for i in range(n_situations)]
    model, states = sample_situations(
        layout, row_kinds, np.random.default_rng(seed), config=mcfg, n_others=n_others
    )
    mean, err, per_kind, ms = {}, {}, {}, {}
    kind_rows = [np.array([k == kind for k in row_kinds]) for kind in kinds]
    for name, spec in evaluators.items():
        is_evaluator = hasattr(spec, "evaluate") or hasattr(spec, "evaluate_states")
        ev = spec if is_evaluator else spec(model)  # type: ignore[operator]
        curves = np.zeros((len(sims), n_situations))
        ms[name] = np.zeros(len(sims))
        for i, n in enumerate(sims):
            mcts = MCTS(model, ev, replace(base, num_simulations=n))
            curves[i], ms[name][i] = _play(model, states, mcts, seed, horizon_steps)
        mean[name] = curves.mean(1)
        err[name] = (
            curves.std(1, ddof=1) / np.sqrt(n_situations) if n_situations > 1 else 0 * mean[name]
        )
        per_kind[name] = np.stack(
            [
                curves[:, rows].mean(1) if rows.any() else np.full(len(sims), np.nan)
                for rows in kind_rows
            ]
        )
    best = max(float(v.max()) for v in mean.values())
    worst = min(float(v.min()) for v in mean.values())
    eff = {name: _efficiency(v, sims, best, worst) for name, v in mean.items()}
    return PlanningEvalResult(
        sims=sims,
        kinds=tuple(kinds),
        mean_return=mean,
        stderr=err,
        per_kind=per_kind,
        decision_ms=ms,
        best_return=best,
        worst_return=worst,
        efficiency=eff,
        n_situations=n_situations,
        horizon_steps=horizon_steps,
        seed=seed,
        meta={"rule": base.rule, "layout": layout.name},
    )


def _efficiency(curve: np.ndarray, sims: tuple[int, ...], best: float, worst: float) -> int | None:
    span = best - worst
    score = np.ones_like(curve) if span <= 1e-12 else (curve - worst) / span
    hit = np.flatnonzero(score >= 0.95 - 1e-12)
    return int(sims[hit[0]]) if len(hit) else None


def plot_planning_eval(result: PlanningEvalResult, path: str) -> str:
    """Write the return-vs-simulations curves (all situations + one panel per kind) as PNG.

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 1 + len(result.kinds)
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.6), squeeze=False)
    x = np.asarray(result.sims)
    for name, y in result.mean_return.items():
        eff = result.efficiency[name]
        ax = axes[0, 0]
        ax.plot(x, y, marker="o", label=f"{name} (95% at {eff if eff else '-'})")
        ax.fill_between(x, y - result.stderr[name], y + result.stderr[name], alpha=0.2)
        for j, kind in enumerate(result.kinds):
            axes[0, j + 1].plot(x, result.per_kind[name][j], marker="o", label=name)
    titles = ["all situations", *result.kinds]
    for ax, title in zip(axes[0], titles):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("simulations per decision")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("mean return")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
