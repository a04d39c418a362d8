"""Grid path search: A*, space-time A* with a reservation table, prioritised planning.

All functions work on a boolean ``free`` grid ``[H, W]`` (True = drivable) indexed
``(row, col)`` as in :mod:`sim.layout`; moves are 4-connected with unit cost; a path is a
list of ``(row, col)`` tuples that includes the start and the goal.

Implementation: the grid is padded with a one-cell wall ring and flattened, so a
neighbour is ``index + offset`` with no bounds checks; the open list is a ``heapq`` of
``(f, h, tie, index)``. Ties are broken deterministically: lower f, then lower h (deeper
node), then first pushed; neighbours are expanded in :class:`sim.types.MacroAction` order
(N, S, E, W, then WAIT for space-time search). Space-time A* uses the exact static
distance-to-goal (one BFS from the goal) as its heuristic, which makes it fast in
warehouse aisles.

Time convention for reservations: a path reserved at ``t0`` occupies ``path[k]`` at
time ``t0 + k``; a move ``a -> b`` that arrives at time ``t`` occupies the edge
``(a, b, t)``. Two robots conflict on a vertex (same cell, same time) or on a swap
(``a -> b`` and ``b -> a`` arriving at the same time).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np

from sim.layout import Cell, PaddedGrid, bfs_distances, bfs_path, grid_bfs

__all__ = [
    "Cell",
    "Reservations",
    "astar",
    "astar_indices",
    "bfs_distances",
    "bfs_path",
    "prioritized_plan",
    "space_time_astar",
]


# ---- grid helpers ---------------------------------------------------------------------
# The padded grid and the one BFS live in sim.layout (the ground every package stands on);
# re-exported here as part of the planning API.
_Grid = PaddedGrid


# ---- A* -------------------------------------------------------------------------------


def astar(
    free: np.ndarray, start: Cell, goal: Cell, *, blocked: np.ndarray | None = None
) -> list[Cell] | None:
    """Shortest 4-connected path with unit costs (A*, Manhattan heuristic).

    Args:
        free: [H, W] bool, True = drivable.
        start: (row, col); must lie on a ``free`` cell (its ``blocked`` flag is ignored:
            the robot is already there).
        goal: (row, col); must be free and not blocked.
        blocked: optional [H, W] bool extra obstacles (known blockages, other robots).

    Returns:
        The cells from ``start`` to ``goal`` inclusive, or None if unreachable (or start /
        goal outside the grid or not drivable).
    """
    g = _Grid(free, blocked)
    s, t = g.index(start), g.index(goal)
    if (
        s is None
        or t is None
        or not bool(np.asarray(free)[start[0], start[1]])
        or not g.passable[t]
    ):
        return None
    g.passable[s] = True
    idx = astar_indices(g.passable, g.offsets, g.wp, s, t)
    return None if idx is None else [g.cell(i) for i in idx]


def astar_indices(
    passable: list[bool], offsets: Sequence[int], wp: int, s: int, t: int
) -> list[int] | None:
    """The A* core on a padded, flattened grid (:class:`sim.layout.PaddedGrid` indices).

    Unit moves, Manhattan heuristic; the open list is a heap of ``(f, h, tie, index)``:
    lower f, then lower h, then first pushed; neighbours in ``offsets`` order. Used by
    :func:`astar` and by the memoised :class:`planning.situations.StaticPaths`, which
    therefore return the same paths.

    Args:
        passable: [(H + 2) * wp] bool per padded index (ring of walls); ``s`` and ``t``
            must be passable.
        offsets: neighbour index offsets (N, S, E, W).
        wp: padded width (W + 2).
        s, t: start and goal padded indices.

    Returns:
        Padded indices from ``s`` to ``t`` inclusive, or None if unreachable.
    """
    if s == t:
        return [s]
    tr, tc = divmod(t, wp)
    sr, sc = divmod(s, wp)
    h0 = abs(sr - tr) + abs(sc - tc)
    big = 1 << 60
    gscore = [big] * len(passable)
    gscore[s] = 0
    parent = {s: -1}
    heap = [(h0, h0, 0, s)]
    tie = 0
    closed = bytearray(len(passable))
    pop, push = heapq.heappop, heapq.heappush
    while heap:
        u = pop(heap)[3]
        if closed[u]:
            continue
        if u == t:
            out = []
            while u != -1:
                out.append(u)
                u = parent[u]
            out.reverse()
            return out
        closed[u] = 1
        gu = gscore[u] + 1
        for off in offsets:
            v = u + off
            if not passable[v] or closed[v]:
                continue
            if gu < gscore[v]:
                gscore[v] = gu
                parent[v] = u
                vr, vc = divmod(v, wp)
                hv = abs(vr - tr) + abs(vc - tc)
                tie += 1
                push(heap, (gu + hv, hv, tie, v))
    return None


# ---- reservations ---------------------------------------------------------------------


class Reservations:
    """A space-time reservation table for prioritised multi-robot planning.

    Stores vertex reservations ``(cell, t) -> robot``, edge reservations
    ``(from, to, t_arrive) -> robot`` and indefinite holds ``cell -> (t_from, robot)``
    (a robot parked at the end of its path). A robot never conflicts with itself.

    Example:
        >>> res = Reservations()
        >>> res.reserve_path(0, [(1, 1), (1, 2)], t0=0, hold_last=0)
        >>> res.is_free((1, 2), 1, robot_id=1)
        False
    """

    def __init__(self) -> None:
        self._vertex: dict[tuple[int, int, int], int] = {}
        self._edge: dict[tuple[int, int, int, int, int], int] = {}
        self._hold: dict[Cell, tuple[int, int]] = {}
        self._last: dict[Cell, dict[int, int]] = {}  # cell -> {robot: last reserved t}
        self._owned: dict[int, list[tuple]] = {}

    def reserve_path(
        self, robot_id: int, path_cells: Sequence[Cell], t0: int = 0, hold_last: int | None = None
    ) -> None:
        """Reserve ``path_cells[k]`` at time ``t0 + k`` (and the moves between them).

        Args:
            robot_id: owner of the reservation.
            path_cells: one cell per time step (a repeated cell is a wait).
            t0: time step of ``path_cells[0]``.
            hold_last: how many extra steps the robot stays on the last cell; None (the
                default) holds it indefinitely, until :meth:`release`.
        """
        owned = self._owned.setdefault(robot_id, [])
        prev: Cell | None = None
        t_end = t0 + len(path_cells) - 1
        for k, cell in enumerate(path_cells):
            cell = (int(cell[0]), int(cell[1]))
            self._reserve_vertex(robot_id, cell, t0 + k, owned)
            if prev is not None and prev != cell:
                key = (prev[0], prev[1], cell[0], cell[1], t0 + k)
                self._edge[key] = robot_id
                owned.append(("e", key))
            prev = cell
        if prev is None:
            return
        if hold_last is None:
            self._hold[prev] = (t_end, robot_id)
            owned.append(("h", prev))
        else:
            for k in range(1, int(hold_last) + 1):
                self._reserve_vertex(robot_id, prev, t_end + k, owned)

    def _reserve_vertex(self, robot_id: int, cell: Cell, t: int, owned: list) -> None:
        self._vertex[(cell[0], cell[1], t)] = robot_id
        last = self._last.setdefault(cell, {})
        last[robot_id] = max(last.get(robot_id, t), t)
        owned.append(("v", (cell, t)))

    def release(self, robot_id: int) -> None:
        """Drop every reservation of ``robot_id`` (no-op if it has none)."""
        for kind, key in self._owned.pop(robot_id, []):
            if kind == "v":
                cell, t = key
                if self._vertex.get((cell[0], cell[1], t)) == robot_id:
                    del self._vertex[(cell[0], cell[1], t)]
                self._last.get(cell, {}).pop(robot_id, None)
            elif kind == "e":
                if self._edge.get(key) == robot_id:
                    del self._edge[key]
            elif self._hold.get(key, (0, None))[1] == robot_id:
                del self._hold[key]

    def is_free(self, cell: Cell, t: int, robot_id: int, *, from_cell: Cell | None = None) -> bool:
        """Whether ``robot_id`` may occupy ``cell`` at time ``t``.

        Args:
            cell: (row, col).
            t: time step.
            robot_id: the asking robot (its own reservations never block it).
            from_cell: if given, also check the move ``from_cell -> cell`` arriving at
                ``t`` against a swap (another robot moving ``cell -> from_cell``).

        Returns:
            True if no other robot holds the vertex (or the swapped edge).
        """
        r, c = int(cell[0]), int(cell[1])
        owner = self._vertex.get((r, c, t))
        if owner is not None and owner != robot_id:
            return False
        hold = self._hold.get((r, c))
        if hold is not None and hold[1] != robot_id and t >= hold[0]:
            return False
        if from_cell is not None:
            owner = self._edge.get((r, c, int(from_cell[0]), int(from_cell[1]), t))
            if owner is not None and owner != robot_id:
                return False
        return True

    def last_reserved(self, cell: Cell, robot_id: int) -> float:
        """Last time another robot needs ``cell`` (``inf`` if held indefinitely, -1 if never)."""
        cell = (int(cell[0]), int(cell[1]))
        hold = self._hold.get(cell)
        if hold is not None and hold[1] != robot_id:
            return float("inf")
        others = [t for rid, t in self._last.get(cell, {}).items() if rid != robot_id]
        return float(max(others)) if others else -1.0


# ---- space-time A* ---------------------------------------------------------------------


def space_time_astar(
    free: np.ndarray,
    start: Cell,
    goal: Cell,
    reservations: Reservations,
    robot_id: int,
    *,
    t0: int = 0,
    max_t: int = 200,
    blocked: np.ndarray | None = None,
) -> list[Cell] | None:
    """Shortest timed path that respects ``reservations`` (moves and waits cost 1).

    The robot may wait in place. It arrives at ``goal`` only once no other robot needs
    the goal cell later, so it can park there.

    Args:
        free: [H, W] bool drivable cells.
        start: (row, col) at time ``t0``.
        goal: (row, col).
        reservations: other robots' reservations (``robot_id``'s own are ignored).
        robot_id: the planning robot.
        t0: start time step.
        max_t: last time step the path may reach.
        blocked: optional [H, W] bool extra static obstacles.

    Returns:
        One cell per time step from ``t0`` to the arrival time (waits repeat a cell), or
        None if no such path reaches the goal by ``max_t``.
    """
    g = _Grid(free, blocked)
    s, goal_i = g.index(start), g.index(goal)
    if s is None or goal_i is None or not bool(np.asarray(free)[start[0], start[1]]):
        return None
    g.passable[s] = True
    dist, _ = grid_bfs(g, goal_i)
    if dist[s] < 0:
        return None
    t_goal_free = reservations.last_reserved(goal, robot_id)
    if t_goal_free == float("inf"):
        return None
    return _st_search(g, s, goal_i, dist, reservations, robot_id, t0, max_t, t_goal_free)


def _st_search(
    g: _Grid,
    s: int,
    goal_i: int,
    dist: list[int],
    res: Reservations,
    rid: int,
    t0: int,
    max_t: int,
    t_goal_free: float,
) -> list[Cell] | None:
    moves = (*g.offsets, 0)
    parent: dict[tuple[int, int], tuple[int, int] | None] = {(s, t0): None}
    heap = [(t0 + dist[s], dist[s], 0, s, t0)]
    tie = 0
    closed: set[tuple[int, int]] = set()
    passable = g.passable
    while heap:
        _, _, _, u, t = heapq.heappop(heap)
        if (u, t) in closed:
            continue
        closed.add((u, t))
        if u == goal_i and t > t_goal_free:
            return _unwind_st(g, parent, (u, t))
        if t >= max_t:
            continue
        uc = g.cell(u)
        for off in moves:
            v = u + off
            key = (v, t + 1)
            if not passable[v] or dist[v] < 0 or key in closed or t + 1 + dist[v] > max_t:
                continue
            vc = g.cell(v)
            if not res.is_free(vc, t + 1, rid, from_cell=uc if off else None):
                continue
            if key not in parent:
                parent[key] = (u, t)
                tie += 1
                heapq.heappush(heap, (t + 1 + dist[v], dist[v], tie, v, t + 1))
    return None


def _unwind_st(g: _Grid, parent: dict, node: tuple[int, int]) -> list[Cell]:
    out = []
    cur: tuple[int, int] | None = node
    while cur is not None:
        out.append(g.cell(cur[0]))
        cur = parent[cur]
    return out[::-1]


def prioritized_plan(
    free: np.ndarray,
    starts: Sequence[Cell],
    goals: Sequence[Cell],
    *,
    max_t: int = 200,
    blocked: np.ndarray | None = None,
) -> list[list[Cell] | None]:
    """Prioritised planning: robots plan in index order, each avoiding the earlier ones.

    Every planned robot parks on its goal afterwards (indefinite hold). A robot that finds
    no path gets None and is assumed to stay on its start cell (held indefinitely), so
    the later robots plan around it.

    Args:
        free: [H, W] bool drivable cells.
        starts: n (row, col) start cells (distinct).
        goals: n (row, col) goal cells.
        max_t: planning horizon (time steps).
        blocked: optional [H, W] bool extra obstacles.

    Returns:
        n paths (one cell per time step from t = 0) or None per robot.

    Raises:
        ValueError: ``starts`` and ``goals`` differ in length.
    """
    if len(starts) != len(goals):
        raise ValueError(
            f"goals: {len(goals)} goals for {len(starts)} starts; allowed equal lengths"
        )
    res = Reservations()
    # Robots not yet planned sit on their start cells at t = 0.
    for i, st in enumerate(starts):
        res.reserve_path(i, [st], 0, hold_last=0)
    out: list[list[Cell] | None] = []
    for i, (st, gl) in enumerate(zip(starts, goals)):
        res.release(i)
        path = space_time_astar(free, st, gl, res, i, t0=0, max_t=max_t, blocked=blocked)
        if path is None:
            res.reserve_path(i, [st], 0, hold_last=None)
        else:
            res.reserve_path(i, path, 0, hold_last=None)
        out.append(path)
    return out
