"""Preallocated batched search-tree storage (mctx-style) and re-rooting for tree reuse.

Node ``0`` of each batch row is the root. A node is allocated by the simulation that
first reaches it, so a parent's index is always smaller than its children's; re-rooting
keeps that order. Edge statistics live on the parent (``[B, N, A]``); an edge may hold up
to ``K`` sampled children (``children [B, N, A, K]``, -1 = none) for stochastic models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from planning.batch import tree_alloc_nodes, tree_leaves, tree_map

__all__ = [
    "SearchTree",
    "alloc_tree",
    "equal_children",
    "grow_tree",
    "match_children",
    "match_keys",
    "reroot",
    "reroot_graph",
    "set_qbounds",
]

# Column / row indices of the packed arrays.
N_VISITS, N_VSUM, N_PSUM, N_PQ, N_EMAX, N_RAW, N_REWARD, N_TERMINAL, N_EXPANDABLE = range(9)
N_COLS = 9
E_VISITS, E_VALUE, E_PRIOR, E_LOGP, E_MASK = range(5)
_ARRAYS = ("nodes", "edges", "children", "parent", "parent_action")
_FILLS = {"children": -1, "parent": -1, "parent_action": -1}


@dataclass
class SearchTree:
    """Search statistics of B independent trees; treat as read-only outside the search.

    Storage is packed so one gather fetches everything a selection rule needs.

    Attributes:
        states: model states, pytree with leaves [B, N, ...].
        nodes: [B, N, 9] float64 per-node columns: visits (1 for the expansion + the sum of
            its edge visits), value_sum (raw value + backed-up returns), psum (prior mass of
            the visited edges), pq (sum of prior * Q over visited edges; psum/pq/emax feed
            Gumbel's mixed value and are kept by the Gumbel rule only), emax (max edge
            visits), raw_value (evaluator value, 0 if terminal), reward (of the transition
            into the node), terminal (1.0 if that transition ended the episode),
            expandable (1.0 if not terminal and some action is legal).
        edges: [B, N, 5, A] float64 per-edge rows: visits, value (sum of backed-up
            returns r + discount * G), prior (0 if illegal), logp (log prior, -inf if
            illegal), mask (0 legal, -inf illegal).
        children: [B, N, A, K] int64 sampled children, -1 = none yet.
        parent: [B, N] int64 parent node (-1 for roots and unused slots).
        parent_action: [B, N] int64 action on the edge from the parent (-1 for roots).
        n_nodes: [B] int64 allocated nodes per row.
        qbounds: [B, 2] float64 (min, max) edge Q seen (+inf, -inf before any backup).
        qnorm: [B, 2] float64 min-max normalisation: (offset, scale) with
            ``Qn = (Q - offset) * scale``; (0, 0) before any backup.
        keys, slot_visits, slot_reward: transposition mode only (else None): [B, N]
            int64 state key per node, [B, N, A, K] float64 traversals and rewards per
            sampled outcome of an edge (edge Q is recomputed from them, see
            ``planning.graph_jit``). In this mode the structure is a graph: an edge may
            point to any node, ``parent`` records the first parent only.
    """

    states: Any
    nodes: np.ndarray
    edges: np.ndarray
    children: np.ndarray
    parent: np.ndarray
    parent_action: np.ndarray
    n_nodes: np.ndarray
    qbounds: np.ndarray
    qnorm: np.ndarray
    keys: np.ndarray | None = None
    slot_visits: np.ndarray | None = None
    slot_reward: np.ndarray | None = None

    @property
    def batch_size(self) -> int:
        return self.parent.shape[0]

    @property
    def capacity(self) -> int:
        return self.parent.shape[1]

    @property
    def num_actions(self) -> int:
        return self.edges.shape[3]

    @property
    def chance_samples(self) -> int:
        return self.children.shape[3]

    # Readable views ([B, N] or [B, N, A]).
    node_visits = property(lambda self: self.nodes[:, :, N_VISITS])
    value_sum = property(lambda self: self.nodes[:, :, N_VSUM])
    raw_value = property(lambda self: self.nodes[:, :, N_RAW])
    reward = property(lambda self: self.nodes[:, :, N_REWARD])
    terminal = property(lambda self: self.nodes[:, :, N_TERMINAL] > 0)
    expandable = property(lambda self: self.nodes[:, :, N_EXPANDABLE] > 0)
    edge_visits = property(lambda self: self.edges[:, :, E_VISITS])
    edge_value = property(lambda self: self.edges[:, :, E_VALUE])
    prior = property(lambda self: self.edges[:, :, E_PRIOR])
    logp = property(lambda self: self.edges[:, :, E_LOGP])
    legal = property(lambda self: self.edges[:, :, E_MASK] == 0)
    qmin = property(lambda self: self.qbounds[:, 0])
    qmax = property(lambda self: self.qbounds[:, 1])

    def node_value(self) -> np.ndarray:
        """[B, N] mean value of every node (0 for unused slots)."""
        return self.value_sum / np.maximum(self.node_visits, 1.0)


_OPTIONAL = ("keys", "slot_visits", "slot_reward")


def alloc_tree(
    example_states: Any, n_nodes: int, num_actions: int, k: int, transpositions: bool = False
) -> SearchTree:
    """Empty storage for ``n_nodes`` nodes per row, shaped after ``example_states`` [B, ...]."""
    b = tree_leaves(example_states)[0].shape[0]
    edges = np.zeros((b, n_nodes, 5, num_actions))
    edges[:, :, E_LOGP] = -np.inf
    edges[:, :, E_MASK] = -np.inf
    extra: dict[str, Any] = {}
    if transpositions:
        extra = {
            "keys": np.zeros((b, n_nodes), np.int64),
            "slot_visits": np.zeros((b, n_nodes, num_actions, k)),
            "slot_reward": np.zeros((b, n_nodes, num_actions, k)),
        }
    return SearchTree(
        **extra,
        states=tree_alloc_nodes(example_states, n_nodes),
        nodes=np.zeros((b, n_nodes, N_COLS)),
        edges=edges,
        children=np.full((b, n_nodes, num_actions, k), -1, np.int64),
        parent=np.full((b, n_nodes), -1, np.int64),
        parent_action=np.full((b, n_nodes), -1, np.int64),
        n_nodes=np.zeros(b, np.int64),
        qbounds=np.tile([np.inf, -np.inf], (b, 1)),
        qnorm=np.zeros((b, 2)),
    )


def set_qbounds(tree: SearchTree, qmin: np.ndarray, qmax: np.ndarray) -> None:
    """In place: store new Q bounds [B] and the derived normalisation."""
    tree.qbounds[:, 0] = qmin
    tree.qbounds[:, 1] = qmax
    seen = qmax >= qmin
    tree.qnorm[:, 0] = np.where(seen, qmin, 0.0)
    tree.qnorm[:, 1] = np.where(seen, 1.0 / np.maximum(np.where(seen, qmax - qmin, 1.0), _EPS), 0.0)


_EPS = 1e-8


def grow_tree(tree: SearchTree, capacity: int) -> None:
    """In place: enlarge node storage to ``capacity`` slots per row (keeps contents)."""
    extra = capacity - tree.capacity
    if extra <= 0:
        return

    def pad(x: np.ndarray, fill: Any) -> np.ndarray:
        tail = np.full((x.shape[0], extra, *x.shape[2:]), fill, dtype=x.dtype)
        return np.concatenate([x, tail], axis=1)

    for f in _ARRAYS + _OPTIONAL:
        if getattr(tree, f) is not None:
            setattr(tree, f, pad(getattr(tree, f), _FILLS.get(f, 0)))
    tree.states = tree_map(lambda x: pad(x, 0), tree.states)


def equal_children(tree: SearchTree, b: np.ndarray, cand: np.ndarray, states: Any) -> np.ndarray:
    """Which candidate nodes hold exactly ``states``.

    Args:
        tree: the search tree.
        b: [m] rows.
        cand: [m, K] candidate node indices (-1 = none).
        states: pytree with leaves [m, ...].

    Returns:
        [m, K] bool: candidate exists and every state leaf is equal.
    """
    ok = cand >= 0
    safe = np.maximum(cand, 0)
    for stored, new in zip(tree_leaves(tree.states), tree_leaves(states)):
        eq = stored[b[:, None], safe] == np.asarray(new)[:, None]  # [m, K, ...]
        ok &= eq.reshape(eq.shape[0], eq.shape[1], -1).all(axis=2)
    return ok


def match_children(tree: SearchTree, actions: np.ndarray, states: Any) -> np.ndarray:
    """Find, per row, the root child reached by ``actions`` whose state equals ``states``.

    Args:
        tree: the previous search tree.
        actions: [B] int actions taken at the roots.
        states: the observed next states, pytree with leaves [B, ...].

    Returns:
        [B] int64 node index of the matching child, -1 where none matches.
    """
    rows = np.arange(tree.batch_size)
    cand = tree.children[rows, 0, actions]  # [B, K]
    ok = equal_children(tree, rows, cand, states)
    first = np.argmax(ok, axis=1)
    return np.where(ok.any(axis=1), cand[rows, first], -1)


def _subtree_mask(tree: SearchTree, new_root: np.ndarray) -> np.ndarray:
    b, n = tree.parent.shape
    rows = np.arange(b)[:, None]
    anc = np.broadcast_to(np.arange(n), (b, n)).copy()
    target = np.where(new_root >= 0, new_root, -2)[:, None]
    keep = np.zeros((b, n), bool)
    used = np.arange(n)[None, :] < tree.n_nodes[:, None]
    while True:
        keep |= (anc == target) & used
        alive = anc > 0
        if not alive.any():
            return keep
        anc = np.where(alive, tree.parent[rows, np.maximum(anc, 0)], -1)


def reroot(tree: SearchTree, new_root: np.ndarray, extra_nodes: int) -> SearchTree:
    """Keep the subtree under ``new_root`` per row (rows with -1 become empty).

    Args:
        tree: the previous tree.
        new_root: [B] int node to become the root, or -1 for an empty row.
        extra_nodes: free node slots to add after the largest kept subtree.

    Returns:
        A new, compacted tree; the kept root is node 0 and keeps its statistics.
    """
    keep = _subtree_mask(tree, new_root)
    sizes = keep.sum(axis=1)
    cap = int(sizes.max()) + int(extra_nodes)
    new_index = np.where(keep, np.cumsum(keep, axis=1) - 1, -1)
    bb, nn = np.nonzero(keep)
    dst = new_index[bb, nn]

    def move(x: np.ndarray, fill: Any) -> np.ndarray:
        y = np.full((x.shape[0], cap, *x.shape[2:]), fill, dtype=x.dtype)
        y[bb, dst] = x[bb, nn]
        return y

    out = {f: move(getattr(tree, f), _FILLS.get(f, 0)) for f in _ARRAYS}
    remap = np.concatenate([new_index, np.full((new_index.shape[0], 1), -1)], axis=1)
    rows = np.arange(tree.batch_size)
    out["children"] = remap[rows[:, None, None, None], out["children"]]
    out["parent"] = remap[rows[:, None], out["parent"]]
    out["parent_action"][:, 0] = -1
    # A root is searched like a fresh root: whatever ended the episode before it is moot.
    out["nodes"][:, 0, N_TERMINAL] = 0.0
    out["nodes"][:, 0, N_EXPANDABLE] = (out["edges"][:, 0, E_MASK] == 0).any(axis=1)
    out["states"] = tree_map(lambda x: move(x, 0), tree.states)
    ev, ew = out["edges"][:, :, E_VISITS], out["edges"][:, :, E_VALUE]
    q = ew / np.maximum(ev, 1.0)
    qmin = np.where(ev > 0, q, np.inf).min(axis=(1, 2))
    qmax = np.where(ev > 0, q, -np.inf).max(axis=(1, 2))
    new = SearchTree(
        n_nodes=sizes.astype(np.int64),
        qbounds=np.zeros((len(sizes), 2)),
        qnorm=np.zeros((len(sizes), 2)),
        **out,
    )
    set_qbounds(new, qmin, qmax)
    return new


def match_keys(tree: SearchTree, keys: np.ndarray) -> np.ndarray:
    """Transposition mode: [B] node holding state key ``keys[b]`` anywhere in row b's
    graph, -1 where none."""
    used = np.arange(tree.capacity)[None, :] < tree.n_nodes[:, None]
    hit = (tree.keys == np.asarray(keys, np.int64)[:, None]) & used  # type: ignore[operator]
    return np.where(hit.any(axis=1), hit.argmax(axis=1), -1)


def reroot_graph(tree: SearchTree, new_root: np.ndarray, extra_nodes: int) -> SearchTree:
    """Transposition mode: keep row b's whole graph with node ``new_root[b]`` as the root
    (its index swapped with 0); rows with -1 become empty. Every statistic is kept."""
    b, n = tree.parent.shape
    keep = np.asarray(new_root) >= 0
    rows = np.flatnonzero(keep)
    cap = int(tree.n_nodes[keep].max(initial=0)) + int(extra_nodes)
    perm = np.broadcast_to(np.arange(n), (b, n)).copy()
    r = new_root[rows]
    perm[rows, 0] = r
    perm[rows, r] = 0
    used = (np.arange(n)[None, :] < tree.n_nodes[:, None]) & keep[:, None]
    bb, nn = np.nonzero(used)
    dst = perm[bb, nn]

    def move(x: np.ndarray, fill: Any) -> np.ndarray:
        y = np.full((x.shape[0], cap, *x.shape[2:]), fill, dtype=x.dtype)
        y[bb, dst] = x[bb, nn]
        return y

    out = {f: move(getattr(tree, f), _FILLS.get(f, 0)) for f in _ARRAYS + _OPTIONAL}
    remap = np.concatenate([perm, np.full((b, 1), -1)], axis=1)
    remap[~keep] = -1
    brows = np.arange(b)
    out["children"] = remap[brows[:, None, None, None], out["children"]]
    out["parent"] = remap[brows[:, None], out["parent"]]
    out["parent_action"][:, 0] = -1
    out["parent"][:, 0] = -1
    # Unlike reroot, a terminal new root stays terminal: a key names a state, terminality
    # included, so a finished episode's row stays idle (no search).
    out["states"] = tree_map(lambda x: move(x, 0), tree.states)
    ev, ew = out["edges"][:, :, E_VISITS], out["edges"][:, :, E_VALUE]
    q = ew / np.maximum(ev, 1.0)
    new = SearchTree(
        n_nodes=np.where(keep, tree.n_nodes, 0).astype(np.int64),
        qbounds=np.zeros((b, 2)),
        qnorm=np.zeros((b, 2)),
        **out,
    )
    set_qbounds(
        new,
        np.where(ev > 0, q, np.inf).min(axis=(1, 2)),
        np.where(ev > 0, q, -np.inf).max(axis=(1, 2)),
    )
    return new
