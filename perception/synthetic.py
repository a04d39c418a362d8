"""Pure-numpy synthetic robots and sensors for localization and blockage tests.

Ground truth: each robot drives grid routes through the layout's free cells the way
Kiva-style robots do (rotate in place, drive straight between cell centres with
trapezoidal speed profiles and a small heading wobble, pause at goals), integrated at
``substeps`` per control period. Sensor readings follow the conventions of
``sim.types`` and of the PyBullet sensors:

* odometry (the simulator's wheel model): the true mean (v, w) of the period ending at
  the stamp become left / right wheel speeds, slip bursts spin them (``wheels * (1 + gain) + 0.2 gain``),
  relative + absolute noise, per-wheel radius scale errors, back to (v, w);
* IMU: gyro = mean w + bias (random walk) + noise, accel = (dv/dt, v w) + noise;
* lidar: exact grid ray casting against ``Layout.occupancy`` plus active box obstacles
  and the other robots' footprints, Gaussian range noise, ``nan`` dropouts, ``+inf``
  beyond range (REP 117);
* UWB: 3D ranges from a tag at ``tag_height`` to every anchor, Gaussian noise, NLOS
  outliers with a positive bias;
* floor fiducial: when the robot centre is within ``fiducial_radius`` of a code,
  (dx, dy, yaw) with mm / sub-degree noise.

Faults: outage windows (a sensor is ``None``), slip bursts, kidnapping (teleport to a
random free cell without any odometry). Everything is drawn from the ``rng`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from perception.motion import wrap
from perception.raycast import raycast_boxes, raycast_grid
from sim.layout import ROBOT_FOOTPRINT_M, Layout, bfs_path
from sim.types import (
    FiducialReading,
    ImuReading,
    LidarScan,
    OdomReading,
    Pose,
    SensorFrame,
    UwbReading,
)

SENSORS: tuple[str, ...] = ("odom", "imu", "lidar", "uwb", "fiducial")


@dataclass(frozen=True)
class NoiseProfile:
    """Sensor noise of the synthetic robot (SI units); defaults mirror ``sim.config``."""

    odom_sigma_rel: float = 0.02  # relative noise per wheel speed
    odom_sigma_abs: float = 0.002  # m/s per wheel, when it turns
    wheel_scale_sigma: float = 0.01  # std of each wheel's radius scale error
    track_width: float = 0.5  # m
    gyro_sigma: float = 0.005  # rad/s
    gyro_bias_sigma: float = 0.002  # rad/s initial bias std
    gyro_bias_walk: float = 1e-4  # rad/s/sqrt(s)
    accel_sigma: float = 0.05  # m/s^2
    lidar_beams: int = 180
    lidar_fov: float = 2 * np.pi  # rad
    lidar_range: float = 10.0  # m
    lidar_sigma: float = 0.01  # m
    lidar_dropout: float = 0.005  # probability of a nan beam
    uwb_every: int = 1  # UWB every n-th frame
    uwb_sigma: float = 0.07  # m
    uwb_outlier_prob: float = 0.05  # NLOS probability per range
    uwb_outlier_bias: tuple[float, float] = (0.3, 1.0)  # m, uniform positive bias
    uwb_tag_height: float = 0.35  # m
    fiducial_radius: float = 0.1  # m
    fiducial_sigma: float = 0.003  # m
    fiducial_yaw_sigma: float = float(np.deg2rad(0.2))  # rad
    fiducial_read_prob: float = 1.0


@dataclass(frozen=True)
class Outage:
    """Sensor ``sensor`` absent over ``[t0, t1)`` s (all robots when ``robot`` is None)."""

    sensor: str
    t0: float
    t1: float
    robot: int | None = None


@dataclass(frozen=True)
class SlipBurst:
    """Wheel spin over ``[t0, t1)`` s: wheel speeds read ``(1 + gain)`` times too fast."""

    t0: float
    t1: float
    gain: float = 0.4
    robot: int | None = None


@dataclass(frozen=True)
class Kidnap:
    """Robot ``robot`` is teleported to a random free cell at time ``t`` (s)."""

    t: float
    robot: int = 0


@dataclass(frozen=True)
class BoxObstacle:
    """An axis-aligned box (m) present over ``[t0, t1)`` s (an injected blockage)."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float
    t0: float = 0.0
    t1: float = float("inf")

    def cells(self, cell_size: float) -> np.ndarray:
        """[C, 2] (row, col) layout cells the box overlaps."""
        c0, c1 = int(np.floor(self.xmin / cell_size)), int(np.ceil(self.xmax / cell_size))
        r0, r1 = int(np.floor(self.ymin / cell_size)), int(np.ceil(self.ymax / cell_size))
        return np.array(
            [(r, c) for r in range(r0, r1) for c in range(c0, c1)], dtype=np.int64
        ).reshape(-1, 2)

    def active(self, t: float) -> bool:
        return self.t0 <= t < self.t1


