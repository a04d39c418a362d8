"""RLlib (new API stack) ``MultiAgentEnv`` view of the simulated fleet; imports Ray.

Import this module only through :func:`sim.envs.make_fleet_rllib` (or
``gymnasium.make("forklift/Fleet-v0")``): importing Ray takes seconds. Semantics: the
``sim.env_fleet`` module docstring (agents appear only at their decision points).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from sim.env_core import EnvConfig, FleetDriver


class FleetRllibEnv(MultiAgentEnv):
    """Asynchronous multi-agent view: ``reset -> (obs, infos)``,
    ``step -> (obs, rewards, terminateds, truncateds, infos)`` with ``"__all__"`` keys.

    Args:
        config: env config; ``**overrides`` as in :func:`sim.env_core.make_env_config`.
        render_mode: ``"rgb_array"`` or None.
    """

    metadata = {"render_modes": ["rgb_array"]}  # noqa: RUF012 - gymnasium/PettingZoo convention

    def __init__(self, config: EnvConfig | None = None, *, render_mode: str | None = None,
                 **overrides: Any) -> None:
        super().__init__()
        self.render_mode = render_mode
        self.driver = FleetDriver(config, **overrides)
        self.possible_agents = list(self.driver.names)
        self.agents = list(self.possible_agents)
        core = self.driver.core
        self.observation_spaces = {a: core.observation_space for a in self.possible_agents}
        self.action_spaces = {a: core.action_space for a in self.possible_agents}
        self._expect: set[str] = set()

    def reset(self, *, seed: int | None = None, options: dict | None = None
              ) -> tuple[dict[str, dict], dict[str, dict]]:
        self.driver.reset(seed)
        self.agents = list(self.possible_agents)
        ready = self.driver.ready()
        self._expect = set(ready)
        core, idx = self.driver.core, self.driver.index
        return {a: core.observe(idx[a]) for a in ready}, {a: core.info(idx[a]) for a in ready}

    def step(self, action_dict: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        if not self.agents:
            raise RuntimeError("step() called before reset() or after the episode ended; call reset()")
        extra = set(action_dict) - self._expect
        if extra:
            raise ValueError(f"action_dict: agents {sorted(extra)} were not asked to act; "
                             f"allowed {sorted(self._expect)}")
        d, core = self.driver, self.driver.core
        d.apply(action_dict)
        done = core.done
        ready = list(d.names) if done else d.ready()
        self._expect = set() if done else set(ready)
        obs = {a: core.observe(d.index[a]) for a in ready}
        rew = {a: core.take_reward(d.index[a]) for a in ready}
        infos = {a: core.info(d.index[a]) for a in ready}
        term = {a: False for a in ready}
        term["__all__"] = False
        trunc = {a: done for a in ready}
        trunc["__all__"] = done
        if done:
            kpis = core.sim.kpis().to_dict()
            for info in infos.values():
                info["kpis"] = kpis
            self.agents = []
        return obs, rew, term, trunc, infos

    def render(self) -> np.ndarray | None:
        """[H, W, 3] uint8 top-down frame."""
        if self.driver.core.sim is None:
            return None
        return self.driver.core.render()

    def close(self) -> None:
        """Release the PyBullet client (idempotent)."""
        self.driver.close()


def make_fleet_rllib(config: EnvConfig | Mapping[str, Any] | None = None, **overrides: Any) -> Any:
    """The RLlib ``MultiAgentEnv`` view (``forklift/Fleet-v0``); imports Ray.

    Args:
        config: an :class:`EnvConfig`, or RLlib's ``env_config`` mapping of keyword
            shortcuts (merged into ``overrides``).
        **overrides: keyword shortcuts of :func:`sim.env_core.make_env_config`.
    """
    if config is not None and not isinstance(config, EnvConfig):
        overrides = {**dict(config), **overrides}
        config = None
    return FleetRllibEnv(config, **overrides)
