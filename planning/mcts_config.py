"""Search settings and results: :class:`MCTSConfig` (validated) and :class:`SearchResult`.

Frozen value types shared by :mod:`planning.mcts` (the search driver) and its callers;
both are re-exported from ``planning.mcts`` and ``planning``. Semantics of the settings
(chance sampling, transpositions, graph values) are in the :mod:`planning.mcts` docstring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from planning.tree import SearchTree

__all__ = ["MCTSConfig", "SearchResult"]

Rule = Literal["puct", "gumbel"]


def _fail(field: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"planner.{field}: {value!r}; allowed {allowed}")


@dataclass(frozen=True)
class MCTSConfig:
    """Search settings (validated on construction; ValueError names the field).

    Attributes:
        num_simulations: simulations per decision (>= 1).
        rule: "puct" (MuZero pUCT everywhere) or "gumbel" (Gumbel MuZero).
        discount: per-step discount in (0, 1].
        c1, c2: PUCT constants (pb_c_init >= 0, pb_c_base > 0).
        unvisited_value: PUCT value of an unvisited edge: "parent" (the parent node's
            evaluator value, i.e. first-play urgency: with flat priors every action is
            tried once before any is tried twice if the value is accurate) or "min"
            (normalised 0, MuZero / mctx style).
        dirichlet_alpha, dirichlet_fraction: PUCT root noise for self-play (fraction 0 =
            off); mixed into the prior over the legal root actions.
        temperature: PUCT acting: 0 = most visited (ties by Q); > 0 samples
            proportional to visits ** (1 / temperature).
        max_considered_actions: Gumbel: actions sampled at the root (>= 1).
        gumbel_scale: Gumbel noise scale (0 = deterministic evaluation mode).
        c_visit, c_scale: Gumbel sigma(q) = (c_visit + max N) * c_scale * q.
        chance_samples: K, the most sampled children an edge keeps (stochastic models).
            The default K = 1 keeps the first sampled outcome of every edge (one model
            call per simulation, the cheapest, a single-sample estimate); K > 1 with
            "resample" costs one model call per tree level per simulation.
        chance_mode: "resample" (every traversal samples a fresh transition, routed to
            the child with the same state: edge Q converges to the expectation) or
            "stored" (the first K traversals sample, later ones cycle round robin
            through the K stored children: one model call per simulation, but Q stays
            a K-sample estimate). See :mod:`planning.mcts`.
        max_depth: maximum tree depth in edges (None = unlimited).
        time_budget_s: wall-clock budget per search call (None = off), seconds.
        transpositions: graph search (needs ``model.state_keys``): one node per
            distinct state per root, edges may lead to any node, a path that revisits
            one of its nodes stops there, edge Q = mean over sampled outcomes of
            ``r + discount * V(child)`` (recomputed on backup), stochastic edges sample
            every traversal and keep one child per distinct outcome (up to K =
            ``chance_samples``; ``chance_mode`` is ignored). See :mod:`planning.mcts`.
        graph_value: with transpositions, a node's value: "mean" (visit-weighted mean
            of its edge Q and its evaluator value, MCGS / UCT style) or "max" (max Q over
            its visited edges, MaxUCT style: Bellman optimality backups over the explored
            graph, exact on a fully explored deterministic MDP).
    """

    num_simulations: int = 64
    rule: Rule = "puct"
    discount: float = 0.99
    c1: float = 1.25
    c2: float = 19652.0
    unvisited_value: Literal["parent", "min"] = "parent"
    dirichlet_alpha: float = 0.3
    dirichlet_fraction: float = 0.0
    temperature: float = 0.0
    max_considered_actions: int = 16
    gumbel_scale: float = 1.0
    c_visit: float = 50.0
    c_scale: float = 0.1
    chance_samples: int = 1
    chance_mode: Literal["resample", "stored"] = "resample"
    max_depth: int | None = None
    time_budget_s: float | None = None
    transpositions: bool = False
    graph_value: Literal["mean", "max"] = "mean"

    def __post_init__(self) -> None:
        checks = [
            (
                "num_simulations",
                _is_int(self.num_simulations) and self.num_simulations >= 1,
                "integer >= 1",
            ),
            ("rule", self.rule in ("puct", "gumbel"), "'puct', 'gumbel'"),
            ("discount", 0.0 < self.discount <= 1.0, "in (0, 1]"),
            ("c1", self.c1 >= 0.0, ">= 0"),
            ("c2", self.c2 > 0.0, "> 0"),
            ("unvisited_value", self.unvisited_value in ("parent", "min"), "'parent', 'min'"),
            ("dirichlet_alpha", self.dirichlet_alpha > 0.0, "> 0"),
            ("dirichlet_fraction", 0.0 <= self.dirichlet_fraction <= 1.0, "in [0, 1]"),
            ("temperature", self.temperature >= 0.0, ">= 0"),
            (
                "max_considered_actions",
                _is_int(self.max_considered_actions) and self.max_considered_actions >= 1,
                "integer >= 1",
            ),
            ("gumbel_scale", self.gumbel_scale >= 0.0, ">= 0"),
            ("c_visit", self.c_visit >= 0.0, ">= 0"),
            ("c_scale", self.c_scale > 0.0, "> 0"),
            (
                "chance_samples",
                _is_int(self.chance_samples) and self.chance_samples >= 1,
                "integer >= 1",
            ),
            ("chance_mode", self.chance_mode in ("resample", "stored"), "'resample', 'stored'"),
            (
                "max_depth",
                self.max_depth is None or (_is_int(self.max_depth) and self.max_depth >= 1),
                "None or integer >= 1",
            ),
            (
                "time_budget_s",
                self.time_budget_s is None or self.time_budget_s >= 0.0,
                "None or >= 0 s",
            ),
            ("transpositions", isinstance(self.transpositions, bool), "True, False"),
            (
                "graph_value",
                self.graph_value == "mean" or (self.graph_value == "max" and self.transpositions),
                "'mean', or 'max' with transpositions=True",
            ),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise _fail(name, getattr(self, name), allowed)


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


@dataclass(frozen=True)
class SearchResult:
    """Outcome of one batched search.

    Attributes:
        action: [B] int64 chosen root actions.
        visit_counts: [B, A] int64 root edge visits (reused visits included).
        root_value: [B] float64 mean value of the root (evaluator + backups).
        policy: [B, A] float64 improved policy for training: visit distribution (PUCT)
            or softmax(logp + sigma(completed Q)) (Gumbel); the prior if no simulation ran.
        q_values: [B, A] float64 mean backed-up return per root action (NaN if unvisited).
        prior: [B, A] float64 evaluator prior at the root, masked to legal actions.
        legal: [B, A] bool legal root actions.
        simulations_done: simulations completed (< num_simulations if the budget hit).
        elapsed_s: wall-clock seconds spent in the search.
        tree: the search tree, for reuse (``search(..., reuse=result)``).
    """

    action: np.ndarray
    visit_counts: np.ndarray
    root_value: np.ndarray
    policy: np.ndarray
    q_values: np.ndarray
    prior: np.ndarray
    legal: np.ndarray
    simulations_done: int
    elapsed_s: float
    tree: SearchTree
