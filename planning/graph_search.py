"""The simulation loop of the transposition mode (graph search) on compiled kernels.

:meth:`planning.mcts.MCTS.search` calls :func:`run_graph` when
``MCTSConfig(transpositions=True)``; the kernels are in :mod:`planning.graph_jit` and the
semantics (one node per state key, per-outcome edge statistics, recomputed backups,
cycles) in the :mod:`planning.mcts` docstring.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from planning.batch import tree_concat, tree_scatter_nodes, tree_take, tree_take_nodes
from planning.search_ops import SimContext
from planning.tree import SearchTree, grow_tree

if TYPE_CHECKING:
    from planning.mcts import MCTS

__all__ = ["GRAPH_PATH", "expand_backup", "run_graph"]

GRAPH_PATH = 512  # longest simulation path with transpositions and a stochastic model


def run_graph(mcts: MCTS, tree: SearchTree, ctx: SimContext, t_start: float) -> int:
    """The simulation loop with transpositions (graph search); returns simulations done.

    Per simulation: a compiled descent until every row needs a sampled transition or
    stops; then, level by level, one batched ``model.step`` + ``state_keys`` for the
    rows that need one and a compiled routing step; one evaluator call for the new
    nodes; a compiled backup.

    Args:
        mcts: the searcher (its config, model, evaluator and ``deterministic`` flag).
        tree: the search tree, allocated with keys (grown here when full).
        ctx: the simulation context of this search (rng, root noise, active rows).
        t_start: ``time.perf_counter()`` at the start of the search (time budget).
    """
    from planning import graph_jit as gj
    from planning import search_jit as jit

    cfg, model, rng = mcts.config, mcts.model, ctx.rng
    b = tree.batch_size
    params = mcts._jit_params(ctx)
    table = ctx.table if ctx.table is not None else np.zeros((1, 1), np.int64)
    active = ctx.active.astype(np.int64)
    root_prior = np.ascontiguousarray(ctx.root_prior, np.float64)
    gnoise = np.ascontiguousarray(ctx.gumbel, np.float64)
    visits0 = np.ascontiguousarray(ctx.visits0, np.float64)
    sample_all = not mcts.deterministic
    det = mcts.deterministic
    length = ctx.length
    pend_in, pend_out = np.zeros((3, b), np.int64), np.zeros((3, b), np.int64)
    expand, counts = np.zeros((5, b), np.int64), np.zeros(2, np.int64)
    n_max = int(tree.n_nodes.max())

    def scratch() -> tuple[np.ndarray, np.ndarray]:
        # Stochastic paths may pass a node more than once: at most GRAPH_PATH levels.
        width = int(min(ctx.max_depth, tree.capacity if det else GRAPH_PATH)) + 1
        params[jit.P_MAXDEPTH] = width - 1
        return np.zeros((4, b, width), np.int64), np.full((b, tree.capacity), -1, np.int64)

    path, onpath = scratch()
    table_fn = getattr(model, "transition_table", None)
    tab = table_fn() if callable(table_fn) else None
    if tab is not None:
        gj.seed_kernels(int(rng.integers(1 << 31)))
        exp_key, exp_reward, exp_done = np.zeros(b, np.int64), np.zeros(b), np.zeros(b, bool)
    done = 0
    while done < cfg.num_simulations:
        if cfg.time_budget_s is not None and time.perf_counter() - t_start >= cfg.time_budget_s:
            break
        if n_max + done >= tree.capacity:
            grow_tree(tree, min(2 * tree.capacity, n_max + done + cfg.num_simulations))
            path, onpath = scratch()
        if tab is not None:  # the kernel samples the transitions itself
            n_exp = gj.tp_descend_table(
                tree.nodes, tree.edges, tree.children, tree.slot_visits, tree.slot_reward,
                tree.keys, tree.n_nodes, tree.qnorm, root_prior, gnoise, visits0, table,
                params, path, length, onpath, done, active, pend_in, pend_out, expand,
                counts, *tab, exp_key, exp_reward, exp_done, sample_all,
            )  # fmt: skip
            found = [
                (exp_key[:n_exp].copy(), exp_key[:n_exp].copy(), exp_reward[:n_exp].copy(),
                 exp_done[:n_exp].copy())
            ]  # fmt: skip
            expand_backup(mcts, tree, ctx, params, active, path, length, expand, n_exp, found)
            done += 1
            continue
        n_p = gj.tp_start(
            tree.nodes, tree.edges, tree.children, tree.qnorm, root_prior, gnoise, visits0,
            table, active, params, path, length, onpath, done, pend_in, sample_all,
        )  # fmt: skip
        n_exp, found = 0, []
        while n_p:
            pb, pn, pa = pend_in[0, :n_p], pend_in[1, :n_p], pend_in[2, :n_p]
            nxt, rewards, dones = model.step(tree_take_nodes(tree.states, pb, pn), pa, rng)
            keys = np.ascontiguousarray(model.state_keys(nxt), np.int64)  # type: ignore[attr-defined]
            rewards = np.ascontiguousarray(rewards, np.float64)
            gj.tp_route(
                tree.nodes, tree.edges, tree.children, tree.slot_visits, tree.slot_reward,
                tree.keys, tree.n_nodes, tree.qnorm, root_prior, gnoise, visits0, table,
                params, path, length, onpath, done, pend_in, n_p, keys, rewards, pend_out,
                expand, n_exp, counts, sample_all,
            )  # fmt: skip
            if counts[1] > n_exp:
                i = expand[4, n_exp : counts[1]]
                found.append((tree_take(nxt, i), keys[i], rewards[i], np.asarray(dones, bool)[i]))
            n_p, n_exp = int(counts[0]), int(counts[1])
            pend_in, pend_out = pend_out, pend_in
        expand_backup(mcts, tree, ctx, params, active, path, length, expand, n_exp, found)
        done += 1
    return done


def expand_backup(
    mcts: MCTS,
    tree: SearchTree,
    ctx: SimContext,
    params: np.ndarray,
    active: np.ndarray,
    path: np.ndarray,
    length: np.ndarray,
    expand: np.ndarray,
    n_exp: int,
    found: list,
) -> None:
    """Evaluate and store the new nodes of a graph simulation, then back up.

    Args:
        mcts: the searcher (config, model, evaluator).
        tree: the search tree.
        ctx: the simulation context (its rng feeds the evaluator).
        params: the kernels' ``P_*`` parameter vector.
        active: [n] int64 rows that simulate.
        path: [4, B, W] int64 path scratch.
        length: [B] int64 path lengths.
        expand: [5, B] int64 queued new nodes, the first ``n_exp`` used.
        n_exp: number of new nodes.
        found: per sampling level, (states, keys, rewards, dones) of the new nodes, in
            ``expand`` order.
    """
    from planning import graph_jit as gj

    cfg = mcts.config
    if n_exp:
        nxt = found[0][0] if len(found) == 1 else tree_concat([f[0] for f in found])
        keys, rewards, dones = (np.concatenate([f[j] for f in found]) for j in (1, 2, 3))
        eb = expand[0, :n_exp]
        legal = np.ascontiguousarray(mcts.model.legal_actions(nxt), bool)
        logits, values = mcts._evaluate(nxt, ctx.rng)
        tree_scatter_nodes(tree.states, eb, tree.n_nodes[eb], nxt)
        gj.tp_expand(
            tree.nodes, tree.edges, tree.children, tree.parent, tree.parent_action,
            tree.keys, tree.n_nodes, expand, n_exp, keys, legal,
            np.ascontiguousarray(logits, np.float64), values, rewards, dones, path, length,
        )  # fmt: skip
    gj.tp_backup(
        tree.nodes, tree.edges, tree.children, tree.slot_visits, tree.slot_reward,
        tree.qbounds, tree.qnorm, active, path, length, cfg.discount,
        cfg.rule == "gumbel", cfg.graph_value == "max",
    )  # fmt: skip
