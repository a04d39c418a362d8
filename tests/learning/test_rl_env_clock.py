"""The grid stage's episode clock (``train.grid_clock``): off by default, as the agent's
search model sees it (~0 over a 10 000-step horizon)."""

from __future__ import annotations

import numpy as np

from agent.config import TrainSection
from learning.rl_env import GRID_ENV, GridFleetMultiAgentEnv
from learning.rllib_adapter import env_spec


def _clock_after(env: GridFleetMultiAgentEnv, steps: int) -> np.ndarray:
    obs, _ = env.reset(seed=0)
    for _ in range(steps):
        obs, *_ = env.step({a: 4 for a in env.possible_agents})
    return np.array([obs[a]["proprio"][11] for a in env.possible_agents])


def test_grid_clock__zero_when_off_and_the_rest_unchanged():
    on = GridFleetMultiAgentEnv({"horizon_steps": 100})
    off = GridFleetMultiAgentEnv({"horizon_steps": 100, "clock": False})
    np.testing.assert_allclose(_clock_after(on, 5), 0.05)
    np.testing.assert_array_equal(_clock_after(off, 5), 0.0)
    a, _ = on.reset(seed=3)
    b, _ = off.reset(seed=3)
    for k in a["robot_0"]:
        x, y = a["robot_0"][k], b["robot_0"][k]
        if k == "proprio":
            x, y = x[:11], y[:11]
        np.testing.assert_array_equal(x, y)


def test_grid_clock__train_config_default_off_and_passed_to_the_env():
    sec = TrainSection()
    assert sec.grid_clock is False
    name, cfg = env_spec(sec, "grid")
    assert name == GRID_ENV and cfg["clock"] is False
    from dataclasses import replace

    assert env_spec(replace(sec, grid_clock=True), "grid")[1]["clock"] is True
