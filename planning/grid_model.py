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

import copy
import math
from dataclasses import dataclass, replace

import numpy as np

from sim.layout import Layout
from sim.types import N_ACTIONS, MacroAction

__all__ = [
    "OCC_BLOCKAGE",
    "OCC_ROBOT",
    "OCC_STATIC",
    "PROPRIO_DIM",
    "GridModel",
    "GridModelConfig",
    "GridState",
    "HandlingOutsideSearch",
]

PROPRIO_DIM = 12
OCC_STATIC, OCC_BLOCKAGE, OCC_ROBOT = 1.0, 0.5, 0.25
_HEADING_OF_MOVE = np.array([1, 3, 0, 2], np.int64)  # N, S, E, W -> index in (E, N, W, S)
_WAIT, _PICK, _DROP = int(MacroAction.WAIT), int(MacroAction.PICK), int(MacroAction.DROP)
_HEADING_XY = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], np.float32)  # E, N, W, S


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
            (
                "horizon_steps",
                isinstance(self.horizon_steps, int) and self.horizon_steps >= 1,
                "integer >= 1",
            ),
            ("time_cost_per_s", self.time_cost_per_s >= 0, ">= 0"),
            ("other_wait_prob", 0 <= self.other_wait_prob <= 1, "in [0, 1]"),
            ("blockage_clear_rate_per_s", self.blockage_clear_rate_per_s >= 0, ">= 0 1/s"),
            (
                "crop_size",
                isinstance(self.crop_size, int) and self.crop_size >= 1 and self.crop_size % 2 == 1,
                "odd integer >= 1",
            ),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise _fail(name, getattr(self, name), allowed)


