"""One transport interface, two backends: ROS 2 (``rclpy``, primary) and ROS 1 (``rospy``).

The bridge, the simulated robot and the test clients use only :class:`Transport`; which
middleware runs is ``ros.backend``. Import this module only in a process started under
:func:`agent.ros.env.ros_env` (the ROS 2 wheels need their ``LD_LIBRARY_PATH``).

ROS 1 comes from Debian (``python3-rospy`` ...): its modules are reached by APPENDING
``/usr/lib/python3/dist-packages`` to ``sys.path`` in the ROS 1 process only, so Debian's
numpy & co. never shadow the environment's. The ROS 2 wheels install message packages of
the same names (``std_msgs``, ``geometry_msgs``, ``rosgraph_msgs``, ...) into the
environment, and those would win (``import rospy`` fails: ``cannot import name 'Log' from
rosgraph_msgs.msg``). :func:`prefer_debian_ros1_messages` therefore installs a meta-path
finder that resolves exactly Debian's ROS message packages (``*_msgs``, ``*_srvs``) from
Debian's directory; it refuses to run in a process that already imported one of them (or
rclpy) from the wheels, so a ROS 1 process never mixes the two.
"""

from __future__ import annotations

import importlib
import math
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["DEBIAN_DIST_PACKAGES", "Publisher", "debian_ros1_message_packages", "prefer_debian_ros1_messages", "Ros1Transport", "Ros2Transport", "Transport", "make_transport"]

DEBIAN_DIST_PACKAGES = "/usr/lib/python3/dist-packages"


class _DebianRos1Finder:
    """Meta-path finder: top-level ``names`` are found in Debian's dist-packages only."""

    def __init__(self, names: frozenset[str], root: str) -> None:
        self.names, self.root = names, root

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in self.names:
            return None  # submodules follow their package's __path__ (already Debian's)
        from importlib.machinery import PathFinder

        return PathFinder.find_spec(fullname, [self.root])


def debian_ros1_message_packages(root: str = DEBIAN_DIST_PACKAGES) -> frozenset[str]:
    """Debian's ROS 1 message/service packages (``*_msgs``, ``*_srvs`` directories in ``root``)."""
    import os

    if not os.path.isdir(root):
        return frozenset()
    return frozenset(n for n in os.listdir(root)
                     if (n.endswith("_msgs") or n.endswith("_srvs")) and os.path.isdir(os.path.join(root, n)))


def prefer_debian_ros1_messages(root: str = DEBIAN_DIST_PACKAGES) -> frozenset[str]:
    """Make this process import ROS 1 message packages from Debian (before ``import rospy``).

    Returns the package names redirected. Raises RuntimeError when rclpy or one of those
    packages was already imported from elsewhere (a ROS 2 process cannot become ROS 1).
    """
    names = debian_ros1_message_packages(root)
    clash = sorted(n for n in names | {"rclpy"} if n in sys.modules
                   and not str(getattr(sys.modules[n], "__file__", "") or "").startswith(root))
    if clash:
        raise RuntimeError(f"ros.backend=ros1: this process already imported the ROS 2 {', '.join(clash)}; "
                           "run ROS 1 in a process that never loads rclpy")
    if not any(isinstance(f, _DebianRos1Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _DebianRos1Finder(names, root))
    if root not in sys.path:
        sys.path.append(root)  # append: the venv's numpy, yaml etc. stay first
    return names


def _msg_class(name: str) -> type:
    pkg, typ = name.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), typ)


class Publisher:
    """A publish function that also tells how many subscribers are matched (discovery)."""

    def __init__(self, publish: Callable[[Any], None], count: Callable[[], int]) -> None:
        self._publish, self._count = publish, count

    def __call__(self, msg: Any) -> None:
        self._publish(msg)

    def subscribers(self) -> int:
        """Matched subscriptions now (0 until discovery has paired them)."""
        return int(self._count())

    def wait_for_subscribers(self, n: int = 1, timeout: float = 10.0) -> bool:
        """Block until ``n`` subscriptions matched (True) or ``timeout`` wall s passed (False)."""
        end = time.monotonic() + timeout
        while self.subscribers() < n:
            if time.monotonic() > end:
                return False
            time.sleep(0.02)
        return True


def _plain(v: Any) -> Any:
    """numpy arrays -> what rclpy/rospy accept (bytes for uint8, lists otherwise)."""
    if isinstance(v, np.ndarray):
        return v.astype(np.uint8).tobytes() if v.dtype == np.uint8 else v.tolist()
    return v


class Transport(ABC):
    """Publish/subscribe over one middleware; message types by ``pkg/Type`` name.

    Callbacks run on the backend's threads; the caller synchronises.
    """

    backend: str = ""

    @abstractmethod
    def make(self, name: str, /, **fields: Any) -> Any:
        """A message ``name`` (MsgFactory)."""

    @abstractmethod
    def stamp(self, t: float) -> Any:
        """A time stamp of ``t`` s."""

    def byte(self, v: int) -> Any:
        return int(v)

    @abstractmethod
    def publisher(self, topic: str, type_name: str, *, reliable: bool = True, depth: int = 10,
                  latched: bool = False) -> Publisher:
        """A :class:`Publisher` (call it with a message) on ``topic``."""

    @abstractmethod
    def subscribe(self, topic: str, type_name: str, callback: Callable[[Any], None], *, reliable: bool = True,
                  depth: int = 10, latched: bool = False) -> None:
        """Call ``callback(msg)`` for every message on ``topic``."""

    @abstractmethod
    def start(self) -> None:
        """Start delivering callbacks (background thread)."""

    @abstractmethod
    def ok(self) -> bool: ...

    @abstractmethod
    def shutdown(self) -> None: ...

    def wall(self) -> float:
        """Wall clock (s since the epoch)."""
        return time.time()


