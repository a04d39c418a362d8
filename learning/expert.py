"""Shortest-path expert on the grid model: exact distances, greedy actions, Monte-Carlo returns.

The expert is the teacher of pre-training (:mod:`learning.pretrain`):

- **distances**: exact 4-connected step counts to the current goal (pick cell when empty,
  station when loaded) through drivable cells without an *active* known blockage or a
  robot parked at the end of its announced plan; static
  maps are precomputed per goal cell with :func:`planning.bfs_distances`, rows with
  such obstacles are relaxed in a vectorised Bellman-Ford (as many sweeps as the
  longest path, ~40 on the default layout).
- **optimal actions**: PICK / DROP on the goal cell; else the legal moves that lower the
  distance by one; WAIT when none exists (goal cut off by blockages). Actions that meet
  another robot (it holds the cell now or enters it next: the grid model's vertex and
  swap conflicts) rank after all others, so the expert waits behind a robot on its
  path and steps aside from one driving into it.
- **returns**: the discounted return of the greedy expert (uniform among its optimal
  actions) played in the model itself, with the model's rewards, discount and
  stochastics (blockages clear, robots wait, new orders), until the horizon.

Vectorised over a batch ``B`` of :class:`planning.grid_model.GridState`; randomness only
from the ``np.random.Generator`` passed in.
"""

from __future__ import annotations

import numpy as np

from planning.grid_model import GridModel, GridState
from planning.paths import bfs_distances
from sim.types import ACTION_DELTAS, MacroAction

__all__ = ["UNREACHABLE", "ShortestPathExpert", "expert_returns"]

UNREACHABLE = 1 << 20  # distance (steps) of cells that cannot reach the goal
_CLASH_COST = float(1 << 24)  # added to the score of actions that meet another robot


