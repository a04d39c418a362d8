"""Numba-compiled inner loop of the search: selection, expansion bookkeeping, backup.

The model and the evaluator stay Python callbacks; one simulation is one compiled
descent over every row, ONE batched ``model.step`` + evaluator call for the leaves, and
one compiled expand-and-backup call. The kernels run the same float arithmetic, in the
same order, as the row-by-row Python path of :mod:`planning.search_ops` (tested as an
oracle), so the trees are identical to the numpy implementations.

Arrays are the packed :class:`planning.tree.SearchTree` storage. Per-search scalars come
in one float64 vector ``params`` (indices ``P_*``); the path scratch is one int64 array
``path [3, B, W]`` (node, action, child per level) and the leaves to expand are
``leaves [4, B]`` (row, parent, action, slot) of which the first ``m`` are used.

Transposition mode (``MCTSConfig(transpositions=True)``, graph search) has its own
kernels below: nodes are keyed by ``model.state_keys``, edges store per-outcome counts
and rewards, and values are recomputed from the children on backup (``Q(s, a) =
sum_k n_k (r_k + discount * V(c_k)) / sum_k n_k``, ``V(s) = (raw + sum_a N_a Q_a) / (1 +
sum_a N_a)``), which equals the plain tree's mean of returns when no state repeats.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# params indices
P_C1, P_C2, P_FPU, P_CVISIT, P_CSCALE, P_MAXCONS, P_K, P_MAXDEPTH, P_GUMBEL, P_DISCOUNT = range(10)
N_PARAMS = 10

# Same column indices as planning.tree (literal here so numba sees constants).
_NV, _NS, _NPS, _NPQ, _NEM, _NRAW, _NREW, _NTERM, _NEXP = 0, 1, 2, 3, 4, 5, 6, 7, 8
_EV, _EW, _EP, _EL, _EM = 0, 1, 2, 3, 4
_EPS = 1e-8


@njit(cache=True)
def _puct(edges, nodes, b, node, qoff, qscale, root_prior, at_root, c1, c2, fpu):
    big_n = nodes[b, node, _NV]
    raw = nodes[b, node, _NRAW]
    scale = math.sqrt(big_n) * (c1 + math.log((big_n + (c2 + 1.0)) / c2))
    best = -np.inf
    best_a = 0
    for a in range(edges.shape[3]):
        if edges[b, node, _EM, a] != 0.0:
            continue
        na = edges[b, node, _EV, a]
        w = edges[b, node, _EW, a]
        if fpu:
            if na == 0.0:
                w = w + raw
            qn = (w / max(na, 1.0) - qoff) * qscale
        else:
            qn = (w - qoff * na) * (qscale / max(na, 1.0))
        p = root_prior[b, a] if at_root else edges[b, node, _EP, a]
        s = qn + p * (scale / (na + 1.0))
        if s > best:
            best = s
            best_a = a
    return best_a


@njit(cache=True)
def _sigma(edges, nodes, b, node, c_visit, c_scale, out):
    """Completed-Q sigma into ``out`` [A]; returns the bound."""
    nd = nodes[b, node]
    big_n = nd[_NV]
    wq = nd[_NPQ] / max(nd[_NPS], 1e-300)
    mixed = (nd[_NRAW] + (big_n - 1.0) * wq) / big_n
    lo = np.inf
    hi = -np.inf
    n_act = edges.shape[3]
    for a in range(n_act):
        n = edges[b, node, _EV, a]
        c = edges[b, node, _EW, a] / max(n, 1.0) if n > 0 else mixed
        out[a] = c
        if edges[b, node, _EM, a] == 0.0:
            lo = min(lo, c)
            hi = max(hi, c)
    bound = (c_visit + nd[_NEM]) * c_scale
    k = bound / max(hi - lo, _EPS)
    for a in range(n_act):
        out[a] = (out[a] - lo) * k
    return bound


@njit(cache=True)
def _gumbel_interior(edges, nodes, b, node, c_visit, c_scale, buf):
    bound = _sigma(edges, nodes, b, node, c_visit, c_scale, buf)
    n_act = edges.shape[3]
    total = 0.0
    for a in range(n_act):
        if edges[b, node, _EM, a] == 0.0:
            buf[a] = math.exp(edges[b, node, _EL, a] + (buf[a] - bound))
        else:
            buf[a] = 0.0
        total += buf[a]
    total = max(total, 1e-300)
    big_n = nodes[b, node, _NV]
    best = -np.inf
    best_a = 0
    for a in range(n_act):
        if edges[b, node, _EM, a] != 0.0:
            continue
        s = buf[a] / total - edges[b, node, _EV, a] / big_n
        if s > best:
            best = s
            best_a = a
    return best_a


@njit(cache=True)
def _gumbel_root(edges, nodes, b, gumbel, visits0, table, max_cons, c_visit, c_scale, buf):
    n_act = edges.shape[3]
    n_legal = 0
    total = 0.0
    for a in range(n_act):
        if edges[b, 0, _EM, a] == 0.0:
            n_legal += 1
        total += edges[b, 0, _EV, a] - visits0[b, a]
    m = min(max_cons, n_legal)
    target = table[m, min(int(total), table.shape[1] - 1)]
    _sigma(edges, nodes, b, 0, c_visit, c_scale, buf)
    best = -np.inf
    best_a = -1
    for a in range(n_act):  # considered actions: legal with the target visit count
        if edges[b, 0, _EM, a] != 0.0 or edges[b, 0, _EV, a] - visits0[b, a] != target:
            continue
        s = max(-1e9, gumbel[b, a] + edges[b, 0, _EL, a] + buf[a])
        if s > best:
            best = s
            best_a = a
    if best_a < 0:  # none has it: all legal actions
        for a in range(n_act):
            if edges[b, 0, _EM, a] != 0.0:
                continue
            s = max(-1e9, gumbel[b, a] + edges[b, 0, _EL, a] + buf[a])
            if best_a < 0 or s > best:
                best = s
                best_a = a
    return max(best_a, 0)


@njit(cache=True)
def _select(edges, nodes, qnorm, root_prior, gumbel, visits0, table, params, b, node, buf):
    at_root = node == 0
    if params[P_GUMBEL] == 0.0:
        return _puct(
            edges,
            nodes,
            b,
            node,
            qnorm[b, 0],
            qnorm[b, 1],
            root_prior,
            at_root,
            params[P_C1],
            params[P_C2],
            params[P_FPU] != 0.0,
        )
    if at_root:
        return _gumbel_root(
            edges,
            nodes,
            b,
            gumbel,
            visits0,
            table,
            int(params[P_MAXCONS]),
            params[P_CVISIT],
            params[P_CSCALE],
            buf,
        )
    return _gumbel_interior(edges, nodes, b, node, params[P_CVISIT], params[P_CSCALE], buf)


@njit(cache=True)
def descend(
    nodes, edges, children, qnorm, root_prior, gumbel, visits0, table, active, params, path,
    length, leaf_value, leaves,
):  # fmt: skip
    """Descend every active row; returns m, the number of leaf edges to expand."""
    k = int(params[P_K])
    max_depth = params[P_MAXDEPTH]
    buf = np.empty(edges.shape[3])
    m = 0
    for i in range(active.shape[0]):
        b = active[i]
        node = 0
        depth = 0
        leaf_value[b] = 0.0
        while True:
            a = _select(
                edges, nodes, qnorm, root_prior, gumbel, visits0, table, params, b, node, buf
            )
            path[0, b, depth] = node
            path[1, b, depth] = a
            depth += 1
            if k == 1:
                slot = 0
                child = children[b, node, a, 0]
            else:
                visits = int(edges[b, node, _EV, a])
                slot = visits % k
                child = children[b, node, a, slot] if visits >= k else -1
            if child < 0:
                leaves[0, m] = b
                leaves[1, m] = node
                leaves[2, m] = a
                leaves[3, m] = slot
                m += 1
                break
            path[2, b, depth - 1] = child
            if nodes[b, child, _NEXP] == 0.0 or depth >= max_depth:
                leaf_value[b] = nodes[b, child, _NS] / nodes[b, child, _NV]
                break
            node = child
        length[b] = depth
    return m


@njit(cache=True)
def _write_node(nodes, edges, b, new, legal, logits, i, value, reward, done):
    """Normalise one row of logits into the edge block of node ``new``; returns its value."""
    n_act = edges.shape[3]
    mx = -np.inf
    any_legal = False
    for a in range(n_act):
        if legal[i, a]:
            any_legal = True
            mx = max(mx, logits[i, a])
    if mx == -np.inf:
        for a in range(n_act):
            edges[b, new, _EP, a] = 0.0
            edges[b, new, _EL, a] = -np.inf
            edges[b, new, _EM, a] = -np.inf
    else:
        s = 0.0
        for a in range(n_act):
            if legal[i, a]:
                s += math.exp(logits[i, a] - mx)
        log_s = math.log(s)
        for a in range(n_act):
            if legal[i, a]:
                edges[b, new, _EP, a] = math.exp(logits[i, a] - mx) / s
                edges[b, new, _EL, a] = logits[i, a] - mx - log_s
                edges[b, new, _EM, a] = 0.0
            else:
                edges[b, new, _EP, a] = 0.0
                edges[b, new, _EL, a] = -np.inf
                edges[b, new, _EM, a] = -np.inf
    v = 0.0 if done else value
    nodes[b, new, _NV] = 1.0
    nodes[b, new, _NS] = v
    nodes[b, new, _NPS] = 0.0
    nodes[b, new, _NPQ] = 0.0
    nodes[b, new, _NEM] = 0.0
    nodes[b, new, _NRAW] = v
    nodes[b, new, _NREW] = reward
    nodes[b, new, _NTERM] = 1.0 if done else 0.0
    nodes[b, new, _NEXP] = 1.0 if (not done and any_legal) else 0.0
    return v


@njit(cache=True)
def write_nodes(nodes, edges, rows, idx, legal, logits, values, rewards, dones, out):
    """Store evaluated nodes ``(rows, idx)``; their values (0 if done) go to ``out``."""
    for i in range(rows.shape[0]):
        out[i] = _write_node(
            nodes, edges, rows[i], idx[i], legal, logits, i, values[i], rewards[i], dones[i]
        )


@njit(cache=True)
def decide(
    edges, nodes, qnorm, gumbel, visits0, is_gumbel, c_visit, c_scale, action, policy, q, root_value
):
    """Root decision (temperature 0): action [B], policy [B, A], q [B, A], root value [B].

    PUCT: most visited, ties by normalised Q (``visits + 0.5 * clip(Qn, 0, 1)``); policy =
    visit distribution (the prior without visits). Gumbel: argmax of ``g + logp + sigma``
    over the most visited considered actions; policy = softmax(logp + sigma).
    """
    n_b, n_act = edges.shape[0], edges.shape[3]
    buf = np.empty(n_act)
    for b in range(n_b):
        total = 0.0
        for a in range(n_act):
            n = edges[b, 0, _EV, a]
            q[b, a] = edges[b, 0, _EW, a] / n if n > 0 else np.nan
            total += n
        root_value[b] = nodes[b, 0, _NS] / max(nodes[b, 0, _NV], 1.0)
        best = -np.inf
        best_a = 0
        if not is_gumbel:
            for a in range(n_act):
                policy[b, a] = edges[b, 0, _EV, a] / total if total > 0 else edges[b, 0, _EP, a]
                if edges[b, 0, _EM, a] != 0.0:
                    continue
                qn = 0.0
                if edges[b, 0, _EV, a] > 0:
                    qn = min(max((q[b, a] - qnorm[b, 0]) * qnorm[b, 1], 0.0), 1.0)
                s = edges[b, 0, _EV, a] + 0.5 * qn
                if s > best:
                    best = s
                    best_a = a
            action[b] = best_a
            continue
        _sigma(edges, nodes, b, 0, c_visit, c_scale, buf)
        considered = -1.0
        for a in range(n_act):
            if edges[b, 0, _EM, a] == 0.0:
                considered = max(considered, edges[b, 0, _EV, a] - visits0[b, a])
        best_a = -1
        for rnd in range(2):  # the considered actions; if none has the count, all legal
            for a in range(n_act):
                if edges[b, 0, _EM, a] != 0.0:
                    continue
                if rnd == 0 and edges[b, 0, _EV, a] - visits0[b, a] != considered:
                    continue
                s = max(-1e9, gumbel[b, a] + edges[b, 0, _EL, a] + buf[a])
                if best_a < 0 or s > best:
                    best = s
                    best_a = a
            if best_a >= 0:
                break
        action[b] = max(best_a, 0)
        mx = -np.inf
        for a in range(n_act):
            if edges[b, 0, _EM, a] == 0.0:
                mx = max(mx, edges[b, 0, _EL, a] + buf[a])
        if mx == -np.inf:
            mx = 0.0
        s = 0.0
        for a in range(n_act):
            if edges[b, 0, _EM, a] == 0.0:
                policy[b, a] = math.exp(edges[b, 0, _EL, a] + buf[a] - mx)
                s += policy[b, a]
            else:
                policy[b, a] = 0.0
        if s == 0.0:
            s = 1.0
        for a in range(n_act):
            policy[b, a] /= s


@njit(cache=True)
def expand(
    nodes, edges, children, parent, parent_action, n_nodes, leaves, m, legal, logits, values,
    rewards, dones, path, length, leaf_value,
):  # fmt: skip
    """Allocate, store and evaluate the m new leaf nodes (states already scattered)."""
    for i in range(m):
        b = leaves[0, i]
        p = leaves[1, i]
        a = leaves[2, i]
        new = n_nodes[b]
        n_nodes[b] = new + 1
        children[b, p, a, leaves[3, i]] = new
        parent[b, new] = p
        parent_action[b, new] = a
        leaf_value[b] = _write_node(
            nodes, edges, b, new, legal, logits, i, values[i], rewards[i], dones[i]
        )
        path[2, b, length[b] - 1] = new


@njit(cache=True)
def backup(nodes, edges, qbounds, qnorm, active, path, length, leaf_value, disc, gumbel):
    """Back the returns of this simulation's paths up (same arithmetic as the row path)."""
    tails = np.empty(path.shape[2])
    for i in range(active.shape[0]):
        b = active[i]
        n_len = length[b]
        if n_len == 0:
            continue
        tail = 0.0
        for j in range(n_len - 1, -1, -1):
            tail += nodes[b, path[2, b, j], _NREW] * disc[j]
            tails[j] = tail
        end = disc[n_len] * leaf_value[b]
        lo = qbounds[b, 0]
        hi = qbounds[b, 1]
        for j in range(n_len):
            n = path[0, b, j]
            a = path[1, b, j]
            g = (tails[j] + end) / disc[j]
            visits = edges[b, n, _EV, a]
            value = edges[b, n, _EW, a]
            q = (value + g) / (visits + 1.0)
            edges[b, n, _EV, a] = visits + 1.0
            edges[b, n, _EW, a] = value + g
            nodes[b, n, _NV] += 1.0
            nodes[b, n, _NS] += g
            if gumbel:
                prior = edges[b, n, _EP, a]
                if visits == 0.0:
                    nodes[b, n, _NPS] += prior
                nodes[b, n, _NPQ] += prior * (q - value / max(visits, 1.0))
                nodes[b, n, _NEM] = max(nodes[b, n, _NEM], visits + 1.0)
            lo = min(lo, q)
            hi = max(hi, q)
        if not gumbel:
            qbounds[b, 0] = lo
            qbounds[b, 1] = hi
            qnorm[b, 0] = lo
            qnorm[b, 1] = 1.0 / max(hi - lo, 1e-8)


