"""The one set of message conversions, shared by the ROS 2 and ROS 1 backends and the bag writer.

Encoding builds messages through a :class:`MsgFactory` (``rclpy``/``rospy`` message classes
or the ``rosbags`` typestore; field names are the same in all three, only time stamps,
``byte`` fields and array containers differ, and the factory handles those). Decoding reads
message attributes only (duck typing: the same code reads ROS 1 and ROS 2 messages),
validates them with :mod:`agent.ros.safety` and returns ``sim.types`` values or raises
:class:`~agent.ros.safety.Rejected`: a malformed message never reaches the agent.

Non-standard streams use ``std_msgs`` (no custom message package to build): UWB ranges are
``Float64MultiArray`` ``[anchor_id0, range0, anchor_id1, range1, ...]``; a fiducial reading
is ``Float64MultiArray`` ``[marker_id, dx, dy, yaw]``; the load sensor is ``Bool``; the
bumper is ``UInt8MultiArray`` ``[front, left, back, right]``. Orders and WMS requests are
JSON in ``std_msgs/String`` (:func:`orders_to_json`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from agent.ros.config import FramesConfig, SafetyConfig
from agent.ros.safety import Rejected, check_array, check_frame, check_stamp
from sim.types import (
    BumperReading,
    CameraImage,
    FiducialReading,
    ImuReading,
    LidarScan,
    OdomReading,
    Pose,
    TwistCmd,
    UwbReading,
)

__all__ = ["MsgFactory", "DIAG_LEVELS", "bool_msg", "bumper_msg", "clock_msg", "decode_bumper", "decode_fiducial",
           "decode_image", "decode_imu", "decode_odom", "decode_scan", "decode_twist", "decode_uwb",
           "diagnostics_msg", "fiducial_msg", "image_msgs", "imu_msg", "odom_msg", "orders_to_json", "path_msg",
           "pose_cov_msg", "pose_stamped_msg", "quat_to_yaw", "scan_msg", "stamp_to_s", "twist_msg", "uwb_msg",
           "yaw_to_quat"]

DIAG_LEVELS = {"ok": 0, "warn": 1, "error": 2, "stale": 3}


class MsgFactory(Protocol):
    """Builds messages of one middleware. ``name`` is ``pkg/Type`` (e.g. ``sensor_msgs/LaserScan``)."""

    def make(self, name: str, /, **fields: Any) -> Any: ...

    def stamp(self, t: float) -> Any:
        """A time stamp of ``t`` seconds."""

    def byte(self, v: int) -> Any:
        """A value for a ``byte`` field."""


def stamp_to_s(stamp: Any) -> float:
    """Seconds of a ROS 2 (``sec``/``nanosec``) or ROS 1 (``secs``/``nsecs``) time."""
    if hasattr(stamp, "nanosec"):
        return float(stamp.sec) + float(stamp.nanosec) * 1e-9
    return float(stamp.secs) + float(stamp.nsecs) * 1e-9


def yaw_to_quat(yaw: float) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a rotation by ``yaw`` rad about +z."""
    return 0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)


def quat_to_yaw(x: float, y: float, z: float, w: float) -> float:
    """Yaw (rad) of a quaternion."""
    return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


# ---- encoding -------------------------------------------------------------------------------

def _header(f: MsgFactory, t: float, frame: str) -> Any:
    return f.make("std_msgs/Header", stamp=f.stamp(t), frame_id=frame)


def _vec(f: MsgFactory, x: float = 0.0, y: float = 0.0, z: float = 0.0) -> Any:
    return f.make("geometry_msgs/Vector3", x=float(x), y=float(y), z=float(z))


def _pose(f: MsgFactory, x: float, y: float, yaw: float) -> Any:
    qx, qy, qz, qw = yaw_to_quat(yaw)
    return f.make("geometry_msgs/Pose", position=f.make("geometry_msgs/Point", x=float(x), y=float(y), z=0.0),
                  orientation=f.make("geometry_msgs/Quaternion", x=qx, y=qy, z=qz, w=qw))


def _cov6(cov3: np.ndarray | None) -> np.ndarray:
    """[36] row-major 6x6 (x, y, z, roll, pitch, yaw) covariance from a [3, 3] (x, y, yaw) one."""
    c = np.zeros((6, 6))
    if cov3 is not None:
        idx = [0, 1, 5]
        c[np.ix_(idx, idx)] = np.asarray(cov3, dtype=np.float64).reshape(3, 3)
    return c.reshape(36)


