"""The inner loop of the search: descend (vectorised or row by row) and back up.

A simulation walks every row's tree from its root, records the path in the context's
``[B, width]`` scratch matrices, and returns the leaf edges to expand. Two
implementations build identical trees: :func:`descend` + :func:`backup` run a fixed
number of array ops per tree level over all rows (the fast path for batches; backup is
one pass over rows and levels at once), :func:`simulate_rows` runs Python float
arithmetic per row (fewer numpy calls: the fast path for B <= 4).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from planning.batch import tree_concat, tree_take, tree_take_nodes
from planning.selection import (
    gumbel_interior,
    gumbel_interior_row,
    gumbel_root,
    gumbel_root_row,
    puct_row,
    puct_select,
)
from planning.tree import (
    E_PRIOR,
    E_VALUE,
    E_VISITS,
    N_EMAX,
    N_EXPANDABLE,
    N_PQ,
    N_PSUM,
    N_REWARD,
    N_VISITS,
    N_VSUM,
    SearchTree,
    equal_children,
)

__all__ = ["Leaves", "SimContext", "backup", "descend", "make_context", "simulate_rows"]


@dataclass
class Leaves:
    """Leaf edges to expand, one per row that needs it: [m] arrays."""

    b: np.ndarray
    parent: np.ndarray
    action: np.ndarray
    slot: np.ndarray
    value: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sampled: tuple[Any, np.ndarray, np.ndarray] | None = None  # (next states, rewards, dones)


@dataclass
class SimContext:
    """Per-search constants, root noise and scratch buffers."""

    rng: np.random.Generator
    rule: str
    c1: float
    c2: float
    parent_fpu: bool
    c_visit: float
    c_scale: float
    max_considered: int
    k: int
    max_depth: int
    root_prior: np.ndarray  # [B, A] (Dirichlet-noised for PUCT)
    gumbel: np.ndarray  # [B, A] gumbel_scale * Gumbel(0, 1)
    visits0: np.ndarray  # [B, A] root visits before this search (tree reuse)
    table: np.ndarray | None  # Sequential Halving schedule (Gumbel)
    active: np.ndarray  # [m] rows whose root can be expanded
    row_path: bool
    path_n: np.ndarray  # [B, width] node, action, child per level (width grows)
    path_a: np.ndarray
    path_c: np.ndarray
    length: np.ndarray  # [B] path length of the current simulation
    leaf_value: np.ndarray  # [B] value at the end of the current path
    levels: np.ndarray  # [width] 0, 1, 2, ...
    disc: np.ndarray  # [width + 1] discount ** level
    discount: float
    step: Any = None  # model.step, for re-sampling chance edges during the descent
    resample: bool = False
    rows_cache: dict[str, Any] = field(default_factory=dict)


def make_context(
    tree: SearchTree,
    cfg: Any,
    rng: np.random.Generator,
    root_prior: np.ndarray,
    gumbel: np.ndarray,
    table: np.ndarray | None,
    k: int,
    *,
    row_path: bool,
    step: Any = None,
    resample: bool = False,
) -> SimContext:
    """Build the context of one search call (``cfg`` is an ``MCTSConfig``)."""
    b = tree.batch_size
    depth = cfg.max_depth or _UNLIMITED
    width = min(depth, 64)  # path scratch columns; doubled when a path gets longer
    levels = np.arange(width + 1)
    ctx = SimContext(
        rng=rng,
        rule=cfg.rule,
        c1=cfg.c1,
        c2=cfg.c2,
        parent_fpu=cfg.unvisited_value == "parent",
        c_visit=cfg.c_visit,
        c_scale=cfg.c_scale,
        max_considered=cfg.max_considered_actions,
        k=k,
        max_depth=depth,
        root_prior=root_prior,
        gumbel=gumbel,
        visits0=tree.edges[:, 0, E_VISITS].copy(),
        table=table,
        active=np.flatnonzero(tree.nodes[:, 0, N_EXPANDABLE] > 0),
        row_path=row_path,
        path_n=np.zeros((b, width), np.int64),
        path_a=np.zeros((b, width), np.int64),
        path_c=np.zeros((b, width), np.int64),
        length=np.zeros(b, np.int64),
        leaf_value=np.zeros(b),
        levels=levels[:-1],
        disc=float(cfg.discount) ** levels.astype(np.float64),
        discount=float(cfg.discount),
        step=step,
        resample=resample,
    )
    if row_path:
        ctx.rows_cache = {
            "prior": root_prior.tolist(),
            "gumbel": gumbel.tolist(),
            "visits0": ctx.visits0.tolist(),
            "active": ctx.active.tolist(),
            "disc": ctx.disc.tolist(),
        }
    return ctx


_UNLIMITED = 1 << 40


def _grow_paths(ctx: SimContext) -> None:
    """Double the path scratch width (a path reached the current width)."""
    width = ctx.path_n.shape[1] * 2
    pad = np.zeros((len(ctx.path_n), width - ctx.path_n.shape[1]), np.int64)
    ctx.path_n, ctx.path_a, ctx.path_c = (
        np.concatenate([x, pad], axis=1) for x in (ctx.path_n, ctx.path_a, ctx.path_c)
    )
    levels = np.arange(width + 1)
    ctx.levels = levels[:-1]
    ctx.disc = ctx.discount ** levels.astype(np.float64)
    if ctx.row_path:
        ctx.rows_cache["disc"] = ctx.disc.tolist()


def _select(
    tree: SearchTree, ctx: SimContext, idx: np.ndarray, e: np.ndarray, nd: np.ndarray, at_root: bool
) -> np.ndarray:
    if ctx.rule == "puct":
        prior = ctx.root_prior[idx] if at_root else e[:, E_PRIOR]
        return puct_select(
            e, nd, tree.qnorm[idx], prior, c1=ctx.c1, c2=ctx.c2, parent_fpu=ctx.parent_fpu
        )
    if at_root:
        visits = e[:, E_VISITS] - ctx.visits0[idx]
        return gumbel_root(
            e,
            nd,
            ctx.gumbel[idx],
            visits,
            ctx.table,
            max_considered=ctx.max_considered,
            c_visit=ctx.c_visit,
            c_scale=ctx.c_scale,
        )
    return gumbel_interior(e, nd, c_visit=ctx.c_visit, c_scale=ctx.c_scale)


def descend(tree: SearchTree, ctx: SimContext) -> Leaves:
    """Vectorised descent of every active row; fills the path scratch and leaf values."""
    ctx.length[:] = 0
    ctx.leaf_value[:] = 0.0
    idx = ctx.active
    node = np.zeros(len(idx), np.int64)
    found: list[tuple[np.ndarray, ...]] = []
    depth, k = 0, ctx.k
    while len(idx):
        if depth >= ctx.path_n.shape[1]:
            _grow_paths(ctx)
        e = tree.edges[idx, node]
        a = _select(tree, ctx, idx, e, tree.nodes[idx, node], depth == 0)
        ctx.path_n[idx, depth] = node
        ctx.path_a[idx, depth] = a
        depth += 1
        ctx.length[idx] = depth
        sample = None
        if ctx.resample:
            slot, child, has, sample = _resample_edges(tree, ctx, idx, node, a)
        elif k == 1:
            slot = np.zeros_like(a)
            child = tree.children[idx, node, a, 0]
            has = child >= 0
        else:
            visits = e[np.arange(len(a)), E_VISITS, a].astype(np.int64)
            slot = visits % k
            child = tree.children[idx, node, a, slot]
            has = visits >= k
        if not has.all():
            new = ~has
            found.append(
                (idx[new], node[new], a[new], slot[new], sample and _take_sample(sample, new))
            )
            idx, child = idx[has], child[has]
        ctx.path_c[idx, depth - 1] = child
        stop = tree.nodes[idx, child, N_EXPANDABLE] == 0
        if depth >= ctx.max_depth:
            stop[:] = True
        if stop.any():
            sb, sc = idx[stop], child[stop]
            leaf = tree.nodes[sb, sc]
            ctx.leaf_value[sb] = leaf[:, N_VSUM] / leaf[:, N_VISITS]
            idx, child = idx[~stop], child[~stop]
        node = child
    return _leaves(found)


def _leaves(found: list[tuple[Any, ...]]) -> Leaves:
    if not found:
        z = np.zeros(0, np.int64)
        return Leaves(z, z, z, z)
    if len(found) == 1:
        b, p, a, s, smp = found[0]
        return Leaves(b, p, a, s, sampled=smp)
    b, p, a, s = (np.concatenate(x) for x in list(zip(*found))[:4])
    # Found level by level; order by row, as the row path and the kernels do, so that a
    # stochastic model.step draws the same outcome for the same row on every backend.
    order = np.argsort(b, kind="stable")
    b, p, a, s = b[order], p[order], a[order], s[order]
    smp = None
    if found[0][4] is not None:
        smp = (
            tree_take(tree_concat([f[4][0] for f in found]), order),
            np.concatenate([f[4][1] for f in found])[order],
            np.concatenate([f[4][2] for f in found])[order],
        )
    return Leaves(b, p, a, s, sampled=smp)


def _take_sample(
    sample: tuple[Any, np.ndarray, np.ndarray], mask: np.ndarray
) -> tuple[Any, np.ndarray, np.ndarray]:
    return tree_take(sample[0], mask), sample[1][mask], sample[2][mask]


def _resample_edges(
    tree: SearchTree, ctx: SimContext, idx: np.ndarray, node: np.ndarray, a: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple]:
    """Sample a fresh transition for each selected edge and route it to a child.

    The outcome goes to the stored child with the same state; else, with fewer than K
    children, it becomes a new child (expanded by the caller); else it goes to the
    least-visited stored child.

    Returns:
        (slot [m], child [m] (-1 if new), has_child [m] bool, (next, rewards, dones)).
    """
    states = tree_take_nodes(tree.states, idx, node)
    nxt, rewards, dones = ctx.step(states, a, ctx.rng)
    stored = tree.children[idx, node, a]  # [m, K]
    match = equal_children(tree, idx, stored, nxt)
    found = match.any(axis=1)
    n_children = (stored >= 0).sum(axis=1)
    visits = np.where(
        stored >= 0, tree.nodes[idx[:, None], np.maximum(stored, 0), N_VISITS], np.inf
    )
    slot = np.where(
        found, match.argmax(axis=1), np.where(n_children < ctx.k, n_children, visits.argmin(axis=1))
    )
    has = found | (n_children >= ctx.k)
    child = np.where(has, stored[np.arange(len(idx)), np.minimum(slot, ctx.k - 1)], -1)
    return slot, child, has, (nxt, np.asarray(rewards, np.float64), np.asarray(dones, bool))


def _select_row(ctx: SimContext, b: int, e: list, nd: list, qn: list, at_root: bool) -> int:
    if ctx.rule == "puct":
        prior = ctx.rows_cache["prior"][b] if at_root else e[E_PRIOR]
        return puct_row(e, nd, qn[0], qn[1], prior, ctx.c1, ctx.c2, ctx.parent_fpu)
    if at_root:
        v0 = ctx.rows_cache["visits0"][b]
        visits = [x - y for x, y in zip(e[E_VISITS], v0)]
        return gumbel_root_row(
            e,
            nd,
            ctx.rows_cache["gumbel"][b],
            visits,
            ctx.table,
            ctx.max_considered,
            ctx.c_visit,
            ctx.c_scale,
        )
    return gumbel_interior_row(e, nd, ctx.c_visit, ctx.c_scale)


def simulate_rows(
    tree: SearchTree, ctx: SimContext, expand: Callable[[Leaves], list[tuple[int, float, float]]]
) -> None:
    """One simulation per row on Python floats: descend, ``expand`` the leaves, back up.

    Same selection and arithmetic as :func:`descend` + :func:`backup` (hence the same
    trees), with far fewer numpy calls: the fast path for a handful of rows.
    ``expand(leaves)`` returns ``(new node, value, reward)`` per leaf row.
    """
    pending, leaves = [], ([], [], [], [])
    k, max_depth = ctx.k, ctx.max_depth
    for b in ctx.rows_cache["active"]:
        edges, nodes, children = tree.edges[b], tree.nodes[b], tree.children[b]
        qn = tree.qnorm[b].tolist()
        node, nd, path, leaf = 0, nodes[0].tolist(), [], None
        while True:
            e = edges[node].tolist()
            a = _select_row(ctx, b, e, nd, qn, not path)
            path.append((node, a, e, nd))
            if k == 1:
                slot, child = 0, int(children[node, a, 0])
                has = child >= 0
            else:
                visits = int(e[E_VISITS][a])
                slot, has = visits % k, visits >= k
                child = int(children[node, a, slot]) if has else -1
            if not has:
                for acc, x in zip(leaves, (b, node, a, slot)):
                    acc.append(x)
                break
            nd = nodes[child].tolist()
            if nd[N_EXPANDABLE] == 0 or len(path) >= max_depth:
                leaf = (child, nd[N_VSUM] / nd[N_VISITS], nd[N_REWARD])
                break
            node = child
        pending.append((b, path, leaf))
    new = iter(expand(Leaves(*(np.asarray(x, np.int64) for x in leaves)))) if leaves[0] else None
    for b, path, leaf in pending:
        _backup_row(tree, ctx, b, path, leaf if leaf is not None else next(new))  # type: ignore[arg-type]


def _backup_row(
    tree: SearchTree, ctx: SimContext, b: int, path: list, leaf: tuple[int, float, float]
) -> None:
    """:func:`backup` of one row's path; ``path[l] = (node, action, edge rows, node row)``."""
    length = len(path)
    while length >= len(ctx.rows_cache["disc"]):
        _grow_paths(ctx)
    gumbel = ctx.rule == "gumbel"
    rewards = [path[j + 1][3][N_REWARD] for j in range(length - 1)] + [leaf[2]]
    g, gs, discount = leaf[1], [0.0] * length, ctx.discount
    for j in range(length - 1, -1, -1):  # G_j = r_j + discount * G_{j+1}, from the leaf up
        g = rewards[j] + discount * g
        gs[j] = g
    lo, hi = tree.qbounds[b].tolist()
    edges, nodes = tree.edges[b], tree.nodes[b]
    for j, (n, a, e, nd) in enumerate(path):
        g = gs[j]
        visits, value = e[E_VISITS][a], e[E_VALUE][a]
        q = (value + g) / (visits + 1.0)
        edges[n, E_VISITS, a] = visits + 1.0
        edges[n, E_VALUE, a] = value + g
        row = nodes[n]
        row[N_VISITS] = nd[N_VISITS] + 1.0
        row[N_VSUM] = nd[N_VSUM] + g
        if gumbel:
            prior = e[E_PRIOR][a]
            row[N_PSUM] = nd[N_PSUM] + prior * (visits == 0)
            row[N_PQ] = nd[N_PQ] + prior * (q - value / max(visits, 1.0))
            row[N_EMAX] = max(nd[N_EMAX], visits + 1.0)
        lo, hi = min(lo, q), max(hi, q)
    if not gumbel:
        tree.qbounds[b] = (lo, hi)
        tree.qnorm[b] = (lo, 1.0 / max(hi - lo, 1e-8))


