"""rosbag2 (MCAP) recording of episodes through the ``rosbags`` library (no ROS install needed).

:class:`BagRecorder` writes CDR-serialised ROS 2 messages into ``<dir>/`` (a rosbag2
directory: ``metadata.yaml`` + ``<dir>.mcap``) that open in Foxglove, RViz (``ros2 bag
play``) and ``rosbags``. Messages are built by :mod:`agent.ros.messages` with a
:class:`RosbagsFactory` over the rosbags Kilted typestore, so a bag holds exactly what the
bridge and the simulated robot put on the wire. In a process that runs rclpy (the bridge)
already-built rclpy messages are serialised with ``rclpy.serialization`` instead.

Topics per robot ``i`` (namespace ``ros.namespace``): ``ground_truth`` (PoseStamped, map),
``odom``, ``imu``, ``scan``, ``uwb/ranges``, ``fiducial``, ``load_state``, ``bumper`` (the
sensors), ``pose_estimate`` (PoseWithCovarianceStamped), ``cmd_vel`` (Twist); plus
``/clock``. Log time = the message's sim/ROS time (ns).

``forklift run record=bag`` records episode 0 via :func:`recording_factory`, which wraps
the controller: it sees the frames the controller gets, the commands it returns and the
pose estimates it reports; ground truth comes from the simulator (recording, like the KPIs,
may read it; the controller still never does).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.ros import messages as M
from agent.ros.config import RosSection, resolve_topic
from sim.types import Pose, SensorFrame, TwistCmd

__all__ = ["BagRecorder", "RecordingController", "RosbagsFactory", "read_bag", "recording_factory"]


class RosbagsFactory:
    """:class:`agent.ros.messages.MsgFactory` over a rosbags typestore (ROS 2 Kilted types)."""

    def __init__(self, typestore: Any = None) -> None:
        from rosbags.typesys import Stores, get_typestore

        self.ts = typestore or get_typestore(Stores.ROS2_KILTED)

    def _cls(self, name: str) -> Any:
        pkg, typ = name.split("/")
        return self.ts.types[f"{pkg}/msg/{typ}"]

    def make(self, name: str, /, **fields: Any) -> Any:
        cls = self._cls(name)
        full = {}
        for f in (k for k in cls.__dataclass_fields__ if not k.startswith("__")):  # every field is required
            if f in fields:
                v = fields[f]
            else:
                v = _default(self, name, f)
            if isinstance(v, np.ndarray) and v.dtype == np.float32 and f not in ("ranges", "intensities"):
                v = v.astype(np.float64)
            full[f] = v
        return cls(**full)

    def stamp(self, t: float) -> Any:
        sec = math.floor(t)
        return self._cls("builtin_interfaces/Time")(sec=int(sec), nanosec=min(int(round((t - sec) * 1e9)),
                                                                               999_999_999))

    def byte(self, v: int) -> Any:
        return int(v)


def _default(f: RosbagsFactory, name: str, field: str) -> Any:
    if name == "std_msgs/Header" and field == "frame_id":
        return ""
    raise TypeError(f"{name}.{field}: no value given")


def _msgtype(msg: Any) -> str:
    """``pkg/msg/Type`` of a rosbags or rclpy message."""
    t = getattr(msg, "__msgtype__", None)
    if t:
        return t
    mod = type(msg).__module__.split(".")
    return f"{mod[0]}/msg/{type(msg).__name__}"


class BagRecorder:
    """Writes one rosbag2 MCAP directory.

    Args:
        path: the bag directory (must not exist).
        ros: topic names and frames.
    """

    def __init__(self, path: Path | str, ros: RosSection) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.path = Path(path)
        self.ros = ros
        self.f = RosbagsFactory()
        self._w = Writer(self.path, version=9, storage_plugin=StoragePlugin.MCAP)
        self._w.open()
        self._conns: dict[str, Any] = {}
        self.count = 0
        self._closed = False
        self._dr: dict[int, np.ndarray] = {}  # [3] dead-reckoned odom pose per robot

    def write(self, topic: str, msg: Any, t: float) -> None:
        """Append ``msg`` (rosbags or rclpy message) on ``topic`` at log time ``t`` s."""
        if self._closed:
            return
        typ = _msgtype(msg)
        if topic not in self._conns:
            self._conns[topic] = self._w.add_connection(topic, typ, typestore=self.f.ts)
        if hasattr(msg, "__msgtype__"):
            data = self.f.ts.serialize_cdr(msg, typ)
        else:  # an rclpy message (bridge process)
            from rclpy.serialization import serialize_message

            data = serialize_message(msg)
        self._w.write(self._conns[topic], int(max(t, 0.0) * 1e9), data)
        self.count += 1

    def robot_tick(self, i: int, t: float, frame: SensorFrame, gt: Sequence[float] | None,
                   cmd: TwistCmd | None, pose: Pose | None = None) -> None:
        """Record one robot's tick: ground truth, sensors, estimate, command (each if present)."""
        f, ros, fr = self.f, self.ros, self.ros.frames
        top = ros.topics

        def w(name: str, msg: Any) -> None:
            self.write(resolve_topic(ros, name, i), msg, t)

        if gt is not None:
            w(top.ground_truth, M.pose_stamped_msg(f, gt, t, fr.map))
        if frame.odom is not None:
            o = frame.odom
            p = self._dr.setdefault(i, np.array(gt if gt is not None else (0.0, 0.0, 0.0), dtype=np.float64))
            p[2] += o.w * o.dt  # dead reckoning in the odom frame, as a base controller publishes it
            p[0] += o.v * o.dt * math.cos(p[2])
            p[1] += o.v * o.dt * math.sin(p[2])
            w(top.odom, M.odom_msg(f, o, p, t, fr))
        if frame.imu is not None:
            w(top.imu, M.imu_msg(f, frame.imu, t, fr.imu))
        if frame.lidar is not None:
            w(top.scan, M.scan_msg(f, frame.lidar, t, fr.laser))
        if frame.uwb is not None:
            w(top.uwb, M.uwb_msg(f, frame.uwb))
        if frame.fiducial is not None:
            w(top.fiducial, M.fiducial_msg(f, frame.fiducial))
        if frame.load is not None:
            w(top.load, M.bool_msg(f, frame.load))
        if frame.bumper is not None:
            w(top.bumper, M.bumper_msg(f, frame.bumper))
        if pose is not None:
            w(top.pose, M.pose_cov_msg(f, pose, t, fr.map))
        if cmd is not None:
            w(top.cmd_vel, M.twist_msg(f, cmd))

    def clock(self, t: float) -> None:
        self.write(self.ros.topics.clock, M.clock_msg(self.f, t), t)

    def close(self) -> Path:
        """Finish the bag (idempotent); returns its directory."""
        if not self._closed:
            self._closed = True
            self._w.close()
        return self.path


