"""An independent ROS client for the end-to-end tests (its own process, its own node).

    python tests/ros/ros_client.py <scenario> '<json args>'

It talks to the bridge and the simulated robot only over the middleware (``backend`` in
the args: ros2 or ros1), records what it sees with wall-clock (monotonic) times and
prints one JSON line (the last line of stdout) for the test to judge. It asserts nothing
itself. Scenarios: ``move``, ``deliver``, ``malformed``, ``estop``, ``watchdog`` (see each function).
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from typing import Any

MOVING = 0.05  # |v| m/s or |w| rad/s above which a command counts as a move


class Watcher:
    """Subscribes cmd_vel of every robot, /diagnostics, /clock and the order book."""

    def __init__(self, backend: str, n_robots: int, domain_id: int | None) -> None:
        sys.path.insert(0, ".")
        from agent.ros.transport import make_transport

        self.tp = make_transport(backend, f"forklift_test_client_{int(time.time() * 1e3) % 100000}",
                                 domain_id=domain_id, ros1_master=None)
        self.lock = threading.Lock()
        self.cmds: list[tuple[float, int, float, float]] = []  # (t, robot, v, w)
        self.status: list[tuple[float, dict[str, Any]]] = []
        self.orders: list[dict] = []
        self.clock: float | None = None
        for i in range(n_robots):
            self.tp.subscribe(f"/robot_{i}/cmd_vel", "geometry_msgs/Twist", lambda m, i=i: self._cmd(i, m))
        self.tp.subscribe("/diagnostics", "diagnostic_msgs/DiagnosticArray", self._status)
        self.tp.subscribe("/wms/orders", "std_msgs/String", self._orders, latched=True, depth=5)
        self.tp.subscribe("/clock", "rosgraph_msgs/Clock", self._clock, reliable=False, depth=1)
        self.tp.start()

    def _cmd(self, i: int, m: Any) -> None:
        with self.lock:
            self.cmds.append((time.monotonic(), i, float(m.linear.x), float(m.angular.z)))

    def _status(self, m: Any) -> None:
        d = {}
        for s in m.status:
            lvl = s.level if isinstance(s.level, int) else ord(s.level)
            d[s.name] = {"level": lvl, "message": s.message, "values": {v.key: v.value for v in s.values}}
        with self.lock:
            self.status.append((time.monotonic(), d))

    def _orders(self, m: Any) -> None:
        with self.lock:
            self.orders = json.loads(m.data)["orders"]

    def _clock(self, m: Any) -> None:
        from agent.ros.messages import stamp_to_s

        self.clock = stamp_to_s(m.clock)

    def wait(self, pred: Any, timeout: float) -> float | None:
        """Poll ``pred()`` every 20 ms; the monotonic time it first held, or None."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                ok = pred()
            if ok:
                return time.monotonic()
            time.sleep(0.02)
        return None

    def moving(self, since: float = 0.0) -> bool:
        return any(t >= since and (abs(v) > MOVING or abs(w) > MOVING) for t, _, v, w in self.cmds)

    def publisher(self, topic: str, typ: str, **kw: Any) -> Any:
        pub = self.tp.publisher(topic, typ, **kw)
        if not pub.wait_for_subscribers(1, timeout=15.0):  # a message before the match would be lost
            raise SystemExit(f"no subscriber matched {topic} within 15 s")
        time.sleep(0.2)
        return pub

    def result(self, **extra: Any) -> dict:
        with self.lock:
            return {"cmds": self.cmds, "status": self.status, "orders": self.orders, **extra}


def move(w: Watcher, a: dict) -> dict:
    """Wait for the agent's first real motion command and for an order the WMS assigned."""
    t_move = w.wait(w.moving, a.get("timeout", 90))
    t_order = w.wait(lambda: any(o["status"] in ("assigned", "picked", "delivered") for o in w.orders), 30)
    since = time.monotonic()
    w.wait(lambda: any(t > since for t, _ in w.status), 10)  # a status report after both
    return w.result(t_move=t_move, t_order=t_order)


def deliver(w: Watcher, a: dict) -> dict:
    """Wait for the WMS to report an order delivered (orders in, deliveries out)."""
    t_done = w.wait(lambda: any(o["status"] == "delivered" for o in w.orders), a.get("timeout_s", 300))
    return w.result(t_done=t_done, cmds=[], status=w.status[-3:])


