"""The warehouse simulator: world + robots + sensors + orders + faults + KPIs, composed.

API contract: docs/CONTRACTS_SIM.md. One control tick (``dt = 1 / control_hz``) runs
``physics_hz / control_hz`` physics steps. Ground truth (``ground_truth()``, ``kpis()``,
``render_state()``) is for KPIs, plots and tests; agents see only ``SensorFrame`` s.

Example:
    >>> from sim.warehouse import WarehouseSim, SimConfig
    >>> from sim.types import TwistCmd
    >>> sim = WarehouseSim(SimConfig(n_robots=2, duration_s=5.0), seed=0)
    >>> frames = sim.reset()
    >>> frames = sim.step([TwistCmd(0.5, 0.0), TwistCmd(0.0, 0.0)])
    >>> sim.close()
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from typing_extensions import Self

from sim.config import FaultsConfig, SimConfig, validate
from sim.faults import ExceptionEvent, FaultInjector, FleetView, PeopleWalker, PlannedFault
from sim.kpis import KpiReport, build_report
from sim.layout import Layout, generate_layout
from sim.orders import Order, OrderBook
from sim.robot import DiffDrive, twist_to_wheels, world_velocity
from sim.sensors import Sensors, TruthTick
from sim.types import Pose, SensorFrame, TwistCmd, wrap_angle
from sim.world import RobotBodySpec, World

__all__ = ["SimConfig", "SimRenderState", "WarehouseSim"]

Cell = tuple[int, int]
_COLLISION_OF = {
    "robot": "robot_robot",
    "static": "robot_static",
    "person": "robot_person",
    "pallet": "robot_pallet",
}
_STREAMS = ("sensors", "orders", "faults", "people")


PALLET_HALF = 0.42  # a pallet's half side, in cells


def _outages_of_enabled_sensors(cfg: SimConfig) -> FaultsConfig:
    """Outage faults only for sensors that are on (a camera outage with the camera off is no event)."""
    on = {k: getattr(cfg.sensors, k).enabled for k in ("lidar", "camera", "uwb", "fiducial")}
    kinds = tuple(k for k in cfg.faults.sensor_outage_kinds if on[k])
    rate = cfg.faults.sensor_outage_rate if kinds else 0.0
    return replace(cfg.faults, sensor_outage_kinds=kinds or ("lidar",), sensor_outage_rate=rate)


def pallet_spawn_clearance(cfg: SimConfig, cell_size: float) -> float:
    """Distance (m) from a robot's centre inside which no blocked-aisle pallet appears:
    half the robot + half a pallet + the braking distance at top speed + one control tick
    at top speed + 0.1 m (2.0 m at the defaults: 0.3 + 0.42 + 1.125 + 0.075 + 0.1)."""
    r = cfg.robot
    v = r.max_speed
    return (r.size / 2 + PALLET_HALF * cell_size + v * v / (2 * r.max_accel)
            + v / cfg.world.control_hz + 0.1)


@dataclass(frozen=True)
class SimRenderState:
    """Drawable snapshot (attribute names follow ``sim.render.RenderState``).

    Attributes:
        time: s. poses: [N, 3] (x, y, yaw). carrying: [N] bool.
        load_cells: [L, 2] cells of loads waiting (open/assigned/dropped orders).
        pallets: [P, 2] cells blocked by pallets. people: [Q, 2] m.
        routes: N announced routes [K, 2]. broken: [N] bool (breakdown).
    """

    time: float
    poses: np.ndarray
    carrying: np.ndarray
    load_cells: np.ndarray
    pallets: np.ndarray
    people: np.ndarray
    routes: tuple[np.ndarray, ...]
    broken: np.ndarray


class WarehouseSim:
    """PyBullet warehouse with N differential-drive robots.

    Args:
        cfg: simulator config (frozen dataclass tree).
        seed: episode seeds derive from it; ``reset(seed)`` replaces it.
        layout: a prebuilt layout (default: ``generate_layout(cfg.layout)``).
        world: a :class:`World` to build into (default: a new one per ``cfg.world``).
        start_poses: [N, 3] (x, y, yaw) start poses (default: ``layout.start_cells``, yaw 0).
        fault_plan: explicit fault schedule replacing the seeded one (scripted scenarios,
            tests); used only when ``cfg.faults.enabled``.
    """

    def __init__(
        self,
        cfg: SimConfig | None = None,
        seed: int = 0,
        *,
        layout: Layout | None = None,
        world: World | None = None,
        start_poses: np.ndarray | None = None,
        fault_plan: Sequence[PlannedFault] | None = None,
    ) -> None:
        cfg = cfg if cfg is not None else SimConfig()
        validate(cfg)
        self.cfg = cfg
        self.layout = layout if layout is not None else generate_layout(cfg.layout)
        self.layout.validate(cfg.n_robots)
        self.n_robots = cfg.n_robots
        self.dt = 1.0 / cfg.world.control_hz
        self._substeps = round(cfg.world.physics_hz / cfg.world.control_hz)
        self._world = (
            world
            if world is not None
            else World(
                gui=cfg.world.gui,
                physics_hz=cfg.world.physics_hz,
                solver_iterations=cfg.world.solver_iterations,
            )
        )
        self._sensors = Sensors(
            cfg.sensors, layout=self.layout, robot=cfg.robot, n_robots=self.n_robots, dt=self.dt
        )
        self._drive = DiffDrive(cfg.robot, self.n_robots, self.dt)
        rc = cfg.robot
        self._spec = RobotBodySpec(
            size=rc.size,
            height=rc.height,
            mass=rc.mass,
            max_force=rc.traction_mu * rc.mass * 9.81,
            max_torque=rc.traction_mu * rc.mass * 9.81 * rc.track_width / 2,
        )
        self._names = [f"robot_{i}" for i in range(self.n_robots)]
        if start_poses is None:
            start_poses = np.zeros((self.n_robots, 3))
            start_poses[:, :2] = self.layout.cell_to_xy(self.layout.start_cells(self.n_robots))
        self._start_poses = np.asarray(start_poses, dtype=np.float64).reshape(-1, 3)
        if len(self._start_poses) != self.n_robots:
            raise ValueError(
                f"start_poses: {len(self._start_poses)} poses; allowed n_robots={self.n_robots}"
            )
        self._fault_plan = None if fault_plan is None else list(fault_plan)
        self._seed = int(seed)
        self._episode = 0
        self._frames = self._start_episode()
        self._fresh = True

    # ---- episode ---------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> list[SensorFrame]:
        """Start an episode; with ``seed`` None the next episode of the current seed.

        The world is rebuilt from scratch, so (seed, commands) fully determine the episode.
        """
        if seed is not None:
            self._seed, self._episode = int(seed), 0
        elif not self._fresh:
            self._episode += 1
        self._fresh = False
        self._frames = self._start_episode()
        return self._frames

    def _start_episode(self) -> list[SensorFrame]:
        cfg, lay, w = self.cfg, self.layout, self._world
        seqs = np.random.SeedSequence(self._seed, spawn_key=(self._episode,)).spawn(len(_STREAMS))
        ss = dict(zip(_STREAMS, seqs))
        w.reset()
        w.add_floor(friction=cfg.world.floor_friction)
        walls = lay.occupancy & ~lay.shelves
        w.add_grid_boxes(
            "wall", walls, lay.cell_size, cfg.world.wall_height, rgba=(0.35, 0.35, 0.4, 1.0)
        )
        w.add_grid_boxes(
            "shelf",
            lay.shelves,
            lay.cell_size,
            cfg.world.shelf_height,
            rgba=(0.63, 0.44, 0.26, 1.0),
        )
        for k, (x, y) in enumerate(lay.cell_to_xy(lay.stations)):
            w.add_marker(
                f"station_{k}", [0.45 * lay.cell_size, 0.45 * lay.cell_size, 0.001], [x, y, 0.001]
            )
        for name, (x, y, yaw) in zip(self._names, self._start_poses):
            w.add_robot(name, float(x), float(y), float(yaw), self._spec)
        self._robot_ids = [w.body(n) for n in self._names]
        self._robot_index = {b: i for i, b in enumerate(self._robot_ids)}
        self._bumper = np.zeros((self.n_robots, 4), bool)
        self.time, self._tick = 0.0, 0
        self._drive.reset()
        self._sensors.reset(ss["sensors"])
        self._orders = OrderBook(
            cfg.orders, lay, cfg.duration_s, np.random.default_rng(ss["orders"]),
            n_robots=self.n_robots,
        )
        self._carrying = np.full(self.n_robots, -1, dtype=np.int64)
        forbidden = [
            tuple(int(v) for v in c) for c in np.concatenate([lay.stations, lay.pick_points])
        ]
        self._faults = FaultInjector(
            _outages_of_enabled_sensors(cfg),
            n_robots=self.n_robots,
            duration_s=cfg.duration_s,
            layout=lay,
            rng=np.random.default_rng(ss["faults"]),
            slip_gain=cfg.sensors.odom.slip_gain,
            forbidden=forbidden,
            plans=self._fault_plan,
            spawn_clearance_m=pallet_spawn_clearance(cfg, lay.cell_size),
        )
        n_people = cfg.faults.n_people if cfg.faults.enabled else 0
        self._people = PeopleWalker(
            lay,
            n_people,
            speed=cfg.faults.people_speed,
            pause_s=cfg.faults.people_pause_s,
            rng=np.random.default_rng(ss["people"]),
            avoid=[tuple(int(v) for v in c) for c in lay.xy_to_cell(self._start_poses[:, :2])],
            robot_radius=cfg.robot.size / np.sqrt(2.0),
        )
        for k, (x, y) in enumerate(self._people.xy):
            w.add_box(
                f"person_{k}",
                [0.25, 0.25, 0.85],
                [x, y, 0.85],
                kind="person",
                rgba=(0.6, 0.2, 0.7, 1.0),
            )
        self._routes: list[np.ndarray] = [np.zeros((0, 2), np.int64) for _ in range(self.n_robots)]
        self._pose_log: list[tuple[int, np.ndarray, np.ndarray]] = []
        self._collisions = {k: 0 for k in _COLLISION_OF.values()}
        self.collision_log: list[tuple[float, int, str, str]] = []  # (t, robot, kind, other body)
        self._contacts: set[tuple[int, int]] = set()
        self._distance = np.zeros(self.n_robots)
        self._n_expired = 0
        self._release_orders()
        self._state = w.robot_states(self._names)
        return self._sense(np.zeros((self.n_robots, 2)))

    # ---- properties ------------------------------------------------------------------
    @property
    def done(self) -> bool:
        """Episode time is up (``time >= cfg.duration_s``)."""
        return self.time >= self.cfg.duration_s - 1e-9

    @property
    def orders(self) -> list[Order]:
        return self._orders.orders

    @property
    def events(self) -> list[ExceptionEvent]:
        return self._faults.events

    @property
    def world(self) -> World:
        """The physics facade (tests, benchmarks and tools only; agents must not use it)."""
        return self._world

    @property
    def collisions(self) -> dict[str, int]:
        """Collision counts so far per kind (robot_robot, robot_static, robot_person, robot_pallet)."""
        return dict(self._collisions)

    @property
    def frames(self) -> list[SensorFrame]:
        """The latest frames (as returned by the last reset/step)."""
        return self._frames

    def ground_truth(self) -> np.ndarray:
        """[N, 3] true (x, y, yaw) (m, rad, yaw wrapped to (-pi, pi])."""
        gt = self._state[:, :3].copy()
        gt[:, 2] = wrap_angle(gt[:, 2])
        return gt

    def initial_poses(self) -> np.ndarray:
        """[N, 3] the robots' docked start poses (x, y, yaw) of this episode (m, rad).

        What an operator knows at start-up (like AMCL's initial pose); controllers read this,
        never :meth:`ground_truth`.
        """
        return np.asarray(self._start_poses, dtype=np.float64)[:, :3].copy()

    def velocities(self) -> np.ndarray:
        """[N, 3] true (v forward m/s, lateral m/s, w rad/s) in the body frame."""
        yaw = self._state[:, 2]
        c, s = np.cos(yaw), np.sin(yaw)
        vx, vy = self._state[:, 3], self._state[:, 4]
        return np.stack([c * vx + s * vy, -s * vx + c * vy, self._state[:, 5]], axis=-1)

    def robot_cells(self) -> np.ndarray:
        """[N, 2] (row, col) of the robot centres."""
        return self.layout.xy_to_cell(self._state[:, :2])

    def broken(self) -> np.ndarray:
        """[N] bool robots currently broken down (ignoring commands)."""
        return self._faults.broken.copy()

    # ---- control tick ----------------------------------------------------------------
    def step(self, cmds: Sequence[TwistCmd]) -> list[SensorFrame]:
        """Advance one control tick with one twist command per robot.

        Raises:
            ValueError: ``len(cmds) != n_robots``.
        """
        if len(cmds) != self.n_robots:
            raise ValueError(
                f"cmds: {len(cmds)} commands; allowed exactly n_robots={self.n_robots}"
            )
        w = self._world
        faults_on = self.cfg.faults.enabled
        if faults_on:
            self._faults.tick(
                self._view(),
                add_pallet=self._add_pallet,
                remove_pallet=w.remove,
                drop_load=self._drop_load,
            )
        v_cmd = np.array([c.v for c in cmds], dtype=np.float64)
        w_cmd = np.array([c.w for c in cmds], dtype=np.float64)
        v, om = self._drive.update(v_cmd, w_cmd, ~self._faults.broken)
        vx, vy = world_velocity(self._state[:, 2], v, om, self.dt)
        for i, name in enumerate(self._names):
            w.drive(name, float(vx[i]), float(vy[i]), float(om[i]))
        if self._people.n:
            for k, (x, y) in enumerate(self._people.step(self.dt, self._state[:, :2])):
                w.set_pose(f"person_{k}", (x, y, 0.85))
        w.step(self._substeps)
        self._tick += 1
        self.time = self._tick * self.dt
        prev = self._state
        self._state = w.robot_states(self._names)
        self._distance += np.hypot(self._state[:, 0] - prev[:, 0], self._state[:, 1] - prev[:, 1])
        self._contacts_tick()
        self._release_orders()
        if faults_on:
            self._faults.update_masks(self.time)  # sensor windows as of this frame's stamp
            self._faults.resolve(self._view())
        if self._people.n:
            self._faults.people_encounters(self.time, self._people.xy, self._state[:, :2])
        self._frames = self._sense(prev[:, 3:5])
        return self._frames

    def _sense(self, prev_vel: np.ndarray) -> list[SensorFrame]:
        wheel_cmd = twist_to_wheels(self._drive.v, self._drive.w, self.cfg.robot.track_width)
        tt = TruthTick(
            t=self.time,
            tick=self._tick,
            state=self._state,
            prev_vel=prev_vel,
            wheel_cmd=wheel_cmd,
            carrying=self._carrying >= 0,
            failed=self._faults.failed,
            slip=self._faults.slip,
            bumper=self._bumper,
        )
        return self._sensors.read(self._world, tt)

    def _contacts_tick(self) -> None:
        """One ``getContactPoints`` for the whole world: count collision onsets and set the
        pressed bumper sectors ``self._bumper`` [N, 4] (front, left, back, right)."""
        w = self._world
        con = w.contacts()
        self._bumper = np.zeros((self.n_robots, 4), bool)
        if len(con) == 0:
            self._contacts = set()
            return
        # one row per robot side of a contact point: robot index, other body, and the push
        # direction from the robot towards the other body (the contact normal, so the corner
        # points of a face contact count for that face only)
        ra = self._robot_index.get
        idx_a = np.fromiter((ra(b, -1) for b in con.body_a.tolist()), np.int64, len(con))
        idx_b = np.fromiter((ra(b, -1) for b in con.body_b.tolist()), np.int64, len(con))
        rob = np.concatenate([idx_a, idx_b])
        other = np.concatenate([con.body_b, con.body_a])
        towards = np.concatenate([-con.normal_b, con.normal_b])[:, :2]  # normal_b: B -> A
        keep = rob >= 0
        rob, other, towards = rob[keep], other[keep], towards[keep]
        keep = np.array([w.kind_of(b) in _COLLISION_OF for b in other.tolist()], dtype=bool)
        if not keep.any():  # e.g. only loads resting on the floor
            self._contacts = set()
            return
        rob, other, d = rob[keep], other[keep], towards[keep]
        yaw = self._state[rob, 2]
        c, s = np.cos(yaw), np.sin(yaw)
        bearing = np.arctan2(-s * d[:, 0] + c * d[:, 1], c * d[:, 0] + s * d[:, 1])  # robot frame
        sector = np.floor((bearing + np.pi / 4) / (np.pi / 2)).astype(np.int64) % 4
        self._bumper[rob, sector] = True
        # collision onsets: robots in index order, other bodies by id (one count per pair)
        now: set[tuple[int, int]] = set()
        for i, b in sorted(set(zip(rob.tolist(), other.tolist()))):
            me = self._robot_ids[i]
            key = (min(me, b), max(me, b))
            if key in now:
                continue  # robot-robot pair seen from the other robot
            now.add(key)
            if key not in self._contacts:
                kind = _COLLISION_OF[w.kind_of(b)]  # type: ignore[index]
                self._collisions[kind] += 1
                self.collision_log.append((self.time, i, kind, w.name_of(b) or ""))
        self._contacts = now

    # ---- orders ----------------------------------------------------------------------
    def _release_orders(self) -> None:
        oc, cs = self.cfg.orders, self.layout.cell_size
        for o in self._orders.release_due(self.time):
            shelf = self.layout.cell_to_xy(np.array(o.shelf_cell))
            face = self.layout.cell_to_xy(np.array(o.pick_cell)) - shelf
            xy = shelf + face / max(np.hypot(*face), 1e-9) * (cs / 2 - oc.load_size / 2 - 0.02)
            half = oc.load_size / 2
            self._world.add_box(
                f"load_{o.id}",
                [half] * 3,
                [xy[0], xy[1], half],
                mass=oc.load_mass,
                kind="load",
                rgba=(0.92, 0.69, 0.16, 1.0),
            )
        for o in self._orders.expire_due(self.time):
            self._n_expired += 1
            self._world.remove(f"load_{o.id}")

    def assign(self, order_id: int, robot_id: int) -> None:
        """Assign (or reassign) an order to a robot (WMS call).

        Raises:
            ValueError: unknown order, order not assignable, robot out of range or
                carrying another load.
        """
        self._check_robot(robot_id)
        self._orders.assign(order_id, robot_id)

    def _at(self, robot_id: int, cell: Cell) -> bool:
        xy = self.layout.cell_to_xy(np.array(cell))
        v = self.velocities()[robot_id, 0]
        return (
            float(np.hypot(*(self._state[robot_id, :2] - xy))) <= self.cfg.pick_tolerance
            and abs(v) < self.cfg.pick_max_speed
        )

    def pick(self, robot_id: int) -> bool:
        """Attach the robot's assigned (or dropped) order's load if it stands at the load cell."""
        self._check_robot(robot_id)
        o = self._orders.active_of(robot_id)
        if (
            o is None
            or o.status not in ("assigned", "dropped")
            or self._carrying[robot_id] >= 0
            or self._faults.broken[robot_id]
            or o.load_cell is None
            or not self._at(robot_id, o.load_cell)
        ):
            return False
        h = self.cfg.robot.height / 2 + self.cfg.orders.load_size / 2 + 1e-3
        load = f"load_{o.id}"
        self._world.set_kind_filter(load, "load", collide=False)
        self._world.attach(f"carry_{robot_id}", self._names[robot_id], load, (0.0, 0.0, h))
        self._orders.picked(o.id, robot_id, self.time)
        self._carrying[robot_id] = o.id
        self._faults.on_pick(o.id, self.time)
        return True

    def drop(self, robot_id: int) -> bool:
        """Deliver the carried load if the robot stands at its order's station cell."""
        self._check_robot(robot_id)
        oid = int(self._carrying[robot_id])
        if oid < 0 or self._faults.broken[robot_id]:
            return False
        o = self._orders.get(oid)
        if not self._at(robot_id, o.station_cell):
            return False
        self._world.detach(f"carry_{robot_id}")
        self._world.remove(f"load_{oid}")
        self._orders.delivered(oid, self.time)
        self._carrying[robot_id] = -1
        return True

    def _drop_load(self, robot_id: int) -> int:
        """Fault: the carried load falls to the floor under the robot. Returns the order id,
        -1 if the robot carries nothing (e.g. its load already fell earlier this tick)."""
        oid = int(self._carrying[robot_id])
        if oid < 0:
            return -1
        half = self.cfg.orders.load_size / 2
        load = f"load_{oid}"
        self._world.detach(f"carry_{robot_id}")
        self._world.set_pose(
            load,
            (self._state[robot_id, 0], self._state[robot_id, 1], half),
            float(self._state[robot_id, 2]),
        )
        self._world.set_kind_filter(load, "load", collide=True)
        cell = tuple(int(v) for v in self.robot_cells()[robot_id])
        self._orders.dropped(oid, cell)
        self._carrying[robot_id] = -1
        return oid

    # ---- fleet manager / localisation ------------------------------------------------
    def announce_route(self, robot_id: int, cells: Sequence[tuple[int, int]] | np.ndarray) -> None:
        """Share a robot's planned route (cells ahead, first = current or next cell)."""
        self._check_robot(robot_id)
        arr = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
        if len(arr) and not self.layout.in_bounds(arr).all():
            raise ValueError(
                f"cells: route of robot {robot_id} leaves the grid {self.layout.shape}"
            )
        arr.setflags(write=False)
        self._routes[robot_id] = arr

    def report_pose_estimate(self, robot_id: int, pose: Pose) -> None:
        """Log a pose estimate for the localisation KPI and exception resolution."""
        self._check_robot(robot_id)
        est = np.array([pose.x, pose.y, pose.yaw], dtype=np.float64)
        truth = self.ground_truth()[robot_id]
        self._pose_log.append((robot_id, est, truth))
        err = float(np.hypot(*(est[:2] - truth[:2])))
        self._faults.on_pose_report(robot_id, pose.health == "ok" and err < 0.05, self.time)

    def _check_robot(self, robot_id: int) -> None:
        if not 0 <= int(robot_id) < self.n_robots:
            raise ValueError(f"robot_id: {robot_id}; allowed 0..{self.n_robots - 1}")

    # ---- faults ----------------------------------------------------------------------
    def _add_pallet(self, name: str, cell: Cell) -> None:
        cs = self.layout.cell_size
        xy = self.layout.cell_to_xy(np.array(cell))
        self._world.add_box(
            name,
            [PALLET_HALF * cs, PALLET_HALF * cs, 0.6],
            [xy[0], xy[1], 0.6],
            kind="pallet",
            rgba=(0.8, 0.2, 0.18, 1.0),
        )

    def _view(self) -> FleetView:
        active = np.full(self.n_robots, -1, dtype=np.int64)
        dist = np.full(self.n_robots, np.nan)
        status: dict[int, str] = {}
        loads: set[Cell] = set()
        for o in self._orders.orders:
            if o.status == "dropped" and o.load_cell is not None:
                loads.add(o.load_cell)
            if o.robot is None or o.status not in ("assigned", "carried", "dropped"):
                continue
            status[o.id] = o.status
            active[o.robot] = o.id
            tgt = o.station_cell if o.status == "carried" else o.load_cell
            dist[o.robot] = float(
                np.hypot(*(self._state[o.robot, :2] - self.layout.cell_to_xy(np.array(tgt))))
            )
        for oid in self._faults.watched_orders():  # orders of broken robots, even if reassigned
            status[oid] = self._orders.get(oid).status
        return FleetView(
            t=self.time,
            xy=self._state[:, :2],
            cells=self.robot_cells(),
            routes=tuple(self._routes),
            carrying=self._carrying.copy(),
            active_order=active,
            target_dist=dist,
            order_status=status,
            load_cells=frozenset(loads),
        )

    # ---- reports ---------------------------------------------------------------------
    def kpis(self) -> KpiReport:
        """KPIs of the episode so far (at the end: of the episode)."""
        if self._pose_log:
            rob = np.array([r for r, _, _ in self._pose_log], dtype=np.int64)
            est = np.stack([e for _, e, _ in self._pose_log])
            tru = np.stack([t for _, _, t in self._pose_log])
        else:
            rob, est, tru = np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros((0, 3))
        return build_report(
            t_end=self.time,
            n_robots=self.n_robots,
            scenario=self.cfg.scenario,
            orders=self._orders.arrays(),
            n_expired=self._n_expired,
            deadline_s=self.cfg.orders.order_deadline_s,
            events=self.events,
            pose_est=est,
            pose_truth=tru,
            pose_robot=rob,
            collisions=self._collisions,
            distance_m=self._distance,
        )

    def render_state(self) -> SimRenderState:
        """Drawable snapshot for ``sim.render.render_topdown``."""
        loads = [
            o.load_cell
            for o in self._orders.orders
            if o.status in ("open", "assigned", "dropped") and o.load_cell is not None
        ]
        return SimRenderState(
            time=self.time,
            poses=self.ground_truth(),
            carrying=self._carrying >= 0,
            load_cells=np.array(loads, dtype=np.int64).reshape(-1, 2),
            pallets=np.array(list(self._faults.pallets.values()), dtype=np.int64).reshape(-1, 2),
            people=self._people.xy.copy(),
            routes=tuple(self._routes),
            broken=self._faults.broken.copy(),
        )

    def render(self, width_px: int = 480) -> np.ndarray:
        """[H, W, 3] uint8 top-down image (``sim.render.render_topdown``)."""
        from sim.render import render_topdown

        return render_topdown(self.layout, self.render_state(), width_px)

    def close(self) -> None:
        """Release the physics client; idempotent."""
        self._world.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
