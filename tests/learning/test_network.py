"""PolicyValueNet: shapes, action masking, missing modalities, config validation, init."""

from __future__ import annotations

import pytest
import torch
from learning_helpers import small_net

from learning.network import PolicyValueConfig, PolicyValueNet


def _obs(b: int = 5, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(b, 7, generator=g) > 0.5).float()
    mask[:, 4] = 1.0  # WAIT is always legal in the grid model
    return {
        "proprio": torch.rand(b, 12, generator=g),
        "occupancy": torch.rand(b, 11, 11, generator=g),
        "action_mask": mask,
    }


def test_network__output_shapes_default_config() -> None:
    net = PolicyValueNet(generator=torch.Generator().manual_seed(0))
    out = net(_obs(4))
    assert out.logits.shape == (4, 7) and out.value.shape == (4,)
    assert out.logits.dtype == torch.float32 and out.value.dtype == torch.float32


@pytest.mark.parametrize("patch", [1, 3, 5, 11])
def test_network__occupancy_patch_sizes(patch: int) -> None:
    net = small_net(occupancy_patch=patch)
    assert net.config.padded_size % 2 == 1 and net.config.padded_size >= 11
    assert net(_obs(3)).logits.shape == (3, 7)


def test_network__illegal_actions_get_zero_probability() -> None:
    obs = _obs(64)
    probs = torch.softmax(small_net()(obs).logits, -1)
    illegal = obs["action_mask"] == 0
    assert illegal.any()
    assert probs[illegal].max().item() < 1e-12
    assert torch.allclose(probs.sum(-1), torch.ones(64))


def test_network__single_legal_action_is_certain() -> None:
    obs = _obs(3)
    obs["action_mask"] = torch.zeros(3, 7)
    obs["action_mask"][:, 4] = 1.0
    probs = torch.softmax(small_net()(obs).logits, -1)
    assert torch.allclose(probs[:, 4], torch.ones(3))


def test_network__no_mask_leaves_logits_finite() -> None:
    obs = _obs(3)
    del obs["action_mask"]
    assert torch.isfinite(small_net()(obs).logits).all()


def test_network__missing_occupancy_is_masked_not_an_error() -> None:
    obs = _obs(3)
    del obs["occupancy"]
    out = small_net()(obs)
    assert torch.isfinite(out.value).all()


def test_network__occupancy_changes_the_output() -> None:
    obs = _obs(3)
    net = small_net()
    other = dict(obs, occupancy=torch.ones(3, 11, 11))
    assert not torch.allclose(net(obs).value, net(other).value)


@pytest.mark.parametrize(
    "key,shape", [("proprio", (3, 11)), ("occupancy", (3, 9, 9)), ("action_mask", (3, 6))]
)
def test_network__wrong_shapes_raise_naming_the_key(key: str, shape: tuple[int, ...]) -> None:
    obs = _obs(3)
    obs[key] = torch.zeros(shape)
    with pytest.raises(ValueError, match=key):
        small_net()(obs)


@pytest.mark.parametrize(
    "kw,field",
    [
        ({"d_model": 30, "n_heads": 4}, "n_heads"),
        ({"crop_size": 10}, "crop_size"),
        ({"occupancy_patch": 4}, "occupancy_patch"),
        ({"d_model": 0}, "d_model"),
        ({"fourier_index": (12,)}, "fourier_index"),
        ({"illegal_logit": -1.0}, "illegal_logit"),
    ],
)
def test_config__invalid_fields_raise_naming_the_field(kw: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"PolicyValueConfig.{field}"):
        PolicyValueConfig(**kw)


def test_network__generator_init_is_reproducible() -> None:
    a, b, c = small_net(1), small_net(1), small_net(2)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


def test_network__gradients_reach_every_parameter() -> None:
    net = small_net()
    out = net(_obs(4))
    (out.logits.masked_fill(out.logits < -1e6, 0).sum() + out.value.sum()).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing
