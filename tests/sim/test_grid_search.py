"""The one BFS (``sim.layout``): shortest paths against a plain-loop oracle, its fronts
(``planning.paths``, ``sim.env_parts``, ``sim.faults``, ``Layout.reachable_from``) and
the one A* shared by ``planning.paths.astar`` and the memoised ``StaticPaths``."""

from __future__ import annotations

import numpy as np
import pytest

import planning.paths as paths
import sim.env_parts as env_parts
import sim.faults as faults
from planning.situations import StaticPaths
from sim.layout import LayoutConfig, bfs_distances, bfs_path, generate_layout

MOVES = ((1, 0), (-1, 0), (0, 1), (0, -1))


def _oracle_dist(free: np.ndarray, src: tuple[int, int]) -> np.ndarray:
    """Plain Bellman-Ford style relaxation (no queue): the reference step counts."""
    h, w = free.shape
    d = np.full((h, w), -1, dtype=np.int64)
    if not free[src]:
        return d
    d[src] = 0
    changed = True
    while changed:
        changed = False
        for r in range(h):
            for c in range(w):
                if not free[r, c]:
                    continue
                best = d[r, c]
                for dr, dc in MOVES:
                    nr, nc = r + dr, c + dc
                    if 0 <= nr < h and 0 <= nc < w and d[nr, nc] >= 0 and (best < 0 or d[nr, nc] + 1 < best):
                        best = d[nr, nc] + 1
                if best != d[r, c]:
                    d[r, c] = best
                    changed = True
    return d


def _random_free(rng: np.random.Generator, h: int = 9, w: int = 11) -> np.ndarray:
    return rng.random((h, w)) > 0.3


@pytest.mark.parametrize("seed", range(6))
def test_bfs__distances_and_paths_match_the_oracle(seed: int) -> None:
    rng = np.random.default_rng(seed)
    free = _random_free(rng)
    cells = [tuple(map(int, c)) for c in np.argwhere(free)]
    src = cells[0]
    ref = _oracle_dist(free, src)
    assert np.array_equal(bfs_distances(free, src), ref)
    for goal in cells:
        path = bfs_path(free, goal, src)
        if ref[goal] < 0:
            assert path is None
            continue
        assert path[0] == goal and path[-1] == src and len(path) == ref[goal] + 1
        assert all(free[c] for c in path)
        assert all(abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1 for a, b in zip(path, path[1:]))


def test_bfs_path__edge_cases() -> None:
    free = np.ones((3, 4), dtype=bool)
    free[1, :3] = False
    assert bfs_path(free, (0, 0), (0, 0)) == [(0, 0)]
    assert bfs_path(free, (1, 0), (2, 0)) == [(1, 0), (2, 0)]  # start may be undrivable
    assert bfs_path(free, (0, 0), (1, 1)) is None  # goal undrivable
    assert bfs_path(free, (0, 0), (5, 0)) is None and bfs_path(free, (-1, 0), (0, 0)) is None
    blocked = np.zeros_like(free)
    blocked[1, 3] = True
    assert bfs_path(free, (0, 0), (2, 0), blocked=blocked) is None
    assert bfs_path(free, (0, 0), (2, 0)) == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 3), (2, 3), (2, 2), (2, 1), (2, 0)]
    assert bfs_distances(free, (1, 1)).max() == -1  # undrivable source


def test_bfs__one_implementation_behind_every_front() -> None:
    assert paths.bfs_path is bfs_path and paths.bfs_distances is bfs_distances
    assert env_parts.bfs_path is bfs_path
    layout = generate_layout(LayoutConfig())
    start, goal = tuple(map(int, layout.free_cells[0])), tuple(map(int, layout.free_cells[-1]))
    assert faults.bfs_path(layout, start, goal) == bfs_path(layout.free, start, goal)
    path = bfs_path(layout.free, start, goal)
    mid = path[len(path) // 2]
    detour = faults.bfs_path(layout, start, goal, {mid})
    assert mid not in detour and len(detour) >= len(path)
    assert faults.bfs_path(layout, start, goal, {goal}) == []
    assert np.array_equal(layout.reachable_from(start), bfs_distances(layout.free, start) >= 0)


def test_astar__static_paths_use_the_same_core() -> None:
    layout = generate_layout(LayoutConfig())
    sp = StaticPaths(layout.free)
    rng = np.random.default_rng(1)
    cells = [tuple(map(int, c)) for c in layout.free_cells]
    for i, j in rng.integers(len(cells), size=(200, 2)):
        ref = paths.astar(layout.free, cells[i], cells[j])
        got = sp.astar(cells[i], cells[j])
        assert (got is None and ref is None) or list(got[0]) == ref
        if ref is not None:
            assert len(ref) - 1 == bfs_distances(layout.free, cells[j])[cells[i]]
