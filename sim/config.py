"""Typed, frozen configuration of the warehouse simulator (SI units).

The hydra schema under ``configs/`` mirrors these dataclasses field by field; the
library only ever sees these objects. :func:`scenario` builds the named presets.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from sim.layout import LayoutConfig


@dataclass(frozen=True)
class WorldConfig:
    """Physics world.

    Attributes:
        physics_hz: physics rate (Hz); control_hz: control rate (Hz), a divisor of it.
        solver_iterations: constraint-solver iterations per physics step.
        shelf_height, wall_height: m.
        floor_friction: lateral friction of the floor.
        gui: open the PyBullet GUI.
    """

    physics_hz: float = 240.0
    control_hz: float = 20.0
    solver_iterations: int = 10
    shelf_height: float = 2.0
    wall_height: float = 2.0
    floor_friction: float = 0.8
    gui: bool = False


@dataclass(frozen=True)
class RobotConfig:
    """Differential-drive AMR.

    Attributes:
        size: footprint side (m); height: m; mass: kg.
        track_width: wheel separation (m); wheel_radius: m.
        max_speed: per-wheel ground speed limit, hence forward speed limit (m/s).
        max_yaw_rate: rad/s; max_accel: m/s^2; max_yaw_accel: rad/s^2.
        traction_mu: wheel-floor friction; drive force limit = mu * mass * g (N).
    """

    size: float = 0.6
    height: float = 0.3
    mass: float = 100.0
    track_width: float = 0.5
    wheel_radius: float = 0.1
    max_speed: float = 1.5
    max_yaw_rate: float = 3.0
    max_accel: float = 1.0
    max_yaw_accel: float = 3.0
    traction_mu: float = 0.5


@dataclass(frozen=True)
class OdomConfig:
    """Wheel encoders.

    Attributes:
        sigma_rel: relative Gaussian noise per wheel speed (fraction).
        sigma_abs: absolute noise per wheel ground speed (m/s) when the wheel turns.
        scale_error: std of the per-wheel radius error drawn at reset (fraction).
        slip_rate_hz: background slip bursts per robot per second (faults add more).
        slip_duration_s: (min, max) burst length (s).
        slip_gain: (min, max) extra wheel spin during a burst (fraction of true speed,
            plus 0.2 m/s of spin times the gain).
        spin_when_blocked: when the drive saturates (pushing an obstacle), the encoders
            read the commanded wheel speed.
    """

    enabled: bool = True
    sigma_rel: float = 0.02
    sigma_abs: float = 0.002
    scale_error: float = 0.01
    slip_rate_hz: float = 0.0
    slip_duration_s: tuple[float, float] = (0.5, 2.0)
    slip_gain: tuple[float, float] = (0.2, 0.6)
    spin_when_blocked: bool = True


@dataclass(frozen=True)
class ImuConfig:
    """Planar IMU. gyro_sigma rad/s; gyro_bias_walk rad/s/sqrt(s); accel_sigma m/s^2."""

    enabled: bool = True
    gyro_sigma: float = 0.005
    gyro_bias_walk: float = 1e-4
    gyro_bias_init: float = 0.002
    accel_sigma: float = 0.05


@dataclass(frozen=True)
class LidarConfig:
    """2D lidar at the robot centre.

    Attributes:
        n_beams: beams over ``fov`` (rad), counter-clockwise from ``-fov/2``.
        range_max: m; sigma: range noise (m); dropout_prob: per beam -> nan.
        mount_height: m above the floor.
    """

    enabled: bool = True
    n_beams: int = 180
    fov: float = 6.283185307179586
    range_max: float = 10.0
    sigma: float = 0.01
    dropout_prob: float = 0.005
    mount_height: float = 0.2


@dataclass(frozen=True)
class CameraConfig:
    """Forward RGB-D camera (ER_TINY_RENDERER), rendered every ``every_k`` control ticks.

    Off by default (slow). Between renders the frame's camera is None (absent).
    """

    enabled: bool = False
    width: int = 64
    height: int = 64
    fov_deg: float = 70.0
    near: float = 0.05
    far: float = 10.0
    every_k: int = 4
    mount_height: float = 0.35
    depth_sigma: float = 0.01


@dataclass(frozen=True)
class UwbConfig:
    """UWB ranging to ``layout.uwb_anchors``. sigma m; NLOS outliers add U(nlos_bias) m."""

    enabled: bool = True
    sigma: float = 0.07
    nlos_prob: float = 0.05
    nlos_bias: tuple[float, float] = (0.3, 1.0)
    tag_height: float = 0.35
    max_range: float = 60.0


@dataclass(frozen=True)
class FiducialConfig:
    """Downward floor-code reader: reads when within ``read_radius`` m of a code centre."""

    enabled: bool = True
    read_radius: float = 0.1
    sigma: float = 0.003
    yaw_sigma: float = 0.0034906585039886587  # 0.2 deg


@dataclass(frozen=True)
class LoadSensorConfig:
    enabled: bool = True


@dataclass(frozen=True)
class BumperConfig:
    """Contact bumper around the body (``SensorFrame.bumper``): no noise, no outages."""

    enabled: bool = True


@dataclass(frozen=True)
class SensorsConfig:
    odom: OdomConfig = field(default_factory=OdomConfig)
    imu: ImuConfig = field(default_factory=ImuConfig)
    lidar: LidarConfig = field(default_factory=LidarConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    uwb: UwbConfig = field(default_factory=UwbConfig)
    fiducial: FiducialConfig = field(default_factory=FiducialConfig)
    load: LoadSensorConfig = field(default_factory=LoadSensorConfig)
    bumper: BumperConfig = field(default_factory=BumperConfig)


@dataclass(frozen=True)
class OrdersConfig:
    """Order stream.

    Attributes:
        rate_per_min: Poisson release rate (orders/min, fleet-wide).
        n_initial: orders released at t = 0.
        order_deadline_s: deadline after release (s).
        max_open: no new Poisson release while this many orders wait unassigned.
        backlog_per_robot: saturated warehouse (``scenario=rush``): keep
            ``backlog_per_robot * n_robots`` open orders at all times, topped up every tick
            (RWARE's request queue, lifelong MAPF); 0 = off (Poisson stream only). With a
            backlog, open orders never expire and an order's service clock (its KPI release
            time and deadline) starts at its first assignment to a robot; ``max_open`` does
            not cap the backlog (see :mod:`sim.orders`).
        load_size: cube side of a load (m); load_mass: kg.
    """

    rate_per_min: float = 3.0
    n_initial: int = 2
    order_deadline_s: float = 120.0
    max_open: int = 30
    backlog_per_robot: int = 0
    load_size: float = 0.4
    load_mass: float = 10.0

    @staticmethod
    def rush() -> OrdersConfig:
        """Preset of ``scenario=rush``: a backlog of 2 open orders per robot, no Poisson stream."""
        return OrdersConfig(rate_per_min=0.0, n_initial=0, backlog_per_robot=2)


@dataclass(frozen=True)
class FaultsConfig:
    """Seeded exception injection. Rates are fleet-wide events per minute.

    Durations are (min, max) seconds drawn uniformly.
    """

    enabled: bool = False
    blocked_aisle_rate: float = 0.0
    blocked_aisle_duration: tuple[float, float] = (20.0, 60.0)
    load_drop_rate: float = 0.0
    sensor_outage_rate: float = 0.0
    sensor_outage_duration: tuple[float, float] = (3.0, 10.0)
    sensor_outage_kinds: tuple[str, ...] = ("lidar", "camera", "uwb", "fiducial")
    odom_slip_rate: float = 0.0
    odom_slip_duration: tuple[float, float] = (1.0, 4.0)
    breakdown_rate: float = 0.0
    breakdown_duration: tuple[float, float] = (5.0, 20.0)
    n_people: int = 0
    people_speed: float = 1.2
    people_pause_s: tuple[float, float] = (0.0, 5.0)

    @staticmethod
    def exceptions() -> FaultsConfig:
        """Preset: several exceptions of each kind per 300 s with 4 robots."""
        return FaultsConfig(
            enabled=True,
            blocked_aisle_rate=1.0,
            load_drop_rate=0.8,
            sensor_outage_rate=1.2,
            odom_slip_rate=0.8,
            breakdown_rate=0.8,
            n_people=2,
        )


Scenario = Literal["nominal", "exceptions", "rush"]


@dataclass(frozen=True)
class SimConfig:
    """Whole simulator.

    Attributes:
        n_robots: robots; duration_s: episode length (s).
        pick_tolerance: max distance robot centre - cell centre for pick/drop (m).
        pick_max_speed: max |v| for pick/drop (m/s).
        scenario: name recorded in reports.
    """

    layout: LayoutConfig = field(default_factory=LayoutConfig)
    n_robots: int = 4
    duration_s: float = 300.0
    world: WorldConfig = field(default_factory=WorldConfig)
    robot: RobotConfig = field(default_factory=RobotConfig)
    sensors: SensorsConfig = field(default_factory=SensorsConfig)
    orders: OrdersConfig = field(default_factory=OrdersConfig)
    faults: FaultsConfig = field(default_factory=FaultsConfig)
    pick_tolerance: float = 0.3
    pick_max_speed: float = 0.1
    scenario: str = "nominal"


def scenario(name: Scenario, **overrides: object) -> SimConfig:
    """Named preset ``nominal`` (no faults, no people), ``exceptions`` or ``rush``.

    ``rush`` is the saturated warehouse (``configs/scenario/rush.yaml``): 16 robots on the
    medium layout (``configs/layout/medium.yaml``), no faults, an order backlog of
    :meth:`OrdersConfig.rush` so that throughput is bounded by the fleet's coordination.

    Raises:
        ValueError: unknown name (one line naming the allowed values).
    """
    if name == "nominal":
        cfg = SimConfig()
    elif name == "exceptions":
        cfg = SimConfig(faults=FaultsConfig.exceptions(), scenario="exceptions")
    elif name == "rush":
        medium = LayoutConfig(shelf_rows=3, shelf_cols=5, n_stations=4, n_chargers=8, n_uwb_anchors=8)
        cfg = SimConfig(layout=medium, n_robots=16, orders=OrdersConfig.rush(), scenario="rush")
    else:
        raise ValueError(f"scenario: {name!r}; allowed 'nominal', 'exceptions', 'rush'")
    return replace(cfg, **overrides)  # type: ignore[arg-type]


def validate(cfg: SimConfig) -> None:
    """Fail fast on inconsistent values (ValueError naming the field)."""
    ratio = cfg.world.physics_hz / cfg.world.control_hz
    if cfg.world.control_hz <= 0 or abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
        raise ValueError(
            f"world.control_hz: {cfg.world.control_hz}; allowed a divisor of "
            f"world.physics_hz={cfg.world.physics_hz}"
        )
    if cfg.n_robots < 1:
        raise ValueError(f"n_robots: {cfg.n_robots}; allowed >= 1")
    if cfg.duration_s <= 0:
        raise ValueError(f"duration_s: {cfg.duration_s}; allowed > 0")
    if cfg.sensors.lidar.n_beams < 1:
        raise ValueError(f"sensors.lidar.n_beams: {cfg.sensors.lidar.n_beams}; allowed >= 1")
    if cfg.sensors.camera.every_k < 1:
        raise ValueError(f"sensors.camera.every_k: {cfg.sensors.camera.every_k}; allowed >= 1")
    fc = cfg.faults
    for name in (
        "blocked_aisle_rate",
        "load_drop_rate",
        "sensor_outage_rate",
        "odom_slip_rate",
        "breakdown_rate",
        "n_people",
        "people_speed",
    ):
        if getattr(fc, name) < 0:
            raise ValueError(f"faults.{name}: {getattr(fc, name)}; allowed >= 0")
    for name in (
        "blocked_aisle_duration",
        "sensor_outage_duration",
        "odom_slip_duration",
        "breakdown_duration",
        "people_pause_s",
    ):
        lo, hi = getattr(fc, name)
        if not 0 <= lo <= hi:
            raise ValueError(f"faults.{name}: ({lo}, {hi}); allowed 0 <= min <= max")
    if cfg.orders.backlog_per_robot < 0:
        raise ValueError(f"orders.backlog_per_robot: {cfg.orders.backlog_per_robot}; allowed >= 0")
    if cfg.orders.rate_per_min < 0 or cfg.orders.order_deadline_s <= 0:
        raise ValueError(
            "orders.rate_per_min / orders.order_deadline_s: allowed rate >= 0, deadline > 0"
        )
    bad = set(cfg.faults.sensor_outage_kinds) - {"lidar", "camera", "uwb", "fiducial"}
    if bad:
        raise ValueError(
            f"faults.sensor_outage_kinds: {sorted(bad)}; allowed lidar, camera, uwb, fiducial"
        )