def backup(tree: SearchTree, ctx: SimContext) -> None:
    """Add this simulation's discounted returns to every edge and node on every path.

    With ``G_l = r_l + discount * G_{l+1}`` and ``G_L`` the leaf value, computed level by
    level from the deepest (dividing a discounted cumulative sum by ``discount**l``
    underflows on deep paths with a small discount). The
    Gumbel rule also keeps each node's visited prior mass, prior-weighted Q sum and
    max edge visits (its mixed value and sigma scale) up to date.
    """
    length = ctx.length
    lmax = int(length.max()) if len(length) else 0
    if lmax == 0:
        return
    rows = np.arange(tree.batch_size)
    valid = ctx.levels[:lmax] < length[:, None]
    r = tree.nodes[rows[:, None], ctx.path_c[:, :lmax], N_REWARD] * valid
    g = np.empty((len(rows), lmax))
    acc = ctx.leaf_value.astype(np.float64, copy=True)
    for j in range(lmax - 1, -1, -1):
        acc = np.where(j < length, r[:, j] + ctx.discount * acc, acc)
        g[:, j] = acc
    bb, ll = valid.nonzero()
    n, a, gv = ctx.path_n[bb, ll], ctx.path_a[bb, ll], g[bb, ll]
    if ctx.rule == "gumbel":  # Gumbel normalises per node: no tree-wide bounds needed
        _backup_gumbel(tree, bb, n, a, gv)
        return
    upd = np.empty((len(bb), 2))
    upd[:, 0] = 1.0
    upd[:, 1] = gv
    tree.edges[bb, n, :2, a] += upd
    tree.nodes[bb, n, :2] += upd
    stats = tree.edges[bb, n, :2, a]
    _update_qbounds(tree, bb, stats[:, 1] / stats[:, 0])


