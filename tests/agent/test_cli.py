"""The ``forklift`` CLI: verbs, help, and config validation (one line on stderr, exit 2)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agent.cli import VERBS, main

BAD_OVERRIDES = [
    (["episodes=-1"], "episodes=-1: must be >= 1"),
    (["episodes=1.5"], "episodes=1.5: must be an integer"),
    (["episodes=abc"], "episodes=abc: must be an integer"),
    (["duration_s=0"], "duration_s=0: must be in (0, 86400]"),
    (["n_robots=0"], "n_robots=0: must be >= 1"),
    (["video=1"], "video=1: must be true or false"),
    (["scenario=foo"], "scenario=foo: unknown option; allowed: exceptions, nominal"),
    (["layout=huge"], "layout=huge: unknown option; allowed: medium, movingai, small"),
    (["foo=1"], "foo: unknown key; allowed: episodes"),
    (["+foo=1"], "foo: unknown key; allowed: episodes"),
    (["sim.world.bar=2"], "sim.world.bar: unknown key; allowed: physics_hz"),
    (["agent.nav.nope=2"], "agent.nav.nope: unknown key; allowed: follower, safety, planner, recovery"),
    (["scenario.name=foo"], "scenario.name=foo: must be one of nominal, exceptions"),
    (["localization.kind=gps"], "localization.kind=gps: must be one of ground_truth, ekf, ukf"),
    (["sensors.lidar.dropout_prob=2"], "sensors.lidar.dropout_prob=2: must be in [0, 1]"),
    (["scenario.faults.breakdown_duration=[9,1]"], "must be [min, max] with min <= max"),
    (["layout.aisle_width=0.5"], "layout.aisle_width: 0.5 m is narrower than a robot"),
    (["layout.movingai_map=/nonexistent.map"], "layout.movingai_map: '/nonexistent.map' is not a file"),
    (["layout=movingai", "n_robots=999"], "n_robots: 999 robots but only"),
    (["sim.world.control_hz=7"], "sim.world.control_hz: 7.0; allowed a divisor"),
    (["agent.nav.follower.max_speed=-1"], "agent.nav.follower.max_speed=-1: must be > 0"),
    (["agent.localization=ekf"], "agent.localization: unknown key"),
    (["learning.learner.lr=0"], "learning.learner.lr=0: must be > 0"),
    (["learning.learner.gate_kinds=[x]"], "learning.learner.gate_kinds=[x]: must be a non-empty list of open"),
    (["learning.worker=gpu"], "learning.worker=gpu: must be one of process, thread"),
    (["episodes"], "episodes: bad override; expected key=value"),
    (["--bogus"], "unknown option '--bogus'"),
]


def run_main(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


@pytest.mark.parametrize("overrides,expected", BAD_OVERRIDES, ids=[" ".join(o) for o, _ in BAD_OVERRIDES])
def test_cli__bad_override_is_one_line_and_exit_2(overrides, expected, capsys, tmp_path):
    out_dir = tmp_path / "out"
    code, out, err = run_main(["run", f"hydra.run.dir={out_dir}", *overrides], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("forklift: error: "), err
    assert expected in err
    assert "Traceback" not in err and out == ""
    assert not out_dir.exists()  # nothing written


def test_cli__unknown_verb_exit_2(capsys):
    code, _, err = run_main(["fly"], capsys)
    assert code == 2 and err == "forklift: error: unknown verb 'fly'; allowed: run, eval, train, export, bridge, sim-robot\n"


def test_cli__no_arguments_prints_usage_and_exit_2(capsys):
    code, _, err = run_main([], capsys)
    assert code == 2 and "usage: forklift <verb>" in err


def test_cli__help_lists_verbs(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: forklift <verb>" in out and all(v in out for v in VERBS)


def test_cli__run_help_lists_groups_and_defaults(capsys):
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    for text in ("scenario", "[nominal]", "exceptions", "[small]", "medium", "movingai", "[baseline]",
                 "episodes=2", "duration_s=300.0", "n_robots=4", "video=false", "hydra.run.dir"):
        assert text in out, text


def test_cli__cfg_prints_composed_config(capsys):
    assert main(["run", "scenario=exceptions", "episodes=3", "--cfg"]) == 0
    out = capsys.readouterr().out
    assert "episodes: 3" in out and "name: exceptions" in out


def test_cli__console_script_error_has_no_traceback():
    r = subprocess.run([sys.executable, "-c", "import sys; from agent.cli import main; sys.exit(main())",
                        "run", "episodes=-1"], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["forklift: error: episodes=-1: must be >= 1"]


@pytest.mark.parametrize("text,expected", [
    ("type octile\nheight 3\nwidth 5\nmap\n.....\n..\n", "layout.movingai_map: expected 3 rows of 5 cells"),
    ("garbage\n", "layout.movingai_map: line 1: expected 'key value' header"),
    ("type octile\nheight 1\nwidth 3\nmap\n@@@\n", "layout.movingai_map: map has no free cells"),
], ids=["short-rows", "no-header", "no-free-cells"])
def test_cli__malformed_map_file_is_one_line_and_exit_2(text, expected, capsys, tmp_path):
    bad = tmp_path / "bad.map"
    bad.write_text(text)
    out_dir = tmp_path / "out"
    code, out, err = run_main(["run", f"hydra.run.dir={out_dir}", "layout=movingai", f"layout.movingai_map={bad}"],
                              capsys)
    assert code == 2 and err.count("\n") == 1 and expected in err, err
    assert "Traceback" not in err and not out_dir.exists()
