"""``forklift sim-robot``: the PyBullet warehouse as a ROS robot fleet (and its WMS).

Every control tick (``1 / sim.world.control_hz`` sim s, paced at ``ros.real_time_factor``
sim s per wall s) the node publishes ``/clock`` first, then for each robot ``i`` in
``/robot_i``: odometry, IMU, scan, UWB, fiducial, load state, bumper (and camera with
``ros.camera``) stamped with the sim time, plus ``ground_truth`` (for recording and tests
only; the bridge never reads it). It drives each robot from the newest ``cmd_vel``; a
command older than ``ros.cmd_timeout_s`` wall s (or none, or a malformed one) drives zero,
like a base controller's command timeout.

It is also the site's WMS: it publishes the order book as JSON on ``/wms/orders`` and
serves ``/wms/request`` (JSON ``{id, op: assign|pick|drop, robot, order}``) on
``/wms/response`` (``{id, ok, error, orders}``). Requests run on the simulator thread at
the start of a tick, so they see one consistent world.

``/sim/control`` (JSON) is the test hook of a simulated robot: ``{"op": "silence",
"stream": "scan", "robot": 0}`` stops publishing a stream (``robot`` null = all),
``{"op": "unsilence"}`` restores all.
"""

from __future__ import annotations

import json
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.ros import messages as M
from agent.ros.config import RosSection, resolve_topic
from agent.ros.safety import Rejected
from agent.ros.transport import Transport
from sim.types import TwistCmd

__all__ = ["SimRobotNode", "SimRobotStats"]

_TYPES = {"odom": "nav_msgs/Odometry", "imu": "sensor_msgs/Imu", "scan": "sensor_msgs/LaserScan",
          "uwb": "std_msgs/Float64MultiArray", "fiducial": "std_msgs/Float64MultiArray", "load": "std_msgs/Bool",
          "bumper": "std_msgs/UInt8MultiArray", "image": "sensor_msgs/Image", "depth": "sensor_msgs/Image",
          "ground_truth": "geometry_msgs/PoseStamped"}


@dataclass
class SimRobotStats:
    """What the node did (printed as one JSON line at exit).

    Attributes:
        ticks: control ticks run; wall_s: wall seconds; cmd_rx: cmd_vel received per robot;
        cmd_bad: malformed cmd_vel (driven as zero); timeouts: ticks a robot drove zero
        because its newest command was older than ``cmd_timeout_s``; wms: requests served
        per op; overrun: ticks that started late by more than one period.
    """

    ticks: int = 0
    wall_s: float = 0.0
    cmd_rx: list[int] = field(default_factory=list)
    cmd_bad: int = 0
    timeouts: int = 0
    wms: dict[str, int] = field(default_factory=dict)
    overrun: int = 0