def _bad_scans(w: Watcher, t: float) -> list[tuple[str, Any]]:
    from agent.ros import messages as M
    from agent.ros.config import FramesConfig
    from sim.types import LidarScan
    import numpy as np

    fr = FramesConfig()
    ang = np.linspace(-math.pi, math.pi, 180, endpoint=False)
    good = LidarScan(angles=ang, ranges=np.full(180, 3.0), range_max=10.0)

    def scan(**change: Any) -> Any:
        m = M.scan_msg(w.tp, good, change.pop("stamp", t), change.pop("frame", fr.laser))
        for k, v in change.items():
            setattr(m, k, v)
        return m

    return [("length", scan(ranges=[3.0] * 90)), ("frame", scan(frame="front_laser_typo")),
            ("stale", scan(stamp=t - 5.0)), ("range", scan(ranges=[-1.0] + [3.0] * 179)),
            ("inf", scan(angle_increment=math.inf)), ("nan", scan(angle_min=math.nan))]


def malformed(w: Watcher, a: dict) -> dict:
    """Publish one malformed LaserScan of each kind on /robot_0/scan, read the counters after."""
    key = "forklift/robot_0"
    w.wait(lambda: w.clock is not None and w.status and key in w.status[-1][1], 30)
    pub = w.publisher("/robot_0/scan", "sensor_msgs/LaserScan", reliable=True, depth=10)
    with w.lock:
        before = w.status[-1][1][key]["values"]
    sent = []
    for kind, m in _bad_scans(w, float(w.clock)):
        pub(m)
        sent.append(kind)
        time.sleep(0.1)
    t_sent = time.monotonic()
    w.wait(lambda: w.status[-1][0] > t_sent + 1.2, 10)
    with w.lock:
        after = w.status[-1][1][key]["values"]
    return w.result(sent=sent, before=before, after=after, cmds=[], status=[])


def estop(w: Watcher, a: dict) -> dict:
    """E-stop while moving; ``False`` on /estop must not clear it; /estop_reset does."""
    t_moving = w.wait(w.moving, 60)
    pub = w.publisher("/estop", "std_msgs/Bool", latched=True)
    reset = w.publisher("/estop_reset", "std_msgs/Empty")
    t_moving = t_moving if w.moving(time.monotonic() - 1.0) else w.wait(w.moving, 30)
    t_estop = time.monotonic()
    pub(w.tp.make("std_msgs/Bool", data=True))
    time.sleep(2.0)
    t_false = time.monotonic()
    pub(w.tp.make("std_msgs/Bool", data=False))
    time.sleep(1.5)
    t_reset = time.monotonic()
    reset(w.tp.make("std_msgs/Empty"))
    t_resume = w.wait(lambda: w.moving(t_reset), 20)
    return w.result(t_moving=t_moving, t_estop=t_estop, t_false=t_false, t_reset=t_reset, t_resume=t_resume)


def watchdog(w: Watcher, a: dict) -> dict:
    """Silence every robot's scan in the simulated robot while moving; unsilence after."""
    ctl = w.publisher("/sim/control", "std_msgs/String")
    t_moving = w.wait(lambda: w.moving(time.monotonic() - 0.3), 60)
    t_silence = time.monotonic()
    ctl(w.tp.make("std_msgs/String", data=json.dumps({"op": "silence", "stream": "scan", "robot": None})))
    time.sleep(2.5)
    t_unsilence = time.monotonic()
    ctl(w.tp.make("std_msgs/String", data=json.dumps({"op": "unsilence"})))
    t_resume = w.wait(lambda: w.moving(t_unsilence), 20)
    return w.result(t_moving=t_moving, t_silence=t_silence, t_unsilence=t_unsilence, t_resume=t_resume)


def main() -> None:
    scenario, args = sys.argv[1], json.loads(sys.argv[2])
    w = Watcher(args.get("backend", "ros2"), args.get("n_robots", 2), args.get("domain_id"))
    time.sleep(0.5)
    try:
        res = {"move": move, "deliver": deliver, "malformed": malformed, "estop": estop, "watchdog": watchdog}[scenario](w, args)
    finally:
        w.tp.shutdown()
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
