"""Every float of the config is finite and in range (one-line error, exit 2, nothing runs).

The schema is walked, not listed: a float field added later is covered without editing
this file. NaN passes every ``<``/``>`` comparison, so a range check alone let
``duration_s=nan`` through and ``duration_s=inf`` ran forever.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import shutil
import subprocess
import sys
import typing

import pytest

from agent.baseline import BaselineConfig
from agent.cli import compose_config, main
from agent.config import MAX_DURATION_S, AppConfig, ConfigError, Range, build_app_config


def _float_paths(cls: type, prefix: str) -> list[tuple[str, ...]]:
    """Dotted paths (as key tuples) of every float leaf of a schema; tuples get index 0."""
    out: list[tuple[str, ...]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp, key = hints[f.name], (*prefix, f.name) if prefix else (f.name,)
        if cls is AppConfig and f.name == "agent":  # flat agent YAML: the controller's fields
            out += _float_paths(BaselineConfig, ("agent",))
        elif dataclasses.is_dataclass(tp):
            out += _float_paths(tp, key)
        elif typing.get_origin(tp) is tuple and float in typing.get_args(tp):
            out.append((*key, 0))
        elif tp is float or float in typing.get_args(tp):
            out.append(key)
    return out


FLOAT_PATHS = _float_paths(AppConfig, ())


@pytest.fixture(scope="module")
def default_tree() -> dict:
    plain, _ = compose_config([])
    return plain


def _set(tree: dict, key: tuple, value: float) -> dict:
    tree = copy.deepcopy(tree)
    node = tree
    for k in key[:-1]:
        node = node[k]
    node[key[-1]] = value
    return tree


def _shown(key: tuple) -> str:
    s = ".".join(str(k) for k in key if not isinstance(k, int))
    return s + "".join(f"[{k}]" for k in key if isinstance(k, int))


def test_config_numbers__schema_walk_finds_nested_floats():
    paths = {_shown(k) for k in FLOAT_PATHS}
    assert len(paths) > 100
    for p in ("duration_s", "sim.robot.max_speed", "agent.nav.follower.max_speed",
              "scenario.faults.breakdown_duration[0]", "sensors.odom.sigma_rel", "planner.c_puct"):
        assert p in paths


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_config_numbers__every_float_rejects_non_finite(bad, default_tree):
    build_app_config(default_tree)  # the defaults themselves are valid
    for key in FLOAT_PATHS:
        with pytest.raises(ConfigError) as exc:
            build_app_config(_set(default_tree, key, bad))
        msg = str(exc.value)
        assert msg.startswith(f"{_shown(key)}=") and "must be a finite number" in msg, msg
        assert "\n" not in msg


def test_config_numbers__range_contains_is_finite_and_bounded():
    r = Range(0, 1, lo_open=True)
    assert r.contains(1.0) and r.contains(1e-9)
    assert not any(r.contains(v) for v in (0.0, 1.5, math.nan, math.inf, -math.inf))
    assert Range().contains(-5.0) and not Range().contains(math.nan)
    assert r.describe() == "in (0, 1]" and Range(1).describe() == ">= 1"


CLI_BAD = [
    (["duration_s=nan"], f"duration_s=nan: must be a finite number in (0, {MAX_DURATION_S}]"),
    (["duration_s=inf"], f"duration_s=inf: must be a finite number in (0, {MAX_DURATION_S}]"),
    (["duration_s=-inf"], f"duration_s=-inf: must be a finite number in (0, {MAX_DURATION_S}]"),
    (["duration_s=1e999"], f"duration_s=inf: must be a finite number in (0, {MAX_DURATION_S}]"),
    (["duration_s=1e9"], f"duration_s=1000000000.0: must be in (0, {MAX_DURATION_S}]"),
    (["sim.robot.max_speed=nan"], "sim.robot.max_speed=nan: must be a finite number > 0"),
    (["agent.nav.follower.max_speed=inf"], "agent.nav.follower.max_speed=inf: must be a finite number > 0"),
    (["scenario.faults.breakdown_duration=[1,inf]"],
     "scenario.faults.breakdown_duration[1]=inf: must be a finite number >= 0"),
    (["sensors.lidar.dropout_prob=nan"], "sensors.lidar.dropout_prob=nan: must be a finite number in [0, 1]"),
    (["planner.c_puct=nan"], "planner.c_puct=nan: must be a finite number >= 0"),
]


@pytest.mark.parametrize("overrides,expected", CLI_BAD, ids=[" ".join(o) for o, _ in CLI_BAD])
def test_cli__non_finite_number_is_one_line_exit_2(overrides, expected, capsys, tmp_path):
    out_dir = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main(["run", f"hydra.run.dir={out_dir}", *overrides])
    out, err = capsys.readouterr()
    assert exc.value.code == 2
    assert err == f"forklift: error: {expected}\n", err
    assert out == "" and not out_dir.exists()


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_cli__console_script_duration_non_finite_fails_before_running(value, tmp_path):
    """The installed ``forklift`` exits 2 at once (it used to start an endless episode)."""
    exe = shutil.which("forklift")
    cmd = [exe] if exe else [sys.executable, "-m", "agent.cli"]
    out_dir = tmp_path / "out"
    proc = subprocess.run([*cmd, "run", f"duration_s={value}", f"hydra.run.dir={out_dir}"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert proc.stderr == (f"forklift: error: duration_s={value}: must be a finite number "
                           f"in (0, {MAX_DURATION_S}]\n")
    assert proc.stdout == "" and not out_dir.exists()
