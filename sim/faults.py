"""Exception injection: the seeded schedule, the event log and walking people (pure numpy).

The world side effects (pallet bodies, dropped loads, people bodies) are applied by
:class:`sim.warehouse.WarehouseSim` through the :class:`sim.world.World` facade; this
module only decides *what* happens *when*, and holds the resolution bookkeeping.

Kinds: ``blocked_aisle``, ``load_dropped``, ``sensor_outage`` (detail = sensor),
``odom_slip``, ``breakdown``, ``people``. Resolution rules: docs/CONTRACTS_SIM.md; a
``breakdown`` resolves at its window end if the robot has no order then (or its order was
picked by another robot), else when the robot has moved ``BREAKDOWN_MOVE_M`` from where it
stood at the window end (see :meth:`FaultInjector._resolve_breakdown`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from sim.config import FaultsConfig
from sim.layout import Layout
from sim.layout import bfs_path as grid_bfs_path

Cell = tuple[int, int]
FAULT_KINDS: tuple[str, ...] = (
    "blocked_aisle",
    "load_dropped",
    "sensor_outage",
    "odom_slip",
    "breakdown",
)
EXCEPTION_KINDS: tuple[str, ...] = FAULT_KINDS + ("people",)
#: a broken-down robot with work counts as moving again after this distance (m) from
#: where it stood at the end of the breakdown window.
BREAKDOWN_MOVE_M: float = 0.2


@dataclass(frozen=True)
class PlannedFault:
    """A scheduled fault. t: s; robot: preferred target; duration: s; sensor: outage kind."""

    t: float
    kind: str
    robot: int
    duration: float
    sensor: str | None = None


@dataclass(frozen=True)
class ExceptionEvent:
    """One injected exception.

    Attributes:
        id: index in the episode's event list.
        kind: one of ``EXCEPTION_KINDS``.
        robot: the affected robot (None for none).
        onset_t: s. resolved_t: s, None while unresolved.
        cell: (row, col) where it happened (pallet cell, drop cell, breakdown cell).
        detail: sensor name for outages, free text otherwise.
        end_t: s, when the cause ends (pallet cleared, window over); None if open-ended.
    """

    id: int
    kind: str
    robot: int | None
    onset_t: float
    resolved_t: float | None = None
    cell: Cell | None = None
    detail: str = ""
    end_t: float | None = None

    @property
    def resolved(self) -> bool:
        return self.resolved_t is not None


def _poisson(rate_per_min: float, duration_s: float, rng: np.random.Generator) -> list[float]:
    out: list[float] = []
    if rate_per_min <= 0:
        return out
    t = 0.0
    while True:
        t += float(rng.exponential(60.0 / rate_per_min))
        if t >= duration_s:
            return out
        out.append(t)


def plan_faults(
    cfg: FaultsConfig, *, n_robots: int, duration_s: float, rng: np.random.Generator
) -> list[PlannedFault]:
    """Seeded fault schedule for one episode, sorted by time (empty when disabled)."""
    if not cfg.enabled:
        return []
    plans: list[PlannedFault] = []
    table = (
        ("blocked_aisle", cfg.blocked_aisle_rate, cfg.blocked_aisle_duration),
        ("load_dropped", cfg.load_drop_rate, (0.0, 0.0)),
        ("sensor_outage", cfg.sensor_outage_rate, cfg.sensor_outage_duration),
        ("odom_slip", cfg.odom_slip_rate, cfg.odom_slip_duration),
        ("breakdown", cfg.breakdown_rate, cfg.breakdown_duration),
    )
    for kind, rate, dur in table:
        for t in _poisson(rate, duration_s, rng):
            robot = int(rng.integers(n_robots))
            d = float(rng.uniform(dur[0], dur[1]))
            sensor = None
            if kind == "sensor_outage":
                sensor = str(
                    cfg.sensor_outage_kinds[int(rng.integers(len(cfg.sensor_outage_kinds)))]
                )
            plans.append(PlannedFault(t=t, kind=kind, robot=robot, duration=d, sensor=sensor))
    plans.sort(key=lambda f: (f.t, FAULT_KINDS.index(f.kind)))
    return plans


class FaultSchedule:
    """Pops planned faults as time passes; a fault that cannot apply yet is retried.

    Args:
        plans: from :func:`plan_faults`.
        patience_s: drop a fault that could not apply for this long (s).
    """

    def __init__(self, plans: Sequence[PlannedFault], patience_s: float = 30.0) -> None:
        self._todo = list(plans)
        self._retry: list[PlannedFault] = []
        self.patience_s = patience_s
        self.skipped: list[PlannedFault] = []

    def due(self, t: float) -> list[PlannedFault]:
        """Faults to try now: retries first, then newly due ones, in schedule order."""
        out = [f for f in self._retry if t - f.t <= self.patience_s]
        self.skipped += [f for f in self._retry if t - f.t > self.patience_s]
        self._retry = []
        while self._todo and self._todo[0].t <= t + 1e-9:
            out.append(self._todo.pop(0))
        return out

    def retry(self, fault: PlannedFault) -> None:
        """The fault could not apply now (e.g. no route announced); try again next tick."""
        self._retry.append(fault)

    @property
    def pending(self) -> int:
        return len(self._todo) + len(self._retry)


class EventLog:
    """Injected exceptions of one episode, in onset order."""

    def __init__(self) -> None:
        self._events: list[ExceptionEvent] = []

    @property
    def events(self) -> list[ExceptionEvent]:
        return list(self._events)

    def open(
        self,
        kind: str,
        robot: int | None,
        t: float,
        *,
        cell: Cell | None = None,
        detail: str = "",
        end_t: float | None = None,
    ) -> ExceptionEvent:
        ev = ExceptionEvent(
            id=len(self._events),
            kind=kind,
            robot=robot,
            onset_t=t,
            cell=cell,
            detail=detail,
            end_t=end_t,
        )
        self._events.append(ev)
        return ev

    def update(self, event_id: int, **kw: object) -> ExceptionEvent:
        ev = replace(self._events[event_id], **kw)  # type: ignore[arg-type]
        self._events[event_id] = ev
        return ev

    def resolve(self, event_id: int, t: float) -> None:
        if self._events[event_id].resolved_t is None:
            self.update(event_id, resolved_t=t)

    def unresolved(self, kind: str | None = None) -> list[ExceptionEvent]:
        return [
            e for e in self._events if e.resolved_t is None and (kind is None or e.kind == kind)
        ]


# ---- blocked aisles ---------------------------------------------------------------------


def route_index(route: np.ndarray, cell: Cell) -> int:
    """Index of ``cell`` in ``route`` [L, 2] (first match), or 0 if the robot is off-route."""
    if len(route) == 0:
        return 0
    hit = np.flatnonzero((route[:, 0] == cell[0]) & (route[:, 1] == cell[1]))
    return int(hit[0]) if len(hit) else 0


def choose_block_cell(
    route: np.ndarray,
    robot_cell: Cell,
    forbidden: set[Cell],
    *,
    min_ahead: int = 2,
    max_ahead: int = 6,
) -> Cell | None:
    """First route cell ``min_ahead..max_ahead`` cells ahead of the robot not in ``forbidden``."""
    k = route_index(route, robot_cell)
    for j in range(k + min_ahead, min(len(route), k + max_ahead + 1)):
        c = (int(route[j, 0]), int(route[j, 1]))
        if c not in forbidden:
            return c
    return None


def route_blocked(route: np.ndarray, robot_cell: Cell, pallet_cells: set[Cell]) -> bool:
    """True if a pallet lies on the part of ``route`` [L, 2] still ahead of the robot."""
    k = route_index(route, robot_cell)
    return any((int(r), int(c)) in pallet_cells for r, c in route[k:])


# ---- people -------------------------------------------------------------------------------


def bfs_path(
    layout: Layout, start: Cell, goal: Cell, blocked: frozenset[Cell] | set[Cell] = frozenset()
) -> list[Cell]:
    """4-connected shortest path start..goal over free cells not in ``blocked`` (empty if
    unreachable; ``start`` itself may be blocked): :func:`sim.layout.bfs_path` on the
    layout, with the blocked cells as a mask."""
    mask = None
    if blocked:
        mask = np.zeros(layout.shape, dtype=bool)
        cells = np.array(sorted(blocked), dtype=np.int64).reshape(-1, 2)
        ok = layout.in_bounds(cells)
        mask[cells[ok, 0], cells[ok, 1]] = True
    return grid_bfs_path(layout.free, start, goal, blocked=mask) or []


class PeopleWalker:
    """People walking between random free cells along aisles at ``speed``.

    A person pauses ``pause_s`` at each goal and, as people in a warehouse do for AMRs,
    halts while a robot is within ``yield_dist`` metres ahead in their walking direction:
    the robot's centre lies ahead (along the walking direction) with a gap of at most
    ``yield_dist`` between the person's front and the robot's circumscribed circle, and
    within ``lateral_m`` of their line of walking (robots in the next aisle row don't stop
    them). They yield, but robots must not count on it: after ``patience_s`` of yielding
    they step aside: a new goal reachable without crossing a cell holding a robot centre and
    not starting towards a robot in the yield zone (a few seeded draws; none found: stand
    still 1 s, then draw again). Deterministic given ``rng``.

    Args:
        layout: floor plan. n: people. speed: m/s. pause_s: (min, max) s.
        rng: generator. avoid: cells where nobody may start (robot start cells).
        yield_dist: free gap (m) in the walking direction below which a person halts.
        robot_radius: robot circumradius (m); person_half: half side of a person (m).
        lateral_m: max lateral offset (m) of a robot centre from the line of walking.
    """

    def __init__(
        self,
        layout: Layout,
        n: int,
        *,
        speed: float,
        pause_s: tuple[float, float],
        rng: np.random.Generator,
        avoid: Sequence[Cell] = (),
        yield_dist: float = 1.0,
        patience_s: float = 3.0,
        robot_radius: float = 0.3 * 2**0.5,
        person_half: float = 0.25,
        lateral_m: float = 0.8,
    ) -> None:
        self.layout, self.speed, self.pause_s, self.rng, self.yield_dist = (
            layout,
            speed,
            pause_s,
            rng,
            yield_dist,
        )
        self.patience_s = patience_s
        self.robot_radius, self.person_half, self.lateral_m = robot_radius, person_half, lateral_m
        free = [tuple(int(v) for v in c) for c in layout.free_cells]
        far = [
            c for c in free if all(abs(c[0] - a[0]) + abs(c[1] - a[1]) > 2 for a in avoid)
        ] or free
        starts = (
            [far[int(i)] for i in rng.choice(len(far), size=min(n, len(far)), replace=False)]
            if n
            else []
        )
        self._free = free
        self.xy = layout.cell_to_xy(np.array(starts, dtype=np.int64).reshape(-1, 2))  # [P, 2] m
        self._paths: list[list[Cell]] = [[] for _ in starts]
        self._wait = np.zeros(len(starts))
        self._yielded = np.zeros(len(starts))

    @property
    def n(self) -> int:
        return len(self.xy)

    def step(self, dt: float, robot_xy: np.ndarray) -> np.ndarray:
        """Advance everyone by ``dt`` s; returns positions [P, 2] (m)."""
        for i in range(self.n):
            if self._wait[i] > 0:
                self._wait[i] -= dt
                continue
            if not self._paths[i]:
                self._new_goal(i)
                continue
            self._advance(i, dt, robot_xy)
        return self.xy

    def _new_goal(self, i: int, robot_xy: np.ndarray | None = None, tries: int = 8) -> None:
        """Draw a new goal; with ``robot_xy`` (after yielding) step aside: a path that avoids
        robot cells and does not start towards a robot in the yield zone."""
        cur = tuple(int(v) for v in self.layout.xy_to_cell(self.xy[i]))
        centre = self.layout.cell_to_xy(np.array(cur))
        off_centre = np.hypot(*(centre - self.xy[i])) > 1e-9
        self._yielded[i] = 0.0
        blocked: set[Cell] = set()
        if robot_xy is not None and len(robot_xy):
            blocked = {(int(r), int(c)) for r, c in self.layout.xy_to_cell(robot_xy)}
            blocked.discard(cur)  # type: ignore[arg-type]
        for _ in range(tries if robot_xy is not None else 1):
            goal = self._free[int(self.rng.integers(len(self._free)))]
            path = bfs_path(self.layout, cur, goal, blocked)  # type: ignore[arg-type]
            path = path if off_centre else path[1:]
            if robot_xy is not None and path and self._robot_ahead(i, path[0], robot_xy):
                path = path[1:] if off_centre else []  # don't walk back towards the robot
                if path and self._robot_ahead(i, path[0], robot_xy):
                    path = []
            if path:
                self._paths[i] = path
                return
        self._paths[i] = []
        self._wait[i] = 1.0

    def _robot_ahead(self, i: int, cell: Cell, robot_xy: np.ndarray) -> bool:
        """A robot in the yield zone of person ``i`` walking towards ``cell``'s centre."""
        d = self.layout.cell_to_xy(np.array(cell)) - self.xy[i]
        dist = float(np.hypot(d[0], d[1]))
        if dist <= 1e-9 or len(robot_xy) == 0:
            return False
        u = d / dist
        rel = robot_xy - self.xy[i]
        ahead = rel @ u  # [N] m along the walking direction
        lateral = np.abs(rel[:, 0] * u[1] - rel[:, 1] * u[0])  # [N] m
        reach = self.person_half + self.yield_dist + self.robot_radius
        return bool(np.any((ahead > 0) & (ahead <= reach) & (lateral <= self.lateral_m)))

    def _advance(self, i: int, dt: float, robot_xy: np.ndarray) -> None:
        tgt = self.layout.cell_to_xy(np.array(self._paths[i][0]))
        d = tgt - self.xy[i]
        dist = float(np.hypot(d[0], d[1]))
        if dist > 1e-9 and self._robot_ahead(i, self._paths[i][0], robot_xy):
            self._yielded[i] += dt
            if self._yielded[i] > self.patience_s:
                self._new_goal(i, robot_xy)
            return
        step = self.speed * dt
        if dist <= step:
            self.xy[i] = tgt
            self._paths[i].pop(0)
            if not self._paths[i]:
                self._wait[i] = float(self.rng.uniform(*self.pause_s))
        else:
            self.xy[i] = self.xy[i] + d / dist * step


