"""``forklift/GridFleet-v0``: all robots of a fleet on the grid model, driven jointly.

One centralised agent drives all ``n_robots`` robots at once (a vector of robots, not
PettingZoo); see :mod:`planning.grid_env` for the observation keys, rewards and episode
rules shared with the single-robot env. Runs on Python scalars, switching to numpy for move
conflicts and occupancy painting above about 40 robots; tested bit-identical to its first
(numpy) implementation.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from planning.grid_env import _DROP, _PICK, _layout, _obs_space, _ScalarTables
from planning.grid_model import (
    OCC_BLOCKAGE,
    OCC_ROBOT,
    PROPRIO_DIM,
    GridModel,
    GridModelConfig,
    GridState,
)
from sim.layout import Layout, LayoutConfig
from sim.types import N_ACTIONS

__all__ = ["GridFleetEnv"]


class GridFleetEnv(gym.Env):
    """All robots of a fleet, driven jointly (see module docstring).

    Like :class:`GridWarehouseEnv`, it runs on Python scalars (numpy for move conflicts
    and occupancy painting once the fleet is large); :attr:`state` gives the
    :class:`GridState` of the N robots (a snapshot; assign it to load another).

    Args:
        layout: the warehouse (default: ``generate_layout(layout_config)``).
        layout_config: used when ``layout`` is None.
        config: grid-model settings (``other_wait_prob`` is unused here).
        n_robots: robots in the fleet.
        n_blocks: known blockages placed at random free cells at reset.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": [], "render_fps": 4}
    scalar_max_robots: ClassVar[int] = 40  # above: move conflicts and painting in numpy

    def __init__(
        self,
        layout: Layout | None = None,
        layout_config: LayoutConfig | None = None,
        config: GridModelConfig | None = None,
        n_robots: int = 4,
        n_blocks: int = 2,
    ) -> None:
        if n_robots < 1:
            raise ValueError(f"env.n_robots: {n_robots}; allowed >= 1")
        self.layout = _layout(layout, layout_config)
        self.layout.validate(n_robots)
        self.config = config or GridModelConfig()
        self.n_robots, self.n_blocks = int(n_robots), int(n_blocks)
        self.observation_space = _obs_space(self.config, (self.n_robots,))
        self.action_space = spaces.MultiDiscrete([N_ACTIONS] * self.n_robots)
        self.model = GridModel(self.layout, self.config)
        self._tables = _ScalarTables(self.model)
        self._f: _FleetScalars | None = None
        self._state: GridState | None = None  # cache of the ``state`` property
        self._legal: list[tuple[bool, ...]] | None = None  # of the last observation

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        rng, n = self.np_random, self.n_robots
        free = self.layout.free_cells
        cells = free[rng.choice(len(free), size=n + self.n_blocks, replace=False)]
        pick = self.model.to_cells(self.model.pick_cells)[
            rng.integers(len(self.model.pick_cells), size=n)
        ]
        station = self.layout.stations[rng.integers(len(self.layout.stations), size=n)]
        blocks = np.broadcast_to(cells[n:], (n, self.n_blocks, 2)).copy()
        self.state = self.model.initial_states(cells[:n], pick, station, blocks=blocks)
        return self._obs(), {}

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        f = self._f
        if f is None:
            raise RuntimeError("env: step() before reset()")
        tb, cfg, rng, n = self._tables, self.config, self.np_random, self.n_robots
        a = np.asarray(action, np.int64).reshape(n).tolist()
        if not all(0 <= ai < N_ACTIONS for ai in a):
            raise ValueError(f"env.action: {a}; allowed 0..{N_ACTIONS - 1} per robot")
        legal = self._legal
        if legal is None:
            legal = self._legal = [self._legal_of(i) for i in range(n)]
        pos, delta = f.pos, tb.delta
        valid = [lg[ai] for lg, ai in zip(legal, a)]
        move = [v and ai < 4 for v, ai in zip(valid, a)]
        tgt = [p + delta[ai] if m else p for p, ai, m in zip(pos, a, move)]
        if n <= self.scalar_max_robots:
            go = _resolve_moves_list(pos, tgt, move)
        else:
            go = _resolve_moves(np.array(pos), np.array(tgt), np.array(move)).tolist()
        u = rng.random((n, 2)).tolist()
        n_k = len(f.blocks[0]) if n else 0
        clear = (rng.random(n_k) < tb.p_clear).tolist() if n_k else ()
        n_pick, n_station = len(tb.pick_cells), len(tb.station_cells)
        rewards = []
        any_dropped = False
        for i in range(n):
            ai, ok = a[i], valid[i]
            picked = ok and ai == _PICK
            dropped = ok and ai == _DROP
            collide = move[i] and not go[i]
            rewards.append(
                tb.step_reward
                + cfg.pick_reward * picked
                + cfg.delivery_reward * dropped
                + cfg.collision_reward * collide
                + cfg.invalid_reward * (not ok)
            )
            if go[i]:
                pos[i], f.heading[i] = tgt[i], tb.heading_of_move[ai]
            f.moved[i] = go[i]
            if dropped:
                any_dropped = True
                f.pick[i] = tb.pick_cells[int(u[i][0] * n_pick)]
                f.station[i] = tb.station_cells[int(u[i][1] * n_station)]
            f.load[i] = (f.load[i] or picked) and not dropped
            f.delivered[i] += dropped
            f.t[i] += 1
            f.dropped[i] = dropped
        if True in clear:
            for on in f.block_on:
                for j, c in enumerate(clear):
                    if c:
                        on[j] = False
        self._state = self._legal = None
        terminated = bool(cfg.terminate_on_delivery and any_dropped)
        truncated = f.t[0] >= cfg.horizon_steps and not terminated
        robot_rewards = np.array(rewards, np.float64)
        info = {"robot_rewards": robot_rewards, "delivered": np.array(f.dropped, bool)}
        return self._obs(), float(robot_rewards.sum()), terminated, truncated, info

    # ---- the state as a batch of N robots --------------------------------------------------
    @property
    def state(self) -> GridState | None:
        """The fleet's :class:`GridState` (one row per robot; None before reset)."""
        f = self._f
        if f is None:
            return None
        if self._state is None:
            n, i64 = self.n_robots, np.int64
            n_k = len(f.blocks[0])
            self._state = GridState(
                pos=np.array(f.pos, i64),
                heading=np.array(f.heading, i64),
                moved=np.array(f.moved, bool),
                load=np.array(f.load, bool),
                pick=np.array(f.pick, i64),
                station=np.array(f.station, i64),
                blocks=np.array(f.blocks, i64).reshape(n, n_k),
                block_on=np.array(f.block_on, bool).reshape(n, n_k),
                others_k=f.others_k,
                scn=f.scn,
                t=np.array(f.t, i64),
                delivered=np.array(f.delivered, i64),
            )
        return self._state

    @state.setter
    def state(self, st: GridState) -> None:
        if len(st) != self.n_robots:
            raise ValueError(f"env.state: {len(st)} rows; allowed {self.n_robots} (n_robots)")
        self._f = _FleetScalars(
            pos=st.pos.tolist(),
            heading=st.heading.tolist(),
            moved=st.moved.tolist(),
            load=st.load.tolist(),
            pick=st.pick.tolist(),
            station=st.station.tolist(),
            blocks=st.blocks.tolist(),
            block_on=st.block_on.tolist(),
            t=st.t.tolist(),
            delivered=st.delivered.tolist(),
            dropped=[False] * self.n_robots,
            others_k=st.others_k,
            scn=st.scn,
        )
        self._state = self._legal = None

    # ---- helpers -------------------------------------------------------------------------
    def _legal_of(self, i: int) -> tuple[bool, ...]:
        """:meth:`GridModel.legal_actions` of robot ``i`` (other robots never block)."""
        f, tb = self._f, self._tables
        assert f is not None
        pos, load = f.pos[i], f.load[i]
        moves = tb.moves[pos]
        blocks, block_on = f.blocks[i], f.block_on[i]
        if True in block_on:
            moves = tuple(
                ok and not any(on and c == v for c, on in zip(blocks, block_on))
                for ok, v in zip(moves, tb.nbr[pos])
            )
        return (*moves, True, not load and pos == f.pick[i], load and pos == f.station[i])

    def _obs(self) -> dict[str, np.ndarray]:
        """:meth:`GridModel.encode` of each robot, the others seen as robots standing still.

        (= ``encode`` with a plan table of one-cell plans at the other robots' cells.)
        """
        f, tb, n = self._f, self._tables, self.n_robots
        assert f is not None
        pos = f.pos
        crops = []
        for p in pos:
            crop = tb.crops.get(p)
            crops.append(tb.static_crop(p) if crop is None else crop)
        occ = np.array(crops)
        n_k = len(f.blocks[0])
        if n <= self.scalar_max_robots:
            # blockages, then the other robots in index order (a painted cell is static in
            # the crop exactly when the layout cell is not free)
            size, half, row, col, free = tb.size, tb.half, tb.row, tb.col, tb.free
            for i in range(n):
                pr, pc = row[pos[i]] - half, col[pos[i]] - half
                out = occ[i]
                for c, on in zip(f.blocks[i], f.block_on[i]):
                    if on and c >= 0 and free[c]:
                        r, k = row[c] - pr, col[c] - pc
                        if 0 <= r < size and 0 <= k < size:
                            out[r, k] = OCC_BLOCKAGE
                for j in range(n):
                    c = pos[j]
                    if j != i and free[c]:
                        r, k = row[c] - pr, col[c] - pc
                        if 0 <= r < size and 0 <= k < size:
                            out[r, k] = OCC_ROBOT
        elif n > 1 or n_k:
            p = np.array(pos)
            cells = np.concatenate(
                [np.array(f.blocks, np.int64).reshape(n, n_k), np.broadcast_to(p, (n, n))], 1
            )
            on = np.concatenate(
                [np.array(f.block_on, bool).reshape(n, n_k), ~np.eye(n, dtype=bool)], 1
            )
            value = np.r_[np.full(n_k, OCC_BLOCKAGE), np.full(n, OCC_ROBOT)]
            self.model._paint(occ, p, cells, on, value)
        legal = self._legal = [self._legal_of(i) for i in range(n)]
        xy_unit, motion, xy_goal, horizon = tb.xy_unit, tb.motion, tb.xy_goal, tb.horizon
        proprio = []
        for i in range(n):
            p, load = pos[i], f.load[i]
            gx, gy = xy_goal[f.station[i] if load else f.pick[i]]
            px, py = xy_goal[p]
            proprio.append(
                (
                    *xy_unit[p],
                    *motion[f.heading[i] * 2 + f.moved[i]],
                    gx - px,  # = the float32 difference (exact in double, rounded once)
                    gy - py,
                    load,
                    f.t[i] / horizon,
                )
            )
        return {
            "proprio": np.array(proprio, np.float32).reshape(n, PROPRIO_DIM),
            "occupancy": occ,
            "action_mask": np.array(legal, np.float32),
        }


