"""Gymnasium wrappers: API contract, registration, determinism, fleet conflicts, and the
single env stepping bit-identically with the batched GridModel."""

from __future__ import annotations

from dataclasses import fields, replace

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.utils.seeding import np_random

import planning
from planning.grid_env import register_envs
from planning.grid_fleet_env import GridFleetEnv, _resolve_moves
from planning.grid_model import _HEADING_OF_MOVE, GridModelConfig
from planning.paths import astar, bfs_distances
from planning.situations import (
    ABSENT_CELL,
    SITUATION_KINDS,
    StaticPaths,
    plan_to_random_goal,
    sample_situations,
)
from sim.types import ACTION_DELTAS, N_ACTIONS, MacroAction

ENV_IDS = ["forklift/GridWarehouse-v0", "forklift/GridFleet-v0"]


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_grid_env__passes_gymnasium_check_env(env_id: str) -> None:
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()
    env.close()  # idempotent


def test_grid_env__registration_is_idempotent() -> None:
    register_envs()
    register_envs()
    assert all(i in gym.registry for i in ENV_IDS)
    assert planning.register_envs is register_envs


def _rollout(env_id: str, seed: int, steps: int = 60) -> list:
    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    out = [obs]
    for _ in range(steps):
        obs, r, term, trunc, _ = env.step(env.action_space.sample())
        out += [obs, r, term, trunc]
        if term or trunc:
            obs, _ = env.reset()
    return out


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return all(np.array_equal(a[k], b[k]) for k in a)
    return a == b


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_grid_env__same_seed_same_episode(env_id: str) -> None:
    a, b, c = _rollout(env_id, 3), _rollout(env_id, 3), _rollout(env_id, 4)
    assert all(_same(x, y) for x, y in zip(a, b))
    assert not all(_same(x, y) for x, y in zip(a, c))


def test_grid_env__observation_matches_the_model_encoding() -> None:
    env = gym.make("forklift/GridWarehouse-v0")
    obs, info = env.reset(seed=0)
    u = env.unwrapped
    enc = u.model.encode(u.state)
    for k in obs:
        np.testing.assert_array_equal(obs[k], enc[k][0])
    assert info["situation"] in ("open", "blocked", "congested")


def test_grid_env__truncates_at_the_horizon() -> None:
    env = gym.make("forklift/GridWarehouse-v0", config=planning.GridModelConfig(horizon_steps=5))
    env.reset(seed=0)
    flags = [env.step(4)[3] for _ in range(5)]
    assert flags == [False] * 4 + [True]


def test_grid_fleet__robots_never_share_a_cell() -> None:
    env = gym.make("forklift/GridFleet-v0", n_robots=8)
    env.reset(seed=0)
    u = env.unwrapped
    rng = np.random.default_rng(0)
    for _ in range(200):
        mask = env.unwrapped._obs()["action_mask"] > 0
        a = np.argmax(np.where(mask, rng.random(mask.shape), -1), axis=1)
        _, _, _, trunc, info = env.step(a)
        assert len(np.unique(u.state.pos)) == 8
        assert info["robot_rewards"].shape == (8,)
        if trunc:
            env.reset()


def test_resolve_moves__swap_and_contested_cell() -> None:
    pos = np.array([10, 11, 20, 30])
    tgt = np.array([11, 10, 21, 21])  # 0 and 1 swap; 2 and 3 contest cell 21
    go = _resolve_moves(pos, tgt, np.ones(4, bool))
    np.testing.assert_array_equal(go, [False, False, True, False])
    follow = _resolve_moves(np.array([1, 2]), np.array([2, 3]), np.ones(2, bool))
    assert follow.all()  # robot 0 follows robot 1 into its vacated cell


def test_grid_env__bad_arguments_refused() -> None:
    with pytest.raises(ValueError, match="env.situation"):
        gym.make("forklift/GridWarehouse-v0", situation="rush")
    with pytest.raises(ValueError, match="env.n_robots"):
        gym.make("forklift/GridFleet-v0", n_robots=0)


# ---- the scalar single env == the batched GridModel ------------------------------------


