"""Seeded grid-model situations: open aisles, blocked aisles, congestion.

A situation is one ego robot with an order, plus (by kind) known blockages on its
shortest route or other robots whose announced plans cross that route. All rows share
the same number of blockage slots and other robots: unused blockage slots hold cell -1
and are inactive; absent robots have plans of :data:`ABSENT_CELL` (-1), where they never
conflict and never show in the occupancy crop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from planning.grid_model import GridModel, GridModelConfig, GridState
from planning.paths import astar_indices
from sim.layout import Layout, PaddedGrid

__all__ = [
    "ABSENT_CELL",
    "SITUATION_KINDS",
    "SituationKind",
    "StaticPaths",
    "plan_to_random_goal",
    "sample_situations",
    "static_paths",
]

SituationKind = Literal["open", "blocked", "congested"]
SITUATION_KINDS: tuple[str, ...] = ("open", "blocked", "congested")
ABSENT_CELL = -1  # flat cell of an absent robot


class StaticPaths:
    """Memoised :func:`planning.paths.astar` on a layout's static map (no blockages).

    Returns exactly what ``astar(layout.free, start, goal)`` returns: the same A* core
    (:func:`planning.paths.astar_indices`) on a padded grid built once per layout, plus
    a memo of earlier answers, so replanning the scripted robots of the grid envs costs a dict lookup
    once a (start, goal) pair has been seen. Get one with :func:`static_paths`.

    Attributes:
        free_cells: (row, col) of the drivable cells, row-major (``layout.free_cells``).
        width: layout width W (flat cell = ``row * W + col``).
    """

    max_memo_cells = 1 << 20  # path cells kept (~35 MB; the default layout needs 0.36M)

    def __init__(self, free: np.ndarray) -> None:
        free = np.asarray(free, dtype=bool)
        g = PaddedGrid(free)
        h, w, wp = g.h, g.w, g.wp
        n = len(g.passable)
        self._h, self.width, self._wp = h, w, wp
        self._passable, self._offsets = g.passable, g.offsets
        # padded index -> (row, col) and flat cell of the unpadded grid
        self._cell = [(i // wp - 1, i % wp - 1) for i in range(n)]
        self._flat = [(i // wp - 1) * w + (i % wp - 1) for i in range(n)]
        self.free_cells: list[tuple[int, int]] = [(int(r), int(c)) for r, c in np.argwhere(free)]
        self._memo: dict[tuple[tuple[int, int], tuple[int, int]], tuple | None] = {}
        self._memo_cells = 0

    def astar(self, start: tuple[int, int], goal: tuple[int, int]) -> tuple | None:
        """``(cells, flat)``: the A* path as (row, col) tuples and as flat cells, or None."""
        key = (start, goal)
        try:
            return self._memo[key]
        except KeyError:
            pass
        out = self._search(start, goal)
        self._memo_cells += 1 + (len(out[0]) if out else 0)
        if self._memo_cells > self.max_memo_cells:
            self._memo.clear()
            self._memo_cells = 0
        self._memo[key] = out
        return out

    def _search(self, start: tuple[int, int], goal: tuple[int, int]) -> tuple | None:
        h, w, wp, passable = self._h, self.width, self._wp, self._passable
        sr, sc, tr, tc = start[0], start[1], goal[0], goal[1]
        if not (0 <= sr < h and 0 <= sc < w and 0 <= tr < h and 0 <= tc < w):
            return None
        s, t = (sr + 1) * wp + sc + 1, (tr + 1) * wp + tc + 1
        if not passable[s] or not passable[t]:
            return None
        if s == t:
            return (self._cell[s],), (self._flat[s],)
        idx = astar_indices(passable, self._offsets, wp, s, t)
        if idx is None:
            return None
        return tuple(self._cell[i] for i in idx), tuple(self._flat[i] for i in idx)

    def plan_to_random_goal(
        self, start: tuple[int, int], rng: np.random.Generator, max_len: int
    ) -> tuple[tuple, tuple]:
        """:func:`plan_to_random_goal` as ``(cells, flat)`` tuples (same draws from ``rng``)."""
        free = self.free_cells
        n = len(free)
        for _ in range(8):
            path = self.astar(start, free[rng.integers(n)])
            if path is not None and len(path[0]) > 1:
                return path[0][:max_len], path[1][:max_len]
        r, c = int(start[0]), int(start[1])
        return ((r, c),), (r * self.width + c,)


_STATIC_PATHS: dict[tuple, StaticPaths] = {}


def static_paths(layout: Layout) -> StaticPaths:
    """The shared :class:`StaticPaths` of ``layout``'s static map (one per distinct map)."""
    occ = np.asarray(layout.occupancy, dtype=bool)
    key = (occ.shape, occ.tobytes())
    out = _STATIC_PATHS.get(key)
    if out is None:
        if len(_STATIC_PATHS) >= 16:
            _STATIC_PATHS.clear()
        out = _STATIC_PATHS[key] = StaticPaths(~occ)
    return out