@dataclass(frozen=True)
class GridState:
    """A batch of grid-model states (all arrays have leading dim B).

    Cells are flat indices ``row * W + col`` (W = layout width); use
    :meth:`GridModel.to_cells` / :meth:`GridModel.to_flat` to convert. -1 = no cell.

    Attributes:
        pos: [B] int64 ego cell.
        heading: [B] int64 index into (east, north, west, south).
        moved: [B] bool the ego moved in the last step.
        load: [B] bool carrying the order's load.
        pick: [B] int64 pick cell of the current order.
        station: [B] int64 station cell of the current order.
        blocks: [B, K] int64 known blockage cells (-1 = unused slot; K may be 0).
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
        layout: the warehouse (its outer ring must be wall, as ``sim.layout`` builds it).
        config: model settings.
        plans: [C, R, T] int64 announced plans (flat cells) of R other robots, one row per
            scenario (``GridState.scn``); entries past ``plan_len`` are ignored; a plan of
            -1 cells is an absent robot.
        plan_len: [C, R] int64 plan lengths (>= 1).
    """

    num_actions: int = N_ACTIONS

    def __init__(
        self,
        layout: Layout,
        config: GridModelConfig | None = None,
        *,
        plans: np.ndarray | None = None,
        plan_len: np.ndarray | None = None,
    ) -> None:
        self.layout = layout
        self.config = config if config is not None else GridModelConfig()
        cfg = self.config
        self.step_s = layout.cell_size / cfg.nominal_speed_mps
        self.p_clear = 1.0 - math.exp(-cfg.blockage_clear_rate_per_s * self.step_s)
        _h, w = layout.shape
        self.width = w
        self._free = layout.free.ravel()
        self._delta = np.array([w, -w, 1, -1, 0, 0, 0], np.int64)  # flat ACTION_DELTAS
        self._init_encoding_tables()
        reach = layout.reachable_from(layout.stations[0])
        picks = layout.pick_points[reach[layout.pick_points[:, 0], layout.pick_points[:, 1]]]
        self.pick_cells = self.to_flat(picks)
        self.station_cells = self.to_flat(layout.stations)
        if plans is None:
            plans, plan_len = np.zeros((1, 0, 1), np.int64), np.ones((1, 0), np.int64)
        self.plans = np.asarray(plans, np.int64)
        self.plan_len = np.asarray(plan_len, np.int64)
        if self.plans.ndim != 3 or self.plan_len.shape != self.plans.shape[:2]:
            raise ValueError(
                f"grid.plans: shape {self.plans.shape} with plan_len "
                f"{self.plan_len.shape}; allowed [C, R, T] and [C, R]"
            )

    def _init_encoding_tables(self) -> None:
        """Per-cell lookup tables so that encoding is a handful of gathers."""
        lay, half = self.layout, self.config.crop_size // 2
        h, w = lay.shape
        wp = w + 2 * half
        occ = np.full((h + 2 * half, wp), OCC_STATIC, np.float32)
        occ[half : half + h, half : half + w] = lay.occupancy.astype(np.float32)
        self._occ_flat = occ.ravel()
        rc = np.stack(np.divmod(np.arange(h * w), w), axis=-1)
        self._rc = rc  # [H*W, 2] (row, col) of each flat cell
        self._pad_index = (rc[:, 0] + half) * wp + rc[:, 1] + half
        off = np.arange(self.config.crop_size) - half
        self._crop_offsets = off[:, None] * wp + off[None, :]  # [S, S]
        xy = lay.cell_to_xy(rc).astype(np.float32)
        self._xy_unit = xy / np.array(lay.size_m, np.float32)
        self._xy_goal = xy / np.float32(max(lay.size_m))
        motion = np.zeros((8, 6), np.float32)  # row = heading * 2 + moved: one-hot, velocity
        for hd in range(4):
            motion[2 * hd : 2 * hd + 2, hd] = 1.0
            motion[2 * hd + 1, 4:6] = _HEADING_XY[hd]
        self._motion = motion

    @property
    def deterministic(self) -> bool:
        """True when no transition samples (no waits, no clearing, no new orders)."""
        cfg = self.config
        return (
            cfg.other_wait_prob in (0.0, 1.0) and self.p_clear == 0.0 and cfg.terminate_on_delivery
        )

    @property
    def n_others(self) -> int:
        return self.plans.shape[1]

    def with_plans(self, plans: np.ndarray, plan_len: np.ndarray) -> GridModel:
        """The same model (shared lookup tables) with another plan table.

        Args:
            plans: [C, R, T] int64 flat cells.
            plan_len: [C, R] int64 lengths.
        """
        out = copy.copy(self)
        out.plans, out.plan_len = np.asarray(plans, np.int64), np.asarray(plan_len, np.int64)
        if out.plans.ndim != 3 or out.plan_len.shape != out.plans.shape[:2]:
            raise ValueError(
                f"grid.plans: shape {out.plans.shape} with plan_len "
                f"{out.plan_len.shape}; allowed [C, R, T] and [C, R]"
            )
        return out

    def to_flat(self, cells: np.ndarray) -> np.ndarray:
        """(row, col) [..., 2] -> flat [...] int64."""
        cells = np.asarray(cells, np.int64)
        return cells[..., 0] * self.width + cells[..., 1]

    def to_cells(self, flat: np.ndarray) -> np.ndarray:
        """flat [...] -> (row, col) [..., 2] int64 (-1 stays (-1, -1))."""
        flat = np.asarray(flat, np.int64)
        out = np.stack(np.divmod(flat, self.width), axis=-1)
        return np.where(flat[..., None] < 0, -1, out)

    # ---- queries -------------------------------------------------------------------------
    def others_pos(self, states: GridState, k: np.ndarray | None = None) -> np.ndarray:
        """[B, R] flat cells of the other robots at progress ``k`` (default: current)."""
        k = states.others_k if k is None else k
        idx = np.minimum(k, self.plan_len[states.scn] - 1)
        return self.plans[states.scn[:, None], np.arange(self.n_others), idx]

    def legal_actions(self, states: GridState) -> np.ndarray:
        """[B, 7] bool legal macro actions."""
        pos = states.pos
        tgt = pos[:, None] + self._delta[:4]  # [B, 4]
        out = np.empty((len(pos), N_ACTIONS), bool)
        ok = self._free[tgt]
        if states.blocks.shape[1]:
            hit = (tgt[:, :, None] == states.blocks[:, None, :]) & states.block_on[:, None, :]
            ok &= ~hit.any(-1)
        out[:, :4] = ok
        out[:, _WAIT] = True
        out[:, _PICK] = ~states.load & (pos == states.pick)
        out[:, _DROP] = states.load & (pos == states.station)
        return out

    def goal(self, states: GridState) -> np.ndarray:
        """[B] current goal cell: the pick cell if empty, else the station."""
        return np.where(states.load, states.station, states.pick)

    # ---- dynamics ------------------------------------------------------------------------
    def step(
        self, states: GridState, actions: np.ndarray, rng: np.random.Generator
    ) -> tuple[GridState, np.ndarray, np.ndarray]:
        """Advance every row one step (see module docstring for the rules).

        One ``rng.random((B, R + K + 2))`` draw per call: other robots' waits, blockage
        clearing, and the next order (pick, station) after a delivery.
        """
        cfg = self.config
        a = np.asarray(actions, np.int64)
        b, n_r, n_k = len(a), self.n_others, states.blocks.shape[1]
        u = rng.random((b, n_r + n_k + 2))
        valid = self.legal_actions(states)[np.arange(b), a]
        move = valid & (a < 4)
        tgt = states.pos + self._delta[a] * move
        others_k, collide = self._move_others(states, tgt, u[:, :n_r])
        go = move & ~collide
        picked = valid & (a == _PICK)
        dropped = valid & (a == _DROP)
        pick, station = states.pick, states.station
        if dropped.any() and not cfg.terminate_on_delivery:
            pick = np.where(
                dropped, self.pick_cells[(u[:, -2] * len(self.pick_cells)).astype(np.int64)], pick
            )
            station = np.where(
                dropped,
                self.station_cells[(u[:, -1] * len(self.station_cells)).astype(np.int64)],
                station,
            )
        block_on = states.block_on
        if n_k:
            block_on = block_on & (u[:, n_r : n_r + n_k] >= self.p_clear)
        t = states.t + 1
        reward = (
            self._step_reward
            + cfg.pick_reward * picked
            + cfg.delivery_reward * dropped
            + cfg.collision_reward * collide
            + cfg.invalid_reward * ~valid
        )
        done = t >= cfg.horizon_steps
        if cfg.terminate_on_delivery:
            done |= dropped
        nxt = GridState(
            pos=np.where(go, tgt, states.pos),
            heading=np.where(go, _HEADING_OF_MOVE[a & 3], states.heading),
            moved=go,
            load=(states.load | picked) & ~dropped,
            pick=pick,
            station=station,
            blocks=states.blocks,
            block_on=block_on,
            others_k=others_k,
            scn=states.scn,
            t=t,
            delivered=states.delivered + dropped,
        )
        return nxt, reward, done

    @property
    def _step_reward(self) -> float:
        return -self.config.time_cost_per_s * self.step_s

    def _move_others(
        self, states: GridState, tgt: np.ndarray, u: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.n_others == 0:
            return states.others_k, np.zeros(len(tgt), bool)
        k = states.others_k
        last = self.plan_len[states.scn] - 1
        k_new = np.minimum(k + (u >= self.config.other_wait_prob), last)
        rows, r = states.scn[:, None], np.arange(self.n_others)
        old = self.plans[rows, r, np.minimum(k, last)]
        new = self.plans[rows, r, k_new]
        clash = (new == tgt[:, None]) | ((old == tgt[:, None]) & (new == states.pos[:, None]))
        return k_new, clash.any(1)

    # ---- observation ---------------------------------------------------------------------
    def encode(self, states: GridState) -> dict[str, np.ndarray]:
        """Observation dict (keys, shapes and units in the module docstring)."""
        return {
            "proprio": self.proprio(states),
            "occupancy": self.occupancy(states),
            "action_mask": self.legal_actions(states).astype(np.float32),
        }

    def proprio(self, states: GridState) -> np.ndarray:
        """[B, 12] float32 proprioceptive vector."""
        out = np.empty((len(states), PROPRIO_DIM), np.float32)
        out[:, 0:2] = self._xy_unit[states.pos]
        out[:, 2:8] = self._motion[states.heading * 2 + states.moved]
        out[:, 8:10] = self._xy_goal[self.goal(states)] - self._xy_goal[states.pos]
        out[:, 10] = states.load
        out[:, 11] = states.t / self.config.horizon_steps
        return out

    def occupancy(self, states: GridState) -> np.ndarray:
        """[B, S, S] float32 egocentric, world-aligned occupancy crop."""
        out = self._occ_flat[self._pad_index[states.pos][:, None, None] + self._crop_offsets]
        n_k = states.blocks.shape[1]
        if n_k or self.n_others:
            cells, on = states.blocks, states.block_on
            if self.n_others:
                o = self.others_pos(states)
                cells, on = np.concatenate([cells, o], 1), np.concatenate([on, o >= 0], 1)
            value = np.where(np.arange(cells.shape[1]) < n_k, OCC_BLOCKAGE, OCC_ROBOT)
            self._paint(out, states.pos, cells, on, value)
        return out

    def _paint(
        self, out: np.ndarray, pos: np.ndarray, cells: np.ndarray, on: np.ndarray, value: np.ndarray
    ) -> None:
        """Mark ``cells`` [B, M] (where ``on``) with ``value`` [M] unless static."""
        half, size = self.config.crop_size // 2, self.config.crop_size
        rc = self._rc[cells] - self._rc[pos][:, None, :] + half  # [B, M, 2] (-1 wraps: masked)
        ok = on & (cells >= 0) & (rc.min(-1) >= 0) & (rc.max(-1) < size)
        bb, mm = np.nonzero(ok)
        rr, cc = rc[bb, mm, 0], rc[bb, mm, 1]
        cur = out[bb, rr, cc]
        out[bb, rr, cc] = np.where(cur == OCC_STATIC, cur, value[mm])

    # ---- construction helpers ---------------------------------------------------------------
    def initial_states(
        self,
        pos: np.ndarray,
        pick: np.ndarray,
        station: np.ndarray,
        *,
        load: np.ndarray | None = None,
        blocks: np.ndarray | None = None,
        scn: np.ndarray | None = None,
    ) -> GridState:
        """States at t = 0 for B robots from (row, col) cells.

        Args:
            pos, pick, station: [B, 2] (row, col) cells.
            load: [B] bool (default empty).
            blocks: [B, K, 2] (row, col) active blockages; (-1, -1) = unused slot.
            scn: [B] plan-table rows (default 0).
        """
        pos = self.to_flat(np.asarray(pos, np.int64).reshape(-1, 2))
        b = len(pos)
        if blocks is None:
            flat_blocks = np.zeros((b, 0), np.int64)
        else:
            blocks = np.asarray(blocks, np.int64)
            flat_blocks = np.where((blocks >= 0).all(-1), self.to_flat(blocks), -1)
        return GridState(
            pos=pos,
            heading=np.zeros(b, np.int64),
            moved=np.zeros(b, bool),
            load=np.zeros(b, bool) if load is None else np.asarray(load, bool),
            pick=self.to_flat(np.asarray(pick).reshape(b, 2)),
            station=self.to_flat(np.asarray(station).reshape(b, 2)),
            blocks=flat_blocks,
            block_on=flat_blocks >= 0,
            others_k=np.zeros((b, self.n_others), np.int64),
            scn=np.zeros(b, np.int64) if scn is None else np.asarray(scn, np.int64),
            t=np.zeros(b, np.int64),
            delivered=np.zeros(b, np.int64),
        )

    def replace(self, states: GridState, **changes: np.ndarray) -> GridState:
        """``dataclasses.replace`` for states (convenience)."""
        return replace(states, **changes)


class HandlingOutsideSearch:
    """A :class:`GridModel` as seen by a search whose caller does the handling itself: PICK
    and DROP are never legal for the search (``agent.Agent`` picks and drops on arrival at
    the goal cell, outside the search), so a path through the goal cell is valued by the
    evaluator's value *at* the goal cell, before the handling, not by the value after it.

    Why: a learned value need not be consistent across the pick (rl_pv at a load dropped
    one cell away: V(at the pick cell) = 2.40, but pick reward + V(loaded, next to it) =
    2.27), and a search that expands the pick ranks the step onto the load below waiting
    beside it: the robot hovered for 2 s, then drove away from its dropped load
    (``scenario=exceptions`` seed 0). Everything else, ``encode`` (the network's true
    action mask) and ``step`` included, is the wrapped model's.

    Args:
        model: the grid model to wrap.
    """

    def __init__(self, model: GridModel) -> None:
        self.inner = model

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def legal_actions(self, states: GridState) -> np.ndarray:
        """[B, 7] the wrapped model's legal actions without PICK and DROP."""
        out = self.inner.legal_actions(states)
        out[:, _PICK] = False
        out[:, _DROP] = False
        return out