def read_bag(path: Path | str) -> dict[str, list[tuple[int, Any]]]:
    """All messages of a rosbag2 bag: topic -> [(log time ns, deserialised message)]."""
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    out: dict[str, list[tuple[int, Any]]] = {}
    with Reader(Path(path)) as r:
        for conn, t, raw in r.messages():
            out.setdefault(conn.topic, []).append((t, ts.deserialize_cdr(raw, conn.msgtype)))
    return out


class _PoseTap:
    """The simulator as the controller sees it, with ``report_pose_estimate`` copied to the recorder."""

    def __init__(self, sim: Any, poses: dict[int, Pose]) -> None:
        self._sim, self._poses = sim, poses

    def report_pose_estimate(self, robot_id: int, pose: Pose) -> None:
        self._poses[robot_id] = pose
        self._sim.report_pose_estimate(robot_id, pose)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sim, name)


class RecordingController:
    """Wraps a controller: records every tick (frames, estimates, commands, ground truth)."""

    def __init__(self, inner: Any, recorder: BagRecorder) -> None:
        self.inner, self.rec = inner, recorder
        self.name = getattr(inner, "name", type(inner).__name__)
        self._sim: Any = None
        self._poses: dict[int, Pose] = {}

    def reset(self, sim: Any) -> None:
        self._sim = sim
        self.inner.reset(_PoseTap(sim, self._poses))

    def act(self, frames: Sequence[SensorFrame], t: float) -> list[Any]:
        self._poses.clear()
        cmds = self.inner.act(frames, t)
        gt = self._sim.ground_truth()
        self.rec.clock(t)
        for i, fr in enumerate(frames):
            self.rec.robot_tick(i, t, fr, gt[i], cmds[i], self._poses.get(i))
        return cmds

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def recording_factory(factory: Callable[[], Any], recorder: BagRecorder) -> Callable[[], Any]:
    """A controller factory whose FIRST controller (episode 0) records into ``recorder``."""
    state = {"n": 0}

    def make() -> Any:
        ctrl = factory()
        state["n"] += 1
        return RecordingController(ctrl, recorder) if state["n"] == 1 else ctrl

    return make