@dataclass(frozen=True)
class ScenarioConfig:
    """A synthetic episode: duration, robot dynamics, noise and injected faults."""

    duration_s: float = 30.0
    dt: float = 0.05  # s, control period (20 Hz)
    substeps: int = 10
    n_robots: int = 1
    v_max: float = 1.0  # m/s
    accel: float = 1.0  # m/s^2
    w_max: float = 1.5  # rad/s
    yaw_accel: float = 3.0  # rad/s^2
    wobble: float = float(np.deg2rad(0.5))  # rad, heading wobble amplitude while driving
    pause_prob: float = 0.3
    see_other_robots: bool = True
    init_sigma: tuple[float, float, float] = (0.01, 0.01, 0.005)  # initial pose error std
    noise: NoiseProfile = field(default_factory=NoiseProfile)
    outages: tuple[Outage, ...] = ()
    slip_bursts: tuple[SlipBurst, ...] = ()
    kidnaps: tuple[Kidnap, ...] = ()
    obstacles: tuple[BoxObstacle, ...] = ()
    start_cells: tuple[tuple[int, int], ...] | None = None  # (row, col) per robot


@dataclass(frozen=True)
class RobotRun:
    """One robot's episode.

    Attributes:
        robot_id: robot index.
        frames: T sensor frames at ``stamps``.
        truth: [T, 3] true (x, y, yaw) at each frame stamp.
        stamps: [T] seconds.
        initial_pose: pose given to the localizer at t = 0 (truth plus noise, with cov).
        wheel_scales: true (left, right) wheel radius scale factors.
        gyro_bias: [T] true gyro bias (rad/s).
        outages: outage windows that apply to this robot.
        kidnap_times: seconds at which the robot was teleported.
    """

    robot_id: int
    frames: tuple[SensorFrame, ...]
    truth: np.ndarray
    stamps: np.ndarray
    initial_pose: Pose
    wheel_scales: tuple[float, float]
    gyro_bias: np.ndarray
    outages: tuple[Outage, ...] = ()
    kidnap_times: tuple[float, ...] = ()


@dataclass(frozen=True)
class Scenario:
    """Generated runs of all robots plus the injected obstacles (blockage ground truth)."""

    config: ScenarioConfig
    runs: tuple[RobotRun, ...]
    obstacles: tuple[BoxObstacle, ...] = field(default=())


# ---- profiles -----------------------------------------------------------------------------


def nominal_config(duration_s: float = 30.0, n_robots: int = 1) -> ScenarioConfig:
    """Nominal sensors (the simulator's defaults): every modality on, 5% UWB NLOS outliers,
    2% wheel-speed noise, 1% per-wheel scale errors."""
    return ScenarioConfig(duration_s=duration_s, n_robots=n_robots)


