"""Every robot learns: a PettingZoo ``ParallelEnv`` and (lazily) an RLlib ``MultiAgentEnv``.

Agents are ``"robot_0" .. "robot_{N-1}"``; spaces per agent are those of
``forklift/Warehouse-v0`` (same keys, same action modes).

Macro actions are decided **asynchronously**: each robot runs its macro until its own
next decision point, and one env ``step`` advances the sim until at least one robot has
reached a decision point (or time is up).

* PettingZoo view (:class:`FleetEnv`): PettingZoo's convention is that every live agent
  gets an observation, reward, flags and info every step. Only agents with
  ``infos[agent]["at_decision"] == True`` are waiting for an action; actions given to the
  others are ignored (their macro keeps running). ``rewards[agent]`` is what the agent
  earned during that step, so per-agent returns are exact; a learner that wants SMDP
  transitions keeps only the decision steps and sums rewards in between.
* RLlib view (:func:`sim.env_rllib.make_fleet_rllib`, id ``forklift/Fleet-v0``; both views
  drive a :class:`sim.env_core.FleetDriver`): an agent appears in
  the observation dict **only when it is at a decision point**; its reward is the sum
  earned since its previous decision. ``terminateds["__all__"]`` is always False
  (continuing task); at ``duration_s`` every agent gets a final observation and reward
  with ``truncateds[agent] = truncateds["__all__"] = True``.
* In twist mode every agent acts every control tick in both views.

Example:
    >>> from sim.envs import FleetEnv
    >>> env = FleetEnv(n_robots=2, duration_s=20.0)  # doctest: +SKIP
    >>> obs, infos = env.reset(seed=0)  # doctest: +SKIP
    >>> obs, rew, term, trunc, infos = env.step({a: 4 for a in env.agents})  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from pettingzoo.utils.env import ParallelEnv

from sim.env_core import EnvConfig, FleetDriver


class FleetEnv(ParallelEnv):
    """PettingZoo ``ParallelEnv`` over the simulated fleet (see the module docstring).

    Args:
        config: env config (default :class:`EnvConfig`).
        render_mode: ``"rgb_array"`` or None.
        **overrides: keyword shortcuts of :func:`sim.env_core.make_env_config`.
    """

    metadata = {"name": "forklift_fleet_v0", "render_modes": ["rgb_array"], "is_parallelizable": True}  # noqa: RUF012 - gymnasium/PettingZoo convention

    def __init__(self, config: EnvConfig | None = None, *, render_mode: str | None = None,
                 **overrides: Any) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode: {render_mode!r}; allowed None, 'rgb_array'")
        self.render_mode = render_mode
        self.driver = FleetDriver(config, **overrides)
        self.possible_agents = list(self.driver.names)
        self.agents: list[str] = []
        self.observation_spaces = {a: self.driver.core.observation_space for a in self.possible_agents}
        self.action_spaces = {a: self.driver.core.action_space for a in self.possible_agents}

    def observation_space(self, agent: str) -> gym.spaces.Space:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> gym.spaces.Space:
        return self.action_spaces[agent]

    def reset(self, seed: int | None = None, options: dict | None = None
              ) -> tuple[dict[str, dict], dict[str, dict]]:
        self.driver.reset(seed)
        self.agents = list(self.possible_agents)
        core = self.driver.core
        return ({a: core.observe(i) for a, i in self.driver.index.items()},
                {a: core.info(i) for a, i in self.driver.index.items()})

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        if not self.agents:
            raise RuntimeError("step() called before reset() or after the episode ended; call reset()")
        d, core = self.driver, self.driver.core
        d.apply(actions)
        done = core.done
        obs = {a: core.observe(i) for a, i in d.index.items()}
        rew = {a: core.take_reward(i) for a, i in d.index.items()}
        term = {a: False for a in self.agents}
        trunc = {a: done for a in self.agents}
        infos = {a: core.info(i) for a, i in d.index.items()}
        if done:
            kpis = core.sim.kpis().to_dict()
            for info in infos.values():
                info["kpis"] = kpis
            self.agents = []
        return obs, rew, term, trunc, infos

    def render(self) -> np.ndarray | None:
        """[H, W, 3] uint8 top-down frame when ``render_mode="rgb_array"``."""
        if self.render_mode is None or self.driver.core.sim is None:
            return None
        return self.driver.core.render()

    def close(self) -> None:
        """Release the PyBullet client (idempotent)."""
        self.driver.close()
        self.agents = []
