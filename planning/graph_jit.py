"""Numba kernels of the transposition mode (``MCTSConfig(transpositions=True)``, graph search).

Nodes are keyed by ``model.state_keys``, edges store per-outcome counts and rewards, and
values are recomputed from the children on backup (``Q(s, a) = sum_k n_k (r_k + discount *
V(c_k)) / sum_k n_k``, ``V(s) = (raw + sum_a N_a Q_a) / (1 + sum_a N_a)``), which equals
the plain tree's mean of returns when no state repeats. Driven by
:mod:`planning.graph_search`; selection and node writing are shared with the tree kernels
of :mod:`planning.search_jit` (same ``params`` vector and column constants).

Scratch arrays: ``path [4, B, W]`` = node, action, child, outcome slot per level;
``pending [3, B]`` = (row, node, action) of the edges whose transition must be sampled;
``expand [5, B]`` = (row, parent, action, slot, index into the sampled batch).

Numba's on-disk cache is invalidated only by edits of the file that defines a kernel, not
of the files it calls into: after editing ``_select``, ``_write_node`` or the constants in
``planning/search_jit.py``, touch this file too (or delete ``planning/__pycache__``) so the
kernels below are recompiled.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from planning.search_jit import (
    _EM,
    _EP,
    _EV,
    _EW,
    _NEM,
    _NEXP,
    _NPQ,
    _NPS,
    _NRAW,
    _NS,
    _NV,
    P_MAXDEPTH,
    _select,
    _write_node,
)

__all__ = ["seed_kernels", "tp_backup", "tp_descend_table", "tp_expand", "tp_route", "tp_start"]


@njit(cache=True)
def _tp_walk(
    nodes, edges, children, qnorm, root_prior, gumbel, visits0, table, params, path, length,
    onpath, stamp, b, node, pend_out, n_out, buf, sample_all,
):  # fmt: skip
    """Descend row ``b`` from ``node`` until an edge needs a sample (appended to
    ``pend_out``) or a leaf is reached. Returns the new count of ``pend_out``."""
    max_depth = params[P_MAXDEPTH]
    n_act = edges.shape[3]
    while True:
        if not sample_all:  # known edges back into the path are skipped (masked) here
            n_free = 0
            for x in range(n_act):
                if edges[b, node, _EM, x] != 0.0:
                    continue
                c = children[b, node, x, 0]
                if c >= 0 and onpath[b, c] == stamp:
                    edges[b, node, _EM, x] = 1.0  # temporarily illegal, restored below
                else:
                    n_free += 1
            if n_free == 0:  # every legal edge closes a cycle: stop here
                for x in range(n_act):
                    if edges[b, node, _EM, x] == 1.0:
                        edges[b, node, _EM, x] = 0.0
                return n_out
            for x in range(n_act):
                if edges[b, node, _EM, x] == 1.0:
                    edges[b, node, _EM, x] = -np.inf
        a = _select(edges, nodes, qnorm, root_prior, gumbel, visits0, table, params, b, node, buf)
        if not sample_all:
            for x in range(n_act):  # restore the skipped edges (illegal ones have no child)
                c = children[b, node, x, 0]
                if edges[b, node, _EM, x] == -np.inf and c >= 0 and onpath[b, c] == stamp:
                    edges[b, node, _EM, x] = 0.0
        depth = length[b]
        path[0, b, depth] = node
        path[1, b, depth] = a
        length[b] = depth + 1
        child = children[b, node, a, 0]
        if sample_all or child < 0:
            pend_out[0, n_out] = b
            pend_out[1, n_out] = node
            pend_out[2, n_out] = a
            return n_out + 1
        path[2, b, depth] = child
        path[3, b, depth] = 0
        if onpath[b, child] == stamp or nodes[b, child, _NEXP] == 0.0 or depth + 1 >= max_depth:
            return n_out
        onpath[b, child] = stamp
        node = child


@njit(cache=True)
def tp_start(
    nodes, edges, children, qnorm, root_prior, gumbel, visits0, table, active, params, path,
    length, onpath, stamp, pend_out, sample_all,
):  # fmt: skip
    """Start a simulation in every active row; returns the number of pending samples."""
    buf = np.empty(edges.shape[3])
    n_out = 0
    for i in range(active.shape[0]):
        b = active[i]
        length[b] = 0
        onpath[b, 0] = stamp
        n_out = _tp_walk(
            nodes, edges, children, qnorm, root_prior, gumbel, visits0, table, params, path,
            length, onpath, stamp, b, 0, pend_out, n_out, buf, sample_all,
        )  # fmt: skip
    return n_out


@njit(cache=True)
def _find_key(keys, n_nodes, b, key):
    for j in range(n_nodes[b]):
        if keys[b, j] == key:
            return j
    return -1


@njit(cache=True)
def tp_route(
    nodes, edges, children, slot_visits, slot_reward, keys, n_nodes, qnorm, root_prior, gumbel,
    visits0, table, params, path, length, onpath, stamp, pend_in, n_in, sample_keys,
    rewards, pend_out, expand, n_exp, counts, sample_all,
):  # fmt: skip
    """Route the sampled outcomes of the pending edges to children (by state key).

    A stored child with the key continues the descent (unless it closes a cycle, is a
    leaf or the depth limit is hit); a key known elsewhere in the row's graph is linked as
    a new outcome of the edge and ends the simulation there (its current value is backed
    up); an unknown key is queued in ``expand``. With all K outcome slots used and no
    match, the least-visited outcome is followed. ``counts`` receives (pending, expand).
    """
    buf = np.empty(edges.shape[3])
    k = children.shape[3]
    max_depth = params[P_MAXDEPTH]
    n_out = 0
    for i in range(n_in):
        b = pend_in[0, i]
        node = pend_in[1, i]
        a = pend_in[2, i]
        key = sample_keys[i]
        depth = length[b] - 1
        slot = -1
        free = -1
        least = 0
        for s in range(k):
            c = children[b, node, a, s]
            if c < 0:
                if free < 0:
                    free = s
            elif keys[b, c] == key:
                slot = s
                break
            elif slot_visits[b, node, a, s] < slot_visits[b, node, a, least]:
                least = s
        cont = True
        if slot >= 0:  # a known outcome: its reward is the running mean over its samples
            n_s = slot_visits[b, node, a, slot]  # traversals backed up so far
            slot_reward[b, node, a, slot] += (rewards[i] - slot_reward[b, node, a, slot]) / (n_s + 1.0)
        if slot < 0:
            if free < 0:  # all K outcomes stored, none matches: follow the least visited
                slot = least
            else:
                slot = free
                found = _find_key(keys, n_nodes, b, key)
                slot_reward[b, node, a, slot] = rewards[i]
                if found < 0:
                    expand[0, n_exp] = b
                    expand[1, n_exp] = node
                    expand[2, n_exp] = a
                    expand[3, n_exp] = slot
                    expand[4, n_exp] = i
                    n_exp += 1
                    path[3, b, depth] = slot
                    continue
                children[b, node, a, slot] = found
                cont = False  # a transposition: back up the known node's value
        child = children[b, node, a, slot]
        path[2, b, depth] = child
        path[3, b, depth] = slot
        if (
            not cont
            or (onpath[b, child] == stamp and not sample_all)
            or nodes[b, child, _NEXP] == 0.0
            or depth + 1 >= max_depth
        ):
            continue
        onpath[b, child] = stamp
        n_out = _tp_walk(
            nodes, edges, children, qnorm, root_prior, gumbel, visits0, table, params, path,
            length, onpath, stamp, b, child, pend_out, n_out, buf, sample_all,
        )  # fmt: skip
    counts[0] = n_out
    counts[1] = n_exp


@njit(cache=True)
def tp_expand(
    nodes, edges, children, parent, parent_action, keys, n_nodes, expand, n_exp, new_keys,
    legal, logits, values, rewards, dones, path, length,
):  # fmt: skip
    """Allocate and store the queued new nodes (states already scattered at n_nodes[b])."""
    for i in range(n_exp):
        b = expand[0, i]
        p = expand[1, i]
        a = expand[2, i]
        new = n_nodes[b]
        n_nodes[b] = new + 1
        children[b, p, a, expand[3, i]] = new
        parent[b, new] = p
        parent_action[b, new] = a
        keys[b, new] = new_keys[i]
        edges[b, new, _EV, :] = 0.0
        edges[b, new, _EW, :] = 0.0
        _write_node(nodes, edges, b, new, legal, logits, i, values[i], rewards[i], dones[i])
        path[2, b, length[b] - 1] = new


@njit(cache=True)
def _edge_q(nodes, children, slot_visits, slot_reward, discount, b, n, a):
    """(traversals, Q) of edge (n, a) from its outcomes' counts, rewards and current values."""
    tot = 0.0
    acc = 0.0
    for s in range(children.shape[3]):
        c = children[b, n, a, s]
        cnt = slot_visits[b, n, a, s]
        if c < 0 or cnt == 0.0:
            continue
        tot += cnt
        acc += cnt * (slot_reward[b, n, a, s] + discount * (nodes[b, c, _NS] / nodes[b, c, _NV]))
    return tot, acc / max(tot, 1.0)