class ShortestPathExpert:
    """Exact shortest-path distances and greedy actions for one :class:`GridModel`.

    Args:
        model: the grid model (its layout, pick cells, stations and plan table).

    Example:
        >>> expert = ShortestPathExpert(model)
        >>> best = expert.optimal_actions(states)   # [B, 7] bool
        >>> target = expert.policy_target(states)   # [B, 7] float32, rows sum to 1
    """

    def __init__(self, model: GridModel) -> None:
        self.model = model
        lay = model.layout
        self._free = lay.free
        h, w = lay.shape
        goals = np.unique(np.concatenate([model.pick_cells, lay.stations]), axis=0)
        self._goal_id = np.full((h, w), -1, np.int64)
        self._goal_id[goals[:, 0], goals[:, 1]] = np.arange(len(goals))
        table = np.stack([bfs_distances(self._free, (int(r), int(c))) for r, c in goals])
        self._static = np.where(table < 0, UNREACHABLE, table).astype(np.int32)  # [G, H, W]

    # ---- distances -------------------------------------------------------------------
    def distances(self, states: GridState) -> np.ndarray:
        """[B, H, W] int32 steps from every cell to each row's goal (UNREACHABLE if cut off).

        Impassable: static obstacles, active known blockages and robots parked at the end
        of their plans (they never move again).
        """
        goal = self.model.goal(states)
        walls = self._obstacles(states)  # [B, M, 2], (-1, -1) = none
        gid = self._goal_id[goal[:, 0], goal[:, 1]]
        out = np.empty((len(goal), *self._free.shape), np.int32)
        known = ~(walls >= 0).all(-1).any(1) & (gid >= 0)
        out[known] = self._static[gid[known]]
        rest = np.flatnonzero(~known)
        if len(rest):
            out[rest] = self._relax(walls[rest], goal[rest])
        return out

    def _obstacles(self, states: GridState) -> np.ndarray:
        """[B, K + R, 2] active blockages and parked robots inside the map; else (-1, -1)."""
        blocks = np.where(states.block_on[..., None], states.blocks, -1)
        if not self.model.n_others:
            return blocks
        cells = self.model.others_pos(states)
        parked = states.others_k >= self.model.plan_len[states.scn] - 1
        parked &= self.model.layout.in_bounds(cells)
        return np.concatenate([blocks, np.where(parked[..., None], cells, -1)], axis=1)

    def _relax(self, walls: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """Vectorised Bellman-Ford; walls [n, M, 2] extra obstacles, goal [n, 2]."""
        n = len(goal)
        h, w = self._free.shape
        passable = np.broadcast_to(self._free, (n, h, w)).copy()
        bi, ki = np.nonzero((walls >= 0).all(-1))
        passable[bi, walls[bi, ki, 0], walls[bi, ki, 1]] = False
        d = np.full((n, h + 2, w + 2), UNREACHABLE, np.int32)
        ok = passable[np.arange(n), goal[:, 0], goal[:, 1]]
        d[np.arange(n)[ok], goal[ok, 0] + 1, goal[ok, 1] + 1] = 0
        inner = d[:, 1:-1, 1:-1]
        for _ in range(h * w):
            nb = np.minimum(np.minimum(d[:, :-2, 1:-1], d[:, 2:, 1:-1]),
                            np.minimum(d[:, 1:-1, :-2], d[:, 1:-1, 2:])) + 1
            new = np.where(passable, np.minimum(inner, nb), UNREACHABLE)
            if np.array_equal(new, inner):
                break
            inner[...] = new
        return np.minimum(inner, UNREACHABLE)

    # ---- actions ----------------------------------------------------------------------
    def optimal_actions(self, states: GridState, dist: np.ndarray | None = None, *,
                        avoid_robots: bool = True) -> np.ndarray:
        """[B, 7] bool: the expert's equally good actions (at least one per row).

        Each legal action is scored by the distance of the cell it leads to (PICK / DROP:
        -1, i.e. best; WAIT: its own cell, preferred to a move of equal distance); with
        ``avoid_robots`` an action whose cell another robot holds now or enters next
        (a vertex or swap conflict of the model) is scored after every safe action, so the
        expert steps aside instead of waiting in a robot's path. The lowest score wins.

        Args:
            states: the batch.
            dist: optional precomputed :meth:`distances` of ``states``.
            avoid_robots: score conflicting actions last.
        """
        dist = self.distances(states) if dist is None else dist
        legal = self.model.legal_actions(states)
        b = len(states)
        rows = np.arange(b)
        pos = states.pos
        nxt = pos[:, None, :] + ACTION_DELTAS[None, :]  # [B, 7, 2] cell each action leads to
        h, w = self._free.shape
        nr, nc = np.clip(nxt[..., 0], 0, h - 1), np.clip(nxt[..., 1], 0, w - 1)
        score = dist[rows[:, None], nr, nc].astype(np.float64)  # [B, 7]
        score[:, MacroAction.WAIT] -= 0.25
        score[:, MacroAction.PICK] = -1.0
        score[:, MacroAction.DROP] = -1.0
        if avoid_robots and self.model.n_others:
            held = np.concatenate([self.model.others_pos(states),
                                   self.model.others_pos(states, states.others_k + 1)], axis=1)
            clash = (_cell_id(nxt)[:, :, None] == _cell_id(held)[:, None, :]).any(-1)  # [B, 7]
            score += np.where(clash, _CLASH_COST, 0.0)
        score = np.where(legal, score, np.inf)
        return score == score.min(1, keepdims=True)

    def policy_target(self, states: GridState, dist: np.ndarray | None = None) -> np.ndarray:
        """[B, 7] float32: uniform over :meth:`optimal_actions`."""
        best = self.optimal_actions(states, dist).astype(np.float32)
        return best / best.sum(1, keepdims=True)

    def act(self, states: GridState, rng: np.random.Generator,
            dist: np.ndarray | None = None) -> np.ndarray:
        """[B] int64: one optimal action per row, uniformly among ties."""
        best = self.optimal_actions(states, dist)
        return np.argmax(np.where(best, rng.random(best.shape), -1.0), axis=1)


def expert_returns(expert: ShortestPathExpert, states: GridState, rng: np.random.Generator, *,
                   discount: float, max_steps: int | None = None) -> np.ndarray:
    """Discounted return of the greedy expert from each state, played in the model.

    Distances are recomputed only for rows whose goal or obstacles changed.

    Args:
        expert: the expert (and its model).
        states: [B] start states.
        rng: randomness of the expert's tie-breaking and of the model's transitions.
        discount: per-step discount (use the search's discount).
        max_steps: optional cap on the steps played (default: until every row is done).

    Returns:
        [B] float64 discounted returns (reward units).
    """
    model = expert.model
    limit = model.config.horizon_steps if max_steps is None else max_steps
    b = len(states)
    ret, scale = np.zeros(b), np.ones(b)
    alive = states.t < model.config.horizon_steps
    dist = expert.distances(states)
    key = _dist_key(expert, states)
    for _ in range(limit):
        if not alive.any():
            break
        a = expert.act(states, rng, dist)
        states, r, done = model.step(states, a, rng)
        ret += np.where(alive, scale * r, 0.0)
        scale *= discount
        alive &= ~done
        new_key = _dist_key(expert, states)
        changed = np.flatnonzero(alive & (new_key != key).any(1))
        if len(changed):
            dist[changed] = expert.distances(_take(states, changed))
        key = new_key
    return ret


def _dist_key(expert: ShortestPathExpert, states: GridState) -> np.ndarray:
    """[B, 2 + 2M] what the distance map depends on: the goal cell and the obstacles."""
    walls = expert._obstacles(states)
    return np.concatenate([expert.model.goal(states), walls.reshape(len(walls), -1)], axis=1)


def _cell_id(cells: np.ndarray) -> np.ndarray:
    """[..., 2] int cells (any range, e.g. far outside the map) -> [...] int64 unique ids."""
    return (cells[..., 0] + (1 << 30)) * (1 << 32) + (cells[..., 1] + (1 << 30))


def _take(states: GridState, rows: np.ndarray) -> GridState:
    return GridState(**{k: v[rows] for k, v in vars(states).items()})
