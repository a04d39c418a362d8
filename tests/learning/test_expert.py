"""Shortest-path expert: distances against BFS, action rules, returns against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
from learning_helpers import EVAL_MODEL

from learning.expert import UNREACHABLE, ShortestPathExpert, expert_returns, open_world_values
from planning.grid_model import GridModel, GridModelConfig
from planning.paths import bfs_distances
from sim.types import MacroAction


def test_expert__distances_match_bfs_with_obstacles(situations) -> None:
    model, states = situations
    ex = ShortestPathExpert(model)
    dist = ex.distances(states)
    walls = ex.obstacles(states)
    for i in range(len(states)):
        blocked = np.zeros(model.layout.free.size, bool)
        blocked[walls[i][walls[i] >= 0]] = True
        goal = model.to_cells(model.goal(states)[i])
        ref = bfs_distances(
            model.layout.free,
            tuple(int(v) for v in goal),
            blocked=blocked.reshape(model.layout.shape),
        ).ravel()
        np.testing.assert_array_equal(dist[i], np.where(ref < 0, UNREACHABLE, ref))


def _one(model: GridModel, pos, pick, station, **kw):
    return model.initial_states(np.array([pos]), np.array([pick]), np.array([station]), **kw)


def test_expert__optimal_moves_shorten_the_path_by_one(situations) -> None:
    model, states = situations
    ex = ShortestPathExpert(model)
    dist = ex.distances(states)
    best = ex.optimal_actions(states, avoid_robots=False)
    delta = np.array([model.layout.shape[1], -model.layout.shape[1], 1, -1])
    for i in range(len(states)):
        here = dist[i, states.pos[i]]
        for a in np.flatnonzero(best[i, :4]):
            assert dist[i, states.pos[i] + delta[a]] == here - 1
        if here < UNREACHABLE and not best[i, 4:].any():
            assert best[i, :4].any()


@pytest.mark.parametrize("load,action", [(False, MacroAction.PICK), (True, MacroAction.DROP)])
def test_expert__finishes_on_the_goal_cell(layout, load: bool, action: int) -> None:
    model = GridModel(layout, EVAL_MODEL)
    pick = model.to_cells(model.pick_cells)[3]
    station = layout.stations[1]
    pos = station if load else pick
    states = _one(model, pos, pick, station, load=np.array([load]))
    best = ShortestPathExpert(model).optimal_actions(states)[0]
    assert best.tolist() == [a == action for a in range(7)]


def test_expert__waits_when_the_goal_is_cut_off(layout) -> None:
    model = GridModel(layout, EVAL_MODEL)
    pick = model.to_cells(model.pick_cells)[0]
    ring = [
        pick + d
        for d in ([1, 0], [-1, 0], [0, 1], [0, -1])
        if layout.free[pick[0] + d[0], pick[1] + d[1]]
    ]
    start = ring[0] + (ring[0] - pick)  # two cells away, behind a blocked neighbour
    states = _one(model, start, pick, layout.stations[0], blocks=np.array([ring]))
    assert layout.free[start[0], start[1]], "setup: the default layout must leave the start cell free"
    best = ShortestPathExpert(model).optimal_actions(states)[0]
    assert best.tolist() == [a == MacroAction.WAIT for a in range(7)]


def test_expert__open_returns_match_the_closed_form(layout) -> None:
    from planning.situations import sample_situations

    model, states = sample_situations(
        layout, ["open"] * 20, np.random.default_rng(1), config=EVAL_MODEL
    )
    ex = ShortestPathExpert(model)
    got = expert_returns(ex, states, np.random.default_rng(0), discount=0.99)
    free = layout.free
    for i in range(len(states)):
        p, s = model.to_cells(states.pick[i]), model.to_cells(states.station[i])
        d1 = bfs_distances(free, tuple(p)).ravel()[states.pos[i]]
        d2 = bfs_distances(free, tuple(s)).ravel()[states.pick[i]]
        n = d1 + d2 + 2
        g = 0.99
        want = -0.01 * (1 - g**n) / (1 - g) + 0.1 * g**d1 + 1.0 * g ** (n - 1)
        assert got[i] == pytest.approx(want, abs=1e-9)


def test_expert__continuation_table_matches_sampled_orders(layout) -> None:
    cfg = GridModelConfig(horizon_steps=80)
    model = GridModel(layout, cfg)
    table = open_world_values(model, 0.99)
    assert table.shape == (len(layout.stations), 81) and (table[:, -1] == 0).all()
    n = 400
    st = layout.stations[0]
    states = model.initial_states(
        np.repeat(st[None], n, 0), np.repeat(st[None], n, 0), np.repeat(st[None], n, 0)
    )
    # an empty robot whose "order" is done: force a fresh order by dropping first
    states = model.replace(states, load=np.ones(n, bool))
    rng = np.random.default_rng(0)
    nxt, _r, _ = model.step(states, np.full(n, int(MacroAction.DROP)), rng)
    mc = expert_returns(ShortestPathExpert(model), nxt, rng, discount=0.99)
    se = mc.std() / np.sqrt(n)
    assert mc.mean() == pytest.approx(table[0, 1], abs=4 * se + 1e-3)
    assert (open_world_values(GridModel(layout, EVAL_MODEL), 0.99) == 0).all()


def test_expert__returns_are_seed_deterministic(situations) -> None:
    model, states = situations
    ex = ShortestPathExpert(model)
    a = expert_returns(ex, states, np.random.default_rng(4), discount=0.99)
    b = expert_returns(ex, states, np.random.default_rng(4), discount=0.99)
    np.testing.assert_array_equal(a, b)
