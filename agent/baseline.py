"""The classic baseline: greedy dispatch, A* with reservations, pure pursuit, move_base recovery.

What a competent ROS navigation-stack fleet does, as the yardstick for the learned stack:

* a **greedy dispatcher** (:mod:`sim.dispatch`) assigns open orders to idle robots by
  grid path distance (``sim.assign``);
* per robot a **task state machine**::

      idle -> to_pick -> pick -> to_station -> drop -> idle (-> to_home to park)
      to_station --load lost--> to_pick (re-pick where it fell)
      any nav --recoveries exhausted--> backoff (order released for reassignment) -> idle

* **navigation** (:class:`agent.navigation.Navigator`): space-time A* against the fleet's
  reservation table, pure-pursuit following, a lidar safety corridor and move_base-style
  recovery (wait ``patience_s``, clear the blocked cells for ``clear_decay_s``, replan,
  abort after ``max_replans``);
* poses from a :class:`agent.control.PoseSource` (ground truth by default), reported with
  ``sim.report_pose_estimate``; every route announced with ``sim.announce_route``.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from agent.control import LocalizationKind, PoseSource, make_pose_source
from sim.dispatch import dispatch_idle
from sim.follower import ramped_speed
from agent.navigation import NavConfig, Navigator, NavStatus
from sim.safety import BumperGuard, scan_points
from agent.traffic import CellLocks
from planning import Reservations
from sim.types import Pose, SensorFrame, TwistCmd

__all__ = ["BaselineConfig", "BaselineController", "RobotState", "TaskState"]

Cell = tuple[int, int]
STOP = TwistCmd(0.0, 0.0)


@dataclass(frozen=True)
class BaselineConfig:
    """The classic stack.

    Attributes:
        nav: navigation (follower, safety, route planner, recovery).
        localization: pose source kind.
        dispatch_period_s: how often idle robots are matched with open orders (s).
        urgency_m_per_s: dispatcher ageing weight (m of detour per s an order waited).
        pick_attempts: ticks to retry ``sim.pick`` / ``sim.drop`` at the cell before
            re-approaching it.
        retry_backoff_s: wait after an aborted delivery before retrying it (s).
        reassign_avoid_s: an order a robot gave up on is not given back to that robot for
            this long (s); other robots may take it at once.
        park_at_home: idle robots return to their start cell (chargers) instead of
            blocking stations and aisles.
    """

    nav: NavConfig = field(default_factory=NavConfig)
    localization: LocalizationKind = "ekf"
    dispatch_period_s: float = 1.0
    urgency_m_per_s: float = 0.05
    pick_attempts: int = 40
    retry_backoff_s: float = 10.0
    reassign_avoid_s: float = 60.0
    park_at_home: bool = True


class TaskState(enum.Enum):
    IDLE = "idle"
    TO_HOME = "to_home"
    TO_PICK = "to_pick"
    PICK = "pick"
    TO_STATION = "to_station"
    DROP = "drop"
    BACKOFF = "backoff"  # recovery exhausted: wait, then take work again


@dataclass
class RobotState:
    """Mutable per-robot task state (internal to the controller)."""

    state: TaskState = TaskState.IDLE
    order_id: int | None = None
    goal: Cell | None = None
    home: Cell = (0, 0)
    attempts: int = 0
    retry_at: float = 0.0
    aborts: int = 0


class BaselineController:
    """Fleet controller of the classic stack (implements :class:`agent.control.Controller`).

    Args:
        cfg: configuration.
        pose_source: overrides the pose source built from ``cfg.localization``.
    """

    name = "baseline"

    def __init__(self, cfg: BaselineConfig | None = None, *, pose_source: PoseSource | None = None) -> None:
        self.cfg = cfg or BaselineConfig()
        self.pose_source = pose_source or make_pose_source(self.cfg.localization)
        self.sim: Any = None
        self.robots: list[RobotState] = []
        self.navs: list[Navigator] = []
        self._released: set[int] = set()  # orders this controller gave up on (reassignable)
        self._avoid: dict[tuple[int, int], float] = {}  # (order, robot) -> until (s)
        self._last_dispatch = -1e9
        self._v: np.ndarray = np.zeros(0)

    # ---- episode -----------------------------------------------------------------------
    def reset(self, sim: Any) -> None:
        self.sim = sim
        self.layout = sim.layout
        self.pose_source.reset(sim)
        self.reservations = Reservations()
        self.locks = CellLocks()
        n = sim.n_robots
        gt = np.asarray(sim.initial_poses(), dtype=np.float64)
        nav_cfg = replace(self.cfg.nav, follower=replace(self.cfg.nav.follower, dt=float(sim.dt)))
        self.navs = [Navigator(i, self.layout, self.reservations, self.locks, nav_cfg,
                               announce=sim.announce_route)
                     for i in range(n)]
        self.robots = [RobotState(home=self.navs[i].cell_of(gt[i])) for i in range(n)]
        for i in range(n):
            self.navs[i].park(gt[i], 0.0)
        self._released = set()
        self._avoid = {}
        self._last_dispatch = -1e9
        self._v = np.zeros(n)
        self._bumpers = BumperGuard(n, self.cfg.nav.safety)

    def act(self, frames: Sequence[SensorFrame], t: float) -> list[TwistCmd]:
        poses = self.pose_source.update(frames)
        for i, p in enumerate(poses):
            self.sim.report_pose_estimate(i, p)
        orders = {o.id: o for o in self.sim.orders}
        pose_arr = np.array([[p.x, p.y, p.yaw] for p in poses], dtype=np.float64)  # [N, 3]
        for i, rs in enumerate(self.robots):
            self._sync_order(i, rs, orders, pose_arr[i], t)
        if t - self._last_dispatch >= self.cfg.dispatch_period_s:
            self._last_dispatch = t
            self._dispatch(orders, pose_arr, t)
        cmds = []
        for i, (rs, fr) in enumerate(zip(self.robots, frames)):
            cmd = self._bumper(i, fr, self._step_robot(i, rs, fr, poses[i], pose_arr[i], orders, t), t)
            # the base's speed after this tick (braking is acceleration-limited), not the command
            fc = self.navs[i].cfg.follower
            self._v[i] = ramped_speed(float(self._v[i]), cmd.v, fc.max_accel, fc.dt)
            cmds.append(cmd)
        return cmds

    # ---- fleet level ------------------------------------------------------------------
    def _sync_order(self, i: int, rs: RobotState, orders: dict, pose: np.ndarray, t: float) -> None:
        """Drop a task whose order was delivered, expired or taken over by another robot."""
        if rs.order_id is None:
            return
        o = orders.get(rs.order_id)
        if o is None or o.robot != i or o.status in ("delivered", "expired", "open"):
            rs.order_id = None
            if rs.state in (TaskState.TO_PICK, TaskState.PICK, TaskState.TO_STATION, TaskState.DROP):
                self._go_idle(i, rs, pose, t)

    def _dispatch(self, orders: dict, poses: np.ndarray, t: float) -> None:
        idle = [i for i, rs in enumerate(self.robots)
                if rs.state in (TaskState.IDLE, TaskState.TO_HOME) and rs.order_id is None]
        if not idle:
            return
        pool = [o for o in orders.values() if o.status == "open" or (
            o.id in self._released and o.status in ("assigned", "dropped"))]
        if not pool:
            return
        view = [replace(o, status="open") for o in pool]
        cells = {i: self.navs[i].cell_of(poses[i]) for i in idle}
        self._avoid = {k: until for k, until in self._avoid.items() if until > t}
        for a in dispatch_idle(view, cells, self.layout.free, cell_size=self.layout.cell_size, now=t,
                               urgency_m_per_s=self.cfg.urgency_m_per_s, forbidden=self._avoid):
            try:
                self.sim.assign(a.order_id, a.robot_id)
            except ValueError:
                continue
            self._released.discard(a.order_id)
            rs = self.robots[a.robot_id]
            rs.order_id = a.order_id
            self._navigate(a.robot_id, rs, TaskState.TO_PICK, orders[a.order_id].load_cell, poses[a.robot_id], t)

    # ---- robot level ------------------------------------------------------------------
    def _navigate(self, i: int, rs: RobotState, state: TaskState, goal: Cell, pose: np.ndarray, t: float) -> None:
        rs.state, rs.goal, rs.attempts = state, (int(goal[0]), int(goal[1])), 0
        dwell = None if state == TaskState.TO_HOME else self.cfg.nav.planner.goal_dwell_steps
        self.navs[i].set_goal(rs.goal, pose, t, dwell_steps=dwell)

    def _go_idle(self, i: int, rs: RobotState, pose: np.ndarray, t: float) -> None:
        rs.state, rs.goal, rs.attempts = TaskState.IDLE, None, 0
        self.navs[i].park(pose, t)

    def _abort(self, i: int, rs: RobotState, pose: np.ndarray, t: float) -> None:
        """Navigation gave up. Not carrying: release the order for reassignment and drive
        home out of the way. Carrying: stand still for ``retry_backoff_s``, then retry."""
        rs.aborts += 1
        if rs.state == TaskState.TO_PICK and rs.order_id is not None:
            self._released.add(rs.order_id)  # another robot may take it over (sim.assign)
            self._avoid[(rs.order_id, i)] = t + self.cfg.reassign_avoid_s
            rs.order_id = None
            self._navigate(i, rs, TaskState.TO_HOME, rs.home, pose, t)
            return
        self.navs[i].park(pose, t)
        rs.retry_at = t + self.cfg.retry_backoff_s
        rs.state = TaskState.BACKOFF

    def _step_robot(self, i: int, rs: RobotState, frame: SensorFrame, pose: Pose, p: np.ndarray,
                    orders: dict, t: float) -> TwistCmd:
        nav = self.navs[i]
        if pose.health == "lost":  # no trustworthy pose: stand still (the timer keeps running)
            return STOP
        order = orders.get(rs.order_id) if rs.order_id is not None else None
        st = rs.state
        if st == TaskState.BACKOFF:
            if t >= rs.retry_at:
                if order is not None and order.status in ("carried", "dropped"):
                    goal = order.station_cell if order.status == "carried" else order.load_cell
                    nxt = TaskState.TO_STATION if order.status == "carried" else TaskState.TO_PICK
                    self._navigate(i, rs, nxt, goal, p, t)
                else:
                    self._go_idle(i, rs, p, t)
            return STOP
        if st == TaskState.IDLE:
            if self.cfg.park_at_home and nav.cell_of(p) != rs.home and t >= rs.retry_at:
                self._navigate(i, rs, TaskState.TO_HOME, rs.home, p, t)
            return STOP
        if st in (TaskState.TO_PICK, TaskState.TO_STATION) and order is not None:
            self._check_goal(i, rs, order, frame, p, t)
        if rs.state in (TaskState.PICK, TaskState.DROP):
            return self._handle(i, rs, p, t)
        cmd = nav.step(p, float(self._v[i]), scan_points(frame.lidar), t)
        if nav.status == NavStatus.ARRIVED:
            if rs.state == TaskState.TO_HOME:
                self._go_idle(i, rs, p, t)
            else:
                rs.state = TaskState.PICK if rs.state == TaskState.TO_PICK else TaskState.DROP
                rs.attempts = 0
        elif nav.status == NavStatus.FAILED:
            if rs.state == TaskState.TO_HOME:
                rs.retry_at = t + self.cfg.retry_backoff_s
                self._go_idle(i, rs, p, t)
            else:
                self._abort(i, rs, p, t)
            return STOP
        return cmd

    def _bumper(self, i: int, frame: SensorFrame, cmd: TwistCmd, t: float) -> TwistCmd:
        """Protective stop / back-off while the contact bumper is pressed (sim.safety)."""
        return self._bumpers.filter(i, frame.bumper, cmd, t)

    def _check_goal(self, i: int, rs: RobotState, order: Any, frame: SensorFrame, p: np.ndarray, t: float) -> None:
        """Follow WMS changes: a dropped load must be re-picked where it fell."""
        if rs.state == TaskState.TO_STATION and (order.status == "dropped" or frame.load is False):
            if order.load_cell is not None:
                self._navigate(i, rs, TaskState.TO_PICK, order.load_cell, p, t)
        elif rs.state == TaskState.TO_PICK and order.load_cell is not None and tuple(order.load_cell) != rs.goal:
            self._navigate(i, rs, TaskState.TO_PICK, order.load_cell, p, t)

    def _handle(self, i: int, rs: RobotState, p: np.ndarray, t: float) -> TwistCmd:
        """Stopped at the cell: call ``sim.pick`` / ``sim.drop`` until it succeeds or we re-approach."""
        ok = self.sim.pick(i) if rs.state == TaskState.PICK else self.sim.drop(i)
        if ok:
            if rs.state == TaskState.PICK:
                order = {o.id: o for o in self.sim.orders}[rs.order_id]
                self._navigate(i, rs, TaskState.TO_STATION, order.station_cell, p, t)
            else:
                rs.order_id = None
                self._go_idle(i, rs, p, t)
            return STOP
        rs.attempts += 1
        if rs.attempts > self.cfg.pick_attempts and rs.goal is not None:
            back = TaskState.TO_PICK if rs.state == TaskState.PICK else TaskState.TO_STATION
            self._navigate(i, rs, back, rs.goal, p, t)
        return STOP

    # ---- introspection ----------------------------------------------------------------
    def states(self) -> list[str]:
        """Per-robot ``task/nav`` state strings (logs, tests)."""
        return [f"{rs.state.value}/{nav.status.value}" for rs, nav in zip(self.robots, self.navs)]
