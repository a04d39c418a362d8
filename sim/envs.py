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

from sim.env_core import EnvConfig, FleetCore, RoundRobinDispatcher, make_env_config
from sim.env_fleet import FleetEnv, make_fleet_rllib
from sim.env_parts import MacroConfig, RewardConfig, bfs_path, macro_reward
from sim.env_single import WarehouseEnv

__all__ = [
    "EnvConfig",
    "FleetCore",
    "FleetEnv",
    "MacroConfig",
    "RewardConfig",
    "RoundRobinDispatcher",
    "WarehouseEnv",
    "bfs_path",
    "macro_reward",
    "make_env_config",
    "make_fleet_rllib",
]
