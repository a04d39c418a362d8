"""Gymnasium wrappers: API contract, registration, determinism, fleet conflicts."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import planning
from planning.grid_env import _resolve_moves, register_envs

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
