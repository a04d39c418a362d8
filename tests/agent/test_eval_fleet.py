"""forklift eval task=fleet: two planners on the same seeds, same report keys; bad planner names."""

from __future__ import annotations

import json
import subprocess
import sys

from agent.cli import main


def test_eval_fleet__two_planners_same_seeds_same_keys(tmp_path):
    out = tmp_path / "fleet"
    assert main(["eval", "task=fleet", "planners=[classic,mcts_rl]", "n_robots=2", "duration_s=10", "episodes=1",
                 f"hydra.run.dir={out}"]) == 0
    rep = json.loads((out / "report.json").read_text())
    a, b = rep["planners"]["classic"], rep["planners"]["mcts_rl"]
    assert set(a) == set(b) and a["seeds"] == b["seeds"] == [0]
    assert a["decision_latency_ms"]["ticks"] == b["decision_latency_ms"]["ticks"] == 200
    assert (out / "kpis.png").read_bytes()[:4] == b"\x89PNG" and (out / "exceptions.png").is_file()


def test_eval_fleet__unknown_planner_is_one_line_exit_2(tmp_path):
    out = tmp_path / "bad"
    proc = subprocess.run([sys.executable, "-m", "agent.cli", "eval", "task=fleet", "planners=[classic,oracle]",
                           f"hydra.run.dir={out}"], check=False, capture_output=True, text=True, timeout=300)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1 and "planners=oracle" in err[0], proc.stderr
    assert not out.exists()


def test_eval_fleet__ray_workers_match_a_serial_run(tmp_path):
    """eval.workers=2 runs the episodes on a local (loopback) Ray; the KPIs equal a serial run's."""
    pytest = __import__("pytest")
    pytest.importorskip("ray", reason="needs Ray (ray[rllib] is a core dependency)")
    args = ["eval", "task=fleet", "planners=[classic,mcts_rl]", "n_robots=2", "duration_s=8", "episodes=2",
            "scenario=exceptions"]
    reps = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        assert main([*args, f"eval.workers={workers}", f"hydra.run.dir={out}"]) == 0
        reps[workers] = json.loads((out / "report.json").read_text())
    assert reps[2]["workers"] == 2
    for label in ("classic", "mcts_rl"):
        serial = reps[1]["planners"][label]["per_episode"]
        ray_run = reps[2]["planners"][label]["per_episode"]
        assert [e["seed"] for e in serial] == [e["seed"] for e in ray_run] == [0, 1]
        for s, r in zip(serial, ray_run):
            ks, kr = dict(s["kpis"]), dict(r["kpis"])
            assert ks == kr, label  # every KPI of every episode, exceptions and trajectories' outcomes
            assert s["ticks"] == r["ticks"]
