"""Per-robot navigation of the classic baseline: plan, follow, keep traffic rules, recover.

One :class:`Navigator` per robot, in the spirit of ROS ``move_base`` plus an AGV fleet
manager's traffic control:

* **Global planner**: space-time A* on the static grid against the fleet's shared
  :class:`planning.Reservations` (prioritised, first come first served), so a route
  avoids the cells other robots will use and their parking spots; plain A* when no
  conflict-free route exists within the horizon. Cells "cleared" by recovery are extra
  obstacles until they decay. The route (distinct cells) is announced
  (``sim.announce_route``).
* **Traffic rule**: cell locks (:class:`agent.traffic.CellLocks`). A robot locks the
  route cells within its stopping window and stops at the centre of the last cell it
  holds: robots never share a cell, whatever their timing drift from the reservations.
* **Local controller**: :class:`sim.follower.PurePursuitFollower`.
* **Safety**: a lidar corridor ahead caps the speed (stop before pallets, people, robots
  and anything unmapped); in-place rotation waits while something is inside the
  rotation circle; blind junctions (a side lane behind a shelf corner) are entered at
  ``junction_speed``; a failed lidar is a protective stop (``blind_speed_cap`` 0).
* **Recovery** (move_base defaults-ish): no progress for ``patience_s`` (blocked by an
  obstacle or a robot that holds the next cell, stuck, broken down) -> clear: mark the
  blocking cell(s) ahead as obstacles for ``clear_decay_s`` and replan around them;
  after ``max_replans`` recoveries without reaching a new cell -> FAILED (the task layer
  aborts the goal or retries later).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sim.safety import LidarGuard, SafetyConfig, blind_junction, forward_obstacle, junction_cap, to_world
from agent.traffic import CellLocks
from planning import Reservations, astar, space_time_astar
from sim.follower import FollowerConfig, PurePursuitFollower, stopping_speed
from sim.layout import Layout
from sim.types import TwistCmd

__all__ = ["NavConfig", "NavStatus", "Navigator", "RecoveryConfig", "RoutePlannerConfig"]

Cell = tuple[int, int]
STOP = TwistCmd(0.0, 0.0)


@dataclass(frozen=True)
class RoutePlannerConfig:
    """Global planner and traffic rule of the baseline.

    Attributes:
        use_reservations: plan in space-time against the other robots' reservations
            (else plain A* on the static map).
        step_s: seconds per grid step of the reservation table (one cell per step).
        horizon_steps: space-time search horizon (steps).
        goal_dwell_steps: steps a robot keeps its goal reserved after arriving (pick/drop);
            parking goals are held until the robot leaves.
        lock_margin_m: locks reach this far beyond the stopping distance (m).
    """

    use_reservations: bool = True
    step_s: float = 1.0
    horizon_steps: int = 300
    goal_dwell_steps: int = 4
    lock_margin_m: float = 0.6


@dataclass(frozen=True)
class RecoveryConfig:
    """move_base-style recovery.

    Attributes:
        patience_s: time without progress before a recovery (s) (move_base
            ``planner_patience`` / ``controller_patience``: 5 s).
        patience_stagger_s: extra patience per robot id (s), so two robots facing each
            other do not recover in lock-step.
        progress_m: displacement that counts as progress (m).
        progress_yaw: heading change that counts as progress (rad).
        clear_decay_s: how long a cleared (blocked) cell stays an obstacle (s).
        max_replans: recoveries without reaching a new cell before the goal is aborted.
    """

    patience_s: float = 5.0
    patience_stagger_s: float = 0.5
    progress_m: float = 0.1
    progress_yaw: float = 0.3
    clear_decay_s: float = 20.0
    max_replans: int = 3


@dataclass(frozen=True)
class NavConfig:
    """Everything one navigator needs."""

    follower: FollowerConfig = field(default_factory=FollowerConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    planner: RoutePlannerConfig = field(default_factory=RoutePlannerConfig)
    recovery: RecoveryConfig = field(default_factory=RecoveryConfig)


class NavStatus(enum.Enum):
    IDLE = "idle"  # no goal
    DRIVING = "driving"
    BLOCKED = "blocked"  # no progress (obstacle, locked cell, no route); recovery timer runs
    ARRIVED = "arrived"
    FAILED = "failed"  # recoveries exhausted


def simple_route(cells: list[Cell]) -> list[Cell]:
    """The geometric route of a space-time path: waits dropped and loops erased.

    Waits and detours of a space-time plan only encode timing; execution is governed by
    cell locks, so the robot drives the loop-free route (no cell twice, no U-turns).
    """
    out: list[Cell] = []
    pos: dict[Cell, int] = {}
    for c in cells:
        c = (int(c[0]), int(c[1]))
        if c in pos:  # back on a visited cell: erase the loop
            for d in out[pos[c] + 1:]:
                del pos[d]
            del out[pos[c] + 1:]
            continue
        pos[c] = len(out)
        out.append(c)
    return out


class Navigator:
    """Navigation for one robot (see the module docstring).

    Args:
        robot_id: this robot.
        layout: the static map.
        reservations: the fleet's shared reservation table (planning).
        locks: the fleet's shared cell locks (execution).
        cfg: configuration.
        announce: called with (robot_id, route cells) for every new route.
    """

    def __init__(self, robot_id: int, layout: Layout, reservations: Reservations, locks: CellLocks,
                 cfg: NavConfig, announce: Callable[[int, list[Cell]], None] | None = None) -> None:
        self.robot_id = robot_id
        self.layout = layout
        self.res = reservations
        self.locks = locks
        self.cfg = cfg
        self._announce = announce or (lambda rid, cells: None)
        self._free = layout.free
        self.guard = LidarGuard(layout, cfg.safety, cfg.follower.dt)
        self.follower = PurePursuitFollower(cfg.follower)
        self.goal: Cell | None = None
        self.dwell: int | None = None
        self.status = NavStatus.IDLE
        self.route: list[Cell] = []
        self.cleared: dict[Cell, float] = {}  # cell -> expiry time (s)
        self.replans = 0
        self.n_recoveries = 0
        self.lock_blocker: Cell | None = None  # first route cell we could not lock
        self._progress_xy = np.zeros(2)
        self._progress_yaw = 0.0
        self._progress_t = 0.0
        self._straight_m = 0.0  # free straight run ahead on the route (m), last tick
        self._recovery_cell: Cell | None = None
        self._last_plan_t = -1e9
        self.n_plans = 0
        self._t = 0.0
        self._blind: dict[tuple[Cell, Cell], bool] = {}  # (prev, cell) -> blind junction

    # ---- goals ---------------------------------------------------------------------
    def cell_of(self, pose: np.ndarray) -> Cell:
        """(row, col) of the grid cell containing ``pose[:2]``."""
        cs = self.layout.cell_size
        return math.floor(float(pose[1]) / cs), math.floor(float(pose[0]) / cs)

    def park(self, pose: np.ndarray, t: float) -> None:
        """No goal: stop, hold the current cell (lock and indefinite reservation)."""
        self.goal, self.route, self.status = None, [], NavStatus.IDLE
        self.follower.clear()
        cell = self.cell_of(pose)
        self.res.release(self.robot_id)
        self.res.reserve_path(self.robot_id, [cell], self._step(t), hold_last=None)
        self.locks.keep_only(self.robot_id, self._footprint_cells(pose))
        self.locks.acquire(self.robot_id, [cell])
        self._announce(self.robot_id, [cell])  # standing still: the route is the current cell

    def set_goal(self, goal: Cell, pose: np.ndarray, t: float, *, dwell_steps: int | None = None) -> bool:
        """Plan to ``goal`` from ``pose`` at time ``t`` (s).

        Args:
            goal: (row, col).
            pose: (x, y, yaw) [3].
            t: sim time (s).
            dwell_steps: after arrival keep the goal reserved this many steps (None: until
                the next goal; parking).

        Returns:
            False if no route exists now (the navigator keeps trying, then recovers).
        """
        self.goal = (int(goal[0]), int(goal[1]))
        self.dwell = dwell_steps
        self.replans = 0
        self.cleared = {}
        self._mark_progress(pose, t)
        return self._plan(pose, t)

    # ---- planning ------------------------------------------------------------------
    def _step(self, t: float) -> int:
        return int(np.floor(t / self.cfg.planner.step_s + 1e-9))

    def _blocked_mask(self, t: float) -> np.ndarray | None:
        self.cleared = {c: exp for c, exp in self.cleared.items() if exp > t}
        if not self.cleared:
            return None
        mask = np.zeros(self._free.shape, dtype=bool)
        for r, c in self.cleared:
            mask[r, c] = True
        if self.goal is not None:
            mask[self.goal] = False  # never clear the goal itself: wait for it instead
        return mask

    def _plan(self, pose: np.ndarray, t: float) -> bool:
        assert self.goal is not None
        pc = self.cfg.planner
        start, k0 = self.cell_of(pose), self._step(t)
        mask = self._blocked_mask(t)
        self._last_plan_t = t
        self.n_plans += 1
        self.res.release(self.robot_id)
        path = None
        if pc.use_reservations:
            path = space_time_astar(self._free, start, self.goal, self.res, self.robot_id,
                                    t0=k0, max_t=k0 + pc.horizon_steps, blocked=mask)
        if path is None:
            path = astar(self._free, start, self.goal, blocked=mask)
        if path is None:
            self.res.reserve_path(self.robot_id, [start], k0, hold_last=None)
            self._announce(self.robot_id, [start])
            self.route = []
            self.follower.clear()
            self.status = NavStatus.BLOCKED
            return False
        self.res.reserve_path(self.robot_id, path, k0, hold_last=self.dwell)
        self.route = simple_route(path)
        self.follower.set_path(self.layout.cell_to_xy(np.array(self.route)))
        self._straight_m = 0.0
        self.status = NavStatus.DRIVING
        self._announce(self.robot_id, list(self.route))
        return True

    # ---- control -------------------------------------------------------------------
    def step(self, pose: np.ndarray, v: float, points: np.ndarray | None, t: float) -> TwistCmd:
        """One control tick.

        Args:
            pose: (x, y, yaw) [3] estimate (m, rad).
            v: current forward speed (m/s).
            points: lidar returns in the robot frame [N, 2] (m); None = lidar absent.
            t: sim time (s).

        Returns:
            The twist command; :attr:`status` tells what the navigator is doing.
        """
        self._t = t
        if self.goal is None or self.status in (NavStatus.IDLE, NavStatus.FAILED, NavStatus.ARRIVED):
            self._hold_footprint(pose)
            return STOP
        if not self.route:  # no route yet: retry every second, recover when patience runs out
            self._hold_footprint(pose)
            if t - self._progress_t > self._patience():
                return self._recover(pose, t, points)
            if t - self._last_plan_t >= 1.0:
                self._plan(pose, t)
            return STOP
        lock_cap = self._update_locks(pose, v)
        if points is None and self.cfg.safety.blind_speed_cap == 0.0:
            # protective stop: no translation and no turning while the safety lidar is out
            # (the footprint's corners sweep a circle that may hold a person). The route is
            # not blocked, the sensor is: the recovery clock waits for the lidar.
            self._mark_progress(pose, t)
            self.status = NavStatus.BLOCKED
            return STOP
        cmd, prog = self._follow(pose, v, points, lock_cap)
        if prog.done:
            self.status = NavStatus.ARRIVED
            self.res.release(self.robot_id)
            self.res.reserve_path(self.robot_id, [self.goal], self._step(t), hold_last=self.dwell)
            self._announce(self.robot_id, [self.goal])
            return cmd
        self._update_progress(pose, t)
        if t - self._progress_t > self._patience():
            return self._recover(pose, t, points)
        self.status = NavStatus.DRIVING if t - self._progress_t < 1.0 else NavStatus.BLOCKED
        return cmd

    def _follow(self, pose: np.ndarray, v: float, points: np.ndarray | None, lock_cap: float):
        sc = self.cfg.safety
        # look as far as the stopping distance, but not past the next turn / the goal
        # (last tick's value): a shelf facing the end of a straight is not an obstacle
        cap = min(self.guard.speed_cap(pose, v, points, self._t, straight_m=self._straight_m), lock_cap,
                  self._junction_cap())
        cmd, prog = self.follower.step(pose, v, speed_cap=cap)
        self._straight_m = max(prog.straight_m, 0.0)
        if prog.rotating:
            cmd = self.guard.rotation(pose, points, cmd)
        return cmd, prog

    def blind_junction(self, prev: Cell, cell: Cell) -> bool:
        """Whether entering ``cell`` from the adjacent ``prev`` is a blind junction: a free
        side cell of ``cell`` (a lane joining) whose view is hidden by a blocked cell beside
        ``prev`` (a shelf corner or wall)."""
        key = (prev, cell)
        hit = self._blind.get(key)
        if hit is None:
            hit = self._blind[key] = blind_junction(self._free, prev, cell)
        return hit

    def _junction_cap(self) -> float:
        """Speed cap (m/s) that reaches ``junction_speed`` when the robot's front enters the
        next blind junction on the route (up to 3 cells ahead); inf if there is none."""
        sc, fol = self.cfg.safety, self.follower
        i = fol.progress_index
        if i < 0 or not self.route:
            return float("inf")
        cap = float("inf")
        half_cell, half_body = self.layout.cell_size / 2, sc.footprint_m / 2
        for j in range(max(i, 1), min(len(self.route), i + 4)):
            to_centre = fol.distance_to(j)
            if to_centre < 0.0 or not self.blind_junction(self.route[j - 1], self.route[j]):
                continue  # past its centre (crossing), or an ordinary cell
            gap = max(to_centre - half_cell - half_body, 0.0)  # front of the robot to the cell's edge
            cap = min(cap, junction_cap(gap, sc, self.cfg.follower.dt))
        return cap

    # ---- traffic rule ----------------------------------------------------------------
    def _footprint_cells(self, pose: np.ndarray) -> list[Cell]:
        """Cells the robot's footprint (plus a small margin) overlaps, own cell first."""
        h = self.cfg.safety.footprint_m / 2 + 0.05
        x, y = float(pose[0]), float(pose[1])
        own = self.cell_of(pose)
        out = [own]
        for dx in (-h, h):
            for dy in (-h, h):
                c = self.cell_of((x + dx, y + dy))
                if c not in out and self._free_at(c):
                    out.append(c)
        return out

    def _free_at(self, c: Cell) -> bool:
        h, w = self._free.shape
        return 0 <= c[0] < h and 0 <= c[1] < w and bool(self._free[c[0], c[1]])

    def _hold_footprint(self, pose: np.ndarray) -> None:
        cells = self._footprint_cells(pose)
        for c in cells:
            self.locks.acquire(self.robot_id, [c])
        self.locks.keep_only(self.robot_id, cells)

    def _update_locks(self, pose: np.ndarray, v: float) -> float:
        """Lock the route cells within the stopping window; returns the speed cap (m/s)
        that stops the robot at the centre of the last cell it holds."""
        pc, fc = self.cfg.planner, self.cfg.follower
        foot = self._footprint_cells(pose)
        idx = max(self.follower.progress_index, 0)
        window = v * v / (2 * fc.max_accel) + pc.lock_margin_m + self.layout.cell_size
        last = max(self.follower.last_index_within(window), idx)
        ahead = list(range(min(idx, len(self.route) - 1), min(last, len(self.route) - 1) + 1))
        n_ok = self.locks.acquire(self.robot_id, [self.route[k] for k in ahead])
        held = foot + [self.route[k] for k in ahead[:n_ok]]
        for c in foot:  # the footprint is ours unless another robot already holds a cell of it
            self.locks.acquire(self.robot_id, [c])
        self.locks.keep_only(self.robot_id, held)
        if n_ok == len(ahead):
            self.lock_blocker = None
            return float("inf")
        self.lock_blocker = self.route[ahead[n_ok]]
        last_ok = ahead[n_ok - 1] if n_ok > 0 else idx - 1
        if last_ok < 0:
            return 0.0
        return stopping_speed(self.follower.distance_to(last_ok), fc.max_accel, fc.dt)

    # ---- progress and recovery -------------------------------------------------------
    def _patience(self) -> float:
        rc = self.cfg.recovery
        return rc.patience_s + rc.patience_stagger_s * self.robot_id

    def _mark_progress(self, pose: np.ndarray, t: float) -> None:
        self._progress_xy = np.asarray(pose[:2], dtype=float).copy()
        self._progress_yaw = float(pose[2])
        self._progress_t = t

    def _update_progress(self, pose: np.ndarray, t: float) -> None:
        rc = self.cfg.recovery
        moved = np.hypot(*(pose[:2] - self._progress_xy)) >= rc.progress_m
        turned = abs(np.angle(np.exp(1j * (pose[2] - self._progress_yaw)))) >= rc.progress_yaw
        if moved or turned:
            self._mark_progress(pose, t)
        if self.replans and self.cell_of(pose) != self._recovery_cell:
            self.replans = 0  # moved on to another cell: the recovery worked

    def _recover(self, pose: np.ndarray, t: float, points: np.ndarray | None) -> TwistCmd:
        """Clear the blocking cells ahead into the costmap and replan; abort when exhausted."""
        self.replans += 1
        self.n_recoveries += 1
        self._recovery_cell = self.cell_of(pose)
        self._mark_progress(pose, t)
        if self.replans > self.cfg.recovery.max_replans:
            self.status = NavStatus.FAILED
            self.follower.clear()
            self.route = []
            self.res.release(self.robot_id)
            self.res.reserve_path(self.robot_id, [self.cell_of(pose)], self._step(t), hold_last=None)
            self._announce(self.robot_id, [self.cell_of(pose)])
            self._hold_footprint(pose)
            return STOP
        expiry = t + self.cfg.recovery.clear_decay_s
        for cell in self.blocking_cells(pose, points):
            self.cleared[cell] = expiry
        ok = self._plan(pose, t)
        self.status = NavStatus.BLOCKED if not ok else NavStatus.DRIVING
        return STOP

    def blocking_cells(self, pose: np.ndarray, points: np.ndarray | None) -> list[Cell]:
        """Cells ahead that block the robot: the cell another robot holds, else the cells of
        the lidar points in the forward corridor; with the lidar failed, the next route
        cell. Nothing visible (e.g. the robot itself does not move): no cell, plain replan."""
        own = self.cell_of(pose)
        if self.lock_blocker is not None and self.lock_blocker != own:
            return [self.lock_blocker]
        out: list[Cell] = []
        if points is not None and len(points):
            _, hits = forward_obstacle(points, self.cfg.safety, 1.5 * self.layout.cell_size)
            if len(hits):
                world = to_world(hits, pose)
                dyn = world[~self.guard.static.near(world)]
                for r, c in self.layout.xy_to_cell(dyn):
                    cell = (int(r), int(c))
                    if cell != own and bool(self.layout.is_free(np.array(cell))) and cell not in out:
                        out.append(cell)
        if points is None and self.route:  # lidar failed: assume the next route cell is blocked
            ahead = [c for c in self.route[max(self.follower.progress_index, 0):] if c != own]
            if ahead:
                out.append(ahead[0])
        return out
