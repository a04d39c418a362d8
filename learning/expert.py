"""Shortest-path expert on the grid model: exact distances, greedy actions, returns.

The expert is the teacher of pre-training (:mod:`learning.pretrain`):

- **distances**: exact 4-connected step counts to the current goal (pick cell when empty,
  station when loaded) through drivable cells without an active known blockage or a
  robot parked at the end of its announced plan. Static maps are precomputed per goal
  cell with :func:`planning.bfs_distances`; rows with such obstacles are relaxed in a
  vectorised Bellman-Ford (as many sweeps as the longest path, ~40 on the default map).
- **optimal actions**: PICK / DROP on the goal cell; else the legal moves that lower the
  distance by one; WAIT when none exists (goal cut off). Actions that meet another
  robot (it holds the cell now or enters it next: the model's vertex and swap
  conflicts) rank after all others, so the expert waits behind a robot on its path and
  steps aside from one driving into it.
- **returns**: the discounted return of the greedy expert (uniform among its optimal
  actions) played in the model itself, with the model's rewards, discount, horizon and
  stochastics (blockages clear, robots wait, new orders).

Cells are the grid model's flat indices (``row * W + col``). Vectorised over a batch
``B`` of :class:`planning.grid_model.GridState`; randomness only from the
``np.random.Generator`` passed in.
"""

from __future__ import annotations

import numpy as np

from planning.grid_model import GridModel, GridState
from planning.paths import bfs_distances
from sim.types import ACTION_DELTAS, MacroAction

__all__ = ["UNREACHABLE", "ShortestPathExpert", "expert_returns", "open_world_values"]

UNREACHABLE = 1 << 20  # distance (steps) of cells that cannot reach the goal
_CLASH_COST = float(1 << 24)  # added to the score of actions that meet another robot


def _take(states: GridState, rows: np.ndarray) -> GridState:
    return GridState(**{k: v[rows] for k, v in vars(states).items()})


