"""Composable parts of the learning environments (no gymnasium, no PyBullet here).

An env is a world (``WarehouseSim``) + robots (a :class:`GuardedExecutor` per robot; the
scripted ones choose their macros by :func:`bfs_path`) + a task (dispatcher and
:func:`macro_reward`) + sensors (``sim.env_obs``) + a fault injector (inside the sim,
configured by ``SimConfig.faults``); ``sim.env_core`` composes them. Everything here is
plain numpy and python.

The built-in controllers read the ground-truth pose (perfect localisation, as in the
grid model); the observations carry the sensors so that a policy may learn without it.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from sim.follower import FollowerConfig, PurePursuitFollower, rear_first
from sim.layout import Layout, bfs_path
from sim.safety import LidarGuard, SafetyConfig, blind_junction, junction_cap, scan_points
from sim.types import ACTION_DELTAS, LidarScan, MacroAction, TwistCmd, wrap_angle

Cell = tuple[int, int]
STOP = TwistCmd(0.0, 0.0)


# ---- grid search --------------------------------------------------------------------
# bfs_path is sim.layout's (the one BFS of the project), re-exported for the envs.


def free_grid(layout: Layout, blocked: np.ndarray | Sequence[Cell] = ()) -> np.ndarray:
    """[H, W] bool: layout free cells minus ``blocked`` [K, 2] (row, col) cells."""
    free = layout.free.copy()
    b = np.asarray(blocked, dtype=np.int64).reshape(-1, 2)
    if len(b):
        ok = layout.in_bounds(b)
        free[b[ok, 0], b[ok, 1]] = False
    return free


# ---- safety -------------------------------------------------------------------------
def forward_clearance(scan: LidarScan | None, cone_rad: float, reverse: bool = False) -> float:
    """Smallest valid lidar range (m) within ``cone_rad`` of the driving direction.

    Returns ``inf`` when the scan is absent or nothing is in the cone.
    """
    if scan is None:
        return float("inf")
    ang = scan.angles if not reverse else np.angle(np.exp(1j * (scan.angles - np.pi)))
    r = scan.ranges[(np.abs(ang) <= cone_rad) & ~np.isnan(scan.ranges)]
    return float(r.min()) if len(r) else float("inf")


@dataclass(frozen=True)
class MacroConfig:
    """Execution of one macro action by the built-in path follower.

    Attributes:
        wait_s: duration of WAIT (s).
        handling_s: duration of PICK / DROP, the robot standing still (s).
        move_timeout_s: a move that has not arrived by then ends (s).
        blocked_patience_s: a move blocked ahead this long ends (s).
        stop_distance_m: lidar safety stop: an obstacle in the forward cone nearer than
            this (from the robot centre) stops the robot (m).
        goal_margin_m: ... unless it lies beyond the target cell centre plus this margin
            (a wall behind the target cell does not stop the robot) (m).
        cone_rad: half angle of the forward cone (rad).
        reverse_max_m: a move whose straight (at most this long, m) lies behind the robot
            (heading within ``reverse_align_rad`` of the opposite direction) is driven rear
            first instead of turning round (and, often, back again after a re-pick or a
            give-way); 0 disables.
        reverse_align_rad: see ``reverse_max_m`` (rad).
    """

    wait_s: float = 1.0
    handling_s: float = 1.0
    move_timeout_s: float = 5.0
    blocked_patience_s: float = 0.5
    stop_distance_m: float = 0.6
    goal_margin_m: float = 0.4
    cone_rad: float = 0.45
    reverse_max_m: float = 2.0
    reverse_align_rad: float = 0.35


class Outcome(str, enum.Enum):
    """How a macro action ended."""

    RUNNING = "running"
    ARRIVED = "arrived"
    BLOCKED = "blocked"
    TIMEOUT = "timeout"
    DONE = "done"  # WAIT / PICK / DROP elapsed


class MacroExecutor:
    """Turns one macro action of one robot into twist commands, tick by tick.

    A move (N/S/E/W) drives from the robot's cell centre to the neighbouring cell centre
    with :class:`PurePursuitFollower`; it ends on arrival, after ``move_timeout_s``, or
    after being stopped by the lidar safety stop for ``blocked_patience_s``. WAIT, PICK
    and DROP hold still for their duration (the env performs the pick/drop itself).

    Args:
        layout: floor plan (cell geometry).
        dt: control period (s).
        cfg: timing and safety.
        follower: follower limits (its ``dt`` is replaced by ``dt``).
    """

    def __init__(self, layout: Layout, dt: float, cfg: MacroConfig | None = None,
                 follower: FollowerConfig | None = None) -> None:
        self.layout = layout
        self.dt = dt
        self.cfg = cfg or MacroConfig()
        fcfg = follower or FollowerConfig()
        self.follower = PurePursuitFollower(replace(fcfg, dt=dt))
        self.action = MacroAction.WAIT
        self.outcome = Outcome.DONE
        self.target: Cell = (0, 0)
        self.elapsed_s = 0.0
        self._blocked_s = 0.0
        self._ticks_left = 0
        self._start_xy: np.ndarray | None = None

    @property
    def busy(self) -> bool:
        """A macro is running (the robot is not at a decision point)."""
        return self.outcome is Outcome.RUNNING

    def start(self, action: MacroAction | int, pose: np.ndarray) -> None:
        """Begin ``action`` from ``pose`` (x, y, yaw); moves are not checked for legality."""
        self.action = MacroAction(int(action))
        cell = self.layout.xy_to_cell(np.asarray(pose)[:2])
        here = (int(cell[0]), int(cell[1]))
        if self.action <= MacroAction.WEST:
            d = ACTION_DELTAS[int(self.action)]
            self._goto((here[0] + int(d[0]), here[1] + int(d[1])), self.layout.cell_to_xy(np.array(here)),
                       yaw=float(np.asarray(pose)[2]))
            return
        self._begin(here)
        self.follower.clear()
        dur = self.cfg.wait_s if self.action is MacroAction.WAIT else self.cfg.handling_s
        self._ticks_left = max(1, int(np.ceil(dur / self.dt - 1e-9)))

    def recentre(self, pose: np.ndarray) -> None:
        """Drive back to the centre of the robot's current cell (a move macro, action WAIT)."""
        cell = self.layout.xy_to_cell(np.asarray(pose)[:2])
        self.action = MacroAction.WAIT
        pose = np.asarray(pose, dtype=np.float64)
        self._goto((int(cell[0]), int(cell[1])), pose[:2], yaw=float(pose[2]))

    def shorten(self, pose: np.ndarray, v_current: float, *, at_brake_point: bool = False) -> bool:
        """Cut a running straight move short at the first cell centre ahead at which the
        robot can still stop (braking at the follower's ``max_accel`` from ``v_current``),
        for when the reason for the move is gone (the goal changed: a dropped load lies
        behind, a new order lies elsewhere). The path keeps its start, so the follower's
        line does not move. Returns whether the target changed.

        ``at_brake_point``: stop where braking now ends, off a cell centre if need be (the
        target becomes the cell holding that point), for a new goal that lies behind on
        this straight's line: the robot comes back along the line, so a centre stop only
        adds distance both ways (exceptions seed 5: a load dropped at 1.5 m/s, the run went
        on 2 cells to its target and backed up 2 cells: 6.7 s to the re-pick).

        Args:
            pose: (x, y, yaw) (m, rad).
            v_current: the base's forward speed (m/s, ``sim.follower.ramped_speed``).
        """
        line = self._straight()
        if line is None:
            return False
        start, u, length = line
        cs = float(self.layout.cell_size)
        n = int(round(length / cs))
        if n < 2 and not at_brake_point:
            return False
        along = float(np.dot(np.asarray(pose, dtype=np.float64)[:2] - start, u))
        brake = float(v_current) ** 2 / (2.0 * self.follower.cfg.max_accel)
        if at_brake_point:
            stop = max(along, 0.0) + brake + 0.02  # 2 cm slack for the follower's last tick
            if stop >= length - 0.05:
                return False
            return self._cut_at(start, start + u * stop)
        k = next((k for k in range(1, n) if k * cs - along >= brake - 1e-9), n)
        if k == n:
            return False
        return self._cut_at(start, start + u * k * cs)

    def behind_on_line(self, pose: np.ndarray, xy: np.ndarray, lateral_m: float = 0.25) -> bool:
        """Whether point ``xy`` (m) lies behind ``pose`` on the running straight's line (within
        ``lateral_m`` of it): e.g. a load dropped on the way (``shorten(at_brake_point=True)``)."""
        line = self._straight()
        if line is None:
            return False
        _, u, _ = line
        g = np.asarray(xy, dtype=np.float64) - np.asarray(pose, dtype=np.float64)[:2]
        return float(np.dot(g, u)) <= 0.0 and abs(float(u[0] * g[1] - u[1] * g[0])) <= lateral_m

    def at_start(self, pose: np.ndarray, v_current: float) -> bool:
        """The running straight has not left its start yet (within 0.1 m, below 0.05 m/s)."""
        return (self._start_xy is not None and abs(float(v_current)) < 0.05
                and float(np.hypot(*(np.asarray(pose, dtype=np.float64)[:2] - self._start_xy))) < 0.1)

    def _straight(self) -> tuple[np.ndarray, np.ndarray, float] | None:
        """(start [2], unit direction [2], length m) of the running move's straight, or None."""
        if not self.busy or self.action > MacroAction.WEST or self._start_xy is None:
            return None
        end = np.asarray(self.layout.cell_to_xy(np.array(self.target)), dtype=np.float64)
        length = float(np.hypot(*(end - self._start_xy)))
        if length < 1e-6:
            return None
        return self._start_xy, (end - self._start_xy) / length, length

    def _cut_at(self, start: np.ndarray, point: np.ndarray) -> bool:
        """End the straight at ``point`` (the target becomes its cell); True."""
        cell = self.layout.xy_to_cell(point)
        self.target = (int(cell[0]), int(cell[1]))
        self.follower.set_path(np.stack([start, point]), reverse=self.follower.reversing)
        return True

    def _begin(self, target: Cell) -> None:
        self._start_xy = None
        self.outcome = Outcome.RUNNING
        self.elapsed_s = 0.0
        self._blocked_s = 0.0
        self.target = target

    def _goto(self, target: Cell, start_xy: np.ndarray, yaw: float | None = None) -> None:
        """Drive the straight from ``start_xy`` to ``target``'s centre; rear first if it is
        short and lies behind ``yaw`` (rad; None = forward), see ``MacroConfig.reverse_max_m``."""
        self._begin(target)
        self._start_xy = np.asarray(start_xy, dtype=np.float64)  # the straight's start (shorten)
        end = np.asarray(self.layout.cell_to_xy(np.array(target)), dtype=np.float64)
        self.follower.set_path(np.stack([start_xy, end]), reverse=self._behind(self._start_xy, end, yaw))
        self._ticks_left = int(np.ceil(self.cfg.move_timeout_s / self.dt - 1e-9))

    def _behind(self, start: np.ndarray, end: np.ndarray, yaw: float | None) -> bool:
        c = self.cfg
        d = end - start
        length = float(np.hypot(*d))
        if yaw is None or c.reverse_max_m <= 0 or not 1e-6 < length <= c.reverse_max_m + 1e-9:
            return False
        err = float(wrap_angle(np.arctan2(d[1], d[0]) - yaw - np.pi))
        return abs(err) <= c.reverse_align_rad

    def command(self, pose: np.ndarray, scan: LidarScan | None, speed_cap: float | None = None,
                v_current: float | None = None) -> TwistCmd:
        """Command for this tick (call once per control tick while :attr:`busy`).

        ``v_current`` (m/s): the base's forward speed (``sim.follower.ramped_speed`` of the
        commands sent to the wheels: a cut command still brakes at the acceleration limit); None = the
        follower's last command, which is stale when an outer layer overrode the command or
        cancelled the macro (a robot stopped for a lidar outage would "continue" at its old
        speed along its old heading).

        ``speed_cap`` (m/s): an outer safety layer's forward-speed limit (e.g. the agent's
        lidar guard); the follower brakes to it within its acceleration limits, and a cap
        of 0 counts as blocked for ``blocked_patience_s``.
        """
        if not self.busy:
            return STOP
        self._ticks_left -= 1
        self.elapsed_s += self.dt
        if not self.follower.has_path:
            if self._ticks_left <= 0:
                self.outcome = Outcome.DONE
            return STOP
        to_goal = float(np.hypot(*(self.layout.cell_to_xy(np.array(self.target)) - pose[:2])))
        limit = min(self.cfg.stop_distance_m, to_goal + self.cfg.goal_margin_m)
        rev = self.follower.reversing
        blocked = forward_clearance(scan, self.cfg.cone_rad, reverse=rev) < limit or (
            speed_cap is not None and speed_cap <= 0.0)
        cmd, prog = self.follower.step(pose, v_current, speed_cap=0.0 if blocked else speed_cap)
        if prog.done:
            self.outcome = Outcome.ARRIVED
            return STOP
        self._blocked_s = self._blocked_s + self.dt if (blocked and abs(cmd.v) <= 1e-6 and not prog.rotating) else 0.0
        if self._blocked_s >= self.cfg.blocked_patience_s - 1e-9:
            self.outcome = Outcome.BLOCKED
            return STOP
        if self._ticks_left <= 0:
            self.outcome = Outcome.TIMEOUT
            return STOP
        return cmd