def _reference_plan(layout, start, rng, max_len):
    """The env's replanning rule on planning.paths.astar (no memo, no fast path)."""
    free = layout.free_cells
    for _ in range(8):
        g = free[rng.integers(len(free))]
        path = astar(layout.free, start, (int(g[0]), int(g[1])))
        if path is not None and len(path) > 1:
            return path[:max_len]
    return [tuple(int(v) for v in start)]


def _reference_set_plan(model, st, r, path):
    plans, plan_len = model.plans.copy(), model.plan_len.copy()
    plans[0, r] = ABSENT_CELL
    plans[0, r, : len(path)] = model.to_flat(np.array(path))
    plan_len[0, r] = len(path)
    k = st.others_k.copy()
    k[0, r] = 0
    return model.with_plans(plans, plan_len), replace(st, others_k=k)


def _reference_reset(env, rng):
    """GridWarehouseEnv.reset written on the batched model (sample + spawn absent robots)."""
    kinds = SITUATION_KINDS
    kind = env.situation if env.situation != "mixed" else kinds[rng.integers(3)]
    model, st = sample_situations(
        env.layout, [kind], rng, config=env.config, n_others=env.n_others, max_plan_len=48
    )
    taken = {tuple(c) for c in model.to_cells(np.r_[st.pos[:1], model.others_pos(st)[0]])}
    free = env.layout.free_cells
    for r in range(env.n_others):
        if model.plans[0, r, 0] != ABSENT_CELL:
            continue
        for _ in range(64):
            c = tuple(int(v) for v in free[rng.integers(len(free))])
            if c not in taken:
                break
        taken.add(c)
        model, st = _reference_set_plan(model, st, r, _reference_plan(env.layout, c, rng, 48))
    return model, st


def _reference_step(env, model, st, action, rng):
    """GridModel.step on a batch of one, then the env's replanning of finished robots."""
    st, reward, _ = model.step(st, np.array([action]), rng)
    for r in np.flatnonzero(st.others_k[0] >= model.plan_len[0] - 1):
        cur = tuple(int(v) for v in model.to_cells(model.others_pos(st)[0, r]))
        path = _reference_plan(env.layout, cur, rng, 48)
        model, st = _reference_set_plan(model, st, int(r), path)
    return model, st, float(reward[0])


def _assert_obs_equal(obs, enc) -> None:
    assert obs.keys() == enc.keys()
    for k in obs:
        assert obs[k].dtype == enc[k].dtype and obs[k].shape == enc[k].shape[1:], k
        np.testing.assert_array_equal(obs[k], enc[k][0], err_msg=k)


def _policy(env, obs, rng, dist_cache) -> int:
    """Mostly towards the goal (to reach picks, drops, robots, blockages), else any action."""
    mask = obs["action_mask"] > 0
    if rng.random() < 0.3:
        return int(rng.integers(N_ACTIONS))  # illegal ones included
    if mask[MacroAction.PICK] or mask[MacroAction.DROP]:
        return int(MacroAction.PICK if mask[MacroAction.PICK] else MacroAction.DROP)
    u = env.unwrapped
    st, m = u.state, u.model
    goal = tuple(int(v) for v in m.to_cells(m.goal(st)[0]))
    if goal not in dist_cache:
        dist_cache[goal] = bfs_distances(u.layout.free, goal)
    dist = dist_cache[goal]
    here = m.to_cells(st.pos[0])
    best = [
        a for a in range(4) if mask[a] and dist[tuple(here + ACTION_DELTAS[a])] < dist[tuple(here)]
    ]
    return int(rng.choice(best)) if best else int(rng.integers(N_ACTIONS))