class ShortestPathExpert:
    """Exact shortest-path distances and greedy actions for one :class:`GridModel`.

    Args:
        model: the grid model (layout, pick cells, stations, plan table).

    Example:
        >>> expert = ShortestPathExpert(model)
        >>> best = expert.optimal_actions(states)   # [B, 7] bool
        >>> target = expert.policy_target(states)   # [B, 7] float32, rows sum to 1
    """

    def __init__(self, model: GridModel) -> None:
        self.model = model
        lay = model.layout
        self._free = lay.free  # [H, W]
        h, w = lay.shape
        self._delta = ACTION_DELTAS[:, 0] * w + ACTION_DELTAS[:, 1]  # [7] flat offsets
        goals = np.unique(np.concatenate([model.pick_cells, model.station_cells]))
        self._goal_id = np.full(h * w, -1, np.int64)
        self._goal_id[goals] = np.arange(len(goals))
        cells = model.to_cells(goals)
        table = np.stack([bfs_distances(self._free, (int(r), int(c))).ravel() for r, c in cells])
        self._static = np.where(table < 0, UNREACHABLE, table).astype(np.int32)  # [G, H*W]

    # ---- distances -------------------------------------------------------------------
    def distances(self, states: GridState) -> np.ndarray:
        """[B, H*W] int32 steps from every cell to each row's goal (UNREACHABLE if cut off)."""
        goal = self.model.goal(states)
        walls = self.obstacles(states)
        gid = self._goal_id[goal]
        out = np.empty((len(goal), self._free.size), np.int32)
        known = ~(walls >= 0).any(1) & (gid >= 0)
        out[known] = self._static[gid[known]]
        rest = np.flatnonzero(~known)
        if len(rest):
            out[rest] = self._relax(walls[rest], goal[rest])
        return out

    def obstacles(self, states: GridState) -> np.ndarray:
        """[B, K + R] flat cells of active blockages and parked robots; -1 = none."""
        blocks = np.where(states.block_on, states.blocks, -1)
        if not self.model.n_others:
            return blocks
        cells = self.model.others_pos(states)
        parked = states.others_k >= self.model.plan_len[states.scn] - 1
        return np.concatenate([blocks, np.where(parked, cells, -1)], axis=1)

    def _relax(self, walls: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """Vectorised Bellman-Ford; walls [n, M] flat obstacles (-1 none), goal [n] flat."""
        n = len(goal)
        h, w = self._free.shape
        passable = np.broadcast_to(self._free.ravel(), (n, h * w)).copy()
        bi, ki = np.nonzero(walls >= 0)
        passable[bi, walls[bi, ki]] = False
        passable = passable.reshape(n, h, w)
        d = np.full((n, h + 2, w + 2), UNREACHABLE, np.int32)
        gr, gc = np.divmod(goal, w)
        ok = passable[np.arange(n), gr, gc]
        d[np.flatnonzero(ok), gr[ok] + 1, gc[ok] + 1] = 0
        inner = d[:, 1:-1, 1:-1]
        for _ in range(h * w):
            nb = (
                np.minimum(
                    np.minimum(d[:, :-2, 1:-1], d[:, 2:, 1:-1]),
                    np.minimum(d[:, 1:-1, :-2], d[:, 1:-1, 2:]),
                )
                + 1
            )
            new = np.where(passable, np.minimum(inner, nb), UNREACHABLE)
            if np.array_equal(new, inner):
                break
            inner[...] = new
        return np.minimum(inner, UNREACHABLE).reshape(n, h * w)

    # ---- actions ----------------------------------------------------------------------
    def optimal_actions(
        self, states: GridState, dist: np.ndarray | None = None, *, avoid_robots: bool = True
    ) -> np.ndarray:
        """[B, 7] bool: the expert's equally good actions (at least one per row).

        Each legal action is scored by the distance of the cell it leads to (PICK / DROP:
        -1, i.e. best; WAIT: its own cell, preferred to a move of equal distance); with
        ``avoid_robots`` an action whose cell another robot holds now or enters next is
        scored after every safe action. The lowest score wins.

        Args:
            states: the batch.
            dist: optional precomputed :meth:`distances` of ``states``.
            avoid_robots: score conflicting actions last.
        """
        dist = self.distances(states) if dist is None else dist
        legal = self.model.legal_actions(states)
        rows = np.arange(len(states))
        nxt = states.pos[:, None] + self._delta[None, :]  # [B, 7] cell each action leads to
        score = dist[rows[:, None], nxt].astype(np.float64)  # [B, 7]
        score[:, MacroAction.WAIT] -= 0.25
        score[:, MacroAction.PICK] = -1.0
        score[:, MacroAction.DROP] = -1.0
        if avoid_robots and self.model.n_others:
            held = np.concatenate(
                [self.model.others_pos(states), self.model.others_pos(states, states.others_k + 1)],
                axis=1,
            )
            clash = (nxt[:, :, None] == held[:, None, :]).any(-1)  # [B, 7]
            score += np.where(clash, _CLASH_COST, 0.0)
        score = np.where(legal, score, np.inf)
        return score == score.min(1, keepdims=True)

    def policy_target(self, states: GridState, dist: np.ndarray | None = None) -> np.ndarray:
        """[B, 7] float32: uniform over :meth:`optimal_actions`."""
        best = self.optimal_actions(states, dist).astype(np.float32)
        return best / best.sum(1, keepdims=True)

    def act(
        self, states: GridState, rng: np.random.Generator, dist: np.ndarray | None = None
    ) -> np.ndarray:
        """[B] int64: one optimal action per row, uniformly among ties."""
        best = self.optimal_actions(states, dist)
        return np.argmax(np.where(best, rng.random(best.shape), -1.0), axis=1)


def open_world_values(model: GridModel, discount: float) -> np.ndarray:
    """Exact expected return of the expert right after a delivery, in an open warehouse.

    Entry ``[j, t]`` is the expected discounted return of standing on station ``j`` at
    step ``t`` with a fresh order (pick cell and station drawn uniformly, as the model
    does) when every later order is served along shortest paths without blockages or
    other robots: per order ``d1`` moves to the pick, PICK, ``d2`` moves to the station,
    DROP, each step costing the model's time cost; rewards after the horizon are cut.
    Solved backwards in ``t`` (dynamic programming, no sampling). Zero everywhere when
    the model ends episodes at the first delivery.

    Args:
        model: the grid model (rewards, step length, horizon, pick cells, stations).
        discount: per-step discount.

    Returns:
        [n_stations, horizon + 1] float64 (column ``horizon`` is 0).
    """
    cfg, lay = model.config, model.layout
    h = cfg.horizon_steps
    stations, picks = model.station_cells, model.pick_cells
    table = np.zeros((len(stations), h + 1))
    if cfg.terminate_on_delivery:
        return table

    def dist_from(cells: np.ndarray, to: np.ndarray) -> np.ndarray:
        return np.stack(
            [
                bfs_distances(lay.free, (int(r), int(c))).ravel()[to]
                for r, c in model.to_cells(cells)
            ]
        )

    d1 = dist_from(stations, picks)[:, :, None].astype(np.int64)  # [S, P, 1]
    length = d1 + dist_from(picks, stations)[None, :, :] + 2  # [S, P, S'] steps per order
    cost = cfg.time_cost_per_s * model.step_s
    g = float(discount)
    dst = np.broadcast_to(np.arange(len(stations))[None, None, :], length.shape)
    for t in range(h - 1, -1, -1):
        left = h - t
        n = np.minimum(length, left)
        time_part = -cost * (n if g == 1.0 else (1.0 - g**n) / (1.0 - g))
        pick = cfg.pick_reward * g**d1 * (d1 < left)
        drop = cfg.delivery_reward * g ** (length - 1) * (length - 1 < left)
        cont = g**length * table[dst, np.minimum(t + length, h)]
        table[:, t] = (time_part + pick + drop + cont).mean(axis=(1, 2))
    return table


def expert_returns(
    expert: ShortestPathExpert,
    states: GridState,
    rng: np.random.Generator,
    *,
    discount: float,
    continuation: np.ndarray | None = None,
    max_steps: int | None = None,
) -> np.ndarray:
    """Discounted return of the greedy expert from each state, played in the model.

    Distances are recomputed only for rows whose goal or obstacles changed.

    Args:
        expert: the expert (and its model).
        states: [B] start states.
        rng: randomness of the expert's tie-breaking and of the model's transitions.
        discount: per-step discount (use the search's discount).
        continuation: optional :func:`open_world_values` table (models that continue
            after a delivery): a row then stops at its first delivery and adds the
            table's expected return of the later orders (they are averaged exactly
            instead of sampled, which removes most of the target noise).
        max_steps: optional cap on the steps played (default: until every row is done).

    Returns:
        [B] float64 discounted returns (reward units).
    """
    model = expert.model
    horizon = model.config.horizon_steps
    b = len(states)
    ret, scale = np.zeros(b), 1.0
    alive = states.t < horizon
    delivered0 = states.delivered.copy()
    station_id = np.full(model.layout.free.size, -1, np.int64)
    station_id[model.station_cells] = np.arange(len(model.station_cells))
    dist = expert.distances(states)
    key = _dist_key(expert, states)
    for _ in range(horizon if max_steps is None else max_steps):
        if not alive.any():
            break
        a = expert.act(states, rng, dist)
        states, r, done = model.step(states, a, rng)
        ret += np.where(alive, scale * r, 0.0)
        scale *= discount
        alive &= ~done
        if continuation is not None:
            fin = alive & (states.delivered > delivered0)
            j = station_id[states.pos[fin]]
            ret[fin] += scale * continuation[j, np.minimum(states.t[fin], horizon)]
            alive &= ~fin
        new_key = _dist_key(expert, states)
        changed = np.flatnonzero(alive & (new_key != key).any(1))
        if len(changed):
            dist[changed] = expert.distances(_take(states, changed))
        key = new_key
    return ret


def _dist_key(expert: ShortestPathExpert, states: GridState) -> np.ndarray:
    """[B, 1 + M] what the distance map depends on: the goal cell and the obstacles."""
    return np.concatenate([expert.model.goal(states)[:, None], expert.obstacles(states)], axis=1)