# ---- injector: applies the schedule to a running sim ---------------------------------------


@dataclass(frozen=True)
class FleetView:
    """What the injector may see of the fleet at one tick (ground truth, arrays [N, ...]).

    Attributes:
        t: s. xy: [N, 2] m. cells: [N, 2] (row, col). routes: announced routes [L_i, 2].
        carrying: [N] order id carried, -1 if none.
        active_order: [N] id of the robot's assigned/carried/dropped order, -1 if none.
        target_dist: [N] m from the robot to its order's next target (load or station), nan if none.
        order_status: order id -> status, for the orders in ``active_order`` and dropped ones.
        load_cells: cells where loads lie on the floor (dropped), to keep pallets off them.
    """

    t: float
    xy: np.ndarray
    cells: np.ndarray
    routes: tuple[np.ndarray, ...]
    carrying: np.ndarray
    active_order: np.ndarray
    target_dist: np.ndarray
    order_status: dict[int, str]
    load_cells: frozenset[Cell] = frozenset()


class FaultInjector:
    """Turns a :class:`FaultSchedule` into events, masks and world requests.

    World side effects are requested through the callbacks given to :meth:`tick`:
    ``add_pallet(name, cell)``, ``remove_pallet(name)``, ``drop_load(robot) -> order id``
    (-1: the robot carries nothing).
    The masks read by the sim each tick are ``failed`` (sensor -> [N] bool), ``slip`` [N]
    and ``broken`` [N] bool.

    Args:
        cfg: fault config. n_robots: N. layout: floor plan. rng: generator (durations, gains).
        slip_gain: (min, max) wheel spin fraction of odometry slip bursts.
        forbidden: cells never blocked by a pallet (stations, pick points).
        plans: explicit schedule instead of the seeded one (ignored when disabled).
        spawn_clearance_m: a blocked-aisle pallet never appears in a cell whose centre is
            this close (m) to a robot's centre. The simulator sets it to what a robot at top
            speed needs to stop short of the new pallet (half the robot, half the pallet, the
            braking distance, one control tick, 0.1 m): an obstacle that lands inside the
            braking distance is a collision no planner can avoid, not an exception to handle.
    """

    def __init__(
        self,
        cfg: FaultsConfig,
        *,
        n_robots: int,
        duration_s: float,
        layout: Layout,
        rng: np.random.Generator,
        slip_gain: tuple[float, float] = (0.2, 0.6),
        forbidden: Sequence[Cell] = (),
        plans: Sequence[PlannedFault] | None = None,
        spawn_clearance_m: float = 1.2,
    ) -> None:
        self.spawn_clearance_m = float(spawn_clearance_m)
        self.cfg, self.n, self.layout, self.rng, self.slip_gain = (
            cfg,
            n_robots,
            layout,
            rng,
            slip_gain,
        )
        if plans is None:
            plans = plan_faults(cfg, n_robots=n_robots, duration_s=duration_s, rng=rng)
        elif not cfg.enabled:
            plans = []
        self.schedule = FaultSchedule(sorted(plans, key=lambda f: (f.t, FAULT_KINDS.index(f.kind))))
        self.log = EventLog()
        self.forbidden = set(forbidden)
        self.failed = {k: np.zeros(n_robots, bool) for k in ("lidar", "camera", "uwb", "fiducial")}
        self.slip = np.zeros(n_robots)
        self.broken = np.zeros(n_robots, bool)
        self.pallets: dict[int, Cell] = {}  # event id -> cell of active pallets
        self._windows: dict[
            int, tuple[str, int, float, float]
        ] = {}  # eid -> (kind, robot, end, gain)
        self._info: dict[int, dict] = {}
        self._reported = np.zeros(n_robots, bool)
        self._near: dict[tuple[int, int], int] = {}  # (person, robot) -> open people event

    @property
    def events(self) -> list[ExceptionEvent]:
        return self.log.events

    def pallet_name(self, eid: int) -> str:
        return f"pallet_{eid}"

    # ---- per tick ---------------------------------------------------------------------
    def tick(self, view: FleetView, *, add_pallet, remove_pallet, drop_load) -> None:
        """Apply due faults, end finished windows, clear pallets; call before physics."""
        t = view.t
        for eid, cell in list(self.pallets.items()):
            if self.log.events[eid].end_t is not None and t >= self.log.events[eid].end_t:
                remove_pallet(self.pallet_name(eid))
                del self.pallets[eid]
        for f in self.schedule.due(t):
            if not self._apply(f, view, add_pallet, drop_load):
                self.schedule.retry(f)
        self.update_masks(t)

    def _apply(self, f: PlannedFault, view: FleetView, add_pallet, drop_load) -> bool:
        t, order = view.t, [(f.robot + k) % self.n for k in range(self.n)]
        if f.kind == "blocked_aisle":
            taken = self.forbidden | set(self.pallets.values()) | set(view.load_cells)
            taken |= self._cells_near(view.xy, self.spawn_clearance_m)  # nor inside braking distance
            for r in order:
                cell = choose_block_cell(
                    view.routes[r], tuple(int(v) for v in view.cells[r]), taken
                )
                if cell is not None:
                    ev = self.log.open("blocked_aisle", r, t, cell=cell, end_t=t + f.duration)
                    self.pallets[ev.id] = cell
                    self._info[ev.id] = {"cell0": tuple(int(v) for v in view.cells[r])}
                    add_pallet(self.pallet_name(ev.id), cell)
                    return True
            return False
        if f.kind == "load_dropped":
            for r in order:
                if view.carrying[r] >= 0:
                    oid = drop_load(r)
                    if oid < 0:  # already dropped by another fault this tick (stale view)
                        continue
                    cell = tuple(int(v) for v in view.cells[r])
                    ev = self.log.open("load_dropped", r, t, cell=cell, detail=f"order {oid}")
                    self._info[ev.id] = {"order": oid}
                    return True
            return False
        r = f.robot
        cell = tuple(int(v) for v in view.cells[r])
        if f.kind in ("sensor_outage", "odom_slip"):
            ev = self.log.open(
                f.kind, r, t, cell=cell, detail=f.sensor or "odom", end_t=t + f.duration
            )
            gain = float(self.rng.uniform(*self.slip_gain)) if f.kind == "odom_slip" else 0.0
            self._windows[ev.id] = (f.sensor or "odom", r, t + f.duration, gain)
            return True
        if f.kind == "breakdown":
            if self.broken[r]:
                return False
            ev = self.log.open("breakdown", r, t, cell=cell, end_t=t + f.duration)
            self._info[ev.id] = {"xy": view.xy[r].copy(), "order": int(view.active_order[r])}
            return True
        raise ValueError(f"fault kind: {f.kind!r}; allowed {FAULT_KINDS}")

    def _cells_near(self, xy: np.ndarray, radius: float) -> set[Cell]:
        """Cells whose centre lies within ``radius`` m of any point of ``xy`` [N, 2]."""
        cs = self.layout.cell_size
        k = int(np.ceil(radius / cs))
        out: set[Cell] = set()
        for r0, c0 in self.layout.xy_to_cell(xy):
            for dr in range(-k, k + 1):
                for dc in range(-k, k + 1):
                    c = (int(r0 + dr), int(c0 + dc))
                    centre = self.layout.cell_to_xy(np.array(c))
                    if np.min(np.hypot(*(xy - centre).T)) < radius:
                        out.add(c)
        return out

    def update_masks(self, t: float) -> None:
        """Recompute ``failed``, ``slip`` and ``broken`` for time ``t`` (s)."""
        for m in self.failed.values():
            m[:] = False
        self.slip[:] = 0.0
        for kind, r, end, gain in self._windows.values():
            if t < end:
                if kind == "odom":
                    self.slip[r] = max(self.slip[r], gain)
                elif kind in self.failed:
                    self.failed[kind][r] = True
        self.broken[:] = False
        for e in self.log.unresolved("breakdown"):
            if e.end_t is not None and t < e.end_t:
                self.broken[e.robot] = True

    # ---- resolution -------------------------------------------------------------------
    def resolve(self, view: FleetView) -> None:
        """Check the resolution rules; call after physics with the new ground truth."""
        t = view.t
        for e in self.log.unresolved():
            if e.kind == "blocked_aisle":
                self._resolve_blocked(e, view)
            elif e.kind in ("sensor_outage", "odom_slip"):
                if e.end_t is not None and t >= e.end_t and not self._reported[e.robot]:
                    self.log.resolve(e.id, e.end_t)
            elif e.kind == "breakdown":
                self._resolve_breakdown(e, view)
        self._windows = {
            k: w for k, w in self._windows.items() if t < w[2] or not self.log.events[k].resolved
        }

    def _resolve_blocked(self, e: ExceptionEvent, view: FleetView) -> None:
        r = e.robot
        cell = tuple(int(v) for v in view.cells[r])
        cleared = e.id not in self.pallets
        if cleared and cell == e.cell:
            self.log.resolve(e.id, view.t)
            return
        moved = cell != self._info[e.id]["cell0"]
        if moved and not route_blocked(view.routes[r], cell, set(self.pallets.values())):
            self.log.resolve(e.id, view.t)

    def _resolve_breakdown(self, e: ExceptionEvent, view: FleetView) -> None:
        """Breakdown resolution (docs/CONTRACTS_SIM.md), never before the window end ``end_t``.

        At the first check at or after ``end_t`` (the robot is driveable again) it resolves
        at ``end_t`` if the robot has no order (assigned, carried or dropped-to-re-pick), or
        if its order at onset was meanwhile reassigned to and picked by another robot.
        Otherwise it resolves at the first tick where the robot has moved
        ``BREAKDOWN_MOVE_M`` from where it stood at ``end_t`` (moving again), or where
        its onset order is carried/delivered by another robot, whichever comes first.
        """
        if e.end_t is None or view.t < e.end_t - 1e-9:
            return
        info, r = self._info[e.id], e.robot
        first = "xy_end" not in info
        if first:
            info["xy_end"] = view.xy[r].copy()
        t_res = e.end_t if first else view.t
        oid = info["order"]
        taken = (
            oid >= 0
            and int(view.active_order[r]) != oid
            and view.order_status.get(oid, "") in ("carried", "delivered")
        )
        idle = first and int(view.active_order[r]) < 0  # no order at window end
        if taken or idle:  # taken: reassigned to and picked by another robot
            self.log.resolve(e.id, t_res)
        elif float(np.hypot(*(view.xy[r] - info["xy_end"]))) >= BREAKDOWN_MOVE_M:
            self.log.resolve(e.id, view.t)  # moving again

    def watched_orders(self) -> list[int]:
        """Orders of robots with an unresolved breakdown (their status decides resolution)."""
        out = []
        for e in self.log.unresolved("breakdown"):
            oid = self._info[e.id]["order"]
            if oid >= 0:
                out.append(oid)
        return out

    def on_pick(self, order_id: int, t: float) -> None:
        """A load was picked: resolves its ``load_dropped`` exception."""
        for e in self.log.unresolved("load_dropped"):
            if self._info[e.id]["order"] == order_id:
                self.log.resolve(e.id, t)

    def on_pose_report(self, robot: int, healthy: bool, t: float) -> None:
        """A pose estimate was reported; ``healthy`` = health ok and error < 5 cm."""
        self._reported[robot] = True
        if not healthy:
            return
        for e in self.log.unresolved():
            if (
                e.robot == robot
                and e.kind in ("sensor_outage", "odom_slip")
                and e.end_t is not None
                and t >= e.end_t
            ):
                self.log.resolve(e.id, t)

    def people_encounters(
        self, t: float, people_xy: np.ndarray, robot_xy: np.ndarray, radius: float = 1.5
    ) -> None:
        """Log a ``people`` event while a person is within ``radius`` m of a robot."""
        if len(people_xy) == 0:
            return
        d = np.hypot(
            people_xy[:, None, 0] - robot_xy[None, :, 0],
            people_xy[:, None, 1] - robot_xy[None, :, 1],
        )
        for k, r in zip(*np.nonzero(d < radius)):
            if (int(k), int(r)) not in self._near:
                cell = tuple(int(v) for v in self.layout.xy_to_cell(people_xy[k]))
                self._near[(int(k), int(r))] = self.log.open(
                    "people", int(r), t, cell=cell, detail=f"person {k}"
                ).id
        for key, eid in list(self._near.items()):
            if d[key] >= radius:
                self.log.resolve(eid, t)
                del self._near[key]