def degraded_config(duration_s: float = 60.0, n_robots: int = 1) -> ScenarioConfig:
    """One modality out at a time (UWB, lidar, fiducial, IMU, odometry), 5% UWB outliers,
    three two-second wheel-spin bursts (gain 0.4), one of them during the lidar outage."""
    d = duration_s
    outs = (
        Outage("uwb", 0.10 * d, 0.25 * d),
        Outage("lidar", 0.30 * d, 0.45 * d),
        Outage("fiducial", 0.50 * d, 0.65 * d),
        Outage("imu", 0.70 * d, 0.80 * d),
        Outage("odom", 0.85 * d, 0.92 * d),
    )
    slips = tuple(SlipBurst(t, t + 2.0) for t in (0.2 * d, 0.4 * d, 0.6 * d))
    return ScenarioConfig(duration_s=d, n_robots=n_robots, outages=outs, slip_bursts=slips)


# ---- trajectories -----------------------------------------------------------------------


def _profile(dist: float, vmax: float, acc: float, dt_f: float) -> np.ndarray:
    """Trapezoidal speed samples (>= 0) whose sum * dt_f equals ``dist`` exactly."""
    if dist <= 1e-9:
        return np.zeros(0)
    if dist < vmax * vmax / acc:
        total = 2.0 * np.sqrt(dist / acc)
    else:
        total = 2.0 * vmax / acc + (dist - vmax * vmax / acc) / vmax
    n = max(int(np.ceil(total / dt_f)), 1)
    t = (np.arange(n) + 0.5) * (total / n)
    v = np.minimum(np.minimum(acc * t, acc * (total - t)), vmax)
    return v * (dist / (v.sum() * dt_f))


