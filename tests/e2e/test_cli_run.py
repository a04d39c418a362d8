"""End to end: ``forklift run`` on tiny configs, the baseline delivering, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agent.baseline import BaselineController
from agent.cli import main
from agent.runner import RunConfig, run_episodes
from sim.config import SimConfig


def test_cli_run__tiny_config_writes_report_plot_and_gif(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "+experiment=smoke", "planner=classic", f"hydra.run.dir={out}", "video=true", "video_every=40"]) == 0
    stdout = capsys.readouterr().out
    assert "completion rate" in stdout and "baseline" in stdout
    report = json.loads((out / "report.json").read_text())
    assert set(report) >= {"seeds", "controllers", "config", "versions", "git_commit"}
    assert report["seeds"] == [0]
    base = report["controllers"]["baseline"]
    assert set(base) >= {"aggregate", "episodes", "wall_s"}
    ep = base["episodes"][0]
    assert ep["seed"] == 0 and ep["sim_s"] == pytest.approx(20.0, abs=0.06)
    for key in ("completion_rate", "orders_released", "orders_delivered", "exceptions", "collisions",
                "loc_rms_pos_m", "distance_m", "orders_per_hour"):
        assert key in ep["kpis"], key
    assert set(ep["latency_ms"]) == {"p50", "p99", "mean", "max"}
    assert base["aggregate"]["completion_rate"].keys() == {"mean", "std", "min", "max"}
    assert set(report["versions"]) >= {"forklift", "python", "numpy", "torch", "pybullet"}
    assert report["config"]["n_robots"] == 2 and report["config"]["duration_s"] == 20.0
    assert (out / "trajectories.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "episode_0.gif").read_bytes()[:6] in (b"GIF89a", b"GIF87a")
    assert (out / "config.yaml").is_file()


def test_baseline__delivers_an_order_in_a_60s_nominal_episode():
    res = run_episodes(RunConfig(SimConfig(n_robots=2, duration_s=60.0), episodes=1, seed=0),
                       BaselineController, progress=False)
    k = res.episodes[0].kpis
    assert k["orders_delivered"] >= 1
    assert k["collisions"]["total"] == 0


def test_baseline__same_seed_twice_gives_identical_kpis():
    cfg = RunConfig(SimConfig(n_robots=2, duration_s=20.0), episodes=1, seed=3)
    a = run_episodes(cfg, BaselineController, progress=False).episodes[0]
    b = run_episodes(cfg, BaselineController, progress=False).episodes[0]
    assert a.kpis == b.kpis
    np.testing.assert_array_equal(a.trajectories, b.trajectories)
