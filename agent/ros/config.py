"""Schema of the ``ros`` config group (``configs/ros/*.yaml``): topics, frames, QoS, rates, safety.

Pure dataclasses (no ROS import): :class:`RosSection` is a field of ``agent.config.AppConfig``.
Topic names without a leading ``/`` are relative to the robot's namespace
(``namespace`` with ``{id}`` = robot index, e.g. ``/robot_0/scan``); absolute names are
shared by the fleet (``/clock``, ``/diagnostics``, ``/estop``, the WMS topics). Remap a
topic by overriding it, e.g. ``ros.topics.scan=front_laser/scan``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["FramesConfig", "QosConfig", "RosSection", "SafetyConfig", "TopicsConfig", "resolve_topic"]


@dataclass(frozen=True)
class TopicsConfig:
    """Topic names (relative = in the robot namespace). Types in docs/DEPLOY.md."""

    odom: str = "odom"                      # nav_msgs/Odometry, wheel odometry
    imu: str = "imu"                        # sensor_msgs/Imu
    scan: str = "scan"                      # sensor_msgs/LaserScan
    image: str = "camera/image_raw"         # sensor_msgs/Image rgb8 (optional)
    depth: str = "camera/depth"             # sensor_msgs/Image 32FC1 metres (optional)
    uwb: str = "uwb/ranges"                 # std_msgs/Float64MultiArray [id0, r0, id1, r1, ...]
    fiducial: str = "fiducial"              # std_msgs/Float64MultiArray [marker_id, dx, dy, yaw]
    load: str = "load_state"                # std_msgs/Bool
    bumper: str = "bumper"                  # std_msgs/UInt8MultiArray [front, left, back, right]
    cmd_vel: str = "cmd_vel"                # geometry_msgs/Twist (out)
    pose: str = "pose_estimate"             # geometry_msgs/PoseWithCovarianceStamped (out)
    plan: str = "plan"                      # nav_msgs/Path, announced route (out)
    ground_truth: str = "ground_truth"      # geometry_msgs/PoseStamped (sim-robot only; never read by the bridge)
    status: str = "/diagnostics"            # diagnostic_msgs/DiagnosticArray (out)
    estop: str = "/estop"                   # std_msgs/Bool, True latches the stop
    estop_reset: str = "/estop_reset"       # std_msgs/Empty, the only way to clear it
    clock: str = "/clock"                   # rosgraph_msgs/Clock (time_source=sim)
    orders: str = "/wms/orders"             # std_msgs/String JSON order book (WMS -> bridge)
    wms_request: str = "/wms/request"       # std_msgs/String JSON {id, op, robot, order}
    wms_response: str = "/wms/response"     # std_msgs/String JSON {id, ok, error}
    sim_control: str = "/sim/control"       # std_msgs/String JSON (sim-robot test hooks)


@dataclass(frozen=True)
class FramesConfig:
    """TF frame ids (REP 105): messages in another frame are rejected."""

    map: str = "map"
    odom: str = "odom"
    base: str = "base_link"
    laser: str = "base_scan"
    imu: str = "imu_link"
    camera: str = "camera_link"


@dataclass(frozen=True)
class QosConfig:
    """QoS: sensors best-effort (like sensor_data), commands/status reliable, e-stop latched."""

    sensor_reliability: Literal["best_effort", "reliable"] = "best_effort"
    sensor_depth: int = 5
    cmd_reliability: Literal["best_effort", "reliable"] = "reliable"
    cmd_depth: int = 10


@dataclass(frozen=True)
class SafetyConfig:
    """Bridge-side safety, enforced whatever the agent asks.

    Attributes:
        watchdog_s: no valid message of a ``required`` sensor, or no decision, for this long
            (wall s) -> zero velocity (diff_drive_controller's cmd_vel_timeout is 0.5 s).
        required: sensors whose silence trips the watchdog.
        max_v, max_w: |v| (m/s) and |w| (rad/s) limits.
        max_acc, max_alpha: |dv/dt| (m/s^2) and |dw/dt| (rad/s^2) limits.
        max_stamp_age_s: older stamps are stale (rejected); max_future_s: newer than now + this
            are from the future (rejected).
        max_scan_beams: LaserScans with more beams are rejected.
    """

    watchdog_s: float = 0.5
    required: tuple[str, ...] = ("odom", "scan")
    max_v: float = 1.5
    max_w: float = 2.0
    max_acc: float = 1.5
    max_alpha: float = 4.0
    max_stamp_age_s: float = 0.5
    max_future_s: float = 0.1
    max_scan_beams: int = 4096

    def __post_init__(self) -> None:
        for k in ("watchdog_s", "max_v", "max_w", "max_acc", "max_alpha", "max_stamp_age_s"):
            if getattr(self, k) <= 0:
                raise ValueError(f"safety.{k}={getattr(self, k)}: must be > 0")
        bad = [s for s in self.required if s not in SENSORS]
        if bad:
            raise ValueError(f"safety.required={bad[0]}: allowed {', '.join(SENSORS)}")


#: sensor streams of a SensorFrame the bridge subscribes to.
SENSORS: tuple[str, ...] = ("odom", "imu", "scan", "image", "uwb", "fiducial", "load", "bumper")


@dataclass(frozen=True)
class RosSection:
    """The ``ros`` group.

    Attributes:
        backend: ``ros2`` (rclpy, primary) or ``ros1`` (rospy from Debian).
        namespace: per-robot namespace, ``{id}`` = robot index.
        node_name: bridge node name (the sim-robot is ``<node_name>_sim``).
        localhost: keep discovery and Fast DDS sockets on this host (simulation default).
        domain_id: ``ROS_DOMAIN_ID``; null keeps the environment's.
        ros1_master: ``ROS_MASTER_URI`` for ros1.
        time_source: ``sim`` = stamps and the bridge's clock follow ``/clock``; ``system`` = wall.
        control_hz: bridge decision and cmd_vel rate (Hz); status_hz: diagnostics rate.
        sensors: streams the bridge subscribes to (others stay None in the SensorFrame).
        camera: also publish/subscribe image + depth.
        wms_timeout_s: a WMS request (assign/pick/drop) not answered within this fails.
        real_time_factor: sim-robot pace (sim s per wall s).
        cmd_timeout_s: sim-robot: the base stops on cmd_vel older than this (wall s).
    """

    backend: Literal["ros2", "ros1"] = "ros2"
    namespace: str = "robot_{id}"
    node_name: str = "forklift_bridge"
    localhost: bool = True
    domain_id: int | None = None
    ros1_master: str = "http://127.0.0.1:11311"
    time_source: Literal["sim", "system"] = "sim"
    control_hz: float = 20.0
    status_hz: float = 2.0
    sensors: tuple[str, ...] = ("odom", "imu", "scan", "uwb", "fiducial", "load", "bumper")
    camera: bool = False
    wms_timeout_s: float = 0.5
    real_time_factor: float = 1.0
    cmd_timeout_s: float = 0.5
    topics: TopicsConfig = field(default_factory=TopicsConfig)
    frames: FramesConfig = field(default_factory=FramesConfig)
    qos: QosConfig = field(default_factory=QosConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)

    def __post_init__(self) -> None:
        for k in ("control_hz", "status_hz", "wms_timeout_s", "real_time_factor", "cmd_timeout_s"):
            if getattr(self, k) <= 0:
                raise ValueError(f"{k}={getattr(self, k)}: must be > 0")
        if self.domain_id is not None and not 0 <= self.domain_id <= 232:
            raise ValueError(f"domain_id={self.domain_id}: must be in [0, 232]")
        bad = [s for s in self.sensors if s not in SENSORS]
        if bad:
            raise ValueError(f"sensors={bad[0]}: allowed {', '.join(SENSORS)}")
        if "{id}" not in self.namespace:
            raise ValueError(f"namespace={self.namespace}: must contain {{id}}")


def resolve_topic(ros: RosSection, name: str, robot_id: int) -> str:
    """Absolute topic name: ``/robot_3/scan`` for a relative name, ``name`` when absolute."""
    if name.startswith("/"):
        return name
    return "/" + ros.namespace.format(id=robot_id).strip("/") + "/" + name
