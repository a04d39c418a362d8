"""Value types that cross package boundaries.

SI units throughout: metres, seconds, radians. World frame: x east, y north, yaw
counter-clockwise from +x. Grid cell (row, col) has its centre at
``x = (col + 0.5) * cell_size``, ``y = (row + 0.5) * cell_size``; row grows with +y.

A failed or absent sensor is ``None`` in a :class:`SensorFrame`, never zeros.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal

import numpy as np


class MacroAction(enum.IntEnum):
    """Discrete actions on the grid graph (shared by the grid model and the simulator)."""

    NORTH = 0  # row + 1 (+y)
    SOUTH = 1  # row - 1 (-y)
    EAST = 2  # col + 1 (+x)
    WEST = 3  # col - 1 (-x)
    WAIT = 4
    PICK = 5
    DROP = 6


N_ACTIONS: int = len(MacroAction)
# (d_row, d_col) per action; zero for WAIT/PICK/DROP.
ACTION_DELTAS: np.ndarray = np.array(
    [[1, 0], [-1, 0], [0, 1], [0, -1], [0, 0], [0, 0], [0, 0]], dtype=np.int64
)  # [A, 2]


@dataclass(frozen=True)
class OdomReading:
    """Wheel odometry over the last control period.

    Attributes:
        v: forward speed from the wheel encoders (m/s), includes slip and scale error.
        w: yaw rate from the wheel encoders (rad/s).
        dt: integration period (s).
    """

    v: float
    w: float
    dt: float


@dataclass(frozen=True)
class ImuReading:
    """Planar IMU.

    Attributes:
        gyro_z: yaw rate (rad/s), with noise and a slowly walking bias.
        accel: body-frame acceleration [2] (m/s^2): forward, left.
    """

    gyro_z: float
    accel: np.ndarray  # [2] m/s^2


@dataclass(frozen=True)
class LidarScan:
    """2D lidar scan in the robot frame (REP 117 conventions).

    Attributes:
        angles: beam angles [N] (rad) in the robot frame, counter-clockwise from forward.
        ranges: ranges [N] (m); ``+inf`` = no return within ``range_max``,
            ``nan`` = invalid beam (dropout).
        range_max: maximum range (m).
    """

    angles: np.ndarray  # [N] rad
    ranges: np.ndarray  # [N] m
    range_max: float


@dataclass(frozen=True)
class CameraImage:
    """Forward RGB-D camera image.

    Attributes:
        rgb: [H, W, 3] uint8.
        depth: [H, W] float32 metres (``inf`` beyond far plane).
    """

    rgb: np.ndarray
    depth: np.ndarray


@dataclass(frozen=True)
class UwbReading:
    """Ranges to UWB anchors (positions in ``Layout.uwb_anchors``).

    Attributes:
        anchor_ids: [K] int indices into ``Layout.uwb_anchors``.
        ranges: [K] metres, 3D distance tag->anchor, Gaussian noise plus NLOS outliers.
    """

    anchor_ids: np.ndarray  # [K] int64
    ranges: np.ndarray  # [K] m


@dataclass(frozen=True)
class FiducialReading:
    """Downward camera over a floor code (Kiva-style).

    Attributes:
        marker_id: index into ``Layout.fiducials``.
        dx, dy: robot centre minus marker centre, world axes (m).
        yaw: robot heading in the world frame (rad), read from the code's orientation.
    """

    marker_id: int
    dx: float
    dy: float
    yaw: float


#: bumper sectors, in :attr:`BumperReading.sectors` order (robot frame, REP 103).
BUMPER_SECTORS: tuple[str, ...] = ("front", "left", "back", "right")


@dataclass(frozen=True)
class BumperReading:
    """Contact bumper / safety edge around the robot body (near-field safety sensor).

    Pressed where the body touches anything but the floor and its own load (walls,
    shelves, robots, pallets, people), i.e. a contact point with a gap <= 1 mm.

    Attributes:
        contact: any sector pressed.
        sectors: [4] bool, :data:`BUMPER_SECTORS` order: front (|bearing| <= 45 deg),
            left (45..135 deg), back, right; bearing of the contact point from the robot
            centre in the robot frame.
    """

    contact: bool
    sectors: np.ndarray  # [4] bool


@dataclass(frozen=True)
class SensorFrame:
    """Everything one robot senses at one control tick. ``None`` = absent/failed."""

    stamp: float  # s, sim time
    robot_id: int
    odom: OdomReading | None = None
    imu: ImuReading | None = None
    lidar: LidarScan | None = None
    camera: CameraImage | None = None
    uwb: UwbReading | None = None
    fiducial: FiducialReading | None = None
    load: bool | None = None  # load sensor: carrying a load
    bumper: BumperReading | None = None  # contact bumper (additive: keep last)


Health = Literal["ok", "degraded", "lost"]


@dataclass(frozen=True)
class Pose:
    """A pose estimate.

    Attributes:
        x, y: metres; yaw: radians in (-pi, pi].
        cov: [3, 3] covariance of (x, y, yaw).
        health: "ok" / "degraded" / "lost".
        stamp: seconds.
    """

    x: float
    y: float
    yaw: float
    cov: np.ndarray = field(default_factory=lambda: np.zeros((3, 3)))
    health: Health = "ok"
    stamp: float = 0.0

    @property
    def xy(self) -> np.ndarray:
        return np.array([self.x, self.y])


@dataclass(frozen=True)
class TwistCmd:
    """Velocity command: v forward (m/s), w yaw rate (rad/s)."""

    v: float
    w: float


def wrap_angle(a: np.ndarray | float) -> np.ndarray | float:
    """Wrap angle(s) to (-pi, pi]."""
    return -((-np.asarray(a) + np.pi) % (2 * np.pi) - np.pi) if isinstance(a, np.ndarray) else float(
        -((-a + np.pi) % (2 * np.pi) - np.pi)
    )
