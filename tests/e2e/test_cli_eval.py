"""End to end: ``forklift eval task=planning|localization`` on tiny configs, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from agent.cli import main


def test_cli_eval__planning_tiny_writes_curve_and_report(tmp_path):
    out = tmp_path / "plan"
    assert main(["eval", "task=planning", "evaluator=uniform", "sims=[1,2]", "situations=2",
                 f"hydra.run.dir={out}"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["task"] == "planning"
    res = report["result"]
    assert res["sims"] == [1, 2]
    assert len(res["mean_return"]["uniform"]) == 2
    assert (out / "planning.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_eval__localization_tiny_ekf_beats_dead_reckoning(tmp_path):
    out = tmp_path / "loc"
    assert main(["eval", "task=localization", "duration_s=15", "n_robots=2",
                 f"hydra.run.dir={out}"]) == 0
    res = json.loads((out / "report.json").read_text())["result"]
    assert set(res) >= {"ekf", "ukf", "dead_reckoning"}
    assert res["ekf"]["divergences"] == 0
    # centimetre-level with all sensors vs odometry + IMU only
    assert res["ekf"]["pos_rmse_cm"] < 2.0
    assert res["ekf"]["pos_rmse_cm"] < res["dead_reckoning"]["pos_rmse_cm"]
    assert (out / "localization.png").is_file()


@pytest.mark.parametrize("arg, field", [
    ("task=mapping", "task"),
    ("evaluator=oracle", "evaluator"),
    ("situations=0", "situations"),
    ("sims=[0,4]", "sims"),
    ("filters=kalman", "filters"),
])
def test_cli_eval__bad_input_is_one_line_exit_2(tmp_path, arg, field):
    out = tmp_path / "bad"
    proc = subprocess.run([sys.executable, "-m", "agent.cli", "eval", "task=planning", arg,
                           f"hydra.run.dir={out}"], check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert field in err[0]
    assert not (out / "report.json").exists()


def test_cli_eval__corrupt_checkpoint_is_one_line_exit_2_and_nothing_written(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "agent.cli", "eval", "task=planning", "evaluator=network",
                           f"checkpoint={bad}", f"hydra.run.dir={out}"], check=False, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in proc.stderr and "checkpoint" in err[0], proc.stderr
    assert not out.exists()


def test_cli__run_dir_that_is_a_file_is_one_line_exit_2(tmp_path):
    f = tmp_path / "taken"
    f.write_text("x")
    proc = subprocess.run([sys.executable, "-m", "agent.cli", "run", f"hydra.run.dir={f}"],
                          check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "hydra.run.dir" in err[0] and "Traceback" not in proc.stderr, proc.stderr
