"""Batched MCTS (PUCT or Gumbel root selection) over a :class:`PlanningModel`.

Why numba kernels over preallocated numpy arrays: every simulation step walks B trees at
once, with one batched ``model.step`` and ONE batched evaluator call for the B leaves;
the tree is preallocated ``[B, max_nodes, ...]`` (mctx layout, packed so a node's edge
statistics are contiguous). Selection, expansion bookkeeping and backup run in ONE
numba-compiled call per simulation (``planning.search_jit``: expand + back up this
simulation's leaves, then descend every row for the next one), so the per-simulation
Python cost is the model and evaluator callbacks plus one dispatch, independent of tree
depth and B.
Models and evaluators stay plain Python/numpy/torch (no tracing, any device for a torch
network), which JAX/mctx would not allow. ``MCTS.backend = "numpy"`` selects the
earlier pure-numpy implementation (vectorised over rows, or row by row on Python floats
for B <= ``row_path_max_batch``); all three build identical trees (tested as oracles).
Chance re-sampling (``chance_samples > 1`` with ``chance_mode="resample"``) always runs
the numpy path (it needs a model call per tree level). Measured against mctx on CPU
(``benchmarks/bench_mcts.py``, trivial table model, 64 simulations, shared 2-core
machine, best of repeats, compile excluded for both, 5 runs): PUCT 1.3-1.5x at B = 1,
5.7-9x at B = 256; Gumbel 0.66-0.75x at B = 1, 1.4-2.0x at B = 256 (commands and runs in
docs/ARCHITECTURE.md). Torch was not chosen: its per-op overhead is higher than numpy's for
[B, A] arrays this small.

Semantics:

- **Simulation**: descend from the root with the configured rule until an edge with
  fewer than ``K`` sampled children, a terminal / dead-end node, or ``max_depth``; expand
  one new node per row (``model.step`` + evaluator), back the return up the path.
  Node visits count the expansion (as in mctx), edge Q = mean of ``r + discount * G``.
- **Chance (sampled transitions)**: with a stochastic model an edge stores up to ``K =
  chance_samples`` children. ``chance_mode="resample"`` (default): every traversal
  calls ``model.step`` afresh (one batched call per tree level); the outcome goes to
  the stored child whose state equals it, else becomes a new child while fewer than K
  exist, else goes to the least-visited child. Children are then visited in proportion
  to the outcome probabilities and the edge Q converges to the expected return (exact
  when K >= the number of distinct outcomes). ``chance_mode="stored"``: the first K
  traversals each sample a new child, later ones cycle round robin (traversal ``i``
  goes to child ``i mod K``): one model call per simulation, but the edge Q stays an
  equally weighted K-sample estimate. Models with ``deterministic = True`` always use
  K = 1 and never re-sample.
- **Tree reuse**: ``search(next_states, reuse=previous_result, actions_taken=a)`` keeps,
  per row, the subtree under the root child reached by ``a`` whose stored state equals
  the observed next state (exact equality of every state leaf); rows without a match
  start a fresh tree. Kept statistics count toward visits and Q; Gumbel's Sequential
  Halving schedules only this search's visits.
- **Anytime**: with ``time_budget_s`` the loop stops after the first simulation that
  ends past the budget (checked between simulations); with no finished simulation the
  action is the argmax of the (masked) prior and the policy is the prior.
- **Transpositions** (``transpositions=True``, models with ``state_keys``): graph search
  in the spirit of Monte-Carlo Graph Search (Czech et al. 2021) / UCT on DAGs (Childs
  et al. 2008; Saffidine et al. 2012). One node per distinct state key per root; an edge
  keeps one child per distinct sampled outcome (up to K) with its own traversal count
  and reward; a new outcome whose key is already in the graph is linked to that node
  (the simulation stops there and backs its value up). Backups recompute, bottom-up on
  the path, every visited edge of a path node ``Q = sum_k n_k (r_k + discount V(c_k)) /
  sum_k n_k`` from the children's current values, and the node value: the visit-weighted
  mean with the evaluator value (``graph_value="mean"``; equal to the tree search when
  no state repeats, tested) or the max Q over visited edges (``"max"``, MaxUCT-style
  Bellman backups, Keller & Helmert 2013; the root then acts on the max Q). Cycles:
  with a deterministic model, known edges back into the current path are skipped by
  selection (the simulation stops where all are); with a stochastic model every
  traversal samples a fresh transition and a path may pass a node again (visits count
  traversals, so root visits can exceed ``num_simulations``; at most ``GRAPH_PATH``
  levels, :mod:`planning.graph_search`). Reuse keeps the whole graph and makes the node
  with the observed state's key the root; a terminal node stays terminal (the row
  idles). Models exposing ``transition_table()`` (``TabularModel``) are sampled inside
  the compiled kernels (numba's generator, seeded from the search rng): one kernel call
  per simulation.
- **Determinism**: every random draw comes from ``np.random.default_rng(seed)``
  (Dirichlet, Gumbel, model sampling, rollout evaluators, temperature sampling), so the
  same seed gives identical results (unless a time budget cuts the search).

This module holds :class:`MCTS` (setup, the tree-search loops, the decision); the
settings and result types are in :mod:`planning.mcts_config` (re-exported here), the
graph-search loop in :mod:`planning.graph_search`, the numpy inner loop in
:mod:`planning.search_ops`, the kernels in :mod:`planning.search_jit` (tree) and
:mod:`planning.graph_jit` (graph).
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np

from planning.batch import batch_size, tree_scatter_nodes, tree_take, tree_take_nodes
from planning.graph_search import run_graph
from planning.mcts_config import MCTSConfig, SearchResult
from planning.protocols import Evaluator, PlanningModel, States
from planning.search_ops import Leaves, SimContext, backup, descend, make_context, simulate_rows
from planning.selection import (
    completed_sigma,
    considered_visits_table,
    gumbel_root_score,
    masked_argmax,
    normalise_logits,
    normalise_row,
)
from planning.tree import (
    E_LOGP,
    E_MASK,
    E_PRIOR,
    E_VALUE,
    E_VISITS,
    N_COLS,
    N_EXPANDABLE,
    N_RAW,
    N_REWARD,
    N_TERMINAL,
    N_VISITS,
    N_VSUM,
    SearchTree,
    alloc_tree,
    grow_tree,
    match_children,
    match_keys,
    reroot,
    reroot_graph,
)

__all__ = ["MCTS", "MCTSConfig", "SearchResult"]

_INITIAL_NODES = 1024  # node slots allocated up front per row; doubled when full


class MCTS:
    """Batched Monte-Carlo tree search.

    Args:
        model: the planning model (batched step / legal_actions / encode).
        evaluator: batched prior + value; evaluators with ``evaluate_states(states, rng)``
            receive raw states and the search's rng, others ``model.encode(states)``.
        config: search settings.

    Example:
        >>> mcts = MCTS(model, UniformEvaluator(model.num_actions), MCTSConfig(num_simulations=32))
        >>> res = mcts.search(states, seed=0)           # res.action: [B]
        >>> res2 = mcts.search(next_states, seed=1, reuse=res, actions_taken=res.action)
    """

    def __init__(
        self, model: PlanningModel, evaluator: Evaluator, config: MCTSConfig | None = None
    ) -> None:
        self.model, self.evaluator = model, evaluator
        self.config = config if config is not None else MCTSConfig()
        self.num_actions = int(model.num_actions)
        det = bool(getattr(model, "deterministic", False))
        self.k = 1 if det else self.config.chance_samples
        self.deterministic = det
        if self.config.transpositions and not callable(getattr(model, "state_keys", None)):
            raise ValueError(
                "planner.transpositions: True; allowed only with a model that has "
                "state_keys(states) -> int64 [B] (e.g. planning.adapters.TabularModel)"
            )

    #: Batches up to this size descend row by row on Python floats (fewer numpy calls);
    #: numpy backend only.
    row_path_max_batch: int = 4
    #: "numba": compiled selection / expansion bookkeeping / backup (planning.search_jit);
    #: "numpy": the pure-numpy implementation (vectorised, or row by row for small
    #: batches). Both build identical trees (tested). Chance re-sampling
    #: (``chance_samples > 1``, ``chance_mode="resample"``) always runs the numpy path;
    #: transpositions always run the kernels.
    backend: Literal["numba", "numpy"] = "numba"

    # ---- public ------------------------------------------------------------------
    def search(
        self,
        root_states: States,
        *,
        seed: int | np.random.Generator | None = None,
        reuse: SearchResult | None = None,
        actions_taken: np.ndarray | None = None,
    ) -> SearchResult:
        """Run one batched search from ``root_states`` (pytree, leading dim B).

        Args:
            root_states: the B root states.
            seed: int seed or Generator for every random draw of this search.
            reuse: a previous result whose subtrees may be kept (see module docstring).
            actions_taken: [B] actions executed since ``reuse`` (required with it).

        Returns:
            The :class:`SearchResult`.

        Raises:
            ValueError: ``reuse`` without ``actions_taken`` or with another batch size.
        """
        t_start = time.perf_counter()
        cfg = self.config
        rng = np.random.default_rng(seed)
        tree = self._init_tree(root_states, reuse, actions_taken, rng)
        ctx = self._make_ctx(tree, rng)
        budget = cfg.time_budget_s
        if cfg.transpositions:
            done = run_graph(self, tree, ctx, t_start)
            return self._result(tree, ctx, done, time.perf_counter() - t_start)
        if self.backend == "numba" and not ctx.resample:
            done = self._run_jit(tree, ctx, t_start)
            return self._result(tree, ctx, done, time.perf_counter() - t_start)
        done = 0
        for _ in range(cfg.num_simulations):
            if budget is not None and time.perf_counter() - t_start >= budget:
                break
            if tree.n_nodes.max() >= tree.capacity:
                grow_tree(
                    tree, min(2 * tree.capacity, int(tree.n_nodes.max()) + cfg.num_simulations)
                )
            self._simulate(tree, ctx)
            done += 1
        return self._result(tree, ctx, done, time.perf_counter() - t_start)

    def _run_jit(self, tree: SearchTree, ctx: SimContext, t_start: float) -> int:
        """The simulation loop on the compiled kernels; returns the simulations done."""
        from planning import search_jit as jit

        cfg = self.config
        b = tree.batch_size
        params = self._jit_params(ctx)
        table = ctx.table if ctx.table is not None else np.zeros((1, 1), np.int64)
        active = ctx.active.astype(np.int64)
        leaves = np.zeros((4, b), np.int64)
        length, leaf_value = ctx.length, ctx.leaf_value
        root_prior = np.ascontiguousarray(ctx.root_prior, np.float64)
        gnoise = np.ascontiguousarray(ctx.gumbel, np.float64)
        visits0 = np.ascontiguousarray(ctx.visits0, np.float64)
        n_max = int(tree.n_nodes.max())

        def scratch() -> tuple[np.ndarray, np.ndarray]:
            width = int(min(ctx.max_depth, tree.capacity)) + 1
            lv = np.arange(width + 1)
            return np.zeros((3, b, width), np.int64), ctx.discount ** lv.astype(np.float64)

        path, disc = scratch()
        model, rng = self.model, ctx.rng
        step, legal_fn, evaluate = model.step, model.legal_actions, self._evaluate
        no_bool, no_float = np.zeros((0, self.num_actions), bool), np.zeros((0, self.num_actions))
        empty_f, empty_b = np.zeros(0), np.zeros(0, bool)
        budget, n_sims = cfg.time_budget_s, cfg.num_simulations
        done = 0
        m = -1  # not descended yet
        while done < n_sims:
            if budget is not None and time.perf_counter() - t_start >= budget:
                break
            if n_max + done >= tree.capacity:
                grow_tree(tree, min(2 * tree.capacity, n_max + done + n_sims))
                old, (path, disc) = path, scratch()
                path[:, :, : old.shape[2]] = old
            nodes, edges = tree.nodes, tree.edges
            if m < 0:
                m = jit.descend(
                    nodes, edges, tree.children, tree.qnorm, root_prior, gnoise, visits0, table,
                    active, params, path, length, leaf_value, leaves,
                )  # fmt: skip
            legal, logits, values, rewards, dones = no_bool, no_float, empty_f, empty_f, empty_b
            if m:
                lb, lp = leaves[0, :m], leaves[1, :m]
                states = tree.states
                if type(states) is np.ndarray:
                    nxt, rewards, dones = step(states[lb, lp], leaves[2, :m], rng)
                    states[lb, tree.n_nodes[lb]] = nxt
                else:
                    nxt, rewards, dones = step(tree_take_nodes(states, lb, lp), leaves[2, :m], rng)
                    tree_scatter_nodes(states, lb, tree.n_nodes[lb], nxt)
                legal = np.ascontiguousarray(legal_fn(nxt), bool)
                logits, values = evaluate(nxt, rng)
                logits = np.ascontiguousarray(logits, np.float64)
                rewards = np.ascontiguousarray(rewards, np.float64)
                dones = np.ascontiguousarray(dones, bool)
            done += 1
            m = jit.finish_and_descend(
                nodes, edges, tree.children, tree.parent, tree.parent_action, tree.n_nodes,
                leaves, m, legal, logits, values, rewards, dones, path, length, leaf_value,
                tree.qbounds, tree.qnorm, active, disc, root_prior, gnoise, visits0, table,
                params, done < n_sims,
            )  # fmt: skip
        return done

    def _jit_params(self, ctx: SimContext) -> np.ndarray:
        from planning import search_jit as jit

        cfg = self.config
        params = np.zeros(jit.N_PARAMS)
        params[jit.P_C1], params[jit.P_C2] = cfg.c1, cfg.c2
        params[jit.P_FPU] = float(ctx.parent_fpu)
        params[jit.P_CVISIT], params[jit.P_CSCALE] = cfg.c_visit, cfg.c_scale
        params[jit.P_MAXCONS] = cfg.max_considered_actions
        params[jit.P_K] = self.k
        params[jit.P_MAXDEPTH] = float(ctx.max_depth)
        params[jit.P_GUMBEL] = float(cfg.rule == "gumbel")
        params[jit.P_DISCOUNT] = cfg.discount
        return params

    # ---- setup ---------------------------------------------------------------------
    def _evaluate(self, states: States, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        ev = self.evaluator
        if hasattr(ev, "evaluate_states"):
            logits, values = ev.evaluate_states(states, rng)  # type: ignore[attr-defined]
        else:
            logits, values = ev.evaluate(self.model.encode(states))
        return np.asarray(logits), np.asarray(values, np.float64).reshape(-1)

    def _init_tree(
        self,
        root_states: States,
        reuse: SearchResult | None,
        actions_taken: np.ndarray | None,
        rng: np.random.Generator,
    ) -> SearchTree:
        b = batch_size(root_states)
        extra = min(self.config.num_simulations + 1, _INITIAL_NODES)  # grows on demand
        graph = self.config.transpositions
        if reuse is None:
            tree = alloc_tree(root_states, extra, self.num_actions, self.k, graph)
        else:
            if actions_taken is None:
                raise ValueError("planner.actions_taken: None; allowed [B] int actions with reuse")
            acts = np.asarray(actions_taken, np.int64).reshape(-1)
            if reuse.tree.batch_size != b or len(acts) != b:
                raise ValueError(
                    f"planner.reuse: batch {reuse.tree.batch_size} with {len(acts)} "
                    f"actions; allowed the new batch size {b}"
                )
            if graph:
                if reuse.tree.keys is None:
                    raise ValueError(
                        "planner.reuse: a tree searched without transpositions; allowed "
                        "results of the same configuration"
                    )
                keys = self.model.state_keys(root_states)  # type: ignore[attr-defined]
                tree = reroot_graph(reuse.tree, match_keys(reuse.tree, keys), extra)
            else:
                tree = reroot(reuse.tree, match_children(reuse.tree, acts, root_states), extra)
        fresh = np.flatnonzero(tree.n_nodes == 0)
        if len(fresh):
            sub = root_states if len(fresh) == b else tree_take(root_states, fresh)
            if graph:
                tree.keys[fresh, 0] = self.model.state_keys(sub)  # type: ignore[attr-defined,index]
            self._write_nodes(
                tree,
                fresh,
                np.zeros(len(fresh), np.int64),
                sub,
                np.zeros(len(fresh)),
                np.zeros(len(fresh), bool),
                rng,
            )
            tree.n_nodes[fresh] = 1
        return tree

    def _make_ctx(self, tree: SearchTree, rng: np.random.Generator) -> SimContext:
        cfg = self.config
        b, a = tree.batch_size, self.num_actions
        root_prior = tree.edges[:, 0, E_PRIOR].copy()
        gumbel = np.zeros((b, a))
        table = None
        if cfg.rule == "puct" and cfg.dirichlet_fraction > 0:
            legal = tree.edges[:, 0, E_MASK] == 0
            noise = rng.gamma(cfg.dirichlet_alpha, size=(b, a)) * legal
            noise /= np.maximum(noise.sum(axis=1, keepdims=True), 1e-300)
            root_prior = (1 - cfg.dirichlet_fraction) * root_prior + cfg.dirichlet_fraction * noise
        if cfg.rule == "gumbel":
            gumbel = cfg.gumbel_scale * rng.gumbel(size=(b, a))
            table = considered_visits_table(min(cfg.max_considered_actions, a), cfg.num_simulations)
        resample = self.k > 1 and cfg.chance_mode == "resample"
        return make_context(
            tree,
            cfg,
            rng,
            root_prior,
            gumbel,
            table,
            self.k,
            row_path=b <= self.row_path_max_batch and not resample and self.backend == "numpy",
            step=self.model.step,
            resample=resample,
        )

    def _write_nodes(
        self,
        tree: SearchTree,
        b: np.ndarray,
        n: np.ndarray,
        states: States,
        rewards: np.ndarray,
        dones: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Store and evaluate new nodes ``(b, n)``; returns their values [m]."""
        tree_scatter_nodes(tree.states, b, n, states)
        legal = np.asarray(self.model.legal_actions(states), bool)
        logits, values = self._evaluate(states, rng)
        if self.backend == "numba":
            from planning import search_jit as jit

            out = np.empty(len(b))
            jit.write_nodes(
                tree.nodes, tree.edges, np.asarray(b, np.int64), np.asarray(n, np.int64),
                np.ascontiguousarray(legal), np.ascontiguousarray(logits, np.float64),
                np.ascontiguousarray(values, np.float64), np.ascontiguousarray(rewards, np.float64),
                np.ascontiguousarray(dones, bool), out,
            )  # fmt: skip
            return out
        values = np.where(dones, 0.0, values)
        logp, prior = normalise_logits(logits, legal)
        block = np.empty((len(b), 3, self.num_actions))
        block[:, 0] = prior
        block[:, 1] = logp
        block[:, 2] = np.where(legal, 0.0, -np.inf)
        tree.edges[b, n, E_PRIOR:] = block
        cols = np.zeros((len(b), N_COLS))
        cols[:, N_VISITS] = 1.0
        cols[:, N_VSUM] = values
        cols[:, N_RAW] = values
        cols[:, N_REWARD] = rewards
        cols[:, N_TERMINAL] = dones
        cols[:, N_EXPANDABLE] = ~dones & legal.any(axis=1)
        tree.nodes[b, n] = cols
        return values

    def _expand(self, tree: SearchTree, ctx: SimContext, leaves: Leaves) -> np.ndarray:
        """Step the model from each leaf edge, store and evaluate the new nodes.

        Returns:
            [m] int64 indices of the new nodes (their values go to ``leaves.value``).
        """
        b, p, a, s = leaves.b, leaves.parent, leaves.action, leaves.slot
        if leaves.sampled is not None:
            nxt, rewards, dones = leaves.sampled
        else:
            nxt, rewards, dones = self.model.step(tree_take_nodes(tree.states, b, p), a, ctx.rng)
        new = tree.n_nodes[b]
        tree.n_nodes[b] = new + 1
        tree.children[b, p, a, s] = new
        tree.parent[b, new] = p
        tree.parent_action[b, new] = a
        leaves.value = self._write_nodes(
            tree, b, new, nxt, np.asarray(rewards, np.float64), np.asarray(dones, bool), ctx.rng
        )
        return new

    def _expand_rows(
        self, tree: SearchTree, ctx: SimContext, leaves: Leaves
    ) -> list[tuple[int, float, float]]:
        """:meth:`_expand` for a few rows on Python floats: [(new node, value, reward)]."""
        b_arr, p_arr, a_arr = leaves.b, leaves.parent, leaves.action
        nxt, rewards, dones = self.model.step(
            tree_take_nodes(tree.states, b_arr, p_arr), a_arr, ctx.rng
        )
        legal = np.asarray(self.model.legal_actions(nxt), bool).tolist()
        logits, values = self._evaluate(nxt, ctx.rng)
        b_list = b_arr.tolist()
        new_nodes = [int(tree.n_nodes[b]) for b in b_list]
        for b, new in zip(b_list, new_nodes):
            tree.n_nodes[b] = new + 1
        tree_scatter_nodes(tree.states, b_arr, np.asarray(new_nodes, np.int64), nxt)
        rows = zip(
            b_list,
            p_arr.tolist(),
            a_arr.tolist(),
            leaves.slot.tolist(),
            new_nodes,
            legal,
            np.asarray(logits, np.float64).tolist(),
            values.tolist(),
            np.asarray(rewards, np.float64).tolist(),
            np.asarray(dones, bool).tolist(),
        )
        out = []
        children, parent, parent_action = tree.children, tree.parent, tree.parent_action
        for b, p, a, slot, new, lg, x, v, r, d in rows:
            children[b, p, a, slot] = new
            parent[b, new] = p
            parent_action[b, new] = a
            tree.edges[b, new, E_PRIOR:] = normalise_row(x, lg)
            v = 0.0 if d else v
            tree.nodes[b, new] = (1.0, v, 0.0, 0.0, 0.0, v, r, float(d), float(not d and any(lg)))
            out.append((new, v, r))
        return out

    def _simulate(self, tree: SearchTree, ctx: SimContext) -> None:
        """One simulation in every row: descend, expand one leaf per row, back up."""
        if ctx.row_path:
            simulate_rows(tree, ctx, lambda leaves: self._expand_rows(tree, ctx, leaves))
            return
        leaves = descend(tree, ctx)
        if len(leaves.b):
            new = self._expand(tree, ctx, leaves)
            ctx.path_c[leaves.b, ctx.length[leaves.b] - 1] = new
            ctx.leaf_value[leaves.b] = leaves.value
        backup(tree, ctx)

    # ---- result ----------------------------------------------------------------------------
    def _result(self, tree: SearchTree, ctx: SimContext, done: int, elapsed: float) -> SearchResult:
        cfg = self.config
        e0 = tree.edges[:, 0]
        legal = e0[:, E_MASK] == 0
        prior = e0[:, E_PRIOR].copy()
        visits = e0[:, E_VISITS]
        if self.backend == "numba" and done > 0 and (cfg.rule == "gumbel" or cfg.temperature == 0):
            from planning import search_jit as jit

            b, a = tree.batch_size, self.num_actions
            action, policy, q = np.empty(b, np.int64), np.empty((b, a)), np.empty((b, a))
            root_value = np.empty(b)
            jit.decide(
                tree.edges, tree.nodes, tree.qnorm, np.ascontiguousarray(ctx.gumbel, np.float64),
                np.ascontiguousarray(ctx.visits0, np.float64), cfg.rule == "gumbel",
                cfg.c_visit, cfg.c_scale, action, policy, q, root_value,
            )  # fmt: skip
            if cfg.graph_value == "max" and cfg.rule == "puct":  # act on the max backup
                score = np.where(legal & (visits > 0), np.nan_to_num(q, nan=-np.inf), -np.inf)
                best = score.max(axis=1, keepdims=True)
                ok = np.isfinite(best[:, 0])
                tie = masked_argmax(visits, score == best)
                action = np.where(ok, tie, action)
            return SearchResult(
                action=action,
                visit_counts=visits.astype(np.int64),
                root_value=root_value,
                policy=policy,
                q_values=q,
                prior=prior,
                legal=legal,
                simulations_done=done,
                elapsed_s=elapsed,
                tree=tree,
            )
        with np.errstate(invalid="ignore", divide="ignore"):
            q = np.where(visits > 0, e0[:, E_VALUE] / visits, np.nan)
        if done == 0:
            action, policy = masked_argmax(prior, legal), prior
        elif cfg.rule == "gumbel":
            action, policy = self._gumbel_decision(tree, ctx, legal)
        else:
            action, policy = self._puct_decision(tree, ctx, q, legal)
        root = tree.nodes[:, 0]
        root_value = root[:, N_VSUM] / np.maximum(root[:, N_VISITS], 1.0)
        return SearchResult(
            action=action.astype(np.int64),
            visit_counts=visits.astype(np.int64),
            root_value=root_value,
            policy=policy,
            q_values=q,
            prior=prior,
            legal=legal,
            simulations_done=done,
            elapsed_s=elapsed,
            tree=tree,
        )

    def _puct_decision(
        self, tree: SearchTree, ctx: SimContext, q: np.ndarray, legal: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        visits = tree.edges[:, 0, E_VISITS]
        total = visits.sum(axis=1, keepdims=True)
        policy = np.where(total > 0, visits / np.maximum(total, 1.0), tree.edges[:, 0, E_PRIOR])
        t = self.config.temperature
        if t > 0:
            w = np.where(legal, policy, 0.0) ** (1.0 / t)
            w = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-300)
            u = ctx.rng.random((len(w), 1))
            action = np.minimum((np.cumsum(w, axis=1) < u).sum(axis=1), w.shape[1] - 1)
            return action, policy
        qn = np.nan_to_num((q - tree.qnorm[:, :1]) * tree.qnorm[:, 1:], nan=0.0)
        return masked_argmax(visits + 0.5 * np.clip(qn, 0.0, 1.0), legal), policy

    def _gumbel_decision(
        self, tree: SearchTree, ctx: SimContext, legal: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        e0 = tree.edges[:, 0]
        sigma, _ = completed_sigma(e0, tree.nodes[:, 0], c_visit=cfg.c_visit, c_scale=cfg.c_scale)
        visits = e0[:, E_VISITS] - ctx.visits0
        considered = np.max(np.where(legal, visits, -1), axis=1)
        logp = e0[:, E_LOGP]
        score = gumbel_root_score(logp, ctx.gumbel, sigma, visits, considered, legal)
        action = masked_argmax(score, legal)
        _, policy = normalise_logits(np.where(legal, logp + sigma, 0.0), legal)
        return action, policy