class SimRobotNode:
    """Publishes a :class:`sim.warehouse.WarehouseSim`'s sensors and drives it from ``cmd_vel``.

    Args:
        sim: the simulator (reset by the caller).
        ros: topics, frames, QoS, pace.
        transport: the middleware (``ros2`` or ``ros1``).
        recorder: optional :class:`agent.recording.BagRecorder` (ground truth, sensors, commands).
    """

    def __init__(self, sim: Any, ros: RosSection, transport: Transport, recorder: Any = None) -> None:
        self.sim, self.ros, self.tp, self.rec = sim, ros, transport, recorder
        n = sim.n_robots
        self.stats = SimRobotStats(cmd_rx=[0] * n)
        self._cmd: list[tuple[TwistCmd, float] | None] = [None] * n  # (cmd, wall monotonic s)
        self._lock = threading.Lock()
        self._requests: queue.Queue[str] = queue.Queue()
        self._silent: set[tuple[str, int]] = set()
        self._odom_pose = np.asarray(sim.initial_poses(), dtype=np.float64).copy()  # [N, 3] dead reckoning
        q = ros.qos
        sr, sd = q.sensor_reliability == "reliable", q.sensor_depth
        self._pubs: list[dict[str, Any]] = []
        for i in range(n):
            p = {s: transport.publisher(resolve_topic(ros, getattr(ros.topics, s), i), _TYPES[s], reliable=sr,
                                        depth=sd) for s in ("odom", "imu", "scan", "uwb", "fiducial", "load",
                                                            "bumper", "ground_truth")}
            if ros.camera:
                p["image"] = transport.publisher(resolve_topic(ros, ros.topics.image, i), _TYPES["image"],
                                                 reliable=sr, depth=sd)
                p["depth"] = transport.publisher(resolve_topic(ros, ros.topics.depth, i), _TYPES["depth"],
                                                 reliable=sr, depth=sd)
            self._pubs.append(p)
            transport.subscribe(resolve_topic(ros, ros.topics.cmd_vel, i), "geometry_msgs/Twist",
                                lambda m, i=i: self._on_cmd(i, m), reliable=q.cmd_reliability == "reliable",
                                depth=q.cmd_depth)
        self._clock = transport.publisher(ros.topics.clock, "rosgraph_msgs/Clock", reliable=False, depth=1)
        self._orders = transport.publisher(ros.topics.orders, "std_msgs/String", reliable=True, depth=5,
                                           latched=True)
        self._wms_out = transport.publisher(ros.topics.wms_response, "std_msgs/String", reliable=True, depth=50)
        transport.subscribe(ros.topics.wms_request, "std_msgs/String", lambda m: self._requests.put(m.data),
                            reliable=True, depth=50)
        transport.subscribe(ros.topics.sim_control, "std_msgs/String", self._on_control, reliable=True, depth=10)

    # ---- callbacks (middleware threads) ----------------------------------------------------
    def _on_cmd(self, i: int, msg: Any) -> None:
        try:
            cmd = M.decode_twist(msg)
        except Rejected:
            cmd = TwistCmd(0.0, 0.0)
            self.stats.cmd_bad += 1
        with self._lock:
            self._cmd[i] = (cmd, time.monotonic())
            self.stats.cmd_rx[i] += 1

    def _on_control(self, msg: Any) -> None:
        try:
            c = json.loads(msg.data)
            op = c["op"]
        except (ValueError, KeyError, TypeError):
            return
        with self._lock:
            if op == "silence":
                ids = range(self.sim.n_robots) if c.get("robot") is None else [int(c["robot"])]
                self._silent |= {(str(c["stream"]), i) for i in ids}
            elif op == "unsilence":
                self._silent.clear()

    # ---- the loop --------------------------------------------------------------------------
    def run(self, *, stop: threading.Event | None = None) -> SimRobotStats:
        """Run until the episode ends (``duration_s``) or ``stop`` is set."""
        stop = stop or threading.Event()
        period = self.sim.dt / self.ros.real_time_factor
        t0 = time.monotonic()
        self._publish(self.sim.frames)
        next_t = t0 + period
        while not self.sim.done and not stop.is_set() and self.tp.ok():
            delay = next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -period:
                self.stats.overrun += 1
                next_t = time.monotonic()
            next_t += period
            self._serve_requests()
            cmds = self._commands()
            frames = self.sim.step(cmds)
            self.stats.ticks += 1
            self._publish(frames, cmds)
        self.stats.wall_s = time.monotonic() - t0
        return self.stats

    def _commands(self) -> list[TwistCmd]:
        now, out = time.monotonic(), []
        with self._lock:
            for c in self._cmd:
                if c is None or now - c[1] > self.ros.cmd_timeout_s:
                    out.append(TwistCmd(0.0, 0.0))
                    if c is not None:
                        self.stats.timeouts += 1
                else:
                    out.append(c[0])
        return out

    def _serve_requests(self) -> None:
        served = False
        while True:
            try:
                raw = self._requests.get_nowait()
            except queue.Empty:
                break
            self._wms_out(self.tp.make("std_msgs/String", data=json.dumps(self._serve(raw))))
            served = True
        if served:
            self._publish_orders()

    def _serve(self, raw: str) -> dict[str, Any]:
        """One WMS request -> its response (never raises)."""
        try:
            r = json.loads(raw)
            rid, op, robot = r["id"], r["op"], int(r["robot"])
        except (ValueError, KeyError, TypeError) as e:
            return {"id": None, "ok": False, "error": f"bad request: {e}"}
        self.stats.wms[op] = self.stats.wms.get(op, 0) + 1
        try:
            if op == "assign":
                self.sim.assign(int(r["order"]), robot)
                ok = True
            elif op == "pick":
                ok = bool(self.sim.pick(robot))
            elif op == "drop":
                ok = bool(self.sim.drop(robot))
            else:
                return {"id": rid, "ok": False, "error": f"op={op}: allowed assign, pick, drop"}
        except (ValueError, KeyError, TypeError) as e:
            return {"id": rid, "ok": False, "error": str(e)}
        return {"id": rid, "ok": ok, "error": "", "orders": json.loads(M.orders_to_json(self.sim.orders,
                                                                                        self.sim.time))["orders"]}

    def _publish_orders(self) -> None:
        self._orders(self.tp.make("std_msgs/String", data=M.orders_to_json(self.sim.orders, self.sim.time)))

    def _publish(self, frames: list[Any], cmds: list[TwistCmd] | None = None) -> None:
        tp, ros, fr = self.tp, self.ros, self.ros.frames
        t = float(self.sim.time)
        self._clock(M.clock_msg(tp, t))
        gt = self.sim.ground_truth()
        with self._lock:
            silent = set(self._silent)
        for i, f in enumerate(frames):
            pubs = self._pubs[i]
            msgs: dict[str, Any] = {"ground_truth": M.pose_stamped_msg(tp, gt[i], t, fr.map)}
            if f.odom is not None:
                p = self._odom_pose[i]
                p[2] += f.odom.w * f.odom.dt
                p[0] += f.odom.v * f.odom.dt * math.cos(p[2])
                p[1] += f.odom.v * f.odom.dt * math.sin(p[2])
                msgs["odom"] = M.odom_msg(tp, f.odom, p, t, fr)
            if f.imu is not None:
                msgs["imu"] = M.imu_msg(tp, f.imu, t, fr.imu)
            if f.lidar is not None:
                msgs["scan"] = M.scan_msg(tp, f.lidar, t, fr.laser)
            if f.uwb is not None:
                msgs["uwb"] = M.uwb_msg(tp, f.uwb)
            if f.fiducial is not None:
                msgs["fiducial"] = M.fiducial_msg(tp, f.fiducial)
            if f.load is not None:
                msgs["load"] = M.bool_msg(tp, f.load)
            if f.bumper is not None:
                msgs["bumper"] = M.bumper_msg(tp, f.bumper)
            if f.camera is not None and ros.camera:
                msgs["image"], msgs["depth"] = M.image_msgs(tp, f.camera, t, fr.camera)
            for s, m in msgs.items():
                if (s, i) not in silent:
                    pubs[s](m)
            if self.rec is not None:
                self.rec.robot_tick(i, t, f, gt[i], None if cmds is None else cmds[i])
        if self.stats.ticks % 5 == 0:  # 4 Hz at 20 Hz control: the WMS view, latched
            self._publish_orders()