def _backup_gumbel(
    tree: SearchTree, bb: np.ndarray, n: np.ndarray, a: np.ndarray, gv: np.ndarray
) -> np.ndarray:
    old = tree.edges[bb, n, :3, a]  # [L, 3] visits, value sum, prior
    visits, value, prior = old[:, E_VISITS], old[:, E_VALUE], old[:, E_PRIOR]
    new = np.empty((len(bb), 2))
    new[:, 0] = visits + 1.0
    new[:, 1] = value + gv
    tree.edges[bb, n, :2, a] = new
    q_new = new[:, 1] / new[:, 0]
    q_old = value / np.maximum(visits, 1.0)
    upd = np.empty((len(bb), 4))  # visits, value sum, psum, pq
    upd[:, 0] = 1.0
    upd[:, 1] = gv
    upd[:, 2] = prior * (visits == 0)
    upd[:, 3] = prior * (q_new - q_old)
    tree.nodes[bb, n, :4] += upd
    tree.nodes[bb, n, N_EMAX] = np.maximum(tree.nodes[bb, n, N_EMAX], new[:, 0])
    return q_new


def _update_qbounds(tree: SearchTree, bb: np.ndarray, q: np.ndarray) -> None:
    """Fold edge Q values into each row's min-max bounds (bb sorted by row)."""
    starts = np.flatnonzero(np.concatenate(([True], bb[1:] != bb[:-1])))
    rb = bb[starts]
    lo = np.minimum(tree.qbounds[rb, 0], np.minimum.reduceat(q, starts))
    hi = np.maximum(tree.qbounds[rb, 1], np.maximum.reduceat(q, starts))
    tree.qbounds[rb, 0] = lo
    tree.qbounds[rb, 1] = hi
    tree.qnorm[rb, 0] = lo
    tree.qnorm[rb, 1] = 1.0 / np.maximum(hi - lo, 1e-8)