@njit(cache=True)
def tp_backup(nodes, edges, children, slot_visits, slot_reward, qbounds, qnorm, active, path,
              length, discount, gumbel, vmax):  # fmt: skip
    """Graph backup: count the traversal on every path edge, then, bottom-up, recompute the
    Q of every visited edge of each path node from its outcomes' current values, ``Q(s, a)
    = sum_k n_k (r_k + discount V(c_k)) / sum_k n_k``, and the node value ``V(s) = (raw +
    sum_a N_a Q_a) / (1 + sum_a N_a)``, or with ``vmax`` ``V(s) = max_a Q_a`` over the
    visited edges (MaxUCT; Keller & Helmert 2013), plus Gumbel's node sums. Refreshing all edges of
    a path node (not only the traversed one) keeps no stale Q of a sibling whose child
    was improved through another parent."""
    n_act = edges.shape[3]
    for i in range(active.shape[0]):
        b = active[i]
        n_len = length[b]
        lo = qbounds[b, 0]
        hi = qbounds[b, 1]
        for j in range(n_len - 1, -1, -1):
            n = path[0, b, j]
            slot_visits[b, n, path[1, b, j], path[3, b, j]] += 1.0
            visits = 1.0
            vsum = nodes[b, n, _NRAW]
            psum = 0.0
            pq = 0.0
            emax = 0.0
            best = -np.inf
            for x in range(n_act):
                if edges[b, n, _EV, x] == 0.0 and x != path[1, b, j]:
                    continue
                tot, q = _edge_q(nodes, children, slot_visits, slot_reward, discount, b, n, x)
                edges[b, n, _EV, x] = tot
                edges[b, n, _EW, x] = tot * q
                visits += tot
                vsum += tot * q
                psum += edges[b, n, _EP, x]
                pq += edges[b, n, _EP, x] * q
                emax = max(emax, tot)
                best = max(best, q)
                lo = min(lo, q)
                hi = max(hi, q)
            nodes[b, n, _NV] = visits
            nodes[b, n, _NS] = best * visits if vmax else vsum
            if gumbel:
                nodes[b, n, _NPS] = psum
                nodes[b, n, _NPQ] = pq
                nodes[b, n, _NEM] = emax
        if not gumbel and n_len > 0:
            qbounds[b, 0] = lo
            qbounds[b, 1] = hi
            qnorm[b, 0] = lo
            qnorm[b, 1] = 1.0 / max(hi - lo, 1e-8)