def twist_msg(f: MsgFactory, cmd: TwistCmd) -> Any:
    """``geometry_msgs/Twist`` of a command (linear.x = v, angular.z = w)."""
    return f.make("geometry_msgs/Twist", linear=_vec(f, cmd.v), angular=_vec(f, 0.0, 0.0, cmd.w))


def scan_msg(f: MsgFactory, scan: LidarScan, t: float, frame: str, range_min: float = 0.05) -> Any:
    """``sensor_msgs/LaserScan``: evenly spaced beams (REP 117: +inf no return, NaN invalid)."""
    ang = np.asarray(scan.angles, dtype=np.float64)
    inc = float(ang[1] - ang[0]) if len(ang) > 1 else 0.0
    return f.make("sensor_msgs/LaserScan", header=_header(f, t, frame), angle_min=float(ang[0]),
                  angle_max=float(ang[-1]), angle_increment=inc, time_increment=0.0, scan_time=0.0,
                  range_min=float(range_min), range_max=float(scan.range_max),
                  ranges=np.asarray(scan.ranges, dtype=np.float32), intensities=np.zeros(0, dtype=np.float32))


def odom_msg(f: MsgFactory, odom: OdomReading, pose_xyyaw: Sequence[float], t: float, frames: FramesConfig) -> Any:
    """``nav_msgs/Odometry``: dead-reckoned pose in ``odom``, twist (v, w) in ``base_link``."""
    x, y, yaw = (float(v) for v in pose_xyyaw)
    cov = np.diag([1e-3, 1e-3, 1e6, 1e6, 1e6, 1e-2]).reshape(36)
    return f.make("nav_msgs/Odometry", header=_header(f, t, frames.odom), child_frame_id=frames.base,
                  pose=f.make("geometry_msgs/PoseWithCovariance", pose=_pose(f, x, y, yaw), covariance=cov),
                  twist=f.make("geometry_msgs/TwistWithCovariance",
                               twist=twist_msg(f, TwistCmd(odom.v, odom.w)), covariance=cov.copy()))


def imu_msg(f: MsgFactory, imu: ImuReading, t: float, frame: str) -> Any:
    """``sensor_msgs/Imu`` without orientation (orientation_covariance[0] = -1, per the message doc)."""
    no = np.zeros(9)
    no[0] = -1.0
    return f.make("sensor_msgs/Imu", header=_header(f, t, frame),
                  orientation=f.make("geometry_msgs/Quaternion", x=0.0, y=0.0, z=0.0, w=1.0),
                  orientation_covariance=no, angular_velocity=_vec(f, 0.0, 0.0, imu.gyro_z),
                  angular_velocity_covariance=np.zeros(9),
                  linear_acceleration=_vec(f, imu.accel[0], imu.accel[1], 9.81),
                  linear_acceleration_covariance=np.zeros(9))


def _layout(f: MsgFactory) -> Any:
    return f.make("std_msgs/MultiArrayLayout", dim=[], data_offset=0)


def uwb_msg(f: MsgFactory, uwb: UwbReading) -> Any:
    data = np.stack([np.asarray(uwb.anchor_ids, np.float64), np.asarray(uwb.ranges, np.float64)], -1).reshape(-1)
    return f.make("std_msgs/Float64MultiArray", layout=_layout(f), data=data)


def fiducial_msg(f: MsgFactory, fid: FiducialReading) -> Any:
    return f.make("std_msgs/Float64MultiArray", layout=_layout(f),
                  data=np.array([fid.marker_id, fid.dx, fid.dy, fid.yaw], dtype=np.float64))


def bool_msg(f: MsgFactory, v: bool) -> Any:
    return f.make("std_msgs/Bool", data=bool(v))


def bumper_msg(f: MsgFactory, b: BumperReading) -> Any:
    return f.make("std_msgs/UInt8MultiArray", layout=_layout(f), data=np.asarray(b.sectors, dtype=np.uint8))


def image_msgs(f: MsgFactory, cam: CameraImage, t: float, frame: str) -> tuple[Any, Any]:
    """(rgb8, 32FC1 depth in metres) ``sensor_msgs/Image`` pair."""
    rgb = np.ascontiguousarray(cam.rgb, dtype=np.uint8)
    dep = np.ascontiguousarray(cam.depth, dtype=np.float32)
    h, w = rgb.shape[:2]
    a = f.make("sensor_msgs/Image", header=_header(f, t, frame), height=h, width=w, encoding="rgb8",
               is_bigendian=0, step=3 * w, data=rgb.reshape(-1))
    b = f.make("sensor_msgs/Image", header=_header(f, t, frame), height=h, width=w, encoding="32FC1",
               is_bigendian=0, step=4 * w, data=dep.view(np.uint8).reshape(-1))
    return a, b