class Ros2Transport(Transport):
    """rclpy node spun by a single-threaded executor in a daemon thread."""

    backend = "ros2"

    def __init__(self, node_name: str, domain_id: int | None = None) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self._rclpy = rclpy
        self._ctx = rclpy.context.Context()
        kw = {} if domain_id is None else {"domain_id": int(domain_id)}
        rclpy.init(context=self._ctx, **kw)
        self.node = rclpy.create_node(node_name, context=self._ctx)
        self._exec = SingleThreadedExecutor(context=self._ctx)
        self._exec.add_node(self.node)
        self._thread: threading.Thread | None = None
        self._subs: list[Any] = []
        from builtin_interfaces.msg import Time

        self._Time = Time

    def make(self, name: str, /, **fields: Any) -> Any:
        return _msg_class(name)(**{k: _plain(v) for k, v in fields.items()})

    def stamp(self, t: float) -> Any:
        sec = math.floor(t)
        return self._Time(sec=int(sec), nanosec=min(int(round((t - sec) * 1e9)), 999_999_999))

    def byte(self, v: int) -> Any:
        return bytes([int(v)])

    def _qos(self, reliable: bool, depth: int, latched: bool) -> Any:
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                          reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)

    def publisher(self, topic: str, type_name: str, *, reliable: bool = True, depth: int = 10,
                  latched: bool = False) -> Publisher:
        pub = self.node.create_publisher(_msg_class(type_name), topic, self._qos(reliable, depth, latched))
        return Publisher(pub.publish, pub.get_subscription_count)

    def subscribe(self, topic: str, type_name: str, callback: Callable[[Any], None], *, reliable: bool = True,
                  depth: int = 10, latched: bool = False) -> None:
        self._subs.append(self.node.create_subscription(_msg_class(type_name), topic, callback,
                                                        self._qos(reliable, depth, latched)))

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._spin, name="rclpy-spin", daemon=True)
            self._thread.start()

    def _spin(self) -> None:
        try:
            self._exec.spin()
        except Exception:  # noqa: BLE001 - shutdown races end the spin
            pass

    def ok(self) -> bool:
        return self._ctx.ok()

    def shutdown(self) -> None:
        if self._ctx.ok():
            self._rclpy.shutdown(context=self._ctx)  # wakes the executor's wait
            if self._thread is not None:
                self._thread.join(timeout=2.0)  # a daemon thread alive at exit aborts the interpreter
            self._exec.shutdown(timeout_sec=1.0)
            self.node.destroy_node()


class Ros1Transport(Transport):
    """rospy node (rospy delivers callbacks on its own threads)."""

    backend = "ros1"

    def __init__(self, node_name: str, master_uri: str | None = None) -> None:
        prefer_debian_ros1_messages()
        import os

        if master_uri:
            os.environ["ROS_MASTER_URI"] = master_uri
        import rospy

        self._rospy = rospy
        rospy.init_node(node_name, anonymous=False, disable_signals=True, disable_rosout=False)
        self._subs: list[Any] = []
        self._pubs: list[Any] = []

    def make(self, name: str, /, **fields: Any) -> Any:
        return _msg_class(name)(**{k: _plain(v) for k, v in fields.items()})

    def stamp(self, t: float) -> Any:
        sec = math.floor(t)
        return self._rospy.Time(int(sec), min(int(round((t - sec) * 1e9)), 999_999_999))

    def publisher(self, topic: str, type_name: str, *, reliable: bool = True, depth: int = 10,
                  latched: bool = False) -> Publisher:
        pub = self._rospy.Publisher(topic, _msg_class(type_name), queue_size=depth, latch=latched)
        self._pubs.append(pub)
        return Publisher(pub.publish, pub.get_num_connections)

    def subscribe(self, topic: str, type_name: str, callback: Callable[[Any], None], *, reliable: bool = True,
                  depth: int = 10, latched: bool = False) -> None:
        self._subs.append(self._rospy.Subscriber(topic, _msg_class(type_name), callback, queue_size=depth))

    def start(self) -> None:
        pass

    def ok(self) -> bool:
        return not self._rospy.is_shutdown()

    def shutdown(self) -> None:
        self._rospy.signal_shutdown("forklift: done")


def make_transport(backend: str, node_name: str, *, domain_id: int | None = None,
                   ros1_master: str | None = None) -> Transport:
    """The ``backend`` (``ros2`` | ``ros1``) transport as node ``node_name``."""
    if backend == "ros2":
        return Ros2Transport(node_name, domain_id)
    if backend == "ros1":
        return Ros1Transport(node_name, ros1_master)
    raise ValueError(f"ros.backend={backend}: allowed ros2, ros1")