class GuardedExecutor(MacroExecutor):
    """A :class:`MacroExecutor` under the lidar guard (:class:`sim.safety.LidarGuard`): the one
    driving stack of the agent (``agent.Agent``) and the learning envs (``sim.env_core``), so
    a policy trains under the driver it is deployed with.

    :meth:`drive` stops short of anything in the swept corridor, remembers what vanished
    into the blind zone at the hull, slows in the warning field and into blind junctions
    (a side lane hidden behind a shelf corner, within 3 cells on the current straight),
    and never turns in place into something (back-up or stop instead).

    Args:
        layout, dt, cfg, follower: as :class:`MacroExecutor`.
        safety: footprint, stopping and warning-field parameters.
    """

    def __init__(self, layout: Layout, dt: float, cfg: MacroConfig | None = None,
                 follower: FollowerConfig | None = None, safety: SafetyConfig | None = None) -> None:
        super().__init__(layout, dt, cfg, follower)
        self.safety = safety or SafetyConfig()
        self.guard = LidarGuard(layout, self.safety, dt)
        self._free = layout.free

    def drive(self, pose: np.ndarray, cell: Cell, scan: LidarScan | None, t: float, *,
              v_current: float) -> TwistCmd:
        """This tick's command.

        Args:
            pose: (x, y, yaw) the driver believes (m, rad): the localized pose on the agent.
            cell: the (row, col) cell of ``pose``.
            scan: this tick's lidar scan (None = lidar absent: ``blind_speed_cap``).
            t: time (s).
            v_current: the base's forward speed (m/s): ``sim.follower.ramped_speed`` of the
                commands sent, after any outer override (not wheel odometry, which reads
                high during wheel slip).
        """
        pts = scan_points(scan)
        cap = None
        if self.busy and self.action <= MacroAction.WEST:
            tgt = np.asarray(self.layout.cell_to_xy(np.array(self.target)), dtype=np.float64)
            straight = float(np.hypot(*(tgt - pose[:2])))
            g_pose, g_pts = pose, pts
            if self.follower.reversing:  # the guard looks the way the robot drives: rear first
                g_pose, g_pts = rear_first(pose), None if pts is None else -pts
            cap = min(self.guard.speed_cap(g_pose, abs(v_current), g_pts, t, straight_m=straight),
                      self.junction_cap(pose, cell))
        cmd = self.command(pose, scan, speed_cap=cap, v_current=v_current)
        if abs(cmd.v) < 1e-6 and cmd.w != 0.0:
            cmd = self.guard.rotation(pose, pts, cmd)
        return cmd

    def junction_cap(self, pose: np.ndarray, cell: Cell) -> float:
        """Speed cap (m/s) for the next blind junction within 3 cells on the straight from
        ``cell`` towards the move target; inf if there is none."""
        sc, free = self.safety, self._free
        d = (int(np.sign(self.target[0] - cell[0])), int(np.sign(self.target[1] - cell[1])))
        if d == (0, 0) or (d[0] and d[1]):
            return float("inf")
        cap, prev, half = float("inf"), cell, self.layout.cell_size / 2
        for _ in range(3):
            nxt = (prev[0] + d[0], prev[1] + d[1])
            if not (0 <= nxt[0] < free.shape[0] and 0 <= nxt[1] < free.shape[1]) or not free[nxt]:
                break
            if blind_junction(free, prev, nxt):
                to_centre = float(np.hypot(*(np.asarray(self.layout.cell_to_xy(np.array(nxt))) - pose[:2])))
                cap = min(cap, junction_cap(to_centre - half - sc.footprint_m / 2, sc, self.dt))
                break
            if nxt == self.target:
                break
            prev = nxt
        return cap


