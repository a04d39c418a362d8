"""``forklift bridge`` and ``forklift sim-robot``: the agent and the simulator as ROS nodes.

    forklift sim-robot n_robots=2 ros.domain_id=42            # the warehouse as ROS robots + WMS
    forklift bridge fleet=true n_robots=2 ros.domain_id=42    # the agent drives them over ROS
    forklift bridge robot=1 n_robots=2 planner=classic        # one bridge per robot

Both re-execute themselves once under :func:`agent.ros.env.ros_env` (the ROS 2 wheels'
library path, localhost discovery, loopback Fast DDS) before importing rclpy; see
docs/DEPLOY.md. Both stop on SIGINT/SIGTERM (the bridge publishes zero velocity last) and
print one JSON summary line on stdout.
"""

from __future__ import annotations

import json
import signal
import threading
from dataclasses import dataclass

from agent.config import ConfigError
from agent.verbs import Invocation, register_verb

__all__ = ["BridgeSection", "bridge_verb", "sim_robot_verb"]


@dataclass(frozen=True)
class BridgeSection:
    """The ``bridge`` verb's own top-level keys.

    Attributes:
        fleet: drive every robot of the site (``n_robots``), each in its namespace.
        robot: the site robot index this bridge drives when ``fleet=false``.
        runtime_s: stop after this many wall seconds (null = until SIGINT/SIGTERM).
    """

    fleet: bool = False
    robot: int = 0
    runtime_s: float | None = None


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, lambda *_: stop.set())
    return stop


def _transport(inv: Invocation, suffix: str = ""):  # noqa: ANN202 - Transport, imported late
    from agent.ros.env import ensure_ros_process

    ros = inv.app.ros
    ensure_ros_process(domain_id=ros.domain_id, localhost=ros.localhost)
    import torch

    torch.set_num_threads(1)
    from agent.ros.transport import make_transport

    try:
        return make_transport(ros.backend, ros.node_name + suffix, domain_id=ros.domain_id,
                              ros1_master=ros.ros1_master)
    except (ImportError, RuntimeError) as e:  # middleware not installed / ROS 2 already loaded
        need = ("pip install -e '.[ros]'" if ros.backend == "ros2" else
                "apt-get install ros-core python3-rospy python3-geometry-msgs python3-nav-msgs "
                "python3-sensor-msgs python3-diagnostic-msgs")
        raise ConfigError("ros.backend", f"{str(e).splitlines()[0]} (install: {need})", ros.backend) from None


def _recorder(inv: Invocation, name: str):  # noqa: ANN202
    if inv.app.record != "bag":
        return None
    from agent.recording import BagRecorder

    inv.out_dir.mkdir(parents=True, exist_ok=True)
    return BagRecorder(inv.out_dir / name, inv.app.ros)


@register_verb("bridge", "run the agent as a ROS node (cmd_vel, pose, diagnostics) with the safety gate",
               config_name="bridge", section=BridgeSection)
def bridge_verb(inv: Invocation) -> int:
    """``forklift bridge``: subscribe sensors, run the planner, publish gated ``cmd_vel``."""
    import numpy as np

    from agent.config import to_sim_config
    from agent.planners import controller_factory
    from sim.layout import generate_layout

    sec: BridgeSection = inv.section
    app = inv.app
    if not sec.fleet and not 0 <= sec.robot < app.n_robots:
        raise ConfigError("robot", f"must be in [0, n_robots={app.n_robots})", sec.robot)
    if sec.runtime_s is not None and not sec.runtime_s > 0:
        raise ConfigError("runtime_s", "must be > 0 (or null)", sec.runtime_s)
    if app.record == "bag" and app.ros.backend != "ros2":
        raise ConfigError("record", "the bridge records rosbag2 from ROS 2 messages; allowed none with "
                          "ros.backend=ros1 (record on the sim-robot side instead)", app.record)
    factory = controller_factory(app)  # refuses a bad planner / checkpoint before any ROS work
    simcfg = to_sim_config(app)
    layout = generate_layout(simcfg.layout)
    ids = list(range(app.n_robots)) if sec.fleet else [sec.robot]
    start = np.zeros((app.n_robots, 3))
    start[:, :2] = layout.cell_to_xy(layout.start_cells(app.n_robots))  # docked poses (WarehouseSim's)
    tp = _transport(inv)
    from agent.ros.bridge import Bridge

    rec = _recorder(inv, "bridge_bag")
    stop = _stop_on_signals()
    bridge = Bridge(app.ros, tp, factory(), layout, ids, start[ids], 1.0 / simcfg.world.control_hz, recorder=rec)
    tp.start()
    print(f"forklift bridge: {tp.backend} node {app.ros.node_name}, robots {ids}, planner {app.planner.name}",
          flush=True)
    try:
        bridge.run(stop=stop, runtime_s=sec.runtime_s)
    finally:
        summary = {"decisions": bridge.decisions, "rejected": [dict(c.rejected) for c in bridge.counters],
                   "latency_p50_ms": float(np.percentile(bridge.latency_ms or [0.0], 50))}
        if rec is not None:
            summary["bag"] = str(rec.close())
        tp.shutdown()
        print(json.dumps(summary), flush=True)
    return 0


@register_verb("sim-robot", "run the PyBullet warehouse as ROS robots (sensors, cmd_vel, ground truth, WMS)")
def sim_robot_verb(inv: Invocation) -> int:
    """``forklift sim-robot``: one episode of ``duration_s`` paced at ``ros.real_time_factor``."""
    from dataclasses import asdict

    from agent.config import to_sim_config
    from sim.warehouse import WarehouseSim

    app = inv.app
    simcfg = to_sim_config(app)
    tp = _transport(inv, "_sim")
    from agent.ros.sim_robot import SimRobotNode

    rec = _recorder(inv, "sim_bag")
    stop = _stop_on_signals()
    sim = WarehouseSim(simcfg, app.seed)
    out: dict = {}
    try:
        sim.reset(app.seed)
        node = SimRobotNode(sim, app.ros, tp, recorder=rec)
        tp.start()
        print(f"forklift sim-robot: {tp.backend}, {sim.n_robots} robots, {app.duration_s} sim s at "
              f"x{app.ros.real_time_factor}", flush=True)
        stats = node.run(stop=stop)
        out = asdict(stats)
        out["kpis"] = {k: v for k, v in sim.kpis().to_dict().items() if isinstance(v, (int, float))}
        out["delivered"] = sum(o.status == "delivered" for o in sim.orders)
    finally:
        sim.close()
        if rec is not None:
            print(f"bag: {rec.close()}", flush=True)
        tp.shutdown()
    print(json.dumps(out, default=str), flush=True)
    return 0
