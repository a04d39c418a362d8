"""Typed configuration, counters, estimate records and internal bookkeeping of
:class:`perception.Localizer`.

SI units throughout; PSD = power spectral density of a continuous white-noise process.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from perception import motion as mm
from perception.scan_match import ScanMatchConfig
from sim.types import Health, Pose

SENSOR_NAMES: tuple[str, ...] = ("odom", "imu", "lidar", "uwb", "fiducial")
KINDS: tuple[str, ...] = ("ekf", "ukf", "dead_reckoning")


@dataclass(frozen=True)
class LocalizerConfig:
    """Typed configuration of a :class:`Localizer` (SI units; PSD = power spectral density)."""

    kind: Literal["ekf", "ukf", "dead_reckoning"] = "ekf"
    # process noise
    accel_psd: float = 0.05  # (m/s)^2/s, forward acceleration (no IMU accel)
    use_accel: bool = True  # drive v with the IMU's forward acceleration when present
    imu_accel_sigma: float = 0.2  # m/s^2, accelerometer noise + vibration
    aided_accel_psd: float = 1e-4  # (m/s)^2/s, extra v random walk when IMU-aided
    impact_accel: float = 3.0  # m/s^2; a larger |accel| is a collision (robot limit ~1-2.3)
    impact_w_sigma: float = 2.0  # rad/s extra yaw-rate std on an impact
    impact_pos_sigma: float = 0.03  # m extra position std per period after an impact
    impact_yaw_sigma: float = 0.02  # rad extra yaw std per period after an impact
    impact_hold_s: float = 0.5  # s the extra pose noise lasts after an impact (sliding)
    gyro_relock: int = 1  # consecutive gyro rejections before the yaw-rate state is reopened
    yaw_accel_psd: float = 0.2  # (rad/s)^2/s
    gyro_bias_psd: float = 1e-7  # (rad/s)^2/s
    wheel_scale_psd: float = 1e-7  # 1/s
    wheel_asym_psd: float = 1e-7  # (rad/m)^2/s
    pos_psd: float = 1e-6  # m^2/s, pose model error (arc approximation, floor bumps)
    yaw_psd: float = 1e-7  # rad^2/s
    # measurement noise
    # odometry noise in wheel space (differential drive): each wheel's ground speed has
    # std sqrt(odom_wheel_sigma_abs^2 + (odom_wheel_sigma_rel * speed)^2), mapped to (v, w)
    odom_track_width: float = 0.5  # m
    odom_wheel_sigma_rel: float = 0.03  # fraction of wheel speed (noise + slip)
    odom_wheel_sigma_abs: float = 0.005  # m/s per wheel
    odom_velocity: Literal["mean", "end"] = (
        "mean"  # odometry/gyro: period mean (simulator) or at the stamp
    )
    gyro_sigma: float = 0.005  # rad/s
    uwb_sigma: float = 0.08  # m
    uwb_tag_height: float = 0.35  # m (the simulator's tag)
    uwb_max_range: float = 200.0  # m, longer is malformed
    fiducial_sigma: float = 0.005  # m
    fiducial_yaw_sigma: float = float(np.deg2rad(0.3))  # rad
    fiducial_max_offset: float = 0.5  # m, larger (dx, dy) is malformed
    # lidar scan matching
    lidar_period_s: float = 0.0  # s between matches (0 = every scan)
    lidar_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)  # lidar pose in robot frame
    lidar_min_fitness: float = 0.5  # inlier fraction below this: match rejected
    lidar_max_prior_pos_std: float = 0.3  # m, wider prior: no local match (basin)
    lidar_max_prior_yaw_std: float = 0.2  # rad
    field_resolution: float = 0.02  # m, signed distance field pixel
    scan: ScanMatchConfig = field(default_factory=ScanMatchConfig)
    # initial uncertainty (used when the initial pose carries no covariance)
    init_pos_std: float = 0.05
    init_yaw_std: float = 0.02
    init_v_std: float = 0.1
    init_w_std: float = 0.1
    init_gyro_bias_std: float = 0.01
    init_wheel_scale_std: float = 0.02
    init_wheel_asym_std: float = 0.05  # rad/m
    # gates (chi-square probabilities)
    gate_odom: float = 0.999
    gate_imu: float = 0.99999  # the gyro is the yaw-rate witness: only gross faults fail
    gate_uwb: float = 0.99
    gate_fiducial: float = 0.999
    gate_lidar: float = 0.999
    # time-outs (s); fiducials have none
    timeout_odom: float = 0.25
    timeout_imu: float = 0.25
    timeout_lidar: float = 0.5
    timeout_uwb: float = 1.0
    # health
    degraded_pos_std: float = 0.03  # m
    lost_pos_std: float = 0.5  # m
    degraded_yaw_std: float = float(np.deg2rad(2.0))
    lost_yaw_std: float = float(np.deg2rad(30.0))
    degraded_rejections: int = 3  # consecutive rejections of one exteroceptive sensor
    kidnap_rejections: int = 10  # consecutive lidar / UWB-majority rejections -> lost
    kidnap_fiducials: int = 2  # consecutive rejected fiducial readings -> lost
    # bounded recovery from small persistent pose innovations (see Localizer._recover)
    recover_after: int = 2  # consecutive rejections of a good pose measurement
    recover_max_offset: float = 0.3  # m
    recover_max_yaw: float = float(np.deg2rad(15.0))  # rad
    recover_min_fitness: float = 0.7  # scan matches must fit at least this well
    # relocalization
    reloc_min_anchors: int = 4
    reloc_chi2_prob: float = 0.99
    reloc_min_fitness: float = 0.7
    reloc_yaw_seeds: int = 16
    # time handling
    history_s: float = 1.0  # replay window for late frames (0 = reject late frames)
    max_dt: float = 1.0  # s, longest single prediction
    # UKF sigma points (Van der Merwe)
    ukf_alpha: float = 1.0
    ukf_beta: float = 2.0
    ukf_kappa: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"localization.kind: {self.kind!r}; allowed {', '.join(KINDS)}")
        for name in (
            "uwb_sigma",
            "fiducial_sigma",
            "gyro_sigma",
            "odom_wheel_sigma_abs",
            "odom_track_width",
            "max_dt",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"localization.{name}: {getattr(self, name)}; allowed > 0")
        for name in ("gate_odom", "gate_imu", "gate_uwb", "gate_fiducial", "gate_lidar"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"localization.{name}: {getattr(self, name)}; allowed in (0, 1)")
        if self.odom_velocity not in ("end", "mean"):
            raise ValueError(
                f"localization.odom_velocity: {self.odom_velocity!r}; allowed end, mean"
            )
        if self.history_s < 0 or self.lidar_period_s < 0:
            raise ValueError("localization.history_s / lidar_period_s: allowed >= 0")


@dataclass(frozen=True)
class LocalizerStats:
    """Counters of one localizer (snapshot).

    Attributes:
        frames: frames processed (not counting replays).
        accepted / rejected: measurement components per sensor passed / failed the gate
            (UWB: per range; lidar: per scan match, a poor fit counts as rejected).
        malformed: readings (or UWB entries) dropped as malformed, per sensor and "frame".
        timeouts: transitions into the timed-out state, per sensor.
        timed_out: sensors timed out now.
        late_replayed: late frames inserted by replay. late_dropped: too late / duplicates.
        numerical_resets: restores of the last good estimate.
        covariance_repairs: eigenvalue clamps of P.
        relocalizations: accepted relocalizations. kidnaps_detected: lost-by-rejection events.
        recoveries: bounded covariance recoveries (small persistent pose innovations).
    """

    frames: int
    accepted: Mapping[str, int]
    rejected: Mapping[str, int]
    malformed: Mapping[str, int]
    timeouts: Mapping[str, int]
    timed_out: frozenset[str]
    late_replayed: int
    late_dropped: int
    numerical_resets: int
    covariance_repairs: int
    relocalizations: int
    kidnaps_detected: int
    recoveries: int


@dataclass(frozen=True)
class FilterEstimate:
    """Full filter estimate: state [8] (see :mod:`perception.motion`), covariance [8, 8]."""

    x: np.ndarray
    P: np.ndarray
    stamp: float


def initial_state(cfg: LocalizerConfig, pose: Pose) -> tuple[np.ndarray, np.ndarray]:
    """Filter state [8] and covariance [8, 8] at ``pose``; its ``cov`` [3, 3] is used when it is
    a finite positive-definite matrix, else the config's ``init_*_std``.

    Raises:
        ValueError: non-finite pose (one line naming ``initial_pose``).
    """
    x0 = np.array([pose.x, pose.y, mm.wrap(pose.yaw), 0.0, 0.0, 0.0, 1.0, 0.0], dtype=np.float64)
    if not np.all(np.isfinite(x0)):
        raise ValueError(f"initial_pose: {pose.x}, {pose.y}, {pose.yaw}; allowed finite numbers")
    stds = [
        cfg.init_pos_std,
        cfg.init_pos_std,
        cfg.init_yaw_std,
        cfg.init_v_std,
        cfg.init_w_std,
        cfg.init_gyro_bias_std,
        cfg.init_wheel_scale_std,
        cfg.init_wheel_asym_std,
    ]
    P0 = np.diag(np.square(stds))
    cov = np.asarray(pose.cov, dtype=np.float64)
    if cov.shape == (3, 3) and np.isfinite(cov).all():
        cov = 0.5 * (cov + cov.T)
        if np.all(np.linalg.eigvalsh(cov) > 0):
            P0[:3, :3] = cov
    return x0, P0


@functools.lru_cache(maxsize=64)
def process_noise(cfg: LocalizerConfig, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """(velocity random-walk Q [8, 8], pose Q [8, 8]) for a period of ``dt`` s (cached;
    treat the arrays as read-only)."""
    q_vel = mm.velocity_noise(
        dt,
        accel_psd=cfg.accel_psd,
        yaw_accel_psd=cfg.yaw_accel_psd,
        gyro_bias_psd=cfg.gyro_bias_psd,
        wheel_scale_psd=cfg.wheel_scale_psd,
        wheel_asym_psd=cfg.wheel_asym_psd,
    )
    q_pose = mm.pose_noise(dt, pos_psd=cfg.pos_psd, yaw_psd=cfg.yaw_psd)
    q_vel.setflags(write=False)
    q_pose.setflags(write=False)
    return q_vel, q_pose


@dataclass
class Track:
    """Mutable per-robot filter bookkeeping of a Localizer (snapshotted for replay; internal)."""

    x: np.ndarray
    P: np.ndarray
    stamp: float
    started: bool = False
    last_seen: dict[str, float] = field(default_factory=dict)
    timed_out: set[str] = field(default_factory=set)
    last_lidar: float = -np.inf
    consec: dict[str, int] = field(default_factory=dict)  # consecutive rejections per sensor
    gyro_innov2: float = 0.0  # last gyro innovation^2 ((rad/s)^2), for the lock-out breaker
    impact_until: float = -np.inf  # s, extra pose noise after a collision until then
    recover_count: int = 0
    kidnapped: bool = False
    health: Health = "ok"
    good_x: np.ndarray | None = None
    good_P: np.ndarray | None = None


class Counters:
    def __init__(self) -> None:
        self.frames = 0
        self.accepted = {s: 0 for s in SENSOR_NAMES}
        self.rejected = {s: 0 for s in SENSOR_NAMES}
        self.malformed = {s: 0 for s in (*SENSOR_NAMES, "frame")}
        self.timeouts = {s: 0 for s in SENSOR_NAMES}
        self.late_replayed = self.late_dropped = 0
        self.numerical_resets = self.covariance_repairs = 0
        self.relocalizations = self.kidnaps_detected = 0
        self.recoveries = 0
