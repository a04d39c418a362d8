"""Bridge + sim-robot nodes in one process over an in-memory bus (no middleware): the parts
the ROS end-to-end tests do not reach quickly — one bridge per robot (``robot=1`` of 2, the
site/controller index mapping, other robots' orders hidden), odometry accumulated between
decisions, WMS timeouts. Messages are plain namespaces built by agent.ros.messages."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from agent.ros import messages as M
from agent.ros.bridge import Bridge
from agent.ros.config import RosSection
from agent.ros.transport import Publisher, Transport
from sim.types import OdomReading, TwistCmd


class Bus(Transport):
    """Synchronous in-memory pub/sub; records every message per topic."""

    backend = "memory"

    def __init__(self) -> None:
        self.subs: dict[str, list] = defaultdict(list)
        self.log: dict[str, list] = defaultdict(list)

    def make(self, name: str, /, **fields: Any) -> Any:
        return SimpleNamespace(**fields)

    def stamp(self, t: float) -> Any:
        return SimpleNamespace(sec=int(t), nanosec=int(round((t - int(t)) * 1e9)))

    def publisher(self, topic: str, type_name: str, **kw: Any) -> Publisher:
        def pub(msg: Any) -> None:
            self.log[topic].append(msg)
            for cb in list(self.subs[topic]):
                cb(msg)
        return Publisher(pub, lambda: len(self.subs[topic]))

    def subscribe(self, topic: str, type_name: str, callback: Any, **kw: Any) -> None:
        self.subs[topic].append(callback)

    def start(self) -> None: ...

    def ok(self) -> bool:
        return True

    def shutdown(self) -> None: ...


@pytest.fixture()
def site():
    from agent.baseline import BaselineController, BaselineConfig
    from agent.ros.sim_robot import SimRobotNode
    from sim.config import SimConfig
    from sim.warehouse import WarehouseSim

    ros = RosSection()
    bus = Bus()
    sim = WarehouseSim(SimConfig(n_robots=2, duration_s=120.0), 0)
    sim.reset(0)
    node = SimRobotNode(sim, ros, bus)
    start = sim.initial_poses()
    bridge = Bridge(ros, bus, BaselineController(BaselineConfig()), sim.layout, [1], start[[1]], sim.dt)
    stop = threading.Event()

    def wms() -> None:  # the sim-robot serves requests while the bridge waits (as across processes)
        while not stop.is_set():
            node._serve_requests()
            time.sleep(0.002)

    th = threading.Thread(target=wms, daemon=True)
    th.start()
    node._publish(sim.frames)
    yield SimpleNamespace(sim=sim, node=node, bridge=bridge, bus=bus, ros=ros)
    stop.set()
    th.join()
    sim.close()


def _run(s: SimpleNamespace, ticks: int) -> None:
    for _ in range(ticks):
        s.bridge.tick()
        s.sim.step(s.node._commands())
        s.node._publish(s.sim.frames)


def test_bridge__one_robot_of_two_gets_site_robot_1_orders_and_drives_only_it(site):
    _run(site, 200)  # 10 sim s: orders released, the dispatcher assigns one to its only robot
    mine = [o for o in site.sim.orders if o.robot == 1]
    assert mine and not [o for o in site.sim.orders if o.robot == 0]
    assert site.bridge.fleet.orders and all(o.robot in (None, 0) for o in site.bridge.fleet.orders)
    assert "/robot_0/cmd_vel" not in site.bus.log  # the other robot is not this bridge's
    v = [m.linear.x for m in site.bus.log["/robot_1/cmd_vel"]]
    assert max(v) > 0.1 and site.node.stats.cmd_rx == [0, len(v)]
    # the sim drove robot 1 from those commands, robot 0 stood still (the WMS answers on its
    # own thread, so when the first move starts varies with the machine's load: up to 20 s more)
    def moved() -> float:
        return float(np.hypot(*(site.sim.ground_truth()[1, :2] - site.sim.initial_poses()[1, :2])))

    for _ in range(20):
        if moved() > 0.2:
            break
        _run(site, 20)
    assert moved() > 0.2
    assert np.hypot(*(site.sim.ground_truth()[0, :2] - site.sim.initial_poses()[0, :2])) < 0.01


def test_bridge__orders_of_other_robots_are_hidden_from_the_controller(site):
    _run(site, 120)
    open_ = [o for o in site.sim.orders if o.status == "open"]
    for _ in range(30):  # the bridge's one robot holds one order at a time: the next release stays open
        if open_:
            break
        _run(site, 20)
        open_ = [o for o in site.sim.orders if o.status == "open"]
    assert open_, "no open order within 36 sim s of seed 0"
    site.sim.assign(open_[0].id, 0)  # another bridge's robot takes it
    site.node._publish_orders()
    ids = {o.id for o in site.bridge.fleet.orders}
    assert open_[0].id not in ids


def test_bridge__odometry_between_decisions_is_accumulated_not_dropped(site):
    b, ros = site.bridge, site.ros
    b._take_frames()  # drop what the fixture's first publish left
    t = float(site.sim.time)
    for k, (v, w) in enumerate([(0.4, 0.1), (0.8, -0.3)], start=1):
        b._on_clock(M.clock_msg(site.bus, t + k * 0.05))
        b._on_sensor(0, "odom", M.odom_msg(site.bus, OdomReading(v, w, 0.05), (0, 0, 0), t + k * 0.05, ros.frames))
    f = b._take_frames()[0]
    assert f.odom.dt == pytest.approx(0.1) and f.odom.v == pytest.approx(0.6) and f.odom.w == pytest.approx(-0.1)
    assert f.lidar is None  # no fresh scan since the last frame: absent, not repeated


def test_bridge__wms_without_response_is_a_refusal_within_the_timeout(site):
    site.bus.subs[site.ros.topics.wms_request].clear()  # the WMS is gone
    t0 = time.monotonic()
    assert site.bridge.fleet.pick(0) is False
    assert time.monotonic() - t0 == pytest.approx(site.ros.wms_timeout_s, abs=0.2)
    with pytest.raises(ValueError, match="no response"):
        site.bridge.fleet.assign(0, 0)


def test_bridge__stale_and_wrong_frame_odometry_rejected_and_counted(site):
    b, ros = site.bridge, site.ros
    t = float(site.sim.time) + 1.0
    b._on_clock(M.clock_msg(site.bus, t))
    b._on_sensor(0, "odom", M.odom_msg(site.bus, OdomReading(0.1, 0, 0.05), (0, 0, 0), t - 2.0, ros.frames))
    bad = M.odom_msg(site.bus, OdomReading(0.1, 0, 0.05), (0, 0, 0), t, ros.frames)
    bad.child_frame_id = "base_footprint"
    b._on_sensor(0, "odom", bad)
    assert b.counters[0].rejected["odom.stale"] == 1 and b.counters[0].rejected["odom.frame"] == 1
    assert b.gates[0].output(time.monotonic()) == TwistCmd(0.0, 0.0)


def test_bridge__a_raising_agent_gives_no_decision_and_the_watchdog_stops(site):
    _run(site, 60)
    b = site.bridge

    def boom(frames, t):
        raise RuntimeError("planner exploded")

    b.ctrl.act = boom
    t0 = time.monotonic()
    sc = site.ros.safety  # the gate brakes at its limits after the watchdog: let that ramp end
    ramp = sc.max_v / sc.max_acc + sc.max_w / sc.max_alpha
    while time.monotonic() - t0 < sc.watchdog_s + ramp + 0.2:
        _run(site, 1)
    assert b.agent_errors > 0 and b.gates[0].last_out == TwistCmd(0.0, 0.0)
    assert any("no decision" in r for r in b.gates[0].reasons)
    st = {s.name: s for s in b.status().status}
    assert "planner exploded" in st["forklift/forklift_bridge"].message