_SIDE_BY_SIDE = {  # env kwargs, steps per seed
    "default": ({}, 260),
    "congested-terminate": (
        {"situation": "congested", "n_others": 5, "config": GridModelConfig(
            horizon_steps=60, terminate_on_delivery=True, other_wait_prob=0.3)},
        150,
    ),
    "blocked-small-crop": (
        {"situation": "blocked", "n_others": 0, "config": GridModelConfig(
            crop_size=5, horizon_steps=100, blockage_clear_rate_per_s=0.3,
            delivery_reward=2, pick_reward=0)},
        150,
    ),
    "congested-big-crop": (
        {"situation": "congested", "n_others": 2, "config": GridModelConfig(
            crop_size=15, horizon_steps=100, other_wait_prob=0.0, time_cost_per_s=0.0)},
        150,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(_SIDE_BY_SIDE))
def test_grid_env__steps_exactly_like_the_batched_model(case: str) -> None:
    """The scalar env == GridModel.step/encode at B=1 (+ the env's replanning), bit for bit."""
    kw, steps = _SIDE_BY_SIDE[case]
    dist_cache: dict = {}
    counts = {"delivered": 0, "collide_or_blocked": 0, "resets": 0}
    for seed in range(2):
        env = gym.make("forklift/GridWarehouse-v0", **kw)
        u = env.unwrapped
        obs, _ = env.reset(seed=seed)
        rng = np_random(seed)[0]
        model, st = _reference_reset(u, rng)
        policy_rng = np.random.default_rng(100 + seed)
        for _ in range(steps):
            _assert_obs_equal(obs, model.encode(st))
            _assert_obs_equal(obs, u.model.encode(u.state))
            a = _policy(env, obs, policy_rng, dist_cache)
            obs, r, term, trunc, info = env.step(a)
            delivered_before = int(st.delivered[0])
            model, st, r_ref = _reference_step(u, model, st, a, rng)
            delivered = int(st.delivered[0]) > delivered_before
            assert r == r_ref and isinstance(r, float)
            assert info["delivered"] == delivered
            assert term == (u.config.terminate_on_delivery and delivered)
            assert trunc == (int(st.t[0]) >= u.config.horizon_steps and not term)
            np.testing.assert_array_equal(u.model.plans, model.plans)
            for f in fields(st):
                np.testing.assert_array_equal(getattr(u.state, f.name), getattr(st, f.name))
            counts["delivered"] += delivered
            counts["collide_or_blocked"] += r_ref < -0.04
            if term or trunc:
                counts["resets"] += 1
                obs, _ = env.reset()
                model, st = _reference_reset(u, rng)
        assert env.unwrapped.np_random.bit_generator.state == rng.bit_generator.state
    assert counts["delivered"] and counts["collide_or_blocked"] and counts["resets"], counts


def test_static_paths__equal_planning_paths_astar(layout) -> None:
    sp = StaticPaths(layout.free)
    h, w = layout.shape
    rng = np.random.default_rng(0)
    cells = [(int(r), int(c)) for r, c in rng.integers(-1, max(h, w) + 1, (200, 2))]
    free = layout.free_cells[rng.permutation(len(layout.free_cells))[:30]]
    cells += [(int(r), int(c)) for r, c in free]
    for s in cells[::10] + cells[200:]:
        for g in cells:
            ref, got = astar(layout.free, s, g), sp.astar(s, g)
            assert (ref is None) == (got is None), (s, g)
            if ref is not None:
                assert list(got[0]) == ref and list(got[1]) == [r * w + c for r, c in ref]
    assert sp.astar(cells[200], cells[201]) is sp.astar(cells[200], cells[201])  # memoised
    for seed, start in enumerate(cells[200:215]):
        a, b = np.random.default_rng(seed), np.random.default_rng(seed)
        assert plan_to_random_goal(layout, start, a, 9) == _reference_plan(layout, start, b, 9)
        assert a.bit_generator.state == b.bit_generator.state


def test_grid_env__state_and_model_assignable() -> None:
    env = gym.make("forklift/GridWarehouse-v0", situation="congested")
    u = env.unwrapped
    env.reset(seed=1)
    st, model = u.state, u.model
    first = env.step(int(MacroAction.WAIT))
    u.model, u.state = model, st  # rewind
    np.testing.assert_array_equal(u.model.plans, model.plans)
    u.np_random = np_random(5)[0]
    a = env.step(int(MacroAction.WAIT))
    u.model, u.state = model, st
    u.np_random = np_random(5)[0]
    b = env.step(int(MacroAction.WAIT))
    assert _same(a[0], b[0]) and a[1:4] == b[1:4]
    assert first[1] == a[1]
    with pytest.raises(ValueError, match="env.action"):
        env.step(N_ACTIONS)


class _ReferenceFleet(GridFleetEnv):
    """GridFleetEnv's first implementation (model.replace / with_plans / encode per step)."""

    def step(self, action):
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

    def _obs(self):
        st, n = self.state, self.n_robots
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


def _fleet_policy(env, mask, rng, dist_cache) -> np.ndarray:
    """Per robot: pick / drop when legal, else mostly a legal move towards the goal."""
    st, m = env.state, env.model
    act = np.argmax(np.where(mask, rng.random(mask.shape), -1), axis=1)  # random legal
    for i, cell in enumerate(m.to_cells(m.goal(st))):
        goal = tuple(int(v) for v in cell)
        if goal not in dist_cache:
            dist_cache[goal] = bfs_distances(env.layout.free, goal)
        here = m.to_cells(st.pos[i])
        best = [
            a
            for a in range(4)
            if mask[i, a] and dist_cache[goal][tuple(here + ACTION_DELTAS[a])] < dist_cache[goal][tuple(here)]
        ]  # fmt: skip
        if mask[i, MacroAction.PICK] or mask[i, MacroAction.DROP]:
            act[i] = MacroAction.PICK if mask[i, MacroAction.PICK] else MacroAction.DROP
        elif best and rng.random() < 0.8:
            act[i] = rng.choice(best)
        elif rng.random() < 0.3:
            act[i] = rng.integers(N_ACTIONS)  # illegal ones included
    return act


@pytest.mark.parametrize(
    "kw",
    [
        {"config": GridModelConfig(horizon_steps=100)},
        {"n_robots": 1, "n_blocks": 0},
        {"n_robots": 8, "n_blocks": 3, "config": GridModelConfig(
            horizon_steps=50, blockage_clear_rate_per_s=0.2, crop_size=7)},
        {"n_robots": 3, "config": GridModelConfig(horizon_steps=80, terminate_on_delivery=True)},
        {"n_robots": 8, "n_blocks": 3, "scalar_max_robots": 0, "config": GridModelConfig(
            horizon_steps=50, blockage_clear_rate_per_s=0.2, crop_size=7)},  # the numpy path
    ],
    ids=["default", "one-robot", "eight-robots", "terminate", "eight-robots-numpy"],
)  # fmt: skip
def test_grid_fleet__steps_exactly_like_its_first_implementation(kw: dict) -> None:
    kw = dict(kw)
    scalar_max = kw.pop("scalar_max_robots", GridFleetEnv.scalar_max_robots)
    env, ref = GridFleetEnv(**kw), _ReferenceFleet(**kw)
    env.scalar_max_robots = scalar_max
    rng, dist_cache = np.random.default_rng(0), {}
    counts = {"collide": 0, "picked": 0, "resets": 0}
    for seed in range(2):
        a, b = env.reset(seed=seed), ref.reset(seed=seed)
        for _ in range(100):
            assert _same(a[0], b[0]) and a[1] == b[1]
            act = _fleet_policy(env, a[0]["action_mask"] > 0, rng, dist_cache)
            a, b = env.step(act), ref.step(act)
            assert _same(a[0], b[0]) and a[1:4] == b[1:4] and type(a[1]) is float
            assert a[4].keys() == b[4].keys()
            assert all(np.array_equal(a[4][k], b[4][k]) for k in a[4])
            for f in fields(env.state):
                np.testing.assert_array_equal(
                    getattr(env.state, f.name), getattr(ref.state, f.name)
                )
            counts["collide"] += (a[4]["robot_rewards"] < -0.4).sum()
            counts["picked"] += (a[4]["robot_rewards"] > 0.05).sum()
            if a[2] or a[3]:
                counts["resets"] += 1
                a, b = env.reset(), ref.reset()
    assert env.np_random.bit_generator.state == ref.np_random.bit_generator.state
    if kw.get("n_robots", 4) > 1:
        assert all(counts.values()), counts


def test_grid_fleet__numpy_path_without_blockages() -> None:
    """Above ``scalar_max_robots`` the fleet paints occupancy with numpy; with no blockages
    the (empty) blockage array must still index as integers."""
    from sim.layout import LayoutConfig

    env = GridFleetEnv(n_robots=41, n_blocks=0, layout_config=LayoutConfig(shelf_rows=3, shelf_cols=4))
    assert env.n_robots > env.scalar_max_robots
    obs, _ = env.reset(seed=0)
    assert obs["occupancy"].shape[0] == 41
    obs, *_ = env.step(env.action_space.sample())
    assert np.isfinite(obs["proprio"]).all()
