"""The shared engine of the simulator envs: a :class:`WarehouseSim` driven by macro actions.

:class:`FleetCore` composes the world (``WarehouseSim``), one :class:`GuardedExecutor` per
robot (the agent's driver: a macro executor under the lidar guard), the scripted
controller for every robot that does not learn (BFS over the free cells minus known
pallets, one cell per macro, re-planned around robots after a blocked move), the dispatch (:func:`sim.dispatch.dispatch_idle`, the task), the observation encoders (the
sensors) and the sim's seeded fault injector. The gymnasium env (``sim.env_single``) and the multi-agent
envs (``sim.env_fleet``) are thin views over it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from sim.config import FaultsConfig, SimConfig
from sim.dispatch import dispatch_idle
from sim.follower import ramped_speed
from sim.env_obs import SensorEncoder
from sim.env_parts import (
    STOP,
    GuardedExecutor,
    MacroConfig,
    Outcome,
    RewardConfig,
    bfs_path,
    free_grid,
    macro_reward,
)
from sim.env_task import NOMINAL_SPEED_MPS, TaskEncoder, heading_index
from sim.follower import FollowerConfig
from sim.layout import Layout, LayoutConfig, generate_layout
from sim.orders import Order
from sim.safety import SafetyConfig
from sim.types import ACTION_DELTAS, N_ACTIONS, CameraImage, MacroAction, TwistCmd

ActionMode = Literal["macro", "twist"]
Cell = tuple[int, int]
_ACTIVE = ("assigned", "carried", "dropped")
# The agent's dispatcher defaults (agent.agent.AgentConfig), so policies train under the
# assignment they are deployed with.
DISPATCH_PERIOD_S = 1.0
DISPATCH_URGENCY_M_PER_S = 0.05


@dataclass(frozen=True)
class EnvConfig:
    """Everything a simulator env is built from (typed; hydra maps onto it at the edge).

    Attributes:
        sim: the simulator (layout, robots, sensors, orders, faults, ``duration_s``).
        action_mode: ``"macro"`` = ``Discrete(7)`` MacroAction executed until the next
            decision point; ``"twist"`` = ``Box(2)`` normalised (v, w) per control tick.
        macro: macro-action execution (durations, timeouts, safety stop).
        reward: reward weights.
        follower: the built-in pure-pursuit follower's limits.
        safety: the lidar guard over every macro-driven robot (``sim.safety``); the
            defaults equal the agent's (``agent.nav.safety``), so a policy trains under
            the driver it is deployed with.
        crop_size: side of the local occupancy crop (cells, odd).
    """

    sim: SimConfig = field(default_factory=lambda: SimConfig(n_robots=3, duration_s=120.0))
    action_mode: ActionMode = "macro"
    macro: MacroConfig = field(default_factory=MacroConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    follower: FollowerConfig = field(default_factory=FollowerConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    crop_size: int = 11


def make_env_config(config: EnvConfig | None = None, **overrides: Any) -> EnvConfig:
    """An :class:`EnvConfig` from a base config plus keyword shortcuts.

    Shortcuts (besides the ``EnvConfig`` fields): ``n_robots``, ``duration_s``,
    ``layout`` (LayoutConfig), ``faults`` (FaultsConfig, or ``"exceptions"``/``"nominal"``),
    ``lidar``/``camera``/``uwb``/``fiducial`` (bool: sensor on), ``lidar_beams`` (int),
    ``control_hz`` (Hz), ``orders_per_min``.

    Raises:
        ValueError: unknown key, or a value out of range (one line naming it).
    """
    cfg = config or EnvConfig()
    own = {f.name for f in fields(EnvConfig)}
    top = {k: overrides.pop(k) for k in list(overrides) if k in own}
    cfg = replace(cfg, **top)
    s = cfg.sim
    sensors = s.sensors
    for key in ("lidar", "camera", "uwb", "fiducial"):
        if key in overrides:
            sensors = replace(sensors, **{key: replace(getattr(sensors, key), enabled=bool(overrides.pop(key)))})
    if "lidar_beams" in overrides:
        sensors = replace(sensors, lidar=replace(sensors.lidar, n_beams=int(overrides.pop("lidar_beams"))))
    simkw: dict[str, Any] = {"sensors": sensors}
    for key in ("n_robots", "duration_s", "layout"):
        if key in overrides:
            simkw[key] = overrides.pop(key)
    if "faults" in overrides:
        f = overrides.pop("faults")
        if f == "exceptions":
            f = FaultsConfig.exceptions()
        elif f in ("nominal", None, False):
            f = FaultsConfig()
        if not isinstance(f, FaultsConfig):
            raise ValueError(f"faults: {f!r}; allowed a FaultsConfig, 'nominal' or 'exceptions'")
        simkw["faults"] = f
    if "control_hz" in overrides:
        simkw["world"] = replace(s.world, control_hz=float(overrides.pop("control_hz")))
    if "orders_per_min" in overrides:
        simkw["orders"] = replace(s.orders, rate_per_min=float(overrides.pop("orders_per_min")))
    if overrides:
        allowed = sorted(own | {"n_robots", "duration_s", "layout", "faults", "lidar", "camera", "uwb",
                                "fiducial", "lidar_beams", "control_hz", "orders_per_min"})
        raise ValueError(f"{min(overrides)}: unknown env option; allowed {', '.join(allowed)}")
    if isinstance(simkw.get("layout"), dict):
        simkw["layout"] = LayoutConfig(**simkw["layout"])
    cfg = replace(cfg, sim=replace(s, **simkw))
    if cfg.action_mode not in ("macro", "twist"):
        raise ValueError(f"action_mode: {cfg.action_mode!r}; allowed 'macro', 'twist'")
    if cfg.crop_size < 1 or cfg.crop_size % 2 == 0:
        raise ValueError(f"crop_size: {cfg.crop_size}; allowed an odd number >= 1")
    return cfg


def _delta_action(a: Cell, b: Cell) -> MacroAction:
    d = (b[0] - a[0], b[1] - a[1])
    for k in range(4):
        if (int(ACTION_DELTAS[k, 0]), int(ACTION_DELTAS[k, 1])) == d:
            return MacroAction(k)
    return MacroAction.WAIT


class FleetCore:
    """One simulated warehouse whose robots are driven by macro actions.

    Robots in ``learners`` act through :meth:`act` (macro mode) or :meth:`set_twist`
    (twist mode); all others are driven by the scripted controller inside :meth:`tick`. A learner is *at a decision point* when its macro has ended.

    Args:
        cfg: env config.
        learners: robot indices controlled from outside (may be empty: a scripted fleet).
    """

    def __init__(self, cfg: EnvConfig, learners: Sequence[int]) -> None:
        self.cfg = cfg
        self.layout: Layout = generate_layout(cfg.sim.layout)
        self.layout.validate(cfg.sim.n_robots)
        self.n = cfg.sim.n_robots
        self.learners = tuple(int(i) for i in learners)
        if not all(0 <= i < self.n for i in self.learners):
            raise ValueError(f"learners: {self.learners}; allowed indices in 0..{self.n - 1}")
        self.dt = 1.0 / cfg.sim.world.control_hz
        self.sensors = SensorEncoder(cfg.sim.sensors, self.layout)
        self.task = TaskEncoder(self.layout, crop_size=cfg.crop_size)
        self.observation_space = gym.spaces.Dict({**self.task.spaces(), **self.sensors.spaces()})
        if cfg.action_mode == "macro":
            self.action_space: gym.spaces.Space = gym.spaces.Discrete(N_ACTIONS)
        else:
            self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self.sim: Any = None  # WarehouseSim, built at the first reset (imports PyBullet)
        self._closed = False

    # ---- episode -----------------------------------------------------------------
    def reset(self, seed: int) -> None:
        """Start an episode of the simulator from ``seed``."""
        if self.sim is None:  # the constructor builds the episode of ``seed``
            from sim.warehouse import WarehouseSim

            self.sim = WarehouseSim(self.cfg.sim, seed=seed, layout=self.layout)
        else:
            self.sim.reset(seed=seed)
        self._closed = False
        c = self.cfg
        self.exec = [GuardedExecutor(self.layout, self.dt, c.macro, c.follower, c.safety) for _ in range(self.n)]
        self._v_sent = np.zeros(self.n)  # [N] forward speed last sent (m/s): the guard's speed
        self._last_dispatch = -1e9
        self._twist = [STOP] * self.n
        self._camera: list[tuple[CameraImage | None, int]] = [(None, -10**9)] * self.n
        self._tick = 0
        self._macro_from: list[Cell | None] = [None] * self.n  # cell where the last macro began
        self._acc = np.zeros((self.n, 5))  # elapsed_s, delivered, picked, collisions, invalid
        self._order_seen: dict[int, tuple[str, bool]] = {}
        self._n_coll_log = 0
        self._after_tick()
        for i in self.learners:
            self._announce(i)

    @property
    def done(self) -> bool:
        """The episode time is up."""
        return bool(self.sim.done)

    def at_decision(self, i: int) -> bool:
        """Learner ``i`` waits for a macro action."""
        return not self.exec[i].busy

    # ---- acting ------------------------------------------------------------------
    def act(self, i: int, action: int) -> None:
        """Start macro ``action`` for learner ``i`` (masked actions run as WAIT)."""
        a = int(action)
        if not 0 <= a < N_ACTIONS:
            raise ValueError(f"action: {action!r}; allowed 0..{N_ACTIONS - 1}")
        if not self.action_mask(i)[a]:
            self._acc[i, 4] += 1
            a = int(MacroAction.WAIT)
        self._start(i, MacroAction(a))
        self._announce(i)

    def set_twist(self, i: int, action: np.ndarray) -> None:
        """Twist mode: hold normalised (v, w) in [-1, 1] for learner ``i`` this tick."""
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
        rc = self.cfg.sim.robot
        self._twist[i] = TwistCmd(float(a[0] * rc.max_speed), float(a[1] * rc.max_yaw_rate))

    def _start(self, i: int, a: MacroAction) -> None:
        pose = self.poses[i]
        self._macro_from[i] = self.cell_of(i)
        if a is MacroAction.PICK:
            self.sim.pick(i)
        elif a is MacroAction.DROP:
            self.sim.drop(i)
        self.exec[i].start(a, pose)

    def _dispatch(self) -> None:
        """Idle robots get open orders by :func:`sim.dispatch.dispatch_idle`, as in the agent."""
        t = float(self.sim.time)
        if t - self._last_dispatch < DISPATCH_PERIOD_S:
            return
        self._last_dispatch = t
        orders = self.sim.orders
        busy = {o.robot for o in orders if o.robot is not None and o.status in _ACTIVE}
        idle = {i: self.cell_of(i) for i in range(self.n) if i not in busy}
        for a in dispatch_idle(orders, idle, self.layout.free, cell_size=self.layout.cell_size,
                               now=t, urgency_m_per_s=DISPATCH_URGENCY_M_PER_S):
            self.sim.assign(a.order_id, a.robot_id)

    def tick(self) -> None:
        """One control tick: dispatch, scripted decisions, commands, physics, accounting."""
        self._dispatch()
        frames = self.sim.frames
        cmds = []
        for i in range(self.n):
            if i in self.learners and self.cfg.action_mode == "twist":
                cmds.append(self._twist[i])
                continue
            if i not in self.learners and not self.exec[i].busy:
                self._scripted_decision(i)
            cmd = self.exec[i].drive(self.poses[i], self.cell_of(i), frames[i].lidar, float(self.sim.time),
                                     v_current=float(self._v_sent[i]))
            # the base's speed after this tick (braking is acceleration-limited), as the agent
            f = self.exec[i].follower.cfg
            self._v_sent[i] = ramped_speed(float(self._v_sent[i]), cmd.v, f.max_accel, self.dt)
            cmds.append(cmd)
        self.sim.step(cmds)
        self._tick += 1
        self._after_tick()

    def run_until_decision(self, learners: Sequence[int] | None = None) -> None:
        """Tick until one of ``learners`` (default all) is at a decision point, or time is up."""
        watch = self.learners if learners is None else tuple(learners)
        while not self.done and not any(self.at_decision(i) for i in watch):
            self.tick()

    # ---- bookkeeping ---------------------------------------------------------------
    @property
    def poses(self) -> np.ndarray:
        """[N, 3] ground-truth (x, y, yaw) used by the built-in controllers."""
        return self._poses

    def _after_tick(self) -> None:
        self._poses = self.sim.ground_truth()
        self._cells = self.layout.xy_to_cell(self._poses[:, :2])
        frames = self.sim.frames
        for i, f in enumerate(frames):
            if f.camera is not None:
                self._camera[i] = (f.camera, self._tick)
        if self._tick > 0:
            self._acc[:, 0] += self.dt
        self._account_collisions()
        self._account_orders()
        self._orders = {o.robot: o for o in self.sim.orders if o.robot is not None and o.status in _ACTIVE}
        self._pallets = self.sim.render_state().pallets
        if self.cfg.action_mode == "twist":
            for i in self.learners:
                self._auto_handle(i)

    def _account_collisions(self) -> None:
        log = self.sim.collision_log
        for _, robot, kind, other in log[self._n_coll_log:]:
            self._acc[robot, 3] += 1
            if kind == "robot_robot" and other.startswith("robot_"):
                self._acc[int(other.split("_")[1]), 3] += 1
        self._n_coll_log = len(log)

    def _account_orders(self) -> None:
        for o in self.sim.orders:
            seen = self._order_seen.get(o.id, ("open", False))
            picked = o.picked_t is not None
            if o.robot is not None:
                if picked and not seen[1]:
                    self._acc[o.robot, 2] += 1
                if o.status == "delivered" and seen[0] != "delivered":
                    self._acc[o.robot, 1] += 1
            self._order_seen[o.id] = (o.status, picked)

    def _auto_handle(self, i: int) -> None:
        """Twist mode: pick / deliver automatically when standing still at the right cell."""
        o = self._orders.get(i)
        if o is None:
            return
        here = (int(self._cells[i, 0]), int(self._cells[i, 1]))
        if o.status in ("assigned", "dropped") and here == o.load_cell:
            self.sim.pick(i)
        elif o.status == "carried" and here == o.station_cell:
            self.sim.drop(i)

    def take_reward(self, i: int) -> float:
        """Reward of robot ``i`` accumulated since the last call (then cleared)."""
        a = self._acc[i]
        r = macro_reward(self.cfg.reward, elapsed_s=a[0:1], delivered=a[1:2], picked=a[2:3],
                         collisions=a[3:4], invalid=a[4:5])
        self._acc[i] = 0.0
        return float(r[0])

    # ---- task view -----------------------------------------------------------------
    def order_of(self, i: int) -> Order | None:
        """Robot ``i``'s assigned, carried or dropped order."""
        return self._orders.get(i)

    def target_of(self, i: int) -> Cell | None:
        """Where robot ``i`` must go next: the load cell, or the station when carrying."""
        o = self._orders.get(i)
        if o is None:
            return None
        return o.station_cell if o.status == "carried" else o.load_cell

    def cell_of(self, i: int) -> Cell:
        return int(self._cells[i, 0]), int(self._cells[i, 1])

    def _task_view(self, i: int) -> dict[str, Any]:
        """(load, pick, station) of robot ``i``'s order in the grid model's terms."""
        o = self._orders.get(i)
        if o is None:
            return {"load": False, "pick": None, "station": None}
        load = o.status == "carried"
        return {"load": load, "pick": None if load else o.load_cell, "station": o.station_cell}

    def action_mask(self, i: int) -> np.ndarray:
        """[7] int8 legal macro actions of robot ``i`` (see ``sim.env_task``)."""
        return self.task.action_mask(self.cell_of(i), pallets=self._pallets, **self._task_view(i))

    def _velocity(self, i: int) -> np.ndarray:
        """[2] (vx, vy) / nominal speed: macro mode, the last macro's cell displacement."""
        if self.cfg.action_mode == "twist":
            v, lat, _ = self.sim.velocities()[i]
            yaw = self._poses[i, 2]
            vxy = np.array([v * np.cos(yaw) - lat * np.sin(yaw), v * np.sin(yaw) + lat * np.cos(yaw)])
            return vxy / NOMINAL_SPEED_MPS
        start = self._macro_from[i]
        if start is None:
            return np.zeros(2)
        here = self.cell_of(i)
        return np.array([here[1] - start[1], here[0] - start[0]], dtype=np.float64)  # (d_col, d_row) = (dx, dy)

    def observe(self, i: int) -> dict[str, np.ndarray]:
        """Observation of robot ``i`` (keys: ``sim.env_task`` + ``sim.env_obs``)."""
        cam, t_cam = self._camera[i]
        fresh = cam if self._tick - t_cam <= self.cfg.sim.sensors.camera.every_k else None
        obs = self.task.encode(
            self.cell_of(i), heading=heading_index(float(self._poses[i, 2])), velocity=self._velocity(i),
            pallets=self._pallets, others=np.delete(self._cells, i, axis=0),
            time_frac=float(self.sim.time) / self.cfg.sim.duration_s, **self._task_view(i))
        obs.update(self.sensors.encode(self.sim.frames[i], fresh))
        return obs

    def info(self, i: int) -> dict[str, Any]:
        """Per-robot diagnostics (not for learning)."""
        o = self._orders.get(i)
        return {"time_s": float(self.sim.time), "outcome": self.exec[i].outcome.value,
                "at_decision": self.at_decision(i), "order_id": -1 if o is None else o.id,
                "carrying": bool(o is not None and o.status == "carried"), "cell": self.cell_of(i)}

    # ---- scripted robots ----------------------------------------------------------
    def _route(self, i: int, avoid_robots: bool = False) -> list[Cell] | None:
        tgt = self.target_of(i)
        if tgt is None:
            return None
        blocked = [tuple(c) for c in self._pallets]
        if avoid_robots:
            blocked += [tuple(c) for k, c in enumerate(self._cells.tolist()) if k != i]
        return bfs_path(free_grid(self.layout, blocked), self.cell_of(i), tgt)

    def _announce(self, i: int) -> None:
        route = self._route(i)
        self.sim.announce_route(i, route if route is not None else [self.cell_of(i)])

    def _scripted_decision(self, i: int) -> None:
        """Built-in controller: BFS to the task target, one cell per macro; pick/drop there."""
        o, ex = self._orders.get(i), self.exec[i]
        if o is None:
            ex.start(MacroAction.WAIT, self.poses[i])
            return
        here, tgt = self.cell_of(i), self.target_of(i)
        if here == tgt:
            off = float(np.hypot(*(self.layout.cell_to_xy(np.array(here)) - self.poses[i, :2])))
            if off > 0.5 * self.cfg.sim.pick_tolerance:
                ex.recentre(self.poses[i])
                return
            self._start(i, MacroAction.DROP if o.status == "carried" else MacroAction.PICK)
            return
        route = self._route(i, avoid_robots=ex.outcome in (Outcome.BLOCKED, Outcome.TIMEOUT))
        if route is None or len(route) < 2:
            route = self._route(i)
        if route is None or len(route) < 2:
            ex.start(MacroAction.WAIT, self.poses[i])
            return
        self.sim.announce_route(i, route)
        ex.start(_delta_action(route[0], route[1]), self.poses[i])

    # ---- rendering / closing --------------------------------------------------------
    def render(self, width_px: int = 480) -> np.ndarray:
        """[H, W, 3] uint8 top-down image of the current state."""
        from sim.render import render_topdown

        return render_topdown(self.layout, None if self.sim is None else self.sim.render_state(), width_px)

    def close(self) -> None:
        """Release the simulator (idempotent)."""
        if self.sim is not None and not self._closed:
            self.sim.close()
            self.sim = None
        self._closed = True