def pose_cov_msg(f: MsgFactory, pose: Pose, t: float, frame: str) -> Any:
    """``geometry_msgs/PoseWithCovarianceStamped`` of an estimate."""
    return f.make("geometry_msgs/PoseWithCovarianceStamped", header=_header(f, t, frame),
                  pose=f.make("geometry_msgs/PoseWithCovariance", pose=_pose(f, pose.x, pose.y, pose.yaw),
                              covariance=_cov6(pose.cov)))


def pose_stamped_msg(f: MsgFactory, xyyaw: Sequence[float], t: float, frame: str) -> Any:
    x, y, yaw = (float(v) for v in xyyaw)
    return f.make("geometry_msgs/PoseStamped", header=_header(f, t, frame), pose=_pose(f, x, y, yaw))


def path_msg(f: MsgFactory, xy: np.ndarray, t: float, frame: str) -> Any:
    """``nav_msgs/Path`` through the cell centres ``xy`` [K, 2] (m)."""
    return f.make("nav_msgs/Path", header=_header(f, t, frame),
                  poses=[pose_stamped_msg(f, (p[0], p[1], 0.0), t, frame) for p in np.asarray(xy).reshape(-1, 2)])


def clock_msg(f: MsgFactory, t: float) -> Any:
    return f.make("rosgraph_msgs/Clock", clock=f.stamp(t))


def diagnostics_msg(f: MsgFactory, t: float, entries: Sequence[tuple[str, str, str, dict[str, Any]]]) -> Any:
    """``diagnostic_msgs/DiagnosticArray`` of (name, level ok|warn|error|stale, message, values)."""
    status = [f.make("diagnostic_msgs/DiagnosticStatus", level=f.byte(DIAG_LEVELS[lvl]), name=name, message=msg,
                     hardware_id=name, values=[f.make("diagnostic_msgs/KeyValue", key=str(k), value=str(v))
                                               for k, v in vals.items()])
              for name, lvl, msg, vals in entries]
    return f.make("diagnostic_msgs/DiagnosticArray", header=_header(f, t, ""), status=status)


def orders_to_json(orders: Sequence[Any], t: float) -> str:
    """The WMS order book as JSON (``sim.orders.Order`` fields; cells as [row, col])."""
    keys = ("id", "pick_cell", "shelf_cell", "station_cell", "release_t", "deadline_t", "status", "robot",
            "load_cell", "picked_t", "delivered_t", "assigned_t")

    def val(v: Any) -> Any:
        if isinstance(v, (tuple, list, np.ndarray)):
            return [int(x) for x in v]
        if isinstance(v, (np.integer,)):
            return int(v)
        if isinstance(v, (np.floating,)):
            return float(v)
        return v

    return json.dumps({"t": t, "orders": [{k: val(getattr(o, k, None)) for k in keys} for o in orders]})


# ---- decoding (validated) ---------------------------------------------------------------------

def _stamp_of(msg: Any) -> float:
    return stamp_to_s(msg.header.stamp)


def decode_scan(msg: Any, now: float, frames: FramesConfig, cfg: SafetyConfig) -> tuple[float, LidarScan]:
    """(stamp s, LidarScan) of a ``LaserScan`` or :class:`Rejected`.

    Checks: frame, stamp (stale/future), finite angle fields with increment != 0, finite
    positive range_max, beam count = (angle_max - angle_min)/increment + 1 (and <= max beams),
    intensities empty or one per beam, ranges: NaN (invalid beam) and +inf (no return) are
    REP 117 values and pass, -inf (closer than range_min) becomes 0, negative finite rejects.
    """
    check_frame(msg.header.frame_id, frames.laser)
    stamp = _stamp_of(msg)
    check_stamp(stamp, now, cfg)
    a0, a1, inc, rmax = check_array([msg.angle_min, msg.angle_max, msg.angle_increment, msg.range_max], "angles")
    if inc == 0.0 or rmax <= 0.0:
        raise Rejected("range", "angle_increment == 0 or range_max <= 0")
    r = np.asarray(msg.ranges, dtype=np.float64).reshape(-1)
    n_exp = int(round((a1 - a0) / inc)) + 1
    if len(r) != n_exp or not 0 < len(r) <= cfg.max_scan_beams:
        raise Rejected("length", f"ranges: {len(r)} beams, expected {n_exp}")
    if len(msg.intensities) not in (0, len(r)):
        raise Rejected("length", f"intensities: {len(msg.intensities)} for {len(r)} beams")
    r = np.where(np.isneginf(r), 0.0, r)
    if (r[np.isfinite(r)] < 0).any():
        raise Rejected("range", "negative range")
    angles = a0 + inc * np.arange(len(r))
    return stamp, LidarScan(angles=angles, ranges=r, range_max=float(rmax))