def plan_to_random_goal(
    layout: Layout, start: tuple[int, int], rng: np.random.Generator, max_len: int
) -> list[tuple[int, int]]:
    """A* path from ``start`` to a random reachable free cell, cut to ``max_len`` cells.

    Up to 8 goals are drawn (``rng.integers(len(layout.free_cells))`` each) until one gives
    a path of at least 2 cells; otherwise the robot stays: ``[start]``. Paths are
    :func:`planning.paths.astar`'s, memoised per layout (:class:`StaticPaths`).
    """
    start = (int(start[0]), int(start[1]))
    return list(static_paths(layout).plan_to_random_goal(start, rng, max_len)[0])


def _route(layout: Layout, pick_cells: np.ndarray, rng: np.random.Generator) -> tuple:
    """A random ego cell, order (pick, station) and the ego's route to the pick ((row, col))."""
    sp = static_paths(layout)
    free = sp.free_cells  # = layout.free_cells, as tuples
    station = layout.stations[rng.integers(len(layout.stations))]
    for _ in range(32):
        ego = free[rng.integers(len(free))]
        pick = pick_cells[rng.integers(len(pick_cells))]
        path = sp.astar(ego, (int(pick[0]), int(pick[1])))
        if path is not None and len(path[0]) >= 4:
            return ego, pick, station, np.array(path[0], np.int64)
    path = sp.astar(ego, (int(pick[0]), int(pick[1])))
    return ego, pick, station, np.array(path[0] if path else [ego], np.int64)


def sample_situations(
    layout: Layout,
    kinds: Sequence[str],
    rng: np.random.Generator,
    *,
    config: GridModelConfig | None = None,
    n_others: int = 4,
    n_blocks: int = 2,
    max_plan_len: int = 48,
    model: GridModel | None = None,
) -> tuple[GridModel, GridState]:
    """Sample one situation per entry of ``kinds``.

    Args:
        layout: the warehouse.
        kinds: per row, "open" (no traffic, no blockage), "blocked" (``n_blocks``
            blockages on the ego's route) or "congested" (``n_others`` robots starting on
            the ego's route, driving to random goals).
        rng: random generator (the only source of randomness).
        config: grid-model settings.
        n_others: other-robot slots per row.
        n_blocks: blockage slots per row.
        max_plan_len: cells per announced plan.
        model: optional :class:`GridModel` of ``layout`` whose lookup tables are reused
            (its plan table is replaced); its config is used when ``config`` is None.

    Returns:
        The model (its plan table, flat cells, has one row per situation) and the [B]
        initial states.

    Raises:
        ValueError: an unknown kind.
    """
    for k in kinds:
        if k not in SITUATION_KINDS:
            raise ValueError(f"situation.kind: {k!r}; allowed {', '.join(SITUATION_KINDS)}")
    b = len(kinds)
    if model is None:
        base = GridModel(layout, config)
    elif model.layout is not layout or (config is not None and config != model.config):
        raise ValueError("situation.model: built on another layout or config; allowed None")
    else:
        base = model
    plans = np.full((b, n_others, max_plan_len), ABSENT_CELL, np.int64)
    plan_len = np.ones((b, n_others), np.int64)
    blocks = np.full((b, n_blocks, 2), -1, np.int64)
    pos, pick, station = (np.zeros((b, 2), np.int64) for _ in range(3))
    pick_cells = base.to_cells(base.pick_cells)
    for i, kind in enumerate(kinds):
        pos[i], pick[i], station[i], route = _route(layout, pick_cells, rng)
        inner = route[1:-1]
        if kind == "blocked" and n_blocks and len(inner):
            idx = np.unique(np.linspace(0, len(inner) - 1, n_blocks + 2)[1:-1].round().astype(int))
            blocks[i, : len(idx)] = inner[idx]
        elif kind == "congested" and n_others:
            starts = inner[rng.permutation(len(inner))[:n_others]] if len(inner) else inner
            for r, st in enumerate(starts):
                path = plan_to_random_goal(layout, (int(st[0]), int(st[1])), rng, max_plan_len)
                plans[i, r, : len(path)] = base.to_flat(np.array(path))
                plan_len[i, r] = len(path)
    model = base.with_plans(plans, plan_len)
    states = model.initial_states(pos, pick, station, blocks=blocks, scn=np.arange(b))
    return model, states
