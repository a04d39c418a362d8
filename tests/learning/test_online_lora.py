"""LoRA merge/unmerge exactness, adapters and EWC state in safetensors."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from learning_helpers import small_net
from safetensors import safe_open

from learning.online import (
    adapter_state,
    apply_lora,
    diagonal_fisher,
    ewc_penalty,
    load_adapter_state,
    load_adapters,
    load_ewc,
    merged_copy,
    save_adapters,
    save_ewc,
)
from learning.online.config import DEFAULT_LORA_TARGETS
from learning.online.lora import LoRALinear, lora_modules


def _obs(b: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    occ = (torch.rand(b, 11, 11, generator=g) * 4).floor() / 4
    return {"proprio": torch.rand(b, 12, generator=g), "occupancy": occ}


def _adapted(seed: int = 0, rank: int = 4):
    net = small_net(seed)
    names = apply_lora(
        net, DEFAULT_LORA_TARGETS, rank=rank, alpha=8.0, generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():  # non-trivial adapters (B starts at zero)
        for m in lora_modules(net).values():
            m.lora_B.normal_(0.0, 0.05, generator=torch.Generator().manual_seed(2))
    return net.eval(), names


def test_lora__targets_fusion_and_heads_and_freezes_the_base():
    net, names = _adapted()
    assert {"policy_hidden", "policy_head", "value_hidden", "value_head"} <= set(names)
    assert any(n.startswith("encoder.blocks.0.cross_attn") for n in names)
    assert any(n.startswith("encoder.blocks.0.mlp") for n in names)
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)
    assert net.policy_head.lora_A.shape == (4, 32) and net.policy_head.lora_B.shape == (7, 4)


def test_lora__fresh_adapters_leave_the_output_unchanged():
    base = small_net(0).eval()
    net = copy.deepcopy(base)
    apply_lora(net, ["policy_*"], rank=2, alpha=4.0, generator=torch.Generator().manual_seed(0))
    x = _obs()
    with torch.no_grad():
        assert torch.equal(net(x).logits, base(x).logits)


def test_lora__merge_matches_unmerged_and_unmerge_is_exact():
    net, _ = _adapted()
    x = _obs()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        y0 = net(x)
        for m in lora_modules(net).values():
            m.merge()
        y1 = net(x)
        assert all(m.merged for m in lora_modules(net).values())
        torch.testing.assert_close(y1.logits, y0.logits, atol=1e-6, rtol=0)
        torch.testing.assert_close(y1.value, y0.value, atol=1e-6, rtol=0)
        for m in lora_modules(net).values():
            m.unmerge()
        y2 = net(x)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k  # bit-exact restore
    assert torch.equal(y2.logits, y0.logits) and torch.equal(y2.value, y0.value)


def test_lora__merged_copy_is_a_plain_network_with_the_same_outputs():
    net, _ = _adapted()
    plain = merged_copy(net)
    assert not any(isinstance(m, LoRALinear) for m in plain.modules())
    assert set(plain.state_dict()) == set(small_net(0).state_dict())
    x = _obs()
    with torch.no_grad():
        torch.testing.assert_close(plain(x).logits, net(x).logits, atol=1e-6, rtol=0)
        torch.testing.assert_close(plain(x).value, net(x).value, atol=1e-6, rtol=0)


def test_lora__adapters_round_trip_through_safetensors(tmp_path):
    net, names = _adapted()
    path = save_adapters(net, tmp_path / "a.safetensors", info={"version": 3})
    with safe_open(str(path), framework="pt") as f:  # a plain safetensors file
        assert set(f.keys()) == {f"{n}.lora_{x}" for n in names for x in "AB"}
    tensors, meta = load_adapters(path)
    assert meta["rank"] == 4 and meta["alpha"] == 8.0 and meta["modules"] == names
    assert meta["info"] == {"version": 3}
    fresh, _ = _adapted(rank=4)
    with torch.no_grad():
        for m in lora_modules(fresh).values():
            m.lora_B.zero_()
    load_adapter_state(fresh, tensors)
    for k, v in adapter_state(net).items():
        assert torch.equal(adapter_state(fresh)[k], v)
    x = _obs()
    with torch.no_grad():
        assert torch.equal(fresh(x).logits, net(x).logits)


def test_lora__bad_input(tmp_path):
    with pytest.raises(ValueError, match="lora.targets"):
        apply_lora(small_net(0), ["nothing.*"], rank=2, alpha=1.0, generator=torch.Generator())
    net, _ = _adapted()
    with pytest.raises(ValueError, match="do not match"):
        load_adapter_state(net, {"policy_head.lora_A": torch.zeros(4, 32)})
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="lora: unreadable"):
        load_adapters(bad)


def _ewc_loss(net, batch):
    out = net(batch)
    return (out.value**2).mean() + out.logits.logsumexp(-1).mean()


def test_ewc__penalty_is_zero_at_the_anchor_and_grows_with_fisher_weighted_distance():
    net = small_net(0)
    state = diagonal_fisher(net, [_obs(4, s) for s in range(6)], _ewc_loss)
    assert state.n_samples == 6
    assert all((f >= 0).all() for f in state.fisher.values())
    assert sum(float(f.sum()) for f in state.fisher.values()) > 0
    assert float(ewc_penalty(net, state, 100.0).detach()) == 0.0
    moved = copy.deepcopy(net)
    with torch.no_grad():
        for p in moved.parameters():
            p.add_(0.01)
    want = 0.5 * 100.0 * sum(float((f * 0.01**2).sum()) for f in state.fisher.values())
    assert float(ewc_penalty(moved, state, 100.0).detach()) == pytest.approx(want, rel=1e-3)


def test_ewc__state_round_trips_through_safetensors(tmp_path):
    net = small_net(0)
    state = diagonal_fisher(net, [_obs(4, s) for s in range(3)], _ewc_loss)
    path = save_ewc(state, tmp_path / "ewc.safetensors", lam=42.0)
    back, lam = load_ewc(path)
    assert lam == 42.0 and back.n_samples == 3
    for k in state.anchor:
        assert torch.equal(back.anchor[k], state.anchor[k])
        assert torch.equal(back.fisher[k], state.fisher[k])
    assert np.isclose(float(ewc_penalty(net, back, 1.0).detach()), 0.0)
