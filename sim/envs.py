"""The simulator's learning environments (public entry points).

* :class:`WarehouseEnv` (``forklift/Warehouse-v0``): gymnasium, robot 0 learns among
  scripted robots; macro (``Discrete(7)``) or twist (``Box(2)``) actions.
* :class:`FleetEnv`: PettingZoo ``ParallelEnv``, every robot learns.
* :func:`make_fleet_rllib` (``forklift/Fleet-v0``): the RLlib ``MultiAgentEnv`` view of
  :class:`FleetEnv`'s world (imports Ray when called).

Shared pieces: :class:`EnvConfig` / :func:`make_env_config` (typed config and keyword
shortcuts), :class:`RewardConfig`, :class:`MacroConfig`; observation keys are documented
in ``sim.env_task`` (task features, shared with the grid model) and ``sim.env_obs``
(sensor modalities).
"""

from __future__ import annotations

from typing import Any

from sim.env_core import EnvConfig, FleetCore, FleetDriver, make_env_config
from sim.env_fleet import FleetEnv
from sim.env_parts import MacroConfig, RewardConfig, bfs_path, macro_reward
from sim.env_single import WarehouseEnv

__all__ = [
    "EnvConfig",
    "FleetCore",
    "FleetDriver",
    "FleetEnv",
    "MacroConfig",
    "RewardConfig",
    "WarehouseEnv",
    "bfs_path",
    "macro_reward",
    "make_env_config",
    "make_fleet_rllib",
]


def make_fleet_rllib(config: Any = None, **overrides: Any) -> Any:
    """The RLlib view ``forklift/Fleet-v0`` (:func:`sim.env_rllib.make_fleet_rllib`); imports Ray."""
    from sim.env_rllib import make_fleet_rllib as make

    return make(config, **overrides)