# ---- task -----------------------------------------------------------------------------
@dataclass(frozen=True)
class RewardConfig:
    """Reward weights, consistent with the KPIs (orders delivered, time, collisions).

    The defaults equal ``planning.grid_model.GridModelConfig``'s (time_cost_per_s,
    delivery_reward, pick_reward, -collision_reward, -invalid_reward), so values learned
    on the grid model keep their scale in the simulator.

    Attributes:
        time_cost: per second of sim time, per robot (1/s).
        delivery: per order delivered by the robot.
        pick: per first pick of an order (shaping; 0 disables).
        collision: per collision onset involving the robot.
        invalid_action: per masked action taken (it is executed as WAIT).
    """

    time_cost: float = 0.01
    delivery: float = 1.0
    pick: float = 0.1
    collision: float = 0.5
    invalid_action: float = 0.05


def macro_reward(cfg: RewardConfig, *, elapsed_s: np.ndarray, delivered: np.ndarray,
                 picked: np.ndarray, collisions: np.ndarray, invalid: np.ndarray) -> np.ndarray:
    """Reward per robot over one interval (pure, vectorised over robots or a whole log).

    Args:
        cfg: weights.
        elapsed_s: [N] sim seconds in the interval.
        delivered: [N] orders delivered. picked: [N] first picks. collisions: [N] onsets.
        invalid: [N] masked actions taken.

    Returns:
        [N] float64 rewards.
    """
    return (cfg.delivery * np.asarray(delivered, np.float64) + cfg.pick * np.asarray(picked, np.float64)
            - cfg.time_cost * np.asarray(elapsed_s, np.float64)
            - cfg.collision * np.asarray(collisions, np.float64)
            - cfg.invalid_action * np.asarray(invalid, np.float64))