def _corners(path: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Keep only the cells where the path turns (and the goal)."""
    out = []
    for i in range(1, len(path)):
        if i == len(path) - 1:
            out.append(path[i])
            continue
        d0 = (path[i][0] - path[i - 1][0], path[i][1] - path[i - 1][1])
        d1 = (path[i + 1][0] - path[i][0], path[i + 1][1] - path[i][1])
        if d0 != d1:
            out.append(path[i])
    return out


class _Driver:
    """Generates the fine-step (v, w) commands and the integrated true poses of one robot."""

    def __init__(
        self,
        layout: Layout,
        cfg: ScenarioConfig,
        free: np.ndarray,
        start: tuple[int, int],
        rng: np.random.Generator,
    ) -> None:
        self.layout, self.cfg, self.free, self.rng = layout, cfg, free, rng
        self.dt_f = cfg.dt / cfg.substeps
        xy = layout.cell_to_xy(np.array(start))
        self.pose = np.array([xy[0], xy[1], rng.integers(4) * np.pi / 2 - np.pi / 2])
        self.cell = start
        self.v: list[np.ndarray] = []
        self.w: list[np.ndarray] = []
        self.poses: list[np.ndarray] = [self.pose[None].copy()]
        self.n = 0  # fine samples so far
        self.t_drive = 0.0

    def _emit(self, v: np.ndarray, w: np.ndarray) -> None:
        if len(v) == 0:
            return
        dt = self.dt_f
        yaw = self.pose[2] + np.cumsum(w) * dt
        mid = yaw - 0.5 * w * dt
        x = self.pose[0] + np.cumsum(v * np.cos(mid)) * dt
        y = self.pose[1] + np.cumsum(v * np.sin(mid)) * dt
        poses = np.stack([x, y, yaw], axis=-1)
        self.poses.append(poses)
        self.pose = poses[-1].copy()
        self.v.append(v)
        self.w.append(w)
        self.n += len(v)

    def rotate_to(self, heading: float) -> None:
        ang = float(wrap(heading - self.pose[2]))
        w = _profile(abs(ang), self.cfg.w_max, self.cfg.yaw_accel, self.dt_f) * np.sign(ang)
        self._emit(np.zeros_like(w), w)

    def drive_to(self, xy: np.ndarray) -> None:
        d = xy - self.pose[:2]
        self.rotate_to(float(np.arctan2(d[1], d[0])))
        v = _profile(float(np.hypot(*d)), self.cfg.v_max, self.cfg.accel, self.dt_f)
        t = self.t_drive + np.arange(len(v)) * self.dt_f
        self.t_drive += len(v) * self.dt_f
        f = 0.5  # Hz
        w = self.cfg.wobble * 2 * np.pi * f * np.cos(2 * np.pi * f * t) * (v > 0.05)
        self._emit(v, w)

    def wait(self, seconds: float) -> None:
        n = round(seconds / self.dt_f)
        self._emit(np.zeros(n), np.zeros(n))

    def teleport(self, rng: np.random.Generator) -> None:
        cells = np.argwhere(self.free)
        far = cells[np.hypot(*(cells - np.array(self.cell)).T) >= 3.0]
        c = far[rng.integers(len(far))] if len(far) else cells[rng.integers(len(cells))]
        xy = self.layout.cell_to_xy(c)
        self.pose = np.array([xy[0], xy[1], rng.integers(4) * np.pi / 2 - np.pi / 2])
        self.cell = (int(c[0]), int(c[1]))
        self.poses[-1] = self.poses[-1].copy()
        self.poses[-1][-1] = self.pose  # the jump happens at the current sample

    def errand(self) -> None:
        """Drive to a random reachable free cell along a BFS path; maybe pause there."""
        reach = np.argwhere(self.free)
        goal = tuple(int(v) for v in reach[self.rng.integers(len(reach))])
        for c in _corners(bfs_path(self.free, self.cell, goal) or [self.cell]):
            self.drive_to(self.layout.cell_to_xy(np.array(c)))
            self.cell = c
        if self.rng.random() < self.cfg.pause_prob:
            self.wait(float(self.rng.uniform(0.2, 1.5)))


def _drive(
    layout: Layout,
    cfg: ScenarioConfig,
    free: np.ndarray,
    start: tuple[int, int],
    kidnaps: list[float],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fine-step commands (v [Nf], w [Nf]) and poses [Nf + 1, 3] covering the duration."""
    drv = _Driver(layout, cfg, free, start, rng)
    n_need = round(cfg.duration_s / drv.dt_f) + cfg.substeps
    pending = sorted(kidnaps)
    while drv.n < n_need:
        if pending and drv.n * drv.dt_f >= pending[0]:
            pending.pop(0)
            drv.teleport(rng)
        drv.errand()
        if pending and drv.n * drv.dt_f > pending[0]:
            # cut the trajectory at the kidnap time and teleport there
            k = int(np.ceil(pending[0] / drv.dt_f))
            v, w, p = (
                np.concatenate(drv.v)[:k],
                np.concatenate(drv.w)[:k],
                np.concatenate(drv.poses)[: k + 1],
            )
            drv.v, drv.w, drv.poses, drv.n = [v], [w], [p], k
            drv.pose = p[-1].copy()
            drv.cell = tuple(int(c) for c in layout.xy_to_cell(drv.pose[:2]))
    return (
        np.concatenate(drv.v)[:n_need],
        np.concatenate(drv.w)[:n_need],
        np.concatenate(drv.poses)[: n_need + 1],
    )


# ---- sensors ------------------------------------------------------------------------------


def _covers(windows: tuple, t: float, robot: int) -> list:
    return [o for o in windows if o.t0 <= t < o.t1 and (o.robot is None or o.robot == robot)]


def _robot_box(xy: np.ndarray) -> np.ndarray:
    h = 0.5 * ROBOT_FOOTPRINT_M
    return np.array([xy[0] - h, xy[1] - h, xy[0] + h, xy[1] + h])


class _Sensors:
    """Noisy readings of one robot, given its true motion."""

    def __init__(
        self, layout: Layout, cfg: ScenarioConfig, robot: int, rng: np.random.Generator
    ) -> None:
        self.layout, self.cfg, self.nz, self.robot, self.rng = layout, cfg, cfg.noise, robot, rng
        self.scales = 1.0 + rng.normal(0.0, self.nz.wheel_scale_sigma, 2)  # (left, right)
        self.bias = rng.normal(0.0, self.nz.gyro_bias_sigma)
        n = self.nz.lidar_beams
        full = self.nz.lidar_fov >= 2 * np.pi - 1e-9
        self.angles = -0.5 * self.nz.lidar_fov + np.arange(n) * self.nz.lidar_fov / (
            n if full else n - 1
        )
        self.prev_v = 0.0

    def odom(self, v: float, w: float, t: float) -> OdomReading:
        """The simulator's wheel model at the stamp's velocities."""
        nz, rng = self.nz, self.rng
        half = 0.5 * nz.track_width * w
        wheels = np.array([v - half, v + half])
        gain = sum(b.gain for b in _covers(self.cfg.slip_bursts, t, self.robot))
        wheels = wheels * (1.0 + gain) + 0.2 * gain * np.sign(wheels)
        noise = wheels * rng.normal(0.0, nz.odom_sigma_rel, 2) + rng.normal(
            0.0, nz.odom_sigma_abs, 2
        )
        meas = (wheels + noise * (np.abs(wheels) > 1e-4)) * self.scales
        return OdomReading(
            v=float(0.5 * (meas[0] + meas[1])),
            w=float((meas[1] - meas[0]) / nz.track_width),
            dt=self.cfg.dt,
        )

    def imu(self, v: float, w: float) -> ImuReading:
        nz, rng = self.nz, self.rng
        self.bias += rng.normal(0, nz.gyro_bias_walk * np.sqrt(self.cfg.dt))
        acc = np.array([(v - self.prev_v) / self.cfg.dt, v * w]) + rng.normal(0, nz.accel_sigma, 2)
        self.prev_v = v
        return ImuReading(gyro_z=float(w + self.bias + rng.normal(0, nz.gyro_sigma)), accel=acc)

    def lidar(self, pose: np.ndarray, boxes: np.ndarray) -> LidarScan:
        nz, rng = self.nz, self.rng
        world = pose[2] + self.angles
        r = raycast_grid(
            self.layout.occupancy, self.layout.cell_size, pose[:2], world, nz.lidar_range
        )
        if len(boxes):
            r = np.minimum(r, raycast_boxes(pose[:2], world, boxes))
        r = r + rng.normal(0, nz.lidar_sigma, len(r))
        r[r > nz.lidar_range] = np.inf
        r[rng.random(len(r)) < nz.lidar_dropout] = np.nan
        return LidarScan(angles=self.angles.copy(), ranges=r, range_max=nz.lidar_range)

    def uwb(self, pose: np.ndarray) -> UwbReading:
        nz, rng = self.nz, self.rng
        a = self.layout.uwb_anchors
        tag = np.array([pose[0], pose[1], nz.uwb_tag_height])
        r = np.linalg.norm(a - tag, axis=1) + rng.normal(0, nz.uwb_sigma, len(a))
        out = rng.random(len(a)) < nz.uwb_outlier_prob
        r[out] += rng.uniform(*nz.uwb_outlier_bias, int(out.sum()))
        return UwbReading(anchor_ids=np.arange(len(a), dtype=np.int64), ranges=np.maximum(r, 0.0))

    def fiducial(self, pose: np.ndarray) -> FiducialReading | None:
        nz, rng = self.nz, self.rng
        f = self.layout.fiducials
        if len(f) == 0:
            return None
        d = np.hypot(f[:, 0] - pose[0], f[:, 1] - pose[1])
        i = int(np.argmin(d))
        if d[i] > nz.fiducial_radius or rng.random() > nz.fiducial_read_prob:
            return None
        dx, dy = pose[:2] - f[i] + rng.normal(0, nz.fiducial_sigma, 2)
        yaw = wrap(pose[2] + rng.normal(0, nz.fiducial_yaw_sigma))
        return FiducialReading(marker_id=i, dx=float(dx), dy=float(dy), yaw=float(yaw))


def _frames(
    layout: Layout,
    cfg: ScenarioConfig,
    robot: int,
    motion: tuple,
    others: list[np.ndarray],
    rng: np.random.Generator,
) -> tuple[list[SensorFrame], np.ndarray, np.ndarray, float]:
    v_f, w_f, poses_f = motion
    sens = _Sensors(layout, cfg, robot, rng)
    n_frames = round(cfg.duration_s / cfg.dt)
    s = cfg.substeps
    frames, truth, bias = [], np.zeros((n_frames, 3)), np.zeros(n_frames)
    for k in range(1, n_frames + 1):
        t = round(k * cfg.dt, 9)
        pose = poses_f[k * s].copy()
        pose[2] = wrap(pose[2])
        # period means: the simulator's velocity motors hold each tick's speed, so its
        # odometry and gyro are the mean speeds of the period ending at the stamp
        v, w = float(v_f[(k - 1) * s : k * s].mean()), float(w_f[(k - 1) * s : k * s].mean())
        off = {o.sensor for o in _covers(cfg.outages, t, robot)}
        boxes = [np.array([b.xmin, b.ymin, b.xmax, b.ymax]) for b in cfg.obstacles if b.active(t)]
        if cfg.see_other_robots:
            boxes += [_robot_box(p[k * s, :2]) for p in others]
        readings = {
            "odom": sens.odom(v, w, t),
            "imu": sens.imu(v, w),
            "lidar": sens.lidar(pose, np.array(boxes).reshape(-1, 4)),
            "uwb": sens.uwb(pose) if k % cfg.noise.uwb_every == 0 else None,
            "fiducial": sens.fiducial(pose),
        }
        readings = {name: (None if name in off else r) for name, r in readings.items()}
        frames.append(SensorFrame(stamp=t, robot_id=robot, load=False, **readings))
        truth[k - 1] = pose
        bias[k - 1] = sens.bias
    return frames, truth, bias, (float(sens.scales[0]), float(sens.scales[1]))


def generate_scenario(layout: Layout, cfg: ScenarioConfig, rng: np.random.Generator) -> Scenario:
    """Draw ground truth and sensor readings of ``cfg.n_robots`` robots.

    Args:
        layout: the warehouse.
        cfg: episode definition.
        rng: the only source of randomness.

    Returns:
        The scenario; frame k (1-based) is stamped ``k * cfg.dt`` and its odometry covers
        ``[(k-1) dt, k dt]``; the initial pose is stamped 0.
    """
    free = layout.free.copy()
    for b in cfg.obstacles:  # robots route around injected obstacles
        for r, c in b.cells(layout.cell_size):
            if 0 <= r < free.shape[0] and 0 <= c < free.shape[1]:
                free[r, c] = False
    cand = np.argwhere(free)
    starts = cfg.start_cells or tuple(
        tuple(int(v) for v in cand[i]) for i in rng.choice(len(cand), cfg.n_robots, replace=False)
    )
    motions = []
    for i in range(cfg.n_robots):
        kid = [k.t for k in cfg.kidnaps if k.robot == i]
        motions.append(_drive(layout, cfg, free, starts[i], kid, rng))
    runs = []
    for i in range(cfg.n_robots):
        others = [motions[j][2] for j in range(cfg.n_robots) if j != i]
        frames, truth, bias, scales = _frames(layout, cfg, i, motions[i], others, rng)
        p0 = motions[i][2][0]
        guess = p0 + rng.normal(0, 1, 3) * np.array(cfg.init_sigma)
        init = Pose(
            x=float(guess[0]),
            y=float(guess[1]),
            yaw=float(wrap(guess[2])),
            cov=np.diag(np.square(cfg.init_sigma) * 4.0),
            stamp=0.0,
        )
        runs.append(
            RobotRun(
                robot_id=i,
                frames=tuple(frames),
                truth=truth,
                stamps=np.array([f.stamp for f in frames]),
                initial_pose=init,
                wheel_scales=scales,
                gyro_bias=bias,
                outages=tuple(o for o in cfg.outages if o.robot is None or o.robot == i),
                kidnap_times=tuple(k.t for k in cfg.kidnaps if k.robot == i),
            )
        )
    return Scenario(config=cfg, runs=tuple(runs), obstacles=cfg.obstacles)
