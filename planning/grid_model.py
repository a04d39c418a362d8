"""The warehouse grid model: a fast, vectorised, stochastic model of one robot's world.

Built from a :class:`sim.layout.Layout`. One step moves the ego robot one cell (or
waits / picks / drops) and lasts ``step_s = cell_size / nominal_speed_mps`` seconds.
Around it: known blockages (temporary pallets) that clear with probability
``1 - exp(-blockage_clear_rate_per_s * step_s)`` per step each, and other robots that
follow their announced plans, each waiting with probability ``other_wait_prob`` per step
(and staying on their last cell once the plan ends). Everything is numpy over a batch
``B`` of states; randomness only from the ``rng`` passed to :meth:`GridModel.step`.

Rules:
- moves (N/S/E/W) are legal into drivable cells without an active blockage; WAIT is
  always legal; PICK only on the order's pick cell when empty; DROP only on the
  order's station cell when loaded. An illegal action is a no-op costing
  ``invalid_reward``.
- a robot-robot conflict (the ego's next cell is another robot's next cell, or they swap
  cells) cancels the ego's move and costs ``collision_reward``.
- reward per step: ``-time_cost_per_s * step_s`` + ``pick_reward`` on a pick +
  ``delivery_reward`` on a drop (+ penalties above). After a delivery the next order is
  drawn uniformly (pick point reachable from the stations, station), unless
  ``terminate_on_delivery`` ends the episode. ``done`` also when ``t >= horizon_steps``.

Observation (:meth:`GridModel.encode`), float32, world-aligned (x east, y north):

- ``"proprio"`` [B, 12]: ``[0:2]`` cell-centre position ``(x / width_m, y / height_m)``
  in [0, 1]; ``[2:6]`` heading one-hot (east, north, west, south) = direction of the
  last successful move (initially east); ``[6:8]`` velocity ``(vx, vy) / nominal speed``
  over the last step (a unit vector if it moved, else 0); ``[8:10]`` goal vector
  ``(dx, dy) / max(width_m, height_m)`` from the robot to the pick cell (empty) or the
  station cell (loaded); ``[10]`` load flag; ``[11]`` time fraction ``t / horizon``.
- ``"occupancy"`` [B, S, S] (S = ``crop_size``, odd): cells around the robot,
  ``occupancy[i, j]`` = cell ``(row + i - S//2, col + j - S//2)`` (i grows north, j
  east; the robot at the centre): 1.0 static obstacle or outside the map, 0.5 known
  blockage, 0.25 another robot, 0.0 free.
- ``"action_mask"`` [B, 7]: 1.0 where the :class:`sim.types.MacroAction` is legal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from sim.layout import Layout
from sim.types import ACTION_DELTAS, N_ACTIONS, MacroAction

__all__ = ["GridModel", "GridModelConfig", "GridState", "PROPRIO_DIM", "OCC_BLOCKAGE",
           "OCC_ROBOT", "OCC_STATIC"]

PROPRIO_DIM = 12
OCC_STATIC, OCC_BLOCKAGE, OCC_ROBOT = 1.0, 0.5, 0.25
_HEADING_OF_MOVE = np.array([1, 3, 0, 2], np.int64)  # N, S, E, W -> index in (E, N, W, S)
_HEADING_XY = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], np.float32)  # E, N, W, S
_MOVE_XY = np.array([[0, 1], [0, -1], [1, 0], [-1, 0]], np.float32)  # N, S, E, W as (x, y)


def _fail(field: str, value: object, allowed: str) -> ValueError:
    return ValueError(f"grid.{field}: {value!r}; allowed {allowed}")


@dataclass(frozen=True)
class GridModelConfig:
    """Grid-model settings (units in the names; validated on construction)."""

    nominal_speed_mps: float = 1.0
    horizon_steps: int = 200
    time_cost_per_s: float = 0.01
    delivery_reward: float = 1.0
    pick_reward: float = 0.1
    collision_reward: float = -0.5
    invalid_reward: float = -0.05
    other_wait_prob: float = 0.1
    blockage_clear_rate_per_s: float = 0.05
    crop_size: int = 11
    terminate_on_delivery: bool = False

    def __post_init__(self) -> None:
        checks = [
            ("nominal_speed_mps", self.nominal_speed_mps > 0, "> 0 m/s"),
            ("horizon_steps", isinstance(self.horizon_steps, int) and self.horizon_steps >= 1, "integer >= 1"),
            ("time_cost_per_s", self.time_cost_per_s >= 0, ">= 0"),
            ("other_wait_prob", 0 <= self.other_wait_prob <= 1, "in [0, 1]"),
            ("blockage_clear_rate_per_s", self.blockage_clear_rate_per_s >= 0, ">= 0 1/s"),
            ("crop_size", isinstance(self.crop_size, int) and self.crop_size >= 1
             and self.crop_size % 2 == 1, "odd integer >= 1"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise _fail(name, getattr(self, name), allowed)


@dataclass(frozen=True)
class GridState:
    """A batch of grid-model states (all arrays have leading dim B).

    Attributes:
        pos: [B, 2] int64 ego cell (row, col).
        heading: [B] int64 index into (east, north, west, south).
        moved: [B] bool the ego moved in the last step.
        load: [B] bool carrying the order's load.
        pick: [B, 2] int64 pick cell of the current order.
        station: [B, 2] int64 station cell of the current order.
        blocks: [B, K, 2] int64 known blockage cells (K may be 0).
        block_on: [B, K] bool blockage still present.
        others_k: [B, R] int64 progress of each other robot along its plan.
        scn: [B] int64 row of the model's plan table holding the other robots' plans.
        t: [B] int64 steps since the situation started.
        delivered: [B] int64 deliveries so far.
    """

    pos: np.ndarray
    heading: np.ndarray
    moved: np.ndarray
    load: np.ndarray
    pick: np.ndarray
    station: np.ndarray
    blocks: np.ndarray
    block_on: np.ndarray
    others_k: np.ndarray
    scn: np.ndarray
    t: np.ndarray
    delivered: np.ndarray

    def __len__(self) -> int:
        return len(self.pos)


class GridModel:
    """Vectorised warehouse model implementing :class:`planning.PlanningModel`.

    Args:
        layout: the warehouse.
        config: model settings.
        plans: [C, R, T, 2] int64 announced plans of R other robots, one row per
            scenario (``GridState.scn``); cells past ``plan_len`` are ignored.
        plan_len: [C, R] int64 plan lengths (>= 1).
    """

    num_actions: int = N_ACTIONS

    def __init__(self, layout: Layout, config: GridModelConfig | None = None, *,
                 plans: np.ndarray | None = None, plan_len: np.ndarray | None = None) -> None:
        self.layout = layout
        self.config = config if config is not None else GridModelConfig()
        cfg = self.config
        self.step_s = layout.cell_size / cfg.nominal_speed_mps
        self.p_clear = 1.0 - math.exp(-cfg.blockage_clear_rate_per_s * self.step_s)
        h, w = layout.shape
        self._free_pad = np.zeros((h + 2, w + 2), bool)
        self._free_pad[1:-1, 1:-1] = layout.free
        half = cfg.crop_size // 2
        self._occ_pad = np.full((h + 2 * half, w + 2 * half), OCC_STATIC, np.float32)
        self._occ_pad[half:half + h, half:half + w] = layout.occupancy.astype(np.float32)
        off = np.arange(cfg.crop_size) - half
        self._crop_r, self._crop_c = np.meshgrid(off, off, indexing="ij")
        self._size_m = np.array(layout.size_m, np.float32)  # (width, height)
        self._goal_scale = np.float32(max(layout.size_m))
        reach = layout.reachable_from(layout.stations[0])
        self.pick_cells = layout.pick_points[reach[layout.pick_points[:, 0], layout.pick_points[:, 1]]]
        if plans is None:
            plans, plan_len = np.zeros((1, 0, 1, 2), np.int64), np.ones((1, 0), np.int64)
        self.plans = np.asarray(plans, np.int64)
        self.plan_len = np.asarray(plan_len, np.int64)
        if self.plans.ndim != 4 or self.plan_len.shape != self.plans.shape[:2]:
            raise ValueError(f"grid.plans: shape {self.plans.shape} with plan_len "
                             f"{self.plan_len.shape}; allowed [C, R, T, 2] and [C, R]")

    @property
    def deterministic(self) -> bool:
        """True when no transition samples (no waits, no clearing, no new orders)."""
        cfg = self.config
        return cfg.other_wait_prob in (0.0, 1.0) and self.p_clear == 0.0 and cfg.terminate_on_delivery

    @property
    def n_others(self) -> int:
        return self.plans.shape[1]

    def with_plans(self, plans: np.ndarray, plan_len: np.ndarray) -> GridModel:
        """The same model with another plan table."""
        return GridModel(self.layout, self.config, plans=plans, plan_len=plan_len)

    # ---- queries -------------------------------------------------------------------------
    def others_pos(self, states: GridState, k: np.ndarray | None = None) -> np.ndarray:
        """[B, R, 2] cells of the other robots at progress ``k`` (default: current)."""
        k = states.others_k if k is None else k
        r = np.arange(self.n_others)[None, :]
        idx = np.minimum(k, self.plan_len[states.scn] - 1)
        return self.plans[states.scn[:, None], r, idx]

    def _blocked(self, states: GridState, cells: np.ndarray) -> np.ndarray:
        """cells [B, M, 2] -> [B, M] bool covered by an active blockage."""
        if states.blocks.shape[1] == 0:
            return np.zeros(cells.shape[:2], bool)
        hit = (states.blocks[:, None, :, :] == cells[:, :, None, :]).all(-1)  # [B, M, K]
        return (hit & states.block_on[:, None, :]).any(-1)

    def legal_actions(self, states: GridState) -> np.ndarray:
        """[B, 7] bool legal macro actions."""
        pos = states.pos
        tgt = pos[:, None, :] + ACTION_DELTAS[None, :4]  # [B, 4, 2]
        out = np.empty((len(pos), N_ACTIONS), bool)
        out[:, :4] = self._free_pad[tgt[..., 0] + 1, tgt[..., 1] + 1] & ~self._blocked(states, tgt)
        out[:, MacroAction.WAIT] = True
        out[:, MacroAction.PICK] = ~states.load & (pos == states.pick).all(1)
        out[:, MacroAction.DROP] = states.load & (pos == states.station).all(1)
        return out

    def goal(self, states: GridState) -> np.ndarray:
        """[B, 2] current goal cell: the pick cell if empty, else the station."""
        return np.where(states.load[:, None], states.station, states.pick)

    # ---- dynamics ------------------------------------------------------------------------
    def step(self, states: GridState, actions: np.ndarray,
             rng: np.random.Generator) -> tuple[GridState, np.ndarray, np.ndarray]:
        """Advance every row one step (see module docstring for the rules)."""
        cfg = self.config
        a = np.asarray(actions, np.int64)
        b = len(a)
        rows = np.arange(b)
        valid = self.legal_actions(states)[rows, a]
        move = valid & (a < 4)
        tgt = np.where(move[:, None], states.pos + ACTION_DELTAS[a], states.pos)
        others_k, collide = self._move_others(states, tgt, rng)
        go = move & ~collide
        picked = valid & (a == MacroAction.PICK)
        dropped = valid & (a == MacroAction.DROP)
        pick, station = self._next_orders(states, dropped, rng)
        block_on = states.block_on
        if block_on.shape[1]:
            block_on = block_on & (rng.random(block_on.shape) >= self.p_clear)
        t = states.t + 1
        reward = (-cfg.time_cost_per_s * self.step_s + cfg.pick_reward * picked
                  + cfg.delivery_reward * dropped + cfg.collision_reward * collide
                  + cfg.invalid_reward * ~valid)
        done = t >= cfg.horizon_steps
        if cfg.terminate_on_delivery:
            done = done | dropped
        nxt = GridState(
            pos=np.where(go[:, None], tgt, states.pos),
            heading=np.where(go, _HEADING_OF_MOVE[np.minimum(a, 3)], states.heading),
            moved=go, load=(states.load | picked) & ~dropped, pick=pick, station=station,
            blocks=states.blocks, block_on=block_on, others_k=others_k, scn=states.scn, t=t,
            delivered=states.delivered + dropped,
        )
        return nxt, reward.astype(np.float64), done

    def _move_others(self, states: GridState, tgt: np.ndarray,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        b = len(tgt)
        if self.n_others == 0:
            return states.others_k, np.zeros(b, bool)
        k = states.others_k
        adv = rng.random(k.shape) >= self.config.other_wait_prob
        k_new = np.minimum(k + adv, self.plan_len[states.scn] - 1)
        old = self.others_pos(states, k)
        new = self.others_pos(states, k_new)
        vertex = (new == tgt[:, None]).all(-1).any(1)
        swap = ((old == tgt[:, None]).all(-1) & (new == states.pos[:, None]).all(-1)).any(1)
        return k_new, vertex | swap

    def _next_orders(self, states: GridState, dropped: np.ndarray,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        b = len(dropped)
        i = rng.integers(len(self.pick_cells), size=b)
        j = rng.integers(len(self.layout.stations), size=b)
        if self.config.terminate_on_delivery or not dropped.any():
            return states.pick, states.station
        new = dropped[:, None]
        return (np.where(new, self.pick_cells[i], states.pick),
                np.where(new, self.layout.stations[j], states.station))

    # ---- observation ---------------------------------------------------------------------
    def encode(self, states: GridState) -> dict[str, np.ndarray]:
        """Observation dict (keys, shapes and units in the module docstring)."""
        return {"proprio": self.proprio(states), "occupancy": self.occupancy(states),
                "action_mask": self.legal_actions(states).astype(np.float32)}

    def proprio(self, states: GridState) -> np.ndarray:
        """[B, 12] float32 proprioceptive vector."""
        b = len(states)
        out = np.zeros((b, PROPRIO_DIM), np.float32)
        xy = self.layout.cell_to_xy(states.pos).astype(np.float32)
        out[:, 0:2] = xy / self._size_m
        out[np.arange(b), 2 + states.heading] = 1.0
        out[:, 6:8] = _HEADING_XY[states.heading] * states.moved[:, None]
        out[:, 8:10] = (self.layout.cell_to_xy(self.goal(states)).astype(np.float32) - xy) / self._goal_scale
        out[:, 10] = states.load
        out[:, 11] = states.t / self.config.horizon_steps
        return out

    def occupancy(self, states: GridState) -> np.ndarray:
        """[B, S, S] float32 egocentric, world-aligned occupancy crop."""
        half = self.config.crop_size // 2
        r = states.pos[:, 0, None, None] + self._crop_r + half
        c = states.pos[:, 1, None, None] + self._crop_c + half
        out = self._occ_pad[r, c]
        if states.blocks.shape[1]:
            self._paint(out, states.pos, states.blocks, states.block_on, OCC_BLOCKAGE)
        if self.n_others:
            o = self.others_pos(states)
            self._paint(out, states.pos, o, np.ones(o.shape[:2], bool), OCC_ROBOT)
        return out

    def _paint(self, out: np.ndarray, pos: np.ndarray, cells: np.ndarray, on: np.ndarray,
               value: float) -> None:
        half = self.config.crop_size // 2
        d = cells - pos[:, None, :] + half  # [B, M, 2]
        ok = on & (d >= 0).all(-1) & (d < self.config.crop_size).all(-1)
        bb, mm = np.nonzero(ok)
        rr, cc = d[bb, mm, 0], d[bb, mm, 1]
        cur = out[bb, rr, cc]
        out[bb, rr, cc] = np.where(cur == OCC_STATIC, cur, value)

    # ---- construction helpers ---------------------------------------------------------------
    def initial_states(self, pos: np.ndarray, pick: np.ndarray, station: np.ndarray, *,
                       load: np.ndarray | None = None, blocks: np.ndarray | None = None,
                       scn: np.ndarray | None = None) -> GridState:
        """States at t = 0 for B robots (blocks: [B, K, 2] active blockages)."""
        pos = np.asarray(pos, np.int64).reshape(-1, 2)
        b = len(pos)
        blocks = np.zeros((b, 0, 2), np.int64) if blocks is None else np.asarray(blocks, np.int64)
        return GridState(
            pos=pos, heading=np.zeros(b, np.int64), moved=np.zeros(b, bool),
            load=np.zeros(b, bool) if load is None else np.asarray(load, bool),
            pick=np.asarray(pick, np.int64).reshape(b, 2),
            station=np.asarray(station, np.int64).reshape(b, 2),
            blocks=blocks, block_on=(blocks >= 0).all(-1),
            others_k=np.zeros((b, self.n_others), np.int64),
            scn=np.zeros(b, np.int64) if scn is None else np.asarray(scn, np.int64),
            t=np.zeros(b, np.int64), delivered=np.zeros(b, np.int64),
        )

    def replace(self, states: GridState, **changes: np.ndarray) -> GridState:
        """``dataclasses.replace`` for states (convenience)."""
        return replace(states, **changes)
