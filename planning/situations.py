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
from planning.paths import astar
from sim.layout import Layout

__all__ = [
    "ABSENT_CELL",
    "SITUATION_KINDS",
    "SituationKind",
    "plan_to_random_goal",
    "sample_situations",
]

SituationKind = Literal["open", "blocked", "congested"]
SITUATION_KINDS: tuple[str, ...] = ("open", "blocked", "congested")
ABSENT_CELL = -1  # flat cell of an absent robot


def plan_to_random_goal(
    layout: Layout, start: tuple[int, int], rng: np.random.Generator, max_len: int
) -> list[tuple[int, int]]:
    """A* path from ``start`` to a random reachable free cell, cut to ``max_len`` cells."""
    free = layout.free_cells
    for _ in range(8):
        g = free[rng.integers(len(free))]
        path = astar(layout.free, start, (int(g[0]), int(g[1])))
        if path is not None and len(path) > 1:
            return path[:max_len]
    return [tuple(int(v) for v in start)]


def _route(
    layout: Layout, pick_cells: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, ...]:
    """A random ego cell, order (pick, station) and the ego's route to the pick ((row, col))."""
    free = layout.free_cells
    station = layout.stations[rng.integers(len(layout.stations))]
    for _ in range(32):
        ego = free[rng.integers(len(free))]
        pick = pick_cells[rng.integers(len(pick_cells))]
        path = astar(layout.free, tuple(ego), tuple(pick))
        if path is not None and len(path) >= 4:
            return ego, pick, station, np.array(path, np.int64)
    path = astar(layout.free, tuple(ego), tuple(pick)) or [tuple(ego)]
    return ego, pick, station, np.array(path, np.int64)


def sample_situations(
    layout: Layout,
    kinds: Sequence[str],
    rng: np.random.Generator,
    *,
    config: GridModelConfig | None = None,
    n_others: int = 4,
    n_blocks: int = 2,
    max_plan_len: int = 48,
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
    base = GridModel(layout, config)
    plans = np.full((b, n_others, max_plan_len), ABSENT_CELL, np.int64)
    plan_len = np.ones((b, n_others), np.int64)
    blocks = np.full((b, n_blocks, 2), -1, np.int64)
    pos, pick, station = (np.zeros((b, 2), np.int64) for _ in range(3))
    for i, kind in enumerate(kinds):
        pos[i], pick[i], station[i], route = _route(layout, base.to_cells(base.pick_cells), rng)
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
