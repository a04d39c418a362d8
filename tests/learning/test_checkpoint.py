"""Checkpoints: bit-exact round trip, refusal of corrupted / mismatched files, no pickle."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from learning_helpers import small_net
from safetensors.torch import save_file

from learning import checkpoint as ck
from learning.checkpoint import load_policy_value, metadata_path, save_policy_value
from learning.network import PolicyValueConfig


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    net = small_net(3)
    return save_policy_value(net, tmp_path / "pv.safetensors", training={"seed": 3}), net


def _rewrite_weights(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Replace the weights and fix the digest, so only the tensor checks can object."""
    save_file(tensors, str(path))
    meta = json.loads(metadata_path(path).read_text())
    meta["sha256"] = ck._sha256(path)
    metadata_path(path).write_text(json.dumps(meta))


def test_checkpoint__round_trip_is_bit_exact(saved) -> None:
    path, net = saved
    loaded, meta = load_policy_value(path)
    a, b = net.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
    assert loaded.config == net.config and not loaded.training
    assert meta["training"] == {"seed": 3} and meta["obs_spec"]["occupancy"] == [11, 11]
    assert metadata_path(path).name == "pv.json"


def test_checkpoint__loaded_net_computes_the_same_outputs(saved) -> None:
    path, net = saved
    loaded, _ = load_policy_value(path)
    x = {"proprio": torch.rand(4, 12), "occupancy": torch.rand(4, 11, 11)}
    net.eval()
    assert torch.equal(net(x).logits, loaded(x).logits)


def test_checkpoint__never_unpickles(saved, monkeypatch) -> None:
    path, _ = saved

    def forbidden(*a, **k):
        raise AssertionError("pickle used")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    load_policy_value(path)
    assert path.read_bytes()[:8] != b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46"  # torch pickle magic


def test_checkpoint__flipped_byte_is_refused(saved) -> None:
    path, _ = saved
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"^checkpoint: sha256 mismatch"):
        load_policy_value(path)


def test_checkpoint__truncated_file_is_refused(saved) -> None:
    path, _ = saved
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"^checkpoint: "):
        load_policy_value(path)


def test_checkpoint__missing_tensor_is_named(saved) -> None:
    path, net = saved
    tensors = {k: v.clone() for k, v in net.state_dict().items() if k != "policy_head.weight"}
    _rewrite_weights(path, tensors)
    with pytest.raises(ValueError, match=r"^checkpoint: missing tensor 'policy_head.weight'$"):
        load_policy_value(path)


def test_checkpoint__misshapen_and_unexpected_tensors_are_named(saved) -> None:
    path, net = saved
    tensors = {k: v.clone() for k, v in net.state_dict().items()}
    tensors["value_head.bias"] = torch.zeros(2)
    _rewrite_weights(path, tensors)
    with pytest.raises(ValueError, match=r"tensor 'value_head.bias' has shape \(2,\) vs \(1,\)"):
        load_policy_value(path)
    tensors = {k: v.clone() for k, v in net.state_dict().items()}
    tensors["extra"] = torch.zeros(1)
    _rewrite_weights(path, tensors)
    with pytest.raises(ValueError, match=r"unexpected tensor 'extra'"):
        load_policy_value(path)


def test_checkpoint__non_finite_weights_are_refused(saved) -> None:
    path, net = saved
    tensors = {k: v.clone() for k, v in net.state_dict().items()}
    tensors["value_head.bias"][0] = float("nan")
    _rewrite_weights(path, tensors)
    with pytest.raises(ValueError, match="non-finite"):
        load_policy_value(path)


def test_checkpoint__config_mismatch_names_the_field(saved) -> None:
    path, net = saved
    want = PolicyValueConfig(**{**vars(net.config), "d_model": 64})
    with pytest.raises(ValueError, match=r"^checkpoint: config mismatch d_model=32 in file vs 64"):
        load_policy_value(path, expected=want)


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda m: m.update(version=99), "unsupported format"),
        (lambda m: m["config"].update(d_model="big"), "invalid config"),
        (lambda m: m["config"].update(colour=1), "unknown config field 'colour'"),
        (lambda m: m["config"].pop("n_layers"), "missing config field 'n_layers'"),
        (lambda m: m["obs_spec"].update(proprio=[8]), "obs_spec"),
        (lambda m: m.pop("sha256"), "'sha256'"),
    ],
)
def test_checkpoint__bad_metadata_is_refused(saved, edit, match: str) -> None:
    path, _ = saved
    meta = json.loads(metadata_path(path).read_text())
    edit(meta)
    metadata_path(path).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=match):
        load_policy_value(path)


def test_checkpoint__missing_files_are_named(saved, tmp_path: Path) -> None:
    path, _ = saved
    with pytest.raises(ValueError, match="missing metadata file"):
        load_policy_value(tmp_path / "nothing.safetensors")
    metadata_path(path).write_text("{not json")
    with pytest.raises(ValueError, match="unreadable metadata"):
        load_policy_value(path)


def test_checkpoint__wrong_suffix_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="safetensors"):
        save_policy_value(small_net(), tmp_path / "pv.pt")


def test_checkpoint__fourier_index_survives_json(saved) -> None:
    path, net = saved
    loaded, _ = load_policy_value(path, expected=net.config)
    assert loaded.config.fourier_index == net.config.fourier_index
