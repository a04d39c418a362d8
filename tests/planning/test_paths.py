"""Path search: A* optimality against BFS, reservations, prioritised planning."""

from __future__ import annotations

import itertools
from collections import deque

import numpy as np
import pytest

from planning import Reservations, astar, bfs_distances, prioritized_plan, space_time_astar


def _bfs_len(free: np.ndarray, s: tuple[int, int], g: tuple[int, int]) -> int | None:
    h, w = free.shape
    dist = {s: 0}
    q = deque([s])
    while q:
        u = q.popleft()
        if u == g:
            return dist[u]
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            v = (u[0] + dr, u[1] + dc)
            if 0 <= v[0] < h and 0 <= v[1] < w and free[v] and v not in dist:
                dist[v] = dist[u] + 1
                q.append(v)
    return None


def _random_map(rng: np.random.Generator, h: int = 12, w: int = 15, p: float = 0.3) -> np.ndarray:
    return rng.random((h, w)) >= p


def _valid_path(free: np.ndarray, path: list[tuple[int, int]]) -> bool:
    steps = all(abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1 for a, b in itertools.pairwise(path))
    return steps and all(free[c] for c in path)


def test_astar__matches_bfs_length_on_random_maps() -> None:
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(60):
        free = _random_map(rng)
        cells = np.argwhere(free)
        s, g = (tuple(int(v) for v in cells[i]) for i in rng.choice(len(cells), 2, replace=False))
        path = astar(free, s, g)
        ref = _bfs_len(free, s, g)
        if ref is None:
            assert path is None
            continue
        checked += 1
        assert path is not None and path[0] == s and path[-1] == g
        assert _valid_path(free, path)
        assert len(path) - 1 == ref
    assert checked > 20


def test_astar__unreachable_and_invalid_give_none() -> None:
    free = np.ones((5, 5), bool)
    free[:, 2] = False
    assert astar(free, (0, 0), (0, 4)) is None
    assert astar(free, (0, 0), (0, 2)) is None  # goal in a wall
    assert astar(free, (0, 0), (9, 9)) is None  # outside the grid
    assert astar(free, (1, 1), (1, 1)) == [(1, 1)]


def test_astar__blocked_cells_are_avoided_and_deterministic() -> None:
    free = np.ones((5, 7), bool)
    blocked = np.zeros_like(free)
    blocked[1:, 3] = True
    path = astar(free, (4, 0), (4, 6), blocked=blocked)
    assert path is not None and (0, 3) in path and not any(blocked[c] for c in path)
    assert path == astar(free, (4, 0), (4, 6), blocked=blocked)


def test_bfs_distances__agree_with_astar(layout) -> None:
    goal = tuple(int(v) for v in layout.stations[0])
    dist = bfs_distances(layout.free, goal)
    for cell in layout.free_cells[::17]:
        path = astar(layout.free, tuple(int(v) for v in cell), goal)
        assert (path is None and dist[tuple(cell)] < 0) or dist[tuple(cell)] == len(path) - 1


def test_reservations__vertex_swap_and_release() -> None:
    res = Reservations()
    res.reserve_path(0, [(0, 0), (0, 1), (0, 2)], t0=0, hold_last=0)
    assert not res.is_free((0, 1), 1, robot_id=1)
    assert res.is_free((0, 1), 1, robot_id=0)
    assert res.is_free((0, 1), 2, robot_id=1)
    # Robot 1 moving (0, 1) -> (0, 0) arriving at t=1 swaps with robot 0's (0, 0) -> (0, 1).
    assert not res.is_free((0, 0), 1, robot_id=1, from_cell=(0, 1))
    res.release(0)
    assert res.is_free((0, 1), 1, robot_id=1)


def test_reservations__indefinite_hold_blocks_later_times() -> None:
    res = Reservations()
    res.reserve_path(3, [(2, 2)], t0=5)
    assert res.is_free((2, 2), 4, robot_id=1)
    assert not res.is_free((2, 2), 500, robot_id=1)


def test_space_time_astar__waits_for_a_crossing_robot() -> None:
    free = np.zeros((3, 5), bool)
    free[1, :] = True
    free[:, 2] = True
    res = Reservations()
    res.reserve_path(0, [(0, 2), (1, 2), (2, 2)], t0=0, hold_last=0)
    path = space_time_astar(free, (1, 0), (1, 4), res, robot_id=1)
    assert path is not None and path[0] == (1, 0) and path[-1] == (1, 4)
    assert len(path) - 1 == 4  # the crossing robot is at (1, 2) at t=1 only
    for t, c in enumerate(path):
        assert res.is_free(c, t, robot_id=1)


def test_space_time_astar__unreachable_gives_none() -> None:
    free = np.ones((3, 3), bool)
    free[1, :] = False
    assert space_time_astar(free, (0, 0), (2, 2), Reservations(), robot_id=0) is None
    res = Reservations()
    res.reserve_path(0, [(2, 2)], t0=0)  # parked on the goal forever
    assert space_time_astar(np.ones((3, 3), bool), (0, 0), (2, 2), res, robot_id=1) is None


def _conflicts(paths: list[list[tuple[int, int]]]) -> list[str]:
    out = []
    horizon = max(len(p) for p in paths)
    at = [lambda t, p=p: p[min(t, len(p) - 1)] for p in paths]
    for t in range(horizon + 1):
        for i in range(len(paths)):
            for j in range(i + 1, len(paths)):
                if at[i](t) == at[j](t):
                    out.append(f"vertex {i},{j} t={t}")
                if (
                    t
                    and at[i](t) == at[j](t - 1)
                    and at[j](t) == at[i](t - 1)
                    and at[i](t) != at[i](t - 1)
                ):
                    out.append(f"swap {i},{j} t={t}")
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prioritized_plan__paths_are_conflict_free(layout, seed: int) -> None:
    rng = np.random.default_rng(seed)
    cells = layout.free_cells[rng.choice(len(layout.free_cells), 12, replace=False)]
    starts = [tuple(int(v) for v in c) for c in cells[:6]]
    goals = [tuple(int(v) for v in c) for c in cells[6:]]
    paths = prioritized_plan(layout.free, starts, goals, max_t=150)
    assert all(p is not None for p in paths)
    for p, s, g in zip(paths, starts, goals):
        assert p[0] == s and p[-1] == g
        assert all(abs(a[0] - b[0]) + abs(a[1] - b[1]) <= 1 for a, b in itertools.pairwise(p))
    assert _conflicts(paths) == []
    # The first robot plans alone: its path is a shortest path.
    assert len(paths[0]) - 1 == len(astar(layout.free, starts[0], goals[0])) - 1


def test_prioritized_plan__swap_in_corridor_fails_for_the_second_robot() -> None:
    free = np.zeros((1, 5), bool)
    free[0, :] = True
    paths = prioritized_plan(free, [(0, 0), (0, 4)], [(0, 4), (0, 0)], max_t=30)
    assert paths[0] is not None and paths[1] is None
