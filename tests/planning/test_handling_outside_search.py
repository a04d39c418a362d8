"""HandlingOutsideSearch: the agent's search never expands PICK/DROP (it handles the goal
cell itself), so a learned value that is inconsistent across the pick cannot make the
search hover next to its goal (scenario=exceptions seed 0: 2 s of WAIT beside a dropped
load, then a move away from it)."""

from __future__ import annotations

import numpy as np
import pytest

from learning.evaluator import load_network_evaluator
from planning import GridModel, GridModelConfig, MCTS, MCTSConfig
from planning.grid_model import HandlingOutsideSearch
from sim.layout import LayoutConfig, generate_layout
from sim.types import MacroAction

PICK, DROP, WAIT = int(MacroAction.PICK), int(MacroAction.DROP), int(MacroAction.WAIT)
DELTAS = {int(MacroAction.NORTH): (1, 0), int(MacroAction.SOUTH): (-1, 0),
          int(MacroAction.EAST): (0, 1), int(MacroAction.WEST): (0, -1)}
MCTS_CFG = MCTSConfig(num_simulations=16, rule="gumbel", discount=0.99, max_depth=24, gumbel_scale=0.0,
                      c1=1.25, max_considered_actions=5)  # configs/planner/mcts_rl.yaml


@pytest.fixture(scope="module")
def model():
    return GridModel(generate_layout(LayoutConfig()), GridModelConfig(horizon_steps=10_000))


def _alone(model, b):
    return model.with_plans(np.full((b, 0, 1), -1, np.int64), np.ones((b, 0), np.int64))


def test_handling_outside__masks_pick_and_drop_for_the_search_only(model):
    m = _alone(model, 2)
    s = m.initial_states(np.array([[1, 7], [1, 14]]), np.array([[1, 7], [1, 7]]), np.array([[1, 14], [1, 14]]),
                         load=np.array([False, True]), scn=np.arange(2))
    wrapped = HandlingOutsideSearch(m)
    assert m.legal_actions(s)[0, PICK] and m.legal_actions(s)[1, DROP]
    assert not wrapped.legal_actions(s)[:, [PICK, DROP]].any()
    np.testing.assert_array_equal(wrapped.legal_actions(s)[:, :5], m.legal_actions(s)[:, :5])
    # the network still sees the true action mask, and the dynamics are the model's
    np.testing.assert_array_equal(wrapped.encode(s)["action_mask"], m.encode(s)["action_mask"])
    a = np.array([PICK, DROP])
    (n1, r1, _), (n2, r2, _) = m.step(s, a, np.random.default_rng(0)), wrapped.step(s, a, np.random.default_rng(0))
    np.testing.assert_array_equal(r1, r2)
    np.testing.assert_array_equal(n1.load, n2.load)


def test_handling_outside__search_steps_onto_the_dropped_load_it_hovered_beside(model):
    """The state of the seed-0 replay: robot at (1, 8) facing east, its dropped load at
    (1, 7), station (1, 14). Searching through the pick, the shipped value prefers WAIT."""
    m = _alone(model, 1)
    s = m.initial_states(np.array([[1, 8]]), np.array([[1, 7]]), np.array([[1, 14]]), load=np.zeros(1, bool),
                         scn=np.arange(1))
    net = load_network_evaluator()
    plain = MCTS(m, net, MCTS_CFG).search(s, seed=0).action[0]
    outside = MCTS(HandlingOutsideSearch(m), net, MCTS_CFG).search(s, seed=0).action[0]
    assert plain == WAIT  # the failure this guards against (if the shipped net changes, re-derive the state)
    assert outside == int(MacroAction.WEST)


@pytest.mark.parametrize("loaded", [False, True])
def test_handling_outside__search_steps_onto_an_adjacent_goal_more_often(model, loaded):
    """512 seeded states, the goal (pick cell, or station when loaded) one cell away."""
    free = model.layout.free
    stations = np.stack([model.station_cells // model.width, model.station_cells % model.width], 1)
    rows = []
    for r, c in np.argwhere(free):
        for a, (dr, dc) in DELTAS.items():
            g = (r + dr, c + dc)
            if 0 <= g[0] < free.shape[0] and 0 <= g[1] < free.shape[1] and free[g]:
                rows += [((r, c), g, tuple(st), a) for st in stations]
    sel = np.random.default_rng(1).choice(len(rows), 512, replace=False)
    pos, goal = np.array([rows[i][0] for i in sel]), np.array([rows[i][1] for i in sel])
    other, want = np.array([rows[i][2] for i in sel]), np.array([rows[i][3] for i in sel])
    m = _alone(model, len(sel))
    s = m.initial_states(pos, other if loaded else goal, goal if loaded else other,
                         load=np.full(len(sel), loaded), scn=np.arange(len(sel)))
    net = load_network_evaluator()
    hit = {name: float(np.mean(MCTS(tm, net, MCTS_CFG).search(s, seed=0).action == want))
           for name, tm in (("plain", m), ("outside", HandlingOutsideSearch(m)))}
    assert hit["outside"] > hit["plain"], hit
    assert hit["outside"] >= 0.97, hit
