"""``forklift eval task=continual``: the report's keys, the same seeds on and off, bad input,
and the closed-aisle layout. Tiny real runs (PyBullet, the real learner): 2 robots, 8 s."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agent.cli import main
from agent.config import ConfigError
from agent.eval_continual import closed_layout
from sim.layout import LayoutConfig, generate_layout

TINY = ["n_robots=2", "duration_s=8", "continual.before=1", "continual.after=1", "bootstrap=20",
        "learning.background=false", "learning.learner.min_samples=4", "learning.learner.min_new_samples=4",
        "learning.learner.gate_situations=3", "learning.learner.gate_horizon=10",
        "learning.learner.steps_per_update=3"]


def test_eval_continual__report_has_every_part_and_both_arms_ran_the_same_seeds(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["eval", "task=continual", "scenario=shift", f"hydra.run.dir={out}", *TINY]) == 0
    rep = json.loads((out / "report.json").read_text())
    for key in ("arms", "adaptation", "retention", "latency_ms", "online", "targets", "seeds", "site_change"):
        assert key in rep, key
    assert rep["seeds"]["on"] == rep["seeds"]["off"] == [0, 1, 0] and rep["same_seeds"]
    for arm in ("on", "off"):
        assert set(rep["arms"][arm]["phases"]) == {"before", "after", "retention"}
        eps = rep["arms"][arm]["episodes"]
        assert [e["phase"] for e in eps] == ["before", "after", "retention"]
        assert [e["changed_site"] for e in eps] == [False, True, False]
    off = rep["arms"]["off"]["episodes"]
    # the agent without learning is a function of (config, seed): the replayed seed is identical
    assert {k: v for k, v in off[0].items() if k not in ("phase", "latency_ms", "wall_s")} == \
        {k: v for k, v in off[2].items() if k not in ("phase", "latency_ms", "wall_s")}
    assert set(rep["targets"]) == {"adaptation", "retention", "latency"}
    assert all(isinstance(t["met"], bool) for t in rep["targets"].values())
    assert rep["latency_ms"]["on"]["p99"] > 0 and rep["latency_ms"]["off"]["p99"] > 0
    st = rep["online"]["stats"]
    assert st["observed"] > 0 and st["updates"] >= 1  # the learner saw the on arm's decisions
    assert all("evidence" in e for e in rep["online"]["swaps"] + rep["online"]["rejections"]
               if e["event"] != "discard")
    assert (out / "online" / "adapters.safetensors").exists()
    printed = capsys.readouterr().out
    assert "learning off" in printed and "target retention" in printed


@pytest.mark.parametrize("args,expected", [
    (["scenario=nominal"], "scenario=nominal: task=continual needs a site change"),
    (["scenario=shift", "planner=classic"], "planner=classic: task=continual compares online learning"),
    (["scenario=shift", "continual.after=0"], "continual.after=0: must be >= 1"),
    (["scenario=shift", "scenario.shift.closed_cells=[[0,0]]"], "scenario.shift.closed_cells: [0, 0] is not a drivable"),
    (["scenario=shift", "scenario.shift.closed_cells=[[99,1]]"], "[99, 1] is off the 14 x 20 grid"),
])
def test_eval_continual__bad_input_is_one_line_exit_2(tmp_path, capsys, args, expected):
    with pytest.raises(SystemExit) as e:
        main(["eval", "task=continual", f"hydra.run.dir={tmp_path / 'o'}", *args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "o").exists()


def test_closed_layout__cells_become_walls_and_their_pick_points_go():
    lay = generate_layout(LayoutConfig())
    cells = [(5, 7), (6, 7)]
    new = closed_layout(lay, cells)
    assert all(new.occupancy[c] and not lay.occupancy[c] for c in cells)
    assert (new.occupancy ^ lay.occupancy).sum() == len(cells)
    assert not new.occupancy[new.pick_points[:, 0], new.pick_points[:, 1]].any()
    assert len(new.pick_points) == len(lay.pick_points) - 4  # both faces of both cells
    assert len(new.pick_points) == len(new.pick_shelf)
    np.testing.assert_array_equal(new.stations, lay.stations)
    with pytest.raises(ConfigError, match="station or charger"):
        closed_layout(lay, [tuple(lay.stations[0])])