@njit(cache=True)
def seed_kernels(seed):
    """Seed the kernels' own generator (tabular transitions sampled in :func:`tp_descend_table`)."""
    np.random.seed(seed)


@njit(cache=True)
def tp_descend_table(
    nodes, edges, children, slot_visits, slot_reward, keys, n_nodes, qnorm, root_prior, gumbel,
    visits0, table, params, path, length, onpath, stamp, active, pend_in, pend_out, expand,
    counts, cum, nxt_tab, rew_tab, done_tab, exp_key, exp_reward, exp_done, sample_all,
):  # fmt: skip
    """A whole graph descent for tabular models (states are the keys): transitions are
    sampled here (``P(k) = diff(cum[s, a])``, as ``TabularModel.step``). The new nodes to
    evaluate are ``expand[:, :m]`` with key / reward / done in ``exp_*``; returns m."""
    sample_keys = np.empty(pend_in.shape[1], np.int64)
    rewards = np.empty(pend_in.shape[1])
    n_p = tp_start(
        nodes, edges, children, qnorm, root_prior, gumbel, visits0, table, active, params, path,
        length, onpath, stamp, pend_in, sample_all,
    )  # fmt: skip
    n_exp = 0
    n_k = cum.shape[2]
    while n_p:
        for i in range(n_p):
            s = keys[pend_in[0, i], pend_in[1, i]]
            a = pend_in[2, i]
            u = np.random.random()
            k = 0
            while k < n_k - 1 and cum[s, a, k] < u:
                k += 1
            sample_keys[i] = nxt_tab[s, a, k]
            rewards[i] = rew_tab[s, a, k]
            exp_done[n_exp + i] = done_tab[s, a, k]  # scratch; compacted below
        tp_route(
            nodes, edges, children, slot_visits, slot_reward, keys, n_nodes, qnorm, root_prior,
            gumbel, visits0, table, params, path, length, onpath, stamp, pend_in, n_p,
            sample_keys, rewards, pend_out, expand, n_exp, counts, sample_all,
        )  # fmt: skip
        dn = exp_done[n_exp : n_exp + n_p].copy()
        for j in range(n_exp, counts[1]):
            i = expand[4, j]
            exp_key[j] = sample_keys[i]
            exp_reward[j] = rewards[i]
            exp_done[j] = dn[i]
        n_p = counts[0]
        n_exp = counts[1]
        pend_in, pend_out = pend_out, pend_in
    return n_exp