@njit(cache=True)
def expand_backup(
    nodes, edges, children, parent, parent_action, n_nodes, leaves, m, legal, logits, values,
    rewards, dones, path, length, leaf_value, qbounds, qnorm, active, disc, gumbel,
):  # fmt: skip
    """:func:`expand` then :func:`backup` (one dispatch)."""
    expand(
        nodes, edges, children, parent, parent_action, n_nodes, leaves, m, legal, logits,
        values, rewards, dones, path, length, leaf_value,
    )  # fmt: skip
    backup(nodes, edges, qbounds, qnorm, active, path, length, leaf_value, disc, gumbel)


@njit(cache=True)
def finish_and_descend(
    nodes, edges, children, parent, parent_action, n_nodes, leaves, m, legal, logits, values,
    rewards, dones, path, length, leaf_value, qbounds, qnorm, active, disc, root_prior, gumbel,
    visits0, table, params, descend_next,
):  # fmt: skip
    """Expand this simulation's m leaves, back up, then (if asked) descend for the next
    simulation: one dispatch per simulation. Returns the next simulation's m (0 if not
    descended)."""
    if m:
        expand(
            nodes, edges, children, parent, parent_action, n_nodes, leaves, m, legal, logits,
            values, rewards, dones, path, length, leaf_value,
        )  # fmt: skip
    backup(
        nodes, edges, qbounds, qnorm, active, path, length, leaf_value, disc,
        params[P_GUMBEL] != 0.0,
    )  # fmt: skip
    if not descend_next:
        return 0
    return descend(
        nodes, edges, children, qnorm, root_prior, gumbel, visits0, table, active, params, path,
        length, leaf_value, leaves,
    )  # fmt: skip


# ---- transpositions (graph search) -------------------------------------------------------
# Path scratch in this mode: path [4, B, W] = node, action, child, outcome slot per level.
# ``pending [3, B]`` = (row, node, action) of the edges whose transition must be sampled;
# ``expand [5, B]`` = (row, parent, action, slot, index into the sampled batch).


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
