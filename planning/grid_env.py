"""Gymnasium wrappers of the grid model: one robot among scripted others, or a fleet.

- ``forklift/GridWarehouse-v0`` (:class:`GridWarehouseEnv`): the agent drives one robot;
  ``n_others`` scripted robots follow A* plans to random goals (a new plan when one
  ends, each waiting with ``other_wait_prob`` per step); situations are sampled as in
  :mod:`planning.situations` (open / blocked / congested). Observation = the
  :meth:`GridModel.encode` dict of one robot (``proprio`` [12], ``occupancy`` [S, S],
  ``action_mask`` [7]); action = :class:`sim.types.MacroAction` index.
- ``forklift/GridFleet-v0`` (:class:`GridFleetEnv`): one centralised agent drives all
  ``n_robots`` robots at once (a vector of robots, not PettingZoo): observations are the
  same keys stacked per robot ([N, 12], [N, S, S], [N, 7]), the action is
  ``MultiDiscrete([7] * N)``, the reward is the team sum (per-robot rewards in
  ``info["robot_rewards"]``). Robots move simultaneously; a move into a cell another
  robot occupies next step, or a swap, is cancelled (lower index wins a contested free
  cell) and costs ``collision_reward``.

Episodes end by truncation at ``horizon_steps`` (or by termination on the first delivery
with ``terminate_on_delivery``). Seeded: ``reset(seed=s)`` fixes the whole episode given
the actions.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from planning.grid_model import _HEADING_OF_MOVE, PROPRIO_DIM, GridModel, GridModelConfig, GridState
from planning.situations import ABSENT_CELL, SITUATION_KINDS, plan_to_random_goal, sample_situations
from sim.layout import Layout, LayoutConfig, ascii_art, generate_layout
from sim.types import N_ACTIONS, MacroAction

__all__ = ["GridFleetEnv", "GridWarehouseEnv", "register_envs"]

_MAX_PLAN = 48


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
        self.model: GridModel | None = None
        self.state: GridState | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        rng = self.np_random
        kind = self.situation if self.situation != "mixed" else SITUATION_KINDS[rng.integers(3)]
        self.model, self.state = sample_situations(
            self.layout,
            [kind],
            rng,
            config=self.config,
            n_others=self.n_others,
            max_plan_len=_MAX_PLAN,
        )
        self._spawn_absent_others()
        return self._obs(), {"situation": kind}

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if self.model is None or self.state is None:
            raise RuntimeError("env: step() before reset()")
        a = np.array([int(action)])
        before = int(self.state.delivered[0])
        self.state, reward, _ = self.model.step(self.state, a, self.np_random)
        self._replan_finished_others()
        delivered = int(self.state.delivered[0]) > before
        terminated = bool(self.config.terminate_on_delivery and delivered)
        truncated = bool(self.state.t[0] >= self.config.horizon_steps) and not terminated
        return self._obs(), float(reward[0]), terminated, truncated, {"delivered": delivered}

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self.state is None or self.model is None:
            return None
        rows = [list(r) for r in ascii_art(self.layout).splitlines()]
        h = len(rows)
        for r, c in self.model.to_cells(self.model.others_pos(self.state)[0]):
            if r >= 0:
                rows[h - 1 - r][c] = "o"
        r, c = self.model.to_cells(self.state.pos[0])
        rows[h - 1 - r][c] = "R"
        return "\n".join("".join(x) for x in rows)

    # ---- helpers -------------------------------------------------------------------------
    def _obs(self) -> dict[str, np.ndarray]:
        enc = self.model.encode(self.state)  # type: ignore[union-attr]
        return {k: v[0] for k, v in enc.items()}

    def _set_plan(self, r: int, path: list[tuple[int, int]]) -> None:
        m = self.model
        assert m is not None and self.state is not None
        plans, plan_len = m.plans.copy(), m.plan_len.copy()
        plans[0, r] = ABSENT_CELL
        plans[0, r, : len(path)] = m.to_flat(np.array(path))
        plan_len[0, r] = len(path)
        self.model = m.with_plans(plans, plan_len)
        k = self.state.others_k.copy()
        k[0, r] = 0
        self.state = self.model.replace(self.state, others_k=k)

    def _spawn_absent_others(self) -> None:
        """Give every absent scripted robot a start cell and a plan (keeps n_others real)."""
        m, st = self.model, self.state
        assert m is not None and st is not None
        taken = {tuple(c) for c in m.to_cells(np.r_[st.pos[:1], m.others_pos(st)[0]])}
        free = self.layout.free_cells
        for r in range(self.n_others):
            if m.plans[0, r, 0] != ABSENT_CELL:
                continue
            for _ in range(64):
                c = tuple(int(v) for v in free[self.np_random.integers(len(free))])
                if c not in taken:
                    break
            taken.add(c)
            self._set_plan(r, plan_to_random_goal(self.layout, c, self.np_random, _MAX_PLAN))
            m = self.model

    def _replan_finished_others(self) -> None:
        m, st = self.model, self.state
        assert m is not None and st is not None
        done = st.others_k[0] >= m.plan_len[0] - 1
        for r in np.flatnonzero(done):
            cur = tuple(int(v) for v in m.to_cells(m.others_pos(st)[0, r]))
            self._set_plan(int(r), plan_to_random_goal(self.layout, cur, self.np_random, _MAX_PLAN))
            m, st = self.model, self.state


class GridFleetEnv(gym.Env):
    """All robots of a fleet, driven jointly (see module docstring).

    Args:
        layout: the warehouse (default: ``generate_layout(layout_config)``).
        layout_config: used when ``layout`` is None.
        config: grid-model settings (``other_wait_prob`` is unused here).
        n_robots: robots in the fleet.
        n_blocks: known blockages placed at random free cells at reset.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": [], "render_fps": 4}

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
        self.state: GridState | None = None

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
        if self.state is None:
            raise RuntimeError("env: step() before reset()")
        st, cfg, rng, m = self.state, self.config, self.np_random, self.model
        a = np.asarray(action, np.int64).reshape(self.n_robots)
        valid = m.legal_actions(st)[np.arange(self.n_robots), a]
        move = valid & (a < 4)
        tgt = st.pos + m._delta[a] * move
        go = _resolve_moves(st.pos, tgt, move)
        collide = move & ~go
        picked = valid & (a == MacroAction.PICK)
        dropped = valid & (a == MacroAction.DROP)
        u = rng.random((self.n_robots, 2))
        pick = np.where(
            dropped, m.pick_cells[(u[:, 0] * len(m.pick_cells)).astype(np.int64)], st.pick
        )
        station = np.where(
            dropped, m.station_cells[(u[:, 1] * len(m.station_cells)).astype(np.int64)], st.station
        )
        block_on = st.block_on
        if block_on.shape[1]:
            clear = rng.random(block_on.shape[1]) < m.p_clear
            block_on = block_on & ~clear[None, :]
        self.state = m.replace(
            st,
            pos=np.where(go, tgt, st.pos),
            heading=np.where(go, _HEADING_OF_MOVE[a & 3], st.heading),
            moved=go,
            load=(st.load | picked) & ~dropped,
            pick=pick,
            station=station,
            block_on=block_on,
            t=st.t + 1,
            delivered=st.delivered + dropped,
        )
        rewards = (
            -cfg.time_cost_per_s * m.step_s
            + cfg.pick_reward * picked
            + cfg.delivery_reward * dropped
            + cfg.collision_reward * collide
            + cfg.invalid_reward * ~valid
        )
        terminated = bool(cfg.terminate_on_delivery and dropped.any())
        truncated = bool(self.state.t[0] >= cfg.horizon_steps) and not terminated
        info = {"robot_rewards": rewards.astype(np.float64), "delivered": dropped.copy()}
        return self._obs(), float(rewards.sum()), terminated, truncated, info

    def _obs(self) -> dict[str, np.ndarray]:
        """Each robot sees the others as robots standing still (plans of length 1)."""
        st, n = self.state, self.n_robots
        assert st is not None
        if n > 1:
            others = np.array([np.delete(st.pos, i) for i in range(n)])[:, :, None]
            model = self.model.with_plans(others, np.ones((n, n - 1), np.int64))
        else:
            model = self.model
        view = self.model.replace(
            st,
            scn=np.arange(n) if n > 1 else np.zeros(n, np.int64),
            others_k=np.zeros((n, max(n - 1, 0)), np.int64),
        )
        return model.encode(view)


