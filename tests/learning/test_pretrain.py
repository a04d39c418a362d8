"""Pre-training: targets against closed forms, losses, a tiny run (learns, reproducible)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from learning_helpers import EVAL_MODEL, small_net

from learning.expert import ShortestPathExpert, expert_returns
from learning.grid_data import GridDataConfig, farthest_station, make_datasets, value_targets
from learning.network import PolicyValueConfig
from learning.pretrain import PretrainConfig, group_loss, pretrain, pv_loss, to_torch
from planning.situations import sample_situations

TINY_DATA = GridDataConfig(n_situations=24, record_steps=3, n_groups=16)
TINY_NET = PolicyValueConfig(d_model=32, n_heads=2, n_layers=1, head_hidden=32)


@pytest.fixture(scope="module")
def tiny(layout):
    return make_datasets(layout, TINY_DATA, np.random.default_rng(0))


def test_data__shapes_and_target_invariants(tiny) -> None:
    data, groups = tiny
    n = len(data)
    assert data.obs["proprio"].shape == (n, 12) and data.obs["occupancy"].shape == (n, 11, 11)
    np.testing.assert_allclose(data.policy.sum(1), 1.0, rtol=1e-6)
    assert (data.policy[data.obs["action_mask"] == 0] == 0).all()  # targets only on legal
    assert np.isfinite(data.value).all() and (np.abs(data.value) < 2).all()
    assert groups.obs["proprio"].shape == (len(groups), 7, 12)
    assert (groups.has_next <= groups.legal).all() and groups.legal[:, 4].all()
    assert (groups.q[~groups.legal] == 0).all()


def test_data__empty_values_use_the_farthest_station(layout) -> None:
    model, states = sample_situations(
        layout, ["open"] * 6, np.random.default_rng(2), config=EVAL_MODEL
    )
    ex = ShortestPathExpert(model)
    got = value_targets(ex, states, np.random.default_rng(0), GridDataConfig())
    far = model.replace(states, station=farthest_station(model)[states.pick])
    mean = value_targets(ex, states, np.random.default_rng(0), GridDataConfig(station_value="mean"))
    np.testing.assert_allclose(
        got, expert_returns(ex, far, np.random.default_rng(0), discount=0.99)
    )
    assert (got <= mean + 1e-12).all() and (got < mean).any()


def test_data__is_seed_reproducible(layout, tiny) -> None:
    again, _ = make_datasets(layout, TINY_DATA, np.random.default_rng(0))
    other, _ = make_datasets(layout, TINY_DATA, np.random.default_rng(1))
    np.testing.assert_array_equal(tiny[0].value, again.value)
    np.testing.assert_array_equal(tiny[0].obs["occupancy"], again.obs["occupancy"])
    assert len(other) != len(again) or not np.array_equal(other.value, again.value)


def test_group_loss__zero_for_a_perfect_value_and_invariant_to_offsets() -> None:
    net = small_net()
    g, a = 3, 7
    obs = {
        "proprio": torch.rand(g, a, 12),
        "occupancy": torch.rand(g, a, 11, 11),
        "action_mask": torch.ones(g, a, 7),
    }
    legal = torch.rand(g, a) > 0.3
    legal[:, 4] = True
    has_next = legal.clone()
    reward = torch.full((g, a), -0.01)
    with torch.no_grad():
        v = net({k: x.flatten(0, 1) for k, x in obs.items()}).value.view(g, a)
    q = torch.where(legal, reward + 0.99 * v, torch.zeros(()))
    kw = {"discount": 0.99, "scale": 0.02}
    assert group_loss(net, obs, legal, has_next, reward, q, **kw).item() < 1e-8
    assert group_loss(net, obs, legal, has_next, reward, q + 5.0, **kw).item() < 1e-6
    assert (
        group_loss(net, obs, legal, has_next, reward, q + 0.1 * torch.rand(g, a), **kw).item()
        > 1e-3
    )


def test_pv_loss__is_finite_with_masked_logits(tiny) -> None:
    data, _ = tiny
    obs = to_torch({k: v[:8] for k, v in data.obs.items()})
    loss, m = pv_loss(
        small_net(), obs, torch.as_tensor(data.policy[:8]), torch.as_tensor(data.value[:8])
    )
    assert torch.isfinite(loss) and m["policy_loss"] > 0


def _tiny_run(layout, seed: int, steps: int):
    cfg = PretrainConfig(seed=seed, data=TINY_DATA, steps=steps, batch_size=32, group_batch=4)
    return pretrain(layout, cfg, net_config=TINY_NET)


def test_pretrain__tiny_run_learns_and_is_seed_reproducible(layout) -> None:
    net_a, log_a, info = _tiny_run(layout, 0, 40)
    net_b, log_b, _ = _tiny_run(layout, 0, 40)
    net_c, _, _ = _tiny_run(layout, 1, 40)
    first, last = np.mean(log_a.loss[:5]), np.mean(log_a.loss[-5:])
    assert last < 0.8 * first, (first, last)
    sa, sb, sc = net_a.state_dict(), net_b.state_dict(), net_c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa), "same seed, different weights"
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)
    assert log_a.loss == log_b.loss
    assert info["config"]["seed"] == 0 and "val" in info


@pytest.mark.parametrize(
    "kw,field",
    [({"steps": -1}, "steps"), ({"lr": 0.0}, "lr"), ({"group_scale": 0.0}, "group_scale")],
)
def test_config__invalid_pretrain_fields(kw: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"pretrain.{field}"):
        PretrainConfig(**kw)


@pytest.mark.parametrize(
    "kw,field",
    [
        ({"kinds": ("open", "busy")}, "kinds"),
        ({"epsilon": 1.5}, "epsilon"),
        ({"station_value": "max"}, "station_value"),
    ],
)
def test_config__invalid_data_fields(kw: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"data.{field}"):
        GridDataConfig(**kw)


def test_data__model_config_matches_the_planning_eval() -> None:
    import inspect

    from planning.evaluation import run_planning_eval

    cfg = GridDataConfig().model_config()
    default = inspect.signature(run_planning_eval).parameters["horizon_steps"].default
    assert cfg.terminate_on_delivery and cfg.horizon_steps == default
