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

The transposition mode (``MCTSConfig(transpositions=True)``, graph search) has its own
kernels in :mod:`planning.graph_jit`, which reuse :func:`_select`, :func:`_write_node`,
the ``P_*`` indices and the column constants from here (numba does not see edits of this
file when loading those kernels from its cache: see that module).
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
            if na == 0.0:  # first-play value, clipped into the seen range (no lock-in)
                qn = min(max(((w + raw) / 1.0 - qoff) * qscale, 0.0), 1.0)
            else:
                qn = (w / na - qoff) * qscale
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
    discount = disc[1] if disc.shape[0] > 1 else 1.0
    for i in range(active.shape[0]):
        b = active[i]
        n_len = length[b]
        if n_len == 0:
            continue
        # G_j = r_j + discount * G_{j+1} from the leaf up (no division by discount**j,
        # which underflows to 0 on deep paths with a small discount)
        g = leaf_value[b]
        for j in range(n_len - 1, -1, -1):
            g = nodes[b, path[2, b, j], _NREW] + discount * g
            tails[j] = g
        lo = qbounds[b, 0]
        hi = qbounds[b, 1]
        for j in range(n_len):
            n = path[0, b, j]
            a = path[1, b, j]
            g = tails[j]
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