def _resolve_moves(pos: np.ndarray, tgt: np.ndarray, move: np.ndarray) -> np.ndarray:
    """[N] bool: which intended moves (flat cells) succeed (no shared next cell, no swap)."""
    go = move.copy()
    n = len(pos)
    lower = np.tril(np.ones((n, n), bool), -1)
    swap = (tgt[:, None] == pos[None, :]) & (tgt[None, :] == pos[:, None]) & ~np.eye(n, dtype=bool)
    for _ in range(n + 1):
        nxt = np.where(go, tgt, pos)
        same = (nxt[:, None] == nxt[None, :]) & ~np.eye(n, dtype=bool)
        # A mover loses a contested cell to a robot staying there or to a lower index.
        lose = (same & (~go[None, :] | lower)).any(1) | (swap & go[:, None] & go[None, :]).any(1)
        bad = go & lose
        if not bad.any():
            return go
        go &= ~bad
    return go


def register_envs() -> None:
    """Register ``forklift/GridWarehouse-v0`` and ``forklift/GridFleet-v0`` (idempotent)."""
    specs = {
        "forklift/GridWarehouse-v0": "planning.grid_env:GridWarehouseEnv",
        "forklift/GridFleet-v0": "planning.grid_env:GridFleetEnv",
    }
    for env_id, entry in specs.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry)