@dataclass(slots=True)
class _FleetScalars:
    """The fleet's state as Python lists (one entry per robot; flat cells)."""

    pos: list[int]
    heading: list[int]
    moved: list[bool]
    load: list[bool]
    pick: list[int]
    station: list[int]
    blocks: list[list[int]]
    block_on: list[list[bool]]
    t: list[int]
    delivered: list[int]
    dropped: list[bool]  # delivered in the last step
    others_k: np.ndarray  # [N, 0] (unused by the fleet; kept for the GridState)
    scn: np.ndarray


def _resolve_moves_list(pos: list[int], tgt: list[int], move: list[bool]) -> list[bool]:
    """:func:`_resolve_moves` on Python lists (faster for a few robots)."""
    n = len(pos)
    go = list(move)
    for _ in range(n + 1):
        nxt = [t if g else p for p, t, g in zip(pos, tgt, go)]
        bad = []
        for i in range(n):
            if not go[i]:
                continue
            ni, ti, pi = nxt[i], tgt[i], pos[i]
            for j in range(n):
                if j != i and (
                    (nxt[j] == ni and (j < i or not go[j]))
                    or (go[j] and ti == pos[j] and tgt[j] == pi)
                ):
                    bad.append(i)
                    break
        if not bad:
            return go
        for i in bad:
            go[i] = False
    return go


@functools.lru_cache(maxsize=16)
def _pair_masks(n: int) -> tuple[np.ndarray, np.ndarray]:
    """[N, N] bool (j < i) and (j != i), read-only."""
    lower, others = np.tril(np.ones((n, n), bool), -1), ~np.eye(n, dtype=bool)
    lower.flags.writeable = others.flags.writeable = False
    return lower, others


def _resolve_moves(pos: np.ndarray, tgt: np.ndarray, move: np.ndarray) -> np.ndarray:
    """[N] bool: which intended moves (flat cells) succeed (no shared next cell, no swap)."""
    go = move.copy()
    n = len(pos)
    lower, others = _pair_masks(n)
    swap = (tgt[:, None] == pos[None, :]) & (tgt[None, :] == pos[:, None]) & others
    for _ in range(n + 1):
        nxt = np.where(go, tgt, pos)
        same = (nxt[:, None] == nxt[None, :]) & others
        # A mover loses a contested cell to a robot staying there or to a lower index.
        lose = (same & (~go[None, :] | lower)).any(1) | (swap & go[:, None] & go[None, :]).any(1)
        bad = go & lose
        if not bad.any():
            return go
        go &= ~bad
    return go