def decode_odom(msg: Any, now: float, frames: FramesConfig, cfg: SafetyConfig) -> tuple[float, float, float]:
    """(stamp s, v m/s, w rad/s) of an ``Odometry`` or :class:`Rejected`."""
    check_frame(msg.header.frame_id, frames.odom)
    check_frame(msg.child_frame_id, frames.base)
    stamp = _stamp_of(msg)
    check_stamp(stamp, now, cfg)
    tw = msg.twist.twist
    v, w = check_array([tw.linear.x, tw.angular.z], "twist")
    check_array([msg.pose.pose.position.x, msg.pose.pose.position.y], "pose")
    check_array(msg.pose.covariance, "pose.covariance", length=36)
    check_array(msg.twist.covariance, "twist.covariance", length=36)
    return stamp, float(v), float(w)


def decode_imu(msg: Any, now: float, frames: FramesConfig, cfg: SafetyConfig) -> tuple[float, ImuReading]:
    check_frame(msg.header.frame_id, frames.imu)
    stamp = _stamp_of(msg)
    check_stamp(stamp, now, cfg)
    gz, ax, ay = check_array([msg.angular_velocity.z, msg.linear_acceleration.x, msg.linear_acceleration.y], "imu")
    return stamp, ImuReading(gyro_z=float(gz), accel=np.array([ax, ay]))


def decode_uwb(msg: Any, n_anchors: int) -> UwbReading:
    """UWB ``[id, range, ...]``: even length, ids integer anchors, ranges finite >= 0."""
    d = check_array(msg.data, "uwb", min_len=2, max_len=2 * max(n_anchors, 1))
    if len(d) % 2:
        raise Rejected("length", f"uwb: {len(d)} values, expected pairs")
    ids, rng = d[0::2], d[1::2]
    if (ids != np.round(ids)).any() or (ids < 0).any() or (ids >= n_anchors).any():
        raise Rejected("range", "uwb anchor id")
    if (rng < 0).any():
        raise Rejected("range", "uwb range < 0")
    return UwbReading(anchor_ids=ids.astype(np.int64), ranges=rng)


def decode_fiducial(msg: Any, n_markers: int) -> FiducialReading:
    mid, dx, dy, yaw = check_array(msg.data, "fiducial", length=4)
    if mid != round(mid) or not 0 <= mid < n_markers:
        raise Rejected("range", f"fiducial marker id {mid}")
    return FiducialReading(marker_id=int(mid), dx=float(dx), dy=float(dy), yaw=float(yaw))


def decode_bumper(msg: Any) -> BumperReading:
    s = check_array(list(bytes(msg.data)) if isinstance(msg.data, (bytes, bytearray)) else msg.data, "bumper",
                    length=4)
    sectors = s > 0
    return BumperReading(contact=bool(sectors.any()), sectors=sectors)


def decode_image(rgb: Any, depth: Any, now: float, frames: FramesConfig, cfg: SafetyConfig) -> CameraImage:
    for m in (rgb, depth):
        check_frame(m.header.frame_id, frames.camera)
        check_stamp(_stamp_of(m), now, cfg)
    if rgb.encoding != "rgb8" or depth.encoding != "32FC1" or (rgb.height, rgb.width) != (depth.height, depth.width):
        raise Rejected("encoding", f"{rgb.encoding}/{depth.encoding}")
    h, w = int(rgb.height), int(rgb.width)
    a = np.frombuffer(bytes(rgb.data), dtype=np.uint8)
    b = np.frombuffer(bytes(depth.data), dtype=np.float32)
    if a.size != h * w * 3 or b.size != h * w:
        raise Rejected("length", "image data")
    dep = b.reshape(h, w)
    if np.isnan(dep).any():
        raise Rejected("nan", "depth")
    return CameraImage(rgb=a.reshape(h, w, 3).copy(), depth=dep.copy())


def decode_twist(msg: Any) -> TwistCmd:
    v, w = check_array([msg.linear.x, msg.angular.z], "twist")
    return TwistCmd(float(v), float(w))
