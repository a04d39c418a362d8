"""ROS 1 end to end: a ``roscore`` this test starts on 127.0.0.1, ``forklift sim-robot`` and
``forklift bridge`` with ``ros=ros1`` (rospy from Debian, the ROS 2 wheels' same-named
message packages kept out by ``agent.ros.transport.prefer_debian_ros1_messages``), and
Debian's ``rostopic`` (its own /usr/bin/python3) as the independent client.

Without Debian's ROS 1 packages the tests skip, naming what is missing; with
``FORKLIFT_REQUIRE_ROS1=1`` (set by .ci/run, which installs them) the skip is a failure.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from agent.ros.transport import DEBIAN_DIST_PACKAGES

REPO = Path(__file__).resolve().parents[2]
NEEDED = {"roscore": shutil.which("roscore"), "rostopic": shutil.which("rostopic"),
          "python3-rospy": os.path.isdir(os.path.join(DEBIAN_DIST_PACKAGES, "rospy")) or None,
          "python3-diagnostic-msgs": os.path.isdir(os.path.join(DEBIAN_DIST_PACKAGES, "diagnostic_msgs")) or None}
MISSING = [k for k, v in NEEDED.items() if not v]
REASON = (f"Debian ROS 1 packages missing: {', '.join(MISSING)} (apt-get install ros-core python3-rospy "
          "python3-geometry-msgs python3-nav-msgs python3-sensor-msgs python3-diagnostic-msgs)")

if MISSING and os.environ.get("FORKLIFT_REQUIRE_ROS1") == "1":
    pytestmark = [pytest.mark.ros]

    def test_ros1__required_but_missing():
        pytest.fail(f"FORKLIFT_REQUIRE_ROS1=1 but {REASON}")
else:
    pytestmark = [pytest.mark.ros, pytest.mark.skipif(bool(MISSING), reason=REASON)]


def _ros1_env(port: int) -> dict[str, str]:
    from agent.ros.env import ros_env

    env = ros_env(localhost=True, ros1_master=f"http://127.0.0.1:{port}")
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return env


def _client_env(env: dict[str, str]) -> dict[str, str]:
    """rostopic runs on Debian's python3: only PATH, HOME and the ROS variables."""
    keep = ("PATH", "HOME", "ROS_MASTER_URI", "ROS_IP", "ROS_HOSTNAME")
    return {k: env[k] for k in keep if k in env}


class Ros1Stack:
    def __init__(self, tmp: Path) -> None:
        self.port = random.Random(os.getpid() + time.time_ns()).randrange(20000, 30000)
        self.tmp, self.env = tmp, _ros1_env(self.port)
        self.cenv = _client_env(self.env)
        self.procs: dict[str, subprocess.Popen] = {}
        self.procs["roscore"] = subprocess.Popen(["roscore", "-p", str(self.port)], env=self.cenv,
                                                 stdout=open(tmp / "roscore.log", "w"), stderr=subprocess.STDOUT,
                                                 start_new_session=True)
        end = time.monotonic() + 30
        while subprocess.run(["rostopic", "list"], env=self.cenv, capture_output=True).returncode != 0:
            assert time.monotonic() < end, (tmp / "roscore.log").read_text()
            time.sleep(0.5)
        common = ["ros=ros1", "n_robots=1", f"ros.ros1_master=http://127.0.0.1:{self.port}", "duration_s=3600"]
        for verb, extra in (("bridge", []), ("sim-robot", ["ros.real_time_factor=0.5"])):
            self.procs[verb] = subprocess.Popen(
                [sys.executable, "-m", "agent.cli", verb, *common, *extra, f"hydra.run.dir={tmp / verb}"], cwd=REPO,
                env=self.env, stdout=open(tmp / f"{verb}.log", "w"), stderr=subprocess.STDOUT)

    def echo(self, topic: str, n: int, timeout: float = 20) -> list[dict]:
        r = subprocess.run(["rostopic", "echo", "-n", str(n), topic], env=self.cenv, capture_output=True, text=True,
                           timeout=timeout)
        return [d for d in yaml.safe_load_all(r.stdout) if d]

    def pub_once(self, topic: str, typ: str, body: str) -> None:
        subprocess.run(["rostopic", "pub", "-1", topic, typ, body], env=self.cenv, check=True, capture_output=True,
                       timeout=30)

    def status(self) -> dict:
        d = self.echo("/diagnostics", 1)[0]
        s = next(x for x in d["status"] if x["name"] == "forklift/robot_0")
        return {"message": s["message"], "level": s["level"], **{v["key"]: v["value"] for v in s["values"]}}

    def wait_moving(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            assert all(p.poll() is None for p in self.procs.values()), self.logs()
            try:
                cmds = self.echo("/robot_0/cmd_vel", 10)
            except subprocess.TimeoutExpired:
                continue
            if any(abs(c["linear"]["x"]) > 0.05 or abs(c["angular"]["z"]) > 0.05 for c in cmds):
                return True
        return False

    def logs(self) -> str:
        return "\n".join(f"--- {f.name}\n{f.read_text()[-2000:]}" for f in self.tmp.glob("*.log"))

    def stop(self) -> None:
        for k in ("bridge", "sim-robot"):
            if self.procs[k].poll() is None:
                self.procs[k].send_signal(signal.SIGINT)
        for k in ("bridge", "sim-robot"):
            try:
                self.procs[k].wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.procs[k].kill()
        os.killpg(self.procs["roscore"].pid, signal.SIGINT)  # roscore + the rosmaster/rosout it started
        try:
            self.procs["roscore"].wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.procs["roscore"].pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def ros1(tmp_path_factory: pytest.TempPathFactory):
    s = Ros1Stack(tmp_path_factory.mktemp("ros1_e2e"))
    yield s
    s.stop()


@pytest.mark.timeout(180)
def test_ros1_e2e__bridge_drives_the_sim_robot_seen_by_rostopic(ros1: Ros1Stack):
    assert ros1.wait_moving(120), f"no motion command on /robot_0/cmd_vel\n{ros1.logs()}"
    st = ros1.status()
    assert st["health"] == "ok" and int(st["accepted.scan"]) > 0 and int(st["accepted.odom"]) > 0


@pytest.mark.timeout(60)
def test_ros1_e2e__node_sockets_listen_on_loopback_only(ros1: Ros1Stack):
    psutil = pytest.importorskip("psutil")
    for k in ("bridge", "sim-robot"):
        proc = psutil.Process(ros1.procs[k].pid)
        listen = [c.laddr for c in proc.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]
        assert listen and all(a.ip == "127.0.0.1" for a in listen), (k, listen)


@pytest.mark.timeout(90)
def test_ros1_e2e__malformed_scan_rejected_and_counted(ros1: Ros1Stack):
    before = int(ros1.status().get("rejected.scan.frame", 0))
    ros1.pub_once("/robot_0/scan", "sensor_msgs/LaserScan", "{header: {frame_id: wrong_frame}}")
    time.sleep(1.5)
    assert int(ros1.status().get("rejected.scan.frame", 0)) == before + 1


@pytest.mark.timeout(150)
def test_ros1_e2e__estop_latches_until_reset(ros1: Ros1Stack):
    ros1.pub_once("/estop", "std_msgs/Bool", "data: true")
    time.sleep(1.0)
    cmds = ros1.echo("/robot_0/cmd_vel", 20)
    assert len(cmds) == 20 and all(c["linear"]["x"] == 0 and c["angular"]["z"] == 0 for c in cmds)
    st = ros1.status()
    assert "estop latched" in st["message"] and st["level"] == 2
    ros1.pub_once("/estop", "std_msgs/Bool", "data: false")
    time.sleep(0.5)
    assert "estop latched" in ros1.status()["message"]
    ros1.pub_once("/estop_reset", "std_msgs/Empty", "{}")
    assert ros1.wait_moving(60), "no motion after /estop_reset"