def agent_id(i: int) -> str:
    """Agent name of robot ``i``."""
    return f"robot_{i}"


class FleetDriver:
    """The world shared by both multi-agent views: a :class:`FleetCore` where all learn.

    Args:
        config: env config; ``**overrides`` as in :func:`sim.env_core.make_env_config`.
    """

    def __init__(self, config: EnvConfig | None = None, **overrides: Any) -> None:
        self.config = make_env_config(config, **overrides)
        n = self.config.sim.n_robots
        self.core = FleetCore(self.config, learners=range(n))
        self.names = [agent_id(i) for i in range(n)]
        self.index = {a: i for i, a in enumerate(self.names)}
        self._rng: np.random.Generator | None = None
        self.macro = self.config.action_mode == "macro"

    def reset(self, seed: int | None) -> None:
        if seed is not None or self._rng is None:
            self._rng = np.random.default_rng(seed)
        self.core.reset(int(self._rng.integers(2**31 - 1)))

    def apply(self, actions: Mapping[str, Any]) -> None:
        """Start the macros of agents at decision points (or set twists), then advance."""
        core = self.core
        for name, a in actions.items():
            if name not in self.index:
                raise ValueError(f"actions: unknown agent {name!r}; allowed {', '.join(self.names)}")
            i = self.index[name]
            if not self.macro:
                core.set_twist(i, a)
            elif core.at_decision(i):
                core.act(i, int(np.asarray(a).item()))
        if self.macro:
            for i in core.learners:  # an agent at a decision point without an action waits
                if core.at_decision(i):
                    core.act(i, 4)
            core.run_until_decision()
        else:
            core.tick()

    def ready(self) -> list[str]:
        """Agents at a decision point (all agents in twist mode)."""
        return [a for a, i in self.index.items() if not self.macro or self.core.at_decision(i)]

    def close(self) -> None:
        self.core.close()
