"""Gymnasium wrappers of the grid model: one robot among scripted others, or a fleet.

- ``forklift/GridWarehouse-v0`` (:class:`GridWarehouseEnv`): the agent drives one robot;
  ``n_others`` scripted robots follow A* plans to random goals (a new plan when one
  ends, each waiting with ``other_wait_prob`` per step); situations are sampled as in
  :mod:`planning.situations` (open / blocked / congested). Observation = the
  :meth:`GridModel.encode` dict of one robot (``proprio`` [12], ``occupancy`` [S, S],
  ``action_mask`` [7]); action = :class:`sim.types.MacroAction` index.
- ``forklift/GridFleet-v0`` (:class:`planning.grid_fleet_env.GridFleetEnv`): one centralised agent drives all
  ``n_robots`` robots at once (a vector of robots, not PettingZoo): observations are the
  same keys stacked per robot ([N, 12], [N, S, S], [N, 7]), the action is
  ``MultiDiscrete([7] * N)``, the reward is the team sum (per-robot rewards in
  ``info["robot_rewards"]``). Robots move simultaneously; a move into a cell another
  robot occupies next step, or a swap, is cancelled (lower index wins a contested free
  cell) and costs ``collision_reward``.

Episodes end by truncation at ``horizon_steps`` (or by termination on the first delivery
with ``terminate_on_delivery``). Seeded: ``reset(seed=s)`` fixes the whole episode given
the actions.

Speed: the single env runs the model's rules on Python scalars (numpy per-call overhead
on one-row arrays dominated), the fleet env the batched model with cached masks; both
are tested bit-identical to the batched :class:`GridModel` / their first implementation.
Observations are fresh arrays every step (safe to keep). ``benchmarks/bench_grid.py``
measures agent-steps per second beside RWARE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from planning.grid_model import (
    _HEADING_OF_MOVE,
    OCC_BLOCKAGE,
    OCC_ROBOT,
    PROPRIO_DIM,
    GridModel,
    GridModelConfig,
    GridState,
)
from planning.situations import ABSENT_CELL, SITUATION_KINDS, sample_situations, static_paths
from sim.layout import Layout, LayoutConfig, ascii_art, generate_layout
from sim.types import N_ACTIONS, MacroAction

__all__ = ["GridWarehouseEnv", "register_envs"]

_MAX_PLAN = 48
_WAIT, _PICK, _DROP = int(MacroAction.WAIT), int(MacroAction.PICK), int(MacroAction.DROP)


def _obs_space(cfg: GridModelConfig, lead: tuple[int, ...] = ()) -> spaces.Dict:
    s = cfg.crop_size
    return spaces.Dict(
        {
            "proprio": spaces.Box(-1.0, 1.0, (*lead, PROPRIO_DIM), np.float32),
            "occupancy": spaces.Box(0.0, 1.0, (*lead, s, s), np.float32),
            "action_mask": spaces.Box(0.0, 1.0, (*lead, N_ACTIONS), np.float32),
        }
    )


def _layout(layout: Layout | None, layout_config: LayoutConfig | None) -> Layout:
    if layout is not None:
        return layout
    return generate_layout(layout_config or LayoutConfig())


class GridWarehouseEnv(gym.Env):
    """One robot on the grid model among scripted robots.

    The transition and the observation are exactly :meth:`GridModel.step` and
    :meth:`GridModel.encode` of a batch of one (same ``np_random`` draws, bit-identical
    observations and rewards; ``tests/planning/test_grid_env.py`` steps both side by
    side), computed on plain Python scalars: numpy's per-call overhead on arrays of one
    row cost more than the arithmetic. :attr:`model` and :attr:`state` give the
    equivalent :class:`GridModel` and batch-of-one :class:`GridState` (snapshots; assign
    ``state`` to load another state of the same model).

    Args:
        layout: the warehouse (default: ``generate_layout(layout_config)``).
        layout_config: used when ``layout`` is None.
        config: grid-model settings.
        n_others: scripted robots.
        situation: "open", "blocked", "congested" or "mixed" (uniform over the three).
        render_mode: None or "ansi".
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        layout: Layout | None = None,
        layout_config: LayoutConfig | None = None,
        config: GridModelConfig | None = None,
        n_others: int = 3,
        situation: str = "mixed",
        render_mode: str | None = None,
    ) -> None:
        if situation not in (*SITUATION_KINDS, "mixed"):
            raise ValueError(
                f"env.situation: {situation!r}; allowed open, blocked, congested, mixed"
            )
        if render_mode not in (None, "ansi"):
            raise ValueError(f"env.render_mode: {render_mode!r}; allowed None, 'ansi'")
        self.layout = _layout(layout, layout_config)
        self.config = config or GridModelConfig()
        self.n_others, self.situation, self.render_mode = int(n_others), situation, render_mode
        self.observation_space = _obs_space(self.config)
        self.action_space = spaces.Discrete(N_ACTIONS)
        self._base = GridModel(self.layout, self.config)
        self._tables = _ScalarTables(self._base)
        self._paths = static_paths(self.layout)
        self._s: _Scalars | None = None
        self._u = np.empty(0)  # buffer of the uniform draws of one step
        self._model: GridModel | None = None  # cache of the ``model`` property
        self._state: GridState | None = None  # cache of the ``state`` property

    # ---- gymnasium API -------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        rng = self.np_random
        kind = self.situation if self.situation != "mixed" else SITUATION_KINDS[rng.integers(3)]
        model, state = sample_situations(
            self.layout,
            [kind],
            rng,
            n_others=self.n_others,
            max_plan_len=_MAX_PLAN,
            model=self._base,
        )
        self._load(model, state)
        self._spawn_absent_others()
        return self._obs(), {"situation": kind}

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        s = self._s
        if s is None:
            raise RuntimeError("env: step() before reset()")
        a = int(action)
        if not 0 <= a < N_ACTIONS:
            raise ValueError(f"env.action: {a}; allowed 0..{N_ACTIONS - 1}")
        tb, cfg = self._tables, self.config
        rng = self.np_random
        plans, ks, cur, blocks, block_on = s.plans, s.k, s.cur, s.blocks, s.block_on
        n_r, n_k = len(plans), len(blocks)
        # GridModel.step: one rng.random((1, R + K + 2)) draw (same stream as R + K + 2).
        buf = self._u
        if len(buf) != n_r + n_k + 2:
            buf = self._u = np.empty(n_r + n_k + 2)
        u = rng.random(out=buf).tolist()
        pos = s.pos
        if a < 4:
            tgt = pos + tb.delta[a]
            valid = tb.free[tgt]
            if valid and n_k:
                for c, on in zip(blocks, block_on):
                    if on and c == tgt:
                        valid = False
        elif a == _WAIT:
            valid = True
        elif a == _PICK:
            valid = not s.load and pos == s.pick
        else:
            valid = s.load and pos == s.station
        move = valid and a < 4
        tgt = pos + tb.delta[a] if move else pos
        collide = False
        wait_p = cfg.other_wait_prob
        for r in range(n_r):  # GridModel._move_others
            plan, k = plans[r], ks[r]
            last = len(plan) - 1
            if k >= last:
                k_new, old = last, plan[last]
                new = old
            else:
                old = plan[k]
                if u[r] >= wait_p:
                    k_new = k + 1
                    new = plan[k_new]
                else:
                    k_new, new = k, old
            if new == tgt or (old == tgt and new == pos):
                collide = True
            if k_new < last:
                ks[r], cur[r] = k_new, new
            else:  # the env's own rule: a robot at the end of its plan gets a new one
                cell = tb.cell[new] if new >= 0 else (-1, -1)  # (an absent robot stays so)
                plan = plans[r] = list(self._paths.plan_to_random_goal(cell, rng, _MAX_PLAN)[1])
                ks[r], cur[r] = 0, plan[0]
                self._model = None
        go = move and not collide
        picked = valid and a == _PICK
        dropped = valid and a == _DROP
        if dropped and not cfg.terminate_on_delivery:
            s.pick = tb.pick_cells[int(u[-2] * len(tb.pick_cells))]
            s.station = tb.station_cells[int(u[-1] * len(tb.station_cells))]
        for j in range(n_k):
            if block_on[j] and not u[n_r + j] >= tb.p_clear:
                block_on[j] = False
        s.t += 1
        reward = (
            tb.step_reward
            + cfg.pick_reward * picked
            + cfg.delivery_reward * dropped
            + cfg.collision_reward * collide
            + cfg.invalid_reward * (not valid)
        )
        if go:
            s.pos, s.heading = tgt, tb.heading_of_move[a]
        s.moved = go
        s.load = (s.load or picked) and not dropped
        s.delivered += dropped
        self._state = None
        terminated = bool(cfg.terminate_on_delivery and dropped)
        truncated = s.t >= cfg.horizon_steps and not terminated
        return self._obs(), float(reward), terminated, truncated, {"delivered": bool(dropped)}

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self._s is None:
            return None
        rows = [list(r) for r in ascii_art(self.layout).splitlines()]
        h = len(rows)
        for r, c in self.model.to_cells(self.model.others_pos(self.state)[0]):
            if r >= 0:
                rows[h - 1 - r][c] = "o"
        r, c = self.model.to_cells(self.state.pos[0])
        rows[h - 1 - r][c] = "R"
        return "\n".join("".join(x) for x in rows)

    # ---- the equivalent batched model and state ------------------------------------------
    @property
    def model(self) -> GridModel | None:
        """The :class:`GridModel` (with the scripted robots' current plans; None before reset)."""
        s = self._s
        if s is None:
            return None
        if self._model is None:
            n_r, n_t = len(s.plans), max([_MAX_PLAN, *map(len, s.plans)])
            plans = np.full((1, n_r, n_t), ABSENT_CELL, np.int64)
            plan_len = np.ones((1, n_r), np.int64)
            for r, plan in enumerate(s.plans):
                plans[0, r, : len(plan)] = plan
                plan_len[0, r] = len(plan)
            self._model = self._base.with_plans(plans, plan_len)
        return self._model

    @model.setter
    def model(self, value: GridModel) -> None:
        """Take the scripted robots' plans from ``value`` (same layout and config)."""
        state = self.state
        if state is None:
            raise RuntimeError("env: model set before reset()")
        self._load(value, state)

    @property
    def state(self) -> GridState | None:
        """The current state as a batch of one (None before reset)."""
        s = self._s
        if s is None:
            return None
        if self._state is None:
            i64 = np.int64
            self._state = GridState(
                pos=np.array([s.pos], i64),
                heading=np.array([s.heading], i64),
                moved=np.array([s.moved], bool),
                load=np.array([s.load], bool),
                pick=np.array([s.pick], i64),
                station=np.array([s.station], i64),
                blocks=np.array([s.blocks], i64).reshape(1, len(s.blocks)),
                block_on=np.array([s.block_on], bool).reshape(1, len(s.blocks)),
                others_k=np.array([s.k], i64).reshape(1, len(s.k)),
                scn=np.zeros(1, i64),
                t=np.array([s.t], i64),
                delivered=np.array([s.delivered], i64),
            )
        return self._state

    @state.setter
    def state(self, value: GridState) -> None:
        """Load a batch-of-one state of :attr:`model` (row ``scn`` of its plan table)."""
        model = self.model
        if model is None:
            raise RuntimeError("env: state set before reset()")
        self._load(model, value)

    def _load(self, model: GridModel, st: GridState) -> None:
        """Take the scalar state from a batch-of-one ``st`` of ``model`` (plans included)."""
        if len(st) != 1:
            raise ValueError(f"env.state: batch of {len(st)}; allowed a batch of one")
        scn = int(st.scn[0])
        self._s = _Scalars(
            pos=int(st.pos[0]),
            heading=int(st.heading[0]),
            moved=bool(st.moved[0]),
            load=bool(st.load[0]),
            pick=int(st.pick[0]),
            station=int(st.station[0]),
            blocks=[int(v) for v in st.blocks[0]],
            block_on=[bool(v) for v in st.block_on[0]],
            k=[int(v) for v in st.others_k[0]],
            t=int(st.t[0]),
            delivered=int(st.delivered[0]),
            plans=[
                [int(v) for v in model.plans[scn, r, : model.plan_len[scn, r]]]
                for r in range(model.n_others)
            ],
            cur=[int(v) for v in model.others_pos(st)[0]],
        )
        self._model = self._state = None

    # ---- helpers -------------------------------------------------------------------------
    def _obs(self) -> dict[str, np.ndarray]:
        """:meth:`GridModel.encode` of the state (fresh arrays, bit-identical)."""
        s, tb = self._s, self._tables
        assert s is not None
        pos, load, blocks, block_on = s.pos, s.load, s.blocks, s.block_on
        # occupancy: the static crop, then blockages, then other robots (last one wins)
        crop = tb.crops.get(pos)
        occ = (tb.static_crop(pos) if crop is None else crop).copy()
        # (a painted cell is static in the crop exactly when the layout cell is not free)
        size, row, col, free = tb.size, tb.row, tb.col, tb.free
        pr, pc = row[pos] - tb.half, col[pos] - tb.half
        for c, on in zip(blocks, block_on):
            if on and c >= 0 and free[c]:
                i, j = row[c] - pr, col[c] - pc
                if 0 <= i < size and 0 <= j < size:
                    occ[i, j] = OCC_BLOCKAGE
        for c in s.cur:
            if c >= 0 and free[c]:
                i, j = row[c] - pr, col[c] - pc
                if 0 <= i < size and 0 <= j < size:
                    occ[i, j] = OCC_ROBOT
        # proprio: position, heading + velocity, goal vector, load, time fraction
        gx, gy = tb.xy_goal[s.station if load else s.pick]
        px, py = tb.xy_goal[pos]
        proprio = np.array(
            (
                *tb.xy_unit[pos],
                *tb.motion[s.heading * 2 + s.moved],
                gx - px,  # = the float32 difference (exact in double, rounded once)
                gy - py,
                load,
                s.t / tb.horizon,
            ),
            np.float32,
        )
        # action mask (GridModel.legal_actions): static moves, active blockages, pick, drop
        moves = tb.moves[pos]
        if any(block_on):
            nbr = tb.nbr[pos]
            moves = tuple(
                ok and not any(on and c == v for c, on in zip(blocks, block_on))
                for ok, v in zip(moves, nbr)
            )
        key = (moves, not load and pos == s.pick, load and pos == s.station)
        mask = tb.masks.get(key)
        if mask is None:
            mask = tb.masks[key] = np.array((*moves, True, *key[1:]), np.float32)
        return {"proprio": proprio, "occupancy": occ, "action_mask": mask.copy()}

    def _spawn_absent_others(self) -> None:
        """Give every absent scripted robot a start cell and a plan (keeps n_others real)."""
        s, tb = self._s, self._tables
        assert s is not None
        taken = {tb.cell[c] if c >= 0 else (-1, -1) for c in (s.pos, *s.cur)}
        free = self._paths.free_cells  # = layout.free_cells, as tuples
        for r in range(self.n_others):
            if s.plans[r][0] != ABSENT_CELL:
                continue
            for _ in range(64):
                c = free[self.np_random.integers(len(free))]
                if c not in taken:
                    break
            taken.add(c)
            path = self._paths.plan_to_random_goal(c, self.np_random, _MAX_PLAN)[1]
            s.plans[r], s.k[r], s.cur[r] = list(path), 0, path[0]
        self._model = self._state = None


