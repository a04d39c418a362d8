"""``forklift/Warehouse-v0``: one learning robot among scripted ones, on the PyBullet sim.

Robot 0 learns; robots 1..N-1 are driven by the built-in scripted controller (BFS over
the layout's free cells minus known pallets, one cell per macro, pure-pursuit follower,
lidar safety stop). Orders are assigned round robin to idle robots, robot 0 included.

Actions:
    ``action_mode="macro"`` (default): ``Discrete(7)`` :class:`~sim.types.MacroAction`
    (N, S, E, W, WAIT, PICK, DROP). One ``step`` runs the macro to the next decision
    point: arrival at the neighbouring cell centre, a timeout, or a blocked cell ahead
    (lidar safety stop for ``MacroConfig.blocked_patience_s``); WAIT / PICK / DROP take
    ``MacroConfig.wait_s`` / ``handling_s``. A masked action (see ``action_mask``) runs as
    WAIT and costs ``RewardConfig.invalid_action``.
    ``action_mode="twist"``: ``Box(-1, 1, (2,))`` normalised (v, w), scaled by the robot's
    ``max_speed`` (m/s) and ``max_yaw_rate`` (rad/s), held for one control tick
    (``1 / control_hz`` s). Pick and drop happen automatically when the robot stands
    still (|v| < ``pick_max_speed``) within ``pick_tolerance`` of the right cell centre.

Observation: ``Dict`` of the task keys (``proprio``, ``occupancy``, ``action_mask``; see
``sim.env_task``) and the sensor keys (``sim.env_obs``); lidar on, camera off by default.

Reward (``sim.env_parts.macro_reward``): ``delivery`` per order delivered + ``pick`` per
first pick - ``time_cost`` per second - ``collision`` per collision onset -
``invalid_action`` per masked action. Episodes never terminate; they are truncated at
``duration_s`` (default 120 s). ``info["kpis"]`` holds the sim's KPI report at the end.

Example:
    >>> import gymnasium as gym, sim
    >>> env = gym.make("forklift/Warehouse-v0", n_robots=2, duration_s=30.0)  # doctest: +SKIP
    >>> obs, info = env.reset(seed=0)  # doctest: +SKIP
    >>> obs, r, term, trunc, info = env.step(4)  # WAIT  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from sim.env_core import EnvConfig, FleetCore, make_env_config
from sim.layout import Layout

LEARNER = 0


class WarehouseEnv(gym.Env):
    """Single-agent gymnasium view of the simulated warehouse (see the module docstring).

    Args:
        config: full env config (default :class:`EnvConfig`).
        render_mode: ``"rgb_array"`` or None.
        render_width_px: width of rendered frames (px).
        **overrides: keyword shortcuts, see :func:`sim.env_core.make_env_config`
            (``n_robots``, ``duration_s``, ``layout``, ``action_mode``, ``camera``, ...).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012 - gymnasium/PettingZoo convention

    def __init__(self, config: EnvConfig | None = None, *, render_mode: str | None = None,
                 render_width_px: int = 480, **overrides: Any) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode: {render_mode!r}; allowed None, 'rgb_array'")
        self.config = make_env_config(config, **overrides)
        self.render_mode = render_mode
        self.render_width_px = render_width_px
        self.core = FleetCore(self.config, learners=(LEARNER,))
        self.observation_space = self.core.observation_space
        self.action_space = self.core.action_space
        self._needs_reset = True

    @property
    def layout(self) -> Layout:
        """The floor plan."""
        return self.core.layout

    def reset(self, *, seed: int | None = None, options: dict | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start an episode; ``seed`` fixes the whole episode (orders, noise, faults)."""
        super().reset(seed=seed)
        self.core.reset(int(self.np_random.integers(2**31 - 1)))
        self._needs_reset = False
        return self.core.observe(LEARNER), self.core.info(LEARNER)

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if self._needs_reset or self.core.sim is None:
            raise RuntimeError("step() called before reset() or after the episode ended; call reset()")
        core = self.core
        if self.config.action_mode == "macro":
            core.act(LEARNER, int(np.asarray(action).item()))
            core.run_until_decision((LEARNER,))
        else:
            core.set_twist(LEARNER, action)
            core.tick()
        truncated = core.done
        info = core.info(LEARNER)
        if truncated:
            info["kpis"] = core.sim.kpis().to_dict()
            self._needs_reset = True
        return core.observe(LEARNER), core.take_reward(LEARNER), False, truncated, info

    def render(self) -> np.ndarray | None:
        """[H, W, 3] uint8 top-down frame when ``render_mode="rgb_array"``."""
        if self.render_mode is None:
            return None
        return self.core.render(self.render_width_px)

    def close(self) -> None:
        """Release the PyBullet client (idempotent)."""
        self.core.close()
        self._needs_reset = True
