"""RLlib env views for training: the grid fleet as a multi-agent env, and env registration.

* ``forklift/GridFleetMA-v0`` (:class:`GridFleetMultiAgentEnv`): the RLlib
  ``MultiAgentEnv`` view of ``forklift/GridFleet-v0``
  (:class:`planning.grid_fleet_env.GridFleetEnv`): robot ``i`` is agent ``"robot_i"``
  (the names of ``forklift/Fleet-v0``); every robot acts every step (on the grid each
  step is one macro action of every robot, i.e. every robot is at a decision point); its
  observation is row ``i`` of the fleet observation (``proprio`` [12], ``occupancy``
  [11, 11], ``action_mask`` [7], the keys the PyBullet fleet env and the agent use), its
  reward is ``info["robot_rewards"][i]``. The episode is truncated for all at
  ``horizon_steps``. At the end every agent's info has ``"episode_stats"``:
  ``deliveries`` (fleet total) and ``completion_rate`` = delivered / assigned orders
  (each robot always holds one order, so assigned = delivered + n_robots).
* ``forklift/Fleet-v0``: the PyBullet fleet (:func:`sim.envs.make_fleet_rllib`);
  its final infos carry the sim KPIs, of which ``completion_rate`` is reported.

:func:`register_rllib_envs` registers both names with ``ray.tune`` (idempotent; env
runner processes call it through :func:`make_env`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium import spaces
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from planning.grid_fleet_env import GridFleetEnv
from planning.grid_model import GridModelConfig
from sim.layout import LayoutConfig

__all__ = ["ENV_IDS", "GRID_ENV", "PYBULLET_ENV", "GridFleetMultiAgentEnv", "make_env",
           "register_rllib_envs"]

GRID_ENV = "forklift/GridFleetMA-v0"
PYBULLET_ENV = "forklift/Fleet-v0"
ENV_IDS = (GRID_ENV, PYBULLET_ENV)


class GridFleetMultiAgentEnv(MultiAgentEnv):
    """Per-robot view of :class:`GridFleetEnv` (see the module docstring).

    Args:
        config: RLlib ``env_config`` mapping: ``n_robots`` (4), ``n_blocks`` (2),
            ``horizon_steps`` (grid-model default), ``layout`` (a dict of
            :class:`LayoutConfig` fields, default layout when absent), ``clock`` (True:
            proprio[11] is the episode clock ``t / horizon``; False: 0, as in the agent's
            search model, whose horizon keeps it ~0).
    """

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        c = dict(config or {})
        gm = GridModelConfig()
        if "horizon_steps" in c:
            gm = GridModelConfig(horizon_steps=int(c["horizon_steps"]))
        layout = LayoutConfig(**c["layout"]) if c.get("layout") else None
        self.fleet = GridFleetEnv(layout_config=layout, config=gm,
                                  n_robots=int(c.get("n_robots", 4)),
                                  n_blocks=int(c.get("n_blocks", 2)))
        self.clock = bool(c.get("clock", True))
        n = self.fleet.n_robots
        s = gm.crop_size
        one = spaces.Dict({
            "proprio": spaces.Box(-1.0, 1.0, (12,), np.float32),
            "occupancy": spaces.Box(0.0, 1.0, (s, s), np.float32),
            "action_mask": spaces.Box(0.0, 1.0, (7,), np.float32),
        })
        self.possible_agents = [f"robot_{i}" for i in range(n)]
        self.agents = list(self.possible_agents)
        self.observation_spaces = {a: one for a in self.possible_agents}
        self.action_spaces = {a: spaces.Discrete(7) for a in self.possible_agents}
        self._delivered = 0

    def _split(self, obs: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
        if not self.clock:
            obs = {**obs, "proprio": obs["proprio"].copy()}
            obs["proprio"][:, 11] = 0.0
        return {a: {k: v[i] for k, v in obs.items()} for i, a in enumerate(self.possible_agents)}

    def reset(self, *, seed: int | None = None, options: dict | None = None
              ) -> tuple[dict[str, dict], dict[str, dict]]:
        obs, _ = self.fleet.reset(seed=seed)
        self.agents = list(self.possible_agents)
        self._delivered = 0
        return self._split(obs), {a: {} for a in self.agents}

    def step(self, action_dict: Mapping[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        # a robot without an action waits (MacroAction.WAIT = 4)
        act = [int(np.asarray(action_dict.get(a, 4)).item()) for a in self.possible_agents]
        obs, _, terminated, truncated, info = self.fleet.step(act)
        self._delivered += int(info["delivered"].sum())
        done = bool(terminated or truncated)
        rew = {a: float(r) for a, r in zip(self.possible_agents, info["robot_rewards"])}
        infos: dict[str, dict] = {a: {} for a in self.possible_agents}
        if done:
            n = self.fleet.n_robots
            stats = {"deliveries": self._delivered,
                     "completion_rate": self._delivered / (self._delivered + n)}
            for d in infos.values():
                d["episode_stats"] = stats
            self.agents = []
        term = {a: bool(terminated) for a in self.possible_agents}
        trunc = {a: bool(truncated) for a in self.possible_agents}
        term["__all__"], trunc["__all__"] = bool(terminated), bool(truncated)
        return self._split(obs), rew, term, trunc, infos


def make_env(env_id: str, config: Mapping[str, Any] | None = None) -> MultiAgentEnv:
    """The RLlib env ``env_id`` (one of :data:`ENV_IDS`) built from ``env_config``."""
    if env_id == GRID_ENV:
        return GridFleetMultiAgentEnv(config)
    if env_id == PYBULLET_ENV:
        from sim.envs import make_fleet_rllib

        return make_fleet_rllib(dict(config or {}))
    raise ValueError(f"env: {env_id!r}; allowed {', '.join(ENV_IDS)}")


def register_rllib_envs() -> None:
    """Registers :data:`ENV_IDS` with ``ray.tune`` (idempotent)."""
    from ray.tune.registry import register_env

    for env_id in ENV_IDS:
        register_env(env_id, lambda cfg, _id=env_id: make_env(_id, cfg))
