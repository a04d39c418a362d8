"""The shipped RL-trained weights (learning/weights/rl_pv.safetensors): documented, and
greedy on the grid fleet they beat a random legal policy and their warm start's return."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from learning.checkpoint import load_policy_value
from learning.network import PolicyValueConfig

WEIGHTS = Path(__file__).resolve().parents[2] / "learning" / "weights"
RL_WEIGHTS = WEIGHTS / "rl_pv.safetensors"
GRID_PV = WEIGHTS / "grid_pv.safetensors"  # the behaviour-cloning warm start
SHIP = Path(__file__).resolve().parents[2] / "scripts" / "ship_rl_pv.py"
HELD_OUT = 777_000  # the shipped JSON's evaluation used seeds from 10000


def _ship_module():
    spec = importlib.util.spec_from_file_location("ship_rl_pv", SHIP)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def rl():
    return load_policy_value(RL_WEIGHTS, expected=PolicyValueConfig())


def test_rl_weights__small_and_reproducible_from_the_json(rl):
    _, meta = rl
    t = meta["training"]
    assert RL_WEIGHTS.stat().st_size < 10_000_000
    assert t["command"].startswith("forklift train ") and "seed=" in t["command"]
    assert t["train"]["algorithm"] == "PPO" and t["warm_start"].endswith("grid_pv.safetensors")
    assert t["env_steps"] > 0 and t["wall_s"] < 3600  # under an hour on the 2-core machine
    assert t["grid_greedy_eval"]["rl"]["return"]["mean"] > t["grid_greedy_eval"]["random"]["return"]["mean"]


def test_rl_weights__greedy_beats_random_widely_on_held_out_seeds(rl):
    ship = _ship_module()
    net, meta = rl
    base, _ = load_policy_value(GRID_PV)
    kw = {"episodes": 20, "seed": HELD_OUT, "clock": meta["training"]["grid_greedy_eval"]["clock"]}
    ours = ship.greedy_grid_eval(ship.net_policy(net), **kw)
    rand = ship.greedy_grid_eval(ship.random_policy(0), **kw)
    warm = ship.greedy_grid_eval(ship.net_policy(base), **kw)
    assert ours["deliveries"]["mean"] >= 8 and rand["deliveries"]["mean"] <= 1, (ours, rand)
    assert ours["return"]["mean"] > rand["return"]["mean"] + 8
    assert ours["return"]["mean"] > warm["return"]["mean"]  # RL improved on its warm start
