"""``forklift run record=bag``: a rosbag2 MCAP of episode 0 that reads back with rosbags."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from agent.recording import read_bag


def test_run_record_bag__mcap_reads_back_with_sensors_estimates_commands_ground_truth(tmp_path: Path):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "agent.cli", "run", "record=bag", "episodes=1", "duration_s=3",
                        "n_robots=2", "planner=classic", f"hydra.run.dir={out}"],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    bag = out / "episode_0_bag"
    assert (bag / "metadata.yaml").is_file() and list(bag.glob("*.mcap"))
    msgs = read_bag(bag)
    ticks = 3 * 20
    for i in (0, 1):
        for name in ("ground_truth", "odom", "imu", "scan", "pose_estimate", "cmd_vel"):
            assert len(msgs[f"/robot_{i}/{name}"]) == ticks, (i, name)
    assert len(msgs["/clock"]) == ticks
    stamps = [t for t, _ in msgs["/robot_0/scan"]]
    assert stamps == sorted(stamps) and stamps[1] - stamps[0] == 50_000_000  # 20 Hz sim time, ns
    scan = msgs["/robot_0/scan"][5][1]
    n = round((scan.angle_max - scan.angle_min) / scan.angle_increment) + 1
    assert len(scan.ranges) == n and scan.header.frame_id == "base_scan"
    # the estimate follows the ground truth it was recorded beside (EKF, centimetres)
    gt = np.array([[m.pose.position.x, m.pose.position.y] for _, m in msgs["/robot_1/ground_truth"]])
    est = np.array([[m.pose.pose.position.x, m.pose.pose.position.y] for _, m in msgs["/robot_1/pose_estimate"]])
    assert np.abs(gt - est).max() < 0.05
    assert np.isfinite([m.linear.x for _, m in msgs["/robot_0/cmd_vel"]]).all()
    report = json.loads((out / "report.json").read_text())
    assert report  # the run itself still reports
