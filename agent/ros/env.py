"""Process environment for ROS: containing the ROS 2 wheels' bootstrapper, localhost discovery.

The ROS 2 wheels from PyPI (``ros-rclpy`` & co., Kilted, unofficial packaging) install
``ros_wheels_bootstrapper.pth`` into site-packages. Python runs a ``.pth`` import line
at start-up in EVERY interpreter of that environment, and this one, unless
``_ROS_WHEELS_BOOTSTRAP_COMPLETE`` is set, ``os.execve``'s the interpreter again with
``LD_LIBRARY_PATH`` = ``sys.prefix/lib`` + ``site-packages/ros_*.libs`` + the old value
(glibc reads ``LD_LIBRARY_PATH`` only at exec time, and rcl ``dlopen``'s the RMW and type
support libraries by bare name). Consequences: every ``python``, ``pytest`` and Ray worker
process starts twice; the path is built from a ``set``, so its order (and the caller's
order) changes from run to run with string hash randomisation; the guard then leaks to
every child, which therefore never gets the path fixed if it was started with a clean
``LD_LIBRARY_PATH``.

Containment (see docs/DEPLOY.md):

* rclpy is imported only in processes started through :func:`ros_env` (the bridge, the
  simulated robot, the test clients), never in pytest or Ray workers: they only ever see
  the guard and do not care about the path.
* :func:`ros_env` builds the environment explicitly: deterministic ``LD_LIBRARY_PATH``
  (ROS dirs sorted, then the caller's entries in their order), the guard set, discovery
  restricted to this host, a ``ROS_DOMAIN_ID``, Fast DDS on loopback only.
* :func:`ensure_ros_process` re-executes the current process once with that environment
  if it lacks it (the bridge / sim-robot verbs call it before importing rclpy), so it
  also works when the guard was already set by a parent (pytest, a CI script).
* CI and Ray clusters may export ``_ROS_WHEELS_BOOTSTRAP_COMPLETE=1`` globally: nothing
  is re-executed then, and the ROS processes still get their path from here.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import tempfile
from collections.abc import Mapping
from pathlib import Path

__all__ = ["BOOTSTRAP_GUARD", "FASTDDS_LOCALHOST_XML", "ensure_ros_process", "fastdds_profile_path",
           "ros_env", "ros_library_dirs"]

BOOTSTRAP_GUARD = "_ROS_WHEELS_BOOTSTRAP_COMPLETE"
_MARK = "_FORKLIFT_ROS_ENV"

#: Fast DDS participant profile: UDPv4 on 127.0.0.1 only (no SHM, no other interface).
#: Without it Fast DDS binds its unicast/multicast sockets on every interface even with
#: ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` (that only limits whom it announces to).
FASTDDS_LOCALHOST_XML = """<?xml version="1.0" encoding="UTF-8" ?>
<dds xmlns="http://www.eprosima.com">
  <profiles>
    <transport_descriptors>
      <transport_descriptor>
        <transport_id>forklift_udp_loopback</transport_id>
        <type>UDPv4</type>
        <interfaceWhiteList>
          <address>127.0.0.1</address>
        </interfaceWhiteList>
      </transport_descriptor>
    </transport_descriptors>
    <participant profile_name="forklift_localhost" is_default_profile="true">
      <rtps>
        <userTransports>
          <transport_id>forklift_udp_loopback</transport_id>
        </userTransports>
        <useBuiltinTransports>false</useBuiltinTransports>
      </rtps>
    </participant>
  </profiles>
</dds>
"""


def ros_library_dirs(prefix: str | None = None) -> list[str]:
    """Directories the ROS 2 wheels' shared libraries live in (sorted; empty without the wheels)."""
    prefix = prefix or sys.prefix
    site = Path(sysconfig.get_path("purelib", vars={"base": prefix, "platbase": prefix}))
    dirs = sorted(str(p) for p in site.glob("ros_*.libs") if p.is_dir())
    if not dirs:
        return []
    return [str(Path(prefix) / "lib"), *dirs]


def fastdds_profile_path() -> Path:
    """Write (once) and return the loopback-only Fast DDS XML profile."""
    d = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
    p = d / f"forklift_fastdds_localhost_{os.getuid()}.xml"
    if not p.exists() or p.read_text() != FASTDDS_LOCALHOST_XML:
        tmp = p.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(FASTDDS_LOCALHOST_XML)
        tmp.replace(p)
    return p


def ros_env(base: Mapping[str, str] | None = None, *, domain_id: int | None = None,
            localhost: bool = True, ros1_master: str | None = None) -> dict[str, str]:
    """Environment for a ROS process (ROS 2 wheels contained, discovery on this host).

    Args:
        base: environment to start from (default ``os.environ``).
        domain_id: ``ROS_DOMAIN_ID`` (0..101 on Linux with Fast DDS); None keeps the base's.
        localhost: ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and the loopback-only Fast DDS
            profile (simulation / tests). False for a robot talking to other hosts.
        ros1_master: ``ROS_MASTER_URI`` for ROS 1 (with ``ROS_IP=127.0.0.1`` when localhost).
    """
    env = dict(os.environ if base is None else base)
    ros_dirs = ros_library_dirs()
    old = [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p and p not in ros_dirs]
    env["LD_LIBRARY_PATH"] = os.pathsep.join([*ros_dirs, *old])
    env[BOOTSTRAP_GUARD] = "1"
    env[_MARK] = "1"
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(int(domain_id))
    if localhost:
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(fastdds_profile_path())
        env["ROS_IP"] = "127.0.0.1"        # ROS 1: advertise and bind XML-RPC/TCPROS on loopback
        env["ROS_HOSTNAME"] = "127.0.0.1"
    if ros1_master is not None:
        env["ROS_MASTER_URI"] = ros1_master
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def ensure_ros_process(*, domain_id: int | None = None, localhost: bool = True) -> None:
    """Re-execute this process once under :func:`ros_env` unless it already runs under it.

    Called by the ``bridge`` / ``sim-robot`` verbs before importing rclpy. Keeps
    ``sys.orig_argv`` (the exact command line) like the wheels' bootstrapper does.
    """
    if os.environ.get(_MARK) == "1":
        return
    env = ros_env(domain_id=domain_id, localhost=localhost)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, list(getattr(sys, "orig_argv", [sys.executable, *sys.argv])), env)
