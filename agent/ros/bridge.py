"""``forklift bridge``: the agent as a ROS node for one robot (or, ``fleet=true``, several).

Data path (``docs/DEPLOY.md``): sensor topics -> :mod:`agent.ros.messages` decoders
(validated; a malformed message is counted per ``stream.reason`` and dropped) -> per-robot
latest-value buffers -> one :class:`sim.types.SensorFrame` per robot per fresh odometry ->
the controller (``agent.Agent``, any ``planner=``) through :class:`RosFleet`, the
:class:`agent.control.Fleet` of a ROS site -> :class:`agent.ros.safety.SafetyGate` (watchdog,
latched e-stop, localization ``lost``, velocity and acceleration limits) -> ``cmd_vel``.

The gate runs on the wall clock at ``ros.control_hz`` whether or not frames arrive, so a
silent sensor, a stuck agent or a dead simulator still produce zero commands (and say why
on ``/diagnostics``). Frames are built when every robot of this bridge has fresh odometry;
odometry that arrives faster than the agent decides is accumulated (distance and angle
summed, ``dt`` added), so dead reckoning loses nothing.

The WMS is reached over topics: the order book arrives as JSON on ``ros.topics.orders``;
``assign``/``pick``/``drop`` are JSON requests on ``wms_request`` answered on
``wms_response`` within ``ros.wms_timeout_s`` (a timeout is a refusal).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.ros import messages as M
from agent.ros.config import RosSection, resolve_topic
from agent.ros.safety import RejectCounter, Rejected, SafetyGate
from agent.ros.transport import Transport
from sim.orders import Order
from sim.types import OdomReading, Pose, SensorFrame, TwistCmd

__all__ = ["Bridge", "RosFleet", "orders_from_json"]


def orders_from_json(items: Sequence[dict]) -> list[Order]:
    """``sim.types.Order`` records of the WMS JSON (:func:`agent.ros.messages.orders_to_json`)."""
    def cell(v: Any) -> tuple[int, int] | None:
        return None if v is None else (int(v[0]), int(v[1]))

    out = []
    for d in items:
        out.append(Order(id=int(d["id"]), pick_cell=cell(d["pick_cell"]), shelf_cell=cell(d["shelf_cell"]),
                         station_cell=cell(d["station_cell"]), release_t=float(d["release_t"]),
                         deadline_t=float(d["deadline_t"]), status=d["status"],
                         robot=None if d["robot"] is None else int(d["robot"]), load_cell=cell(d["load_cell"]),
                         picked_t=d["picked_t"], delivered_t=d["delivered_t"], assigned_t=d["assigned_t"]))
    return out


@dataclass
class _Inbox:
    """Latest validated readings of one robot (written by middleware threads)."""

    odom_v_dt: float = 0.0   # m, accumulated v * dt since the last frame
    odom_w_dt: float = 0.0   # rad, accumulated w * dt
    odom_dt: float = 0.0     # s accumulated
    odom_stamp: float | None = None
    imu: Any = None
    scan: Any = None
    uwb: Any = None
    fiducial: Any = None
    load: bool | None = None
    bumper: Any = None
    image: Any = None
    depth: Any = None
    fresh: set[str] = field(default_factory=set)


class RosFleet:
    """:class:`agent.control.Fleet` over ROS topics for the robots ``ids`` of the site.

    The controller's robot ``k`` is the site's robot ``ids[k]``; orders assigned to robots
    of other bridges are hidden from it.
    """

    def __init__(self, bridge: Bridge, layout: Any, ids: Sequence[int], start: np.ndarray, dt: float) -> None:
        self._b, self.layout, self.ids, self.dt = bridge, layout, list(ids), dt
        self.n_robots = len(self.ids)
        self._start = np.asarray(start, dtype=np.float64)
        self.time = 0.0

    @property
    def orders(self) -> list[Order]:
        mine = {site: k for k, site in enumerate(self.ids)}
        out = []
        for o in self._b.order_book():
            if o.robot is not None:
                if o.robot not in mine:
                    continue
                o = dataclasses.replace(o, robot=mine[o.robot])
            out.append(o)
        return out

    def initial_poses(self) -> np.ndarray:
        return self._start.copy()

    def assign(self, order_id: int, robot_id: int) -> None:
        r = self._b.wms("assign", self.ids[robot_id], order_id)
        if not r.get("ok"):
            raise ValueError(r.get("error") or "refused")

    def pick(self, robot_id: int) -> bool:
        return bool(self._b.wms("pick", self.ids[robot_id]).get("ok"))

    def drop(self, robot_id: int) -> bool:
        return bool(self._b.wms("drop", self.ids[robot_id]).get("ok"))

    def announce_route(self, robot_id: int, cells: Any) -> None:
        self._b.publish_route(robot_id, cells)

    def report_pose_estimate(self, robot_id: int, pose: Pose) -> None:
        self._b.publish_pose(robot_id, pose)


class Bridge:
    """The agent on ROS for the site robots ``ids``.

    Args:
        ros: topics, frames, QoS, rates, safety.
        transport: middleware node.
        controller: a fresh :class:`agent.control.Controller` (reset here).
        layout: the site's floor plan; ids: site robot indices; start: [len(ids), 3] docked
            start poses (x, y, yaw) the operator knows (m, rad).
        dt: the controller's nominal period (s); recorder: optional BagRecorder.
    """

    def __init__(self, ros: RosSection, transport: Transport, controller: Any, layout: Any, ids: Sequence[int],
                 start: np.ndarray, dt: float, recorder: Any = None) -> None:
        self.ros, self.tp, self.ctrl, self.rec = ros, transport, controller, recorder
        self.layout = layout
        self.ids = list(ids)
        n = len(self.ids)
        self._lock = threading.Lock()
        self._inbox = [_Inbox() for _ in range(n)]
        self.counters = [RejectCounter() for _ in range(n)]
        t0 = time.monotonic()
        self.gates = [SafetyGate(ros.safety, start=t0) for _ in range(n)]
        self._clock: float | None = None if ros.time_source == "sim" else time.time()
        self._orders: list[Order] = []
        self._responses: dict[str, dict] = {}
        self._resp_cv = threading.Condition()
        self._req_ids = itertools.count()
        self._health = ["ok"] * n
        self.decisions = 0
        self.agent_errors = 0  # controller.act raised (no decision that tick; watchdog applies)
        self.last_error = ""
        self.latency_ms: list[float] = []
        self.fleet = RosFleet(self, layout, self.ids, start, dt)
        self._wire()
        self.ctrl.reset(self.fleet)

    # ---- wiring --------------------------------------------------------------------------
    def _wire(self) -> None:
        ros, tp, q = self.ros, self.tp, self.ros.qos
        sr, sd = q.sensor_reliability == "reliable", q.sensor_depth
        cr, cd = q.cmd_reliability == "reliable", q.cmd_depth
        types = {"odom": "nav_msgs/Odometry", "imu": "sensor_msgs/Imu", "scan": "sensor_msgs/LaserScan",
                 "uwb": "std_msgs/Float64MultiArray", "fiducial": "std_msgs/Float64MultiArray",
                 "load": "std_msgs/Bool", "bumper": "std_msgs/UInt8MultiArray"}
        self._cmd_pub, self._pose_pub, self._plan_pub = [], [], []
        for k, site in enumerate(self.ids):
            for s in ros.sensors:
                if s == "image":
                    continue
                tp.subscribe(resolve_topic(ros, getattr(ros.topics, s), site), types[s],
                             lambda m, k=k, s=s: self._on_sensor(k, s, m), reliable=sr, depth=sd)
            if ros.camera or "image" in ros.sensors:
                for s in ("image", "depth"):
                    tp.subscribe(resolve_topic(ros, getattr(ros.topics, s), site), "sensor_msgs/Image",
                                 lambda m, k=k, s=s: self._on_sensor(k, s, m), reliable=sr, depth=sd)
            self._cmd_pub.append(tp.publisher(resolve_topic(ros, ros.topics.cmd_vel, site), "geometry_msgs/Twist",
                                              reliable=cr, depth=cd))
            self._pose_pub.append(tp.publisher(resolve_topic(ros, ros.topics.pose, site),
                                               "geometry_msgs/PoseWithCovarianceStamped", reliable=cr, depth=cd))
            self._plan_pub.append(tp.publisher(resolve_topic(ros, ros.topics.plan, site), "nav_msgs/Path",
                                               reliable=cr, depth=1))
        self._status_pub = tp.publisher(ros.topics.status, "diagnostic_msgs/DiagnosticArray", reliable=True,
                                        depth=10)
        self._wms_pub = tp.publisher(ros.topics.wms_request, "std_msgs/String", reliable=True, depth=50)
        tp.subscribe(ros.topics.wms_response, "std_msgs/String", self._on_response, reliable=True, depth=50)
        tp.subscribe(ros.topics.orders, "std_msgs/String", self._on_orders, reliable=True, depth=5, latched=True)
        tp.subscribe(ros.topics.estop, "std_msgs/Bool", self._on_estop, reliable=True, depth=10, latched=True)
        tp.subscribe(ros.topics.estop_reset, "std_msgs/Empty", self._on_reset, reliable=True, depth=10)
        if ros.time_source == "sim":
            tp.subscribe(ros.topics.clock, "rosgraph_msgs/Clock", self._on_clock, reliable=False, depth=1)

    # ---- callbacks -----------------------------------------------------------------------
    def now(self) -> float | None:
        """The bridge's ROS time (s): the newest ``/clock`` (sim) or the wall clock (system)."""
        return self._clock if self.ros.time_source == "sim" else time.time()

    def _on_clock(self, msg: Any) -> None:
        t = M.stamp_to_s(msg.clock)
        if self._clock is None or t > self._clock:
            self._clock = t

    def _on_sensor(self, k: int, stream: str, msg: Any) -> None:
        """Validate one message; accepted -> inbox + watchdog, rejected -> counted."""
        now, fr, cfg = self.now(), self.ros.frames, self.ros.safety
        c = self.counters[k]
        try:
            if now is None and stream in ("odom", "imu", "scan", "image", "depth"):
                raise Rejected("no_clock", "no /clock yet")
            with self._lock:
                box = self._inbox[k]
                if stream == "odom":
                    stamp, v, w = M.decode_odom(msg, now, fr, cfg)
                    dt = self.fleet.dt if box.odom_stamp is None else stamp - box.odom_stamp
                    if dt <= 0:
                        raise Rejected("stamp", "odometry stamp not increasing")
                    box.odom_v_dt += v * dt
                    box.odom_w_dt += w * dt
                    box.odom_dt += dt
                    box.odom_stamp = stamp
                elif stream == "scan":
                    box.scan = M.decode_scan(msg, now, fr, cfg)[1]
                elif stream == "imu":
                    box.imu = M.decode_imu(msg, now, fr, cfg)[1]
                elif stream == "uwb":
                    box.uwb = M.decode_uwb(msg, len(self.layout.uwb_anchors))
                elif stream == "fiducial":
                    box.fiducial = M.decode_fiducial(msg, len(self.layout.fiducials))
                elif stream == "load":
                    box.load = bool(msg.data)
                elif stream == "bumper":
                    box.bumper = M.decode_bumper(msg)
                elif stream in ("image", "depth"):
                    setattr(box, stream, msg)
                box.fresh.add(stream)
        except Rejected as e:
            c.reject(stream, e.reason)
            return
        except (AttributeError, TypeError, ValueError):
            c.reject(stream, "type")
            return
        c.accept(stream)
        self.gates[k].saw(stream, time.monotonic())

    def _on_orders(self, msg: Any) -> None:
        try:
            orders = orders_from_json(json.loads(msg.data)["orders"])
        except (ValueError, KeyError, TypeError):
            return
        with self._lock:
            self._orders = orders

    def _on_response(self, msg: Any) -> None:
        try:
            r = json.loads(msg.data)
        except ValueError:
            return
        if not isinstance(r, dict) or not str(r.get("id", "")).startswith(self._req_prefix):
            return
        with self._resp_cv:
            self._responses[str(r["id"])] = r
            self._resp_cv.notify_all()

    def _on_estop(self, msg: Any) -> None:
        if bool(msg.data):
            for g in self.gates:
                g.trip_estop()

    def _on_reset(self, msg: Any) -> None:
        for g in self.gates:
            g.reset_estop()

    # ---- WMS -----------------------------------------------------------------------------
    @property
    def _req_prefix(self) -> str:
        return f"{self.ros.node_name}:"

    def order_book(self) -> list[Order]:
        with self._lock:
            return list(self._orders)

    def wms(self, op: str, robot: int, order: int | None = None) -> dict:
        """One WMS request; the response dict, or ``{"ok": False, "error": "timeout"}``."""
        rid = f"{self._req_prefix}{next(self._req_ids)}"
        req = {"id": rid, "op": op, "robot": int(robot)}
        if order is not None:
            req["order"] = int(order)
        self._wms_pub(self.tp.make("std_msgs/String", data=json.dumps(req)))
        deadline = time.monotonic() + self.ros.wms_timeout_s
        with self._resp_cv:
            while rid not in self._responses:
                left = deadline - time.monotonic()
                if left <= 0:
                    return {"ok": False, "error": f"wms {op}: no response within {self.ros.wms_timeout_s} s"}
                self._resp_cv.wait(left)
            r = self._responses.pop(rid)
        if "orders" in r:
            try:
                book = orders_from_json(r["orders"])
            except (KeyError, TypeError, ValueError):
                book = None
            if book is not None:
                with self._lock:
                    self._orders = book
        return r

    # ---- publishing ----------------------------------------------------------------------
    def publish_pose(self, k: int, pose: Pose) -> None:
        self._health[k] = pose.health
        t = float(pose.stamp) if pose.stamp is not None and np.isfinite(pose.stamp) else (self.now() or 0.0)
        msg = M.pose_cov_msg(self.tp, pose, t, self.ros.frames.map)
        self._pose_pub[k](msg)
        if self.rec is not None:
            self.rec.write(resolve_topic(self.ros, self.ros.topics.pose, self.ids[k]), msg, t)

    def publish_route(self, k: int, cells: Any) -> None:
        arr = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
        xy = self.layout.cell_to_xy(arr) if len(arr) else np.zeros((0, 2))
        self._plan_pub[k](M.path_msg(self.tp, xy, self.now() or 0.0, self.ros.frames.map))

    # ---- the loop ------------------------------------------------------------------------
    def _take_frames(self) -> list[SensorFrame] | None:
        """One frame per robot when every robot has fresh odometry (else None)."""
        with self._lock:
            if any("odom" not in b.fresh for b in self._inbox):
                return None
            frames = []
            for k, b in enumerate(self._inbox):
                dt = max(b.odom_dt, 1e-6)
                cam = None
                if b.image is not None and b.depth is not None and {"image", "depth"} <= b.fresh:
                    try:
                        cam = M.decode_image(b.image, b.depth, self.now(), self.ros.frames, self.ros.safety)
                    except Rejected as e:
                        self.counters[k].reject("image", e.reason)
                frames.append(SensorFrame(
                    stamp=float(b.odom_stamp), robot_id=k,
                    odom=OdomReading(v=b.odom_v_dt / dt, w=b.odom_w_dt / dt, dt=dt),
                    imu=b.imu if "imu" in b.fresh else None, lidar=b.scan if "scan" in b.fresh else None,
                    camera=cam, uwb=b.uwb if "uwb" in b.fresh else None,
                    fiducial=b.fiducial if "fiducial" in b.fresh else None, load=b.load,
                    bumper=b.bumper if "bumper" in b.fresh else None))
                b.odom_v_dt = b.odom_w_dt = b.odom_dt = 0.0
                b.fresh.clear()
            return frames

    def tick(self) -> None:
        """One control period: decide on fresh frames, gate, publish ``cmd_vel``."""
        frames = self._take_frames()
        if frames is not None:
            t = frames[0].stamp
            self.fleet.time = t
            t0 = time.perf_counter()
            try:
                cmds = self.ctrl.act(frames, t)
            except Exception as e:  # noqa: BLE001 - no decision: the watchdog stops the robots
                self.agent_errors += 1
                self.last_error = f"{type(e).__name__}: {e}"[:200]
                cmds = None
            if cmds is not None:
                self.latency_ms.append((time.perf_counter() - t0) * 1e3)
                self.decisions += 1
                now = time.monotonic()
                for k, c in enumerate(cmds):
                    self.gates[k].decide(c, now, self._health[k])
        now = time.monotonic()
        for k, g in enumerate(self.gates):
            out = g.output(now)
            msg = M.twist_msg(self.tp, out)
            self._cmd_pub[k](msg)
            if self.rec is not None:
                self.rec.write(resolve_topic(self.ros, self.ros.topics.cmd_vel, self.ids[k]), msg,
                               self.now() or 0.0)

    def status(self) -> Any:
        """The ``DiagnosticArray``: one entry per robot (stop reasons, counters) + the bridge."""
        entries = []
        for k, site in enumerate(self.ids):
            g, c = self.gates[k], self.counters[k]
            lvl = "error" if g.estop or g.health == "lost" else ("warn" if g.reasons else "ok")
            vals: dict[str, Any] = {"estop": g.estop, "health": self._health[k], "cmd_v": f"{g.last_out.v:.3f}",
                                    "cmd_w": f"{g.last_out.w:.3f}", "rejected": c.total()}
            vals.update({f"rejected.{r}": n for r, n in sorted(c.rejected.items())})
            vals.update({f"accepted.{s}": n for s, n in sorted(c.accepted.items())})
            entries.append((f"forklift/{self.ros.namespace.format(id=site)}", lvl,
                            "; ".join(g.reasons) if g.reasons else "ok", vals))
        lat = np.asarray(self.latency_ms[-200:] or [0.0])
        entries.append((f"forklift/{self.ros.node_name}", "error" if self.agent_errors else "ok",
                        f"agent error: {self.last_error}" if self.agent_errors else "running",
                        {"decisions": self.decisions, "agent_errors": self.agent_errors, "planner": getattr(self.ctrl, "name", type(self.ctrl).__name__),
                         "latency_p50_ms": f"{np.percentile(lat, 50):.2f}",
                         "latency_p99_ms": f"{np.percentile(lat, 99):.2f}", "backend": self.tp.backend}))
        return M.diagnostics_msg(self.tp, self.now() or 0.0, entries)

    def run(self, *, stop: threading.Event | None = None, runtime_s: float | None = None) -> None:
        """Tick at ``ros.control_hz`` (wall) and publish status at ``ros.status_hz`` until stopped."""
        stop = stop or threading.Event()
        period, status_period = 1.0 / self.ros.control_hz, 1.0 / self.ros.status_hz
        t_end = None if runtime_s is None else time.monotonic() + runtime_s
        next_t = next_status = time.monotonic()
        try:
            while not stop.is_set() and self.tp.ok() and (t_end is None or time.monotonic() < t_end):
                self.tick()
                now = time.monotonic()
                if now >= next_status:
                    msg = self.status()
                    self._status_pub(msg)
                    if self.rec is not None:
                        self.rec.write(self.ros.topics.status, msg, self.now() or 0.0)
                    next_status = now + status_period
                next_t += period
                delay = next_t - time.monotonic()
                if delay > 0:
                    stop.wait(delay)
                else:
                    next_t = time.monotonic()
        finally:
            zero = M.twist_msg(self.tp, TwistCmd(0.0, 0.0))
            for pub in self._cmd_pub:  # leave the robots standing
                pub(zero)
