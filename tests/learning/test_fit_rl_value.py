"""scripts/fit_rl_value.py, the value-fit stage after PPO: its targets and its fit."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from learning_helpers import small_net

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fit_rl_value.py"


@pytest.fixture(scope="module")
def fit_mod():
    torch.set_num_threads(1)
    spec = importlib.util.spec_from_file_location("fit_rl_value", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_fit_rl_value__returns_are_td_lambda(fit_mod):
    rng = np.random.default_rng(0)
    r = rng.normal(size=(2, 4, 3))
    v = rng.normal(size=(2, 4, 3))
    boot = rng.normal(size=(2, 3))
    g = 0.9
    mc = fit_mod.returns(r, boot, g)
    want = r[:, 3] + g * boot
    assert np.allclose(mc[:, 3], want, atol=1e-5)
    assert np.allclose(mc[:, 0], r[:, 0] + g * r[:, 1] + g**2 * r[:, 2] + g**3 * want, atol=1e-5)
    td0 = fit_mod.returns(r, boot, g, 0.0, v)
    assert np.allclose(td0[:, :3], r[:, :3] + g * v[:, 1:], atol=1e-5)
    half = fit_mod.returns(r, boot, g, 0.5, v)
    assert np.allclose(half[:, 2], r[:, 2] + g * (0.5 * v[:, 3] + 0.5 * half[:, 3]), atol=1e-5)


def test_fit_rl_value__fits_the_value_and_the_kl_anchor_keeps_the_policy(fit_mod):
    net = small_net(3)
    data = fit_mod.collect(net, episodes=4, seed=0, n_envs=4, horizon=20)
    assert data["rewards"].shape == (4, 20, 4) and data["obs"]["proprio"].shape == (4, 20, 4, 12)
    E, T, N = data["rewards"].shape

    def mse() -> float:
        boot = fit_mod._value(net, data["final"]).reshape(E, N)
        g = fit_mod.returns(data["rewards"], boot, 0.99).reshape(-1)
        return float(np.mean((fit_mod._value(net, data["obs"]) - g) ** 2))

    before = mse()
    fit_mod.fit(net, data, epochs=8, batch=64, lr=3e-3, gamma=0.99, kl_weight=5.0,
                value_weight=10.0, seed=0, clock_aug=True, log=lambda _: None)
    assert mse() < 0.5 * before, (before, mse())
    assert fit_mod.agreement(net, data) >= 0.9


def test_fit_rl_value__no_clock_feeds_the_policy_a_zero_clock(fit_mod):
    """``--no-clock`` rollouts: the clock input is 0 in every observation the policy and the
    fit see (as ``train.grid_clock=false`` trained it); with the clock it advances."""
    net = small_net(1)
    clock = fit_mod.CLOCK
    with_clock = fit_mod.collect(net, episodes=2, seed=0, n_envs=2, horizon=10)
    without = fit_mod.collect(net, episodes=2, seed=0, n_envs=2, horizon=10, clock=False)
    assert np.ptp(with_clock["obs"]["proprio"][..., clock]) > 0
    assert not without["obs"]["proprio"][..., clock].any()
    assert not without["final"]["proprio"][..., clock].any()
    other = [i for i in range(12) if i != clock]  # the first step is the same situation
    assert np.array_equal(with_clock["obs"]["proprio"][:, 0][..., other],
                          without["obs"]["proprio"][:, 0][..., other])
