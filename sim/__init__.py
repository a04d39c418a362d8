"""forklift.sim: the warehouse simulator, its learning environments and a top-down renderer.

The pure API (layouts and value types) is exported here; importing ``sim`` is light: it
does not import PyBullet, PettingZoo or Ray. The physics world lives in
``sim.warehouse`` (imports PyBullet), the environments in ``sim.envs``, the renderer in
``sim.render``.

Registered gymnasium ids (entry points are strings, resolved on ``gymnasium.make``):

* ``forklift/Warehouse-v0`` -> :class:`sim.envs.WarehouseEnv`: one learning robot among
  scripted ones, ``Discrete(7)`` macro actions or a continuous twist.
* ``forklift/Fleet-v0`` -> the RLlib ``MultiAgentEnv`` view of :class:`sim.envs.FleetEnv`
  (every robot learns; imports Ray when made). The PettingZoo ``ParallelEnv`` view is
  ``sim.envs.FleetEnv`` itself.

Example:
    >>> import gymnasium as gym
    >>> import sim  # registers the ids
    >>> env = gym.make("forklift/Warehouse-v0", duration_s=30.0)  # doctest: +SKIP
"""

from __future__ import annotations

from sim.layout import Layout, LayoutConfig, LayoutError, generate_layout, load_movingai
from sim.types import (
    ACTION_DELTAS,
    N_ACTIONS,
    CameraImage,
    FiducialReading,
    Health,
    ImuReading,
    LidarScan,
    MacroAction,
    OdomReading,
    Pose,
    SensorFrame,
    TwistCmd,
    UwbReading,
    wrap_angle,
)

__all__ = [
    "ACTION_DELTAS",
    "ENV_IDS",
    "N_ACTIONS",
    "CameraImage",
    "FiducialReading",
    "Health",
    "ImuReading",
    "Layout",
    "LayoutConfig",
    "LayoutError",
    "LidarScan",
    "MacroAction",
    "OdomReading",
    "Pose",
    "SensorFrame",
    "TwistCmd",
    "UwbReading",
    "generate_layout",
    "load_movingai",
    "register_envs",
    "wrap_angle",
]

# id -> (entry point, extra EnvSpec fields). Fleet-v0 is a multi-agent env (RLlib view):
# gymnasium's passive checker and order enforcer do not apply to it.
ENV_IDS: dict[str, tuple[str, dict]] = {
    "forklift/Warehouse-v0": ("sim.envs:WarehouseEnv", {}),
    "forklift/Fleet-v0": ("sim.envs:make_fleet_rllib",
                          {"disable_env_checker": True, "order_enforce": False}),
}


def register_envs() -> None:
    """Register the ``forklift/*`` simulator envs with gymnasium (idempotent)."""
    import gymnasium

    for env_id, (entry_point, extra) in ENV_IDS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=entry_point, **extra)


register_envs()