@dataclass(slots=True)
class _Scalars:
    """The single env's state in plain Python values (flat cells as in :class:`GridState`)."""

    pos: int
    heading: int
    moved: bool
    load: bool
    pick: int
    station: int
    blocks: list[int]
    block_on: list[bool]
    k: list[int]
    t: int
    delivered: int
    plans: list[list[int]]  # flat cells of each scripted robot's plan (its plan_len cells)
    cur: list[int]  # each scripted robot's cell: plans[r][min(k[r], plan_len - 1)]


class _ScalarTables:
    """:class:`GridModel`'s lookup tables as Python lists, for the scalar env paths."""

    def __init__(self, m: GridModel) -> None:
        cfg = m.config
        self.model = m
        self.free: list[bool] = m._free.tolist()
        self.delta: list[int] = m._delta.tolist()
        self.delta4 = self.delta[:4]
        self.heading_of_move: list[int] = _HEADING_OF_MOVE.tolist()
        self.pick_cells: list[int] = m.pick_cells.tolist()
        self.station_cells: list[int] = m.station_cells.tolist()
        self.p_clear = m.p_clear
        self.step_reward = m._step_reward
        self.horizon = cfg.horizon_steps
        self.size, self.half = cfg.crop_size, cfg.crop_size // 2
        self.row: list[int] = m._rc[:, 0].tolist()
        self.col: list[int] = m._rc[:, 1].tolist()
        self.cell: list[tuple[int, int]] = [(r, c) for r, c in zip(self.row, self.col)]
        # float32 values held exactly as Python floats
        self.xy_unit: list[tuple[float, float]] = [tuple(v) for v in m._xy_unit.tolist()]
        self.xy_goal: list[tuple[float, float]] = [tuple(v) for v in m._xy_goal.tolist()]
        self.motion: list[tuple[float, ...]] = [tuple(v) for v in m._motion.tolist()]
        self.crops: dict[int, np.ndarray] = {}  # flat cell -> static occupancy crop [S, S]
        n = len(self.free)
        # N, S, E, W neighbours of each flat cell (interior cells only are ever used)
        self.nbr: list[tuple[int, ...]] = [
            tuple(c + d if 0 <= c + d < n else c for d in self.delta4) for c in range(n)
        ]
        self.moves: list[tuple[bool, ...]] = [tuple(self.free[v] for v in nb) for nb in self.nbr]
        self.masks: dict[tuple, np.ndarray] = {}  # (moves, pick, drop) -> action mask [7]

    def static_crop(self, pos: int) -> np.ndarray:
        """The [S, S] static occupancy crop around ``pos`` (remembered in :attr:`crops`)."""
        m = self.model
        if len(self.crops) >= 1 << 16:  # (a huge map: bound the memory)
            self.crops.clear()
        out = self.crops[pos] = m._occ_flat[m._pad_index[pos] + m._crop_offsets]
        return out


def register_envs() -> None:
    """Register ``forklift/GridWarehouse-v0`` and ``forklift/GridFleet-v0`` (idempotent)."""
    specs = {
        "forklift/GridWarehouse-v0": "planning.grid_env:GridWarehouseEnv",
        "forklift/GridFleet-v0": "planning.grid_fleet_env:GridFleetEnv",
    }
    for env_id, entry in specs.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry)
