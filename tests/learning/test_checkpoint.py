"""Checkpoints: bit-exact round trip, refusal of corrupted / mismatched files, no pickle."""

from __future__ import annotations

import json
import pickle
import zipfile
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


def test_checkpoint__same_weights_give_the_same_bytes(tmp_path: Path) -> None:
    # safetensors orders the header's metadata by a randomly seeded Rust HashMap: without
    # sorting it, 8 saves of one net give at least two different files w.p. 1 - 2**-7
    net = small_net(3)
    blobs = {save_policy_value(net, tmp_path / f"pv{i}.safetensors").read_bytes() for i in range(8)}
    assert len(blobs) == 1
    head = json.loads(next(iter(blobs))[8:8 + int.from_bytes(next(iter(blobs))[:8], "little")])
    assert list(head["__metadata__"]) == sorted(head["__metadata__"])


def test_checkpoint__loaded_net_computes_the_same_outputs(saved) -> None:
    path, net = saved
    loaded, _ = load_policy_value(path)
    x = {"proprio": torch.rand(4, 12), "occupancy": torch.rand(4, 11, 11)}
    net.eval()
    assert torch.equal(net(x).logits, loaded(x).logits)


def _forbid_unpickling(monkeypatch) -> None:
    def forbidden(*a, **k):
        raise AssertionError("pickle used")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)


def _is_torch_save_or_pickle(path: Path) -> bool:
    """True for what ``torch.save`` writes (a zip archive since torch 1.6; a pickle
    stream with the PROTO opcode before) and for any plain pickle (protocol >= 2)."""
    head = path.read_bytes()[:2]
    return zipfile.is_zipfile(path) or (len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5)


def _is_safetensors(path: Path) -> bool:
    """The safetensors layout: u64 little-endian header size, a JSON header, the data."""
    data = path.read_bytes()
    if len(data) < 8:
        return False
    n = int.from_bytes(data[:8], "little")
    if not 2 <= n <= len(data) - 8:
        return False
    try:
        header = json.loads(data[8 : 8 + n])
    except ValueError:
        return False
    return isinstance(header, dict) and all(
        isinstance(v, dict) and {"dtype", "shape", "data_offsets"} <= v.keys()
        for k, v in header.items() if k != "__metadata__"
    )


@pytest.mark.parametrize("kind", ["zip", "legacy", "pickle"])
def test_checkpoint__detector_recognises_torch_save_and_pickle(tmp_path: Path, kind: str) -> None:
    """The detector used below is not vacuous: it flags every format torch.save has written."""
    state = small_net(3).state_dict()
    f = tmp_path / "w.bin"
    if kind == "zip":
        torch.save(state, f)
    elif kind == "legacy":
        torch.save(state, f, _use_new_zipfile_serialization=False)
    else:
        f.write_bytes(pickle.dumps({k: v.numpy() for k, v in state.items()}, protocol=4))
    assert _is_torch_save_or_pickle(f) and not _is_safetensors(f)


def test_checkpoint__saved_file_is_safetensors_not_pickle(saved, monkeypatch) -> None:
    path, _ = saved
    assert _is_safetensors(path) and not _is_torch_save_or_pickle(path)
    assert not _is_torch_save_or_pickle(metadata_path(path))
    _forbid_unpickling(monkeypatch)
    load_policy_value(path)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_checkpoint__torch_save_file_is_refused_without_unpickling(saved, monkeypatch, legacy: bool) -> None:
    """A torch.save file in place of the weights (digest fixed, so only the format check
    can object) is refused with one line, and nothing is unpickled."""
    path, net = saved
    torch.save(net.state_dict(), path, _use_new_zipfile_serialization=not legacy)
    meta = json.loads(metadata_path(path).read_text())
    meta["sha256"] = ck._sha256(path)
    metadata_path(path).write_text(json.dumps(meta))
    _forbid_unpickling(monkeypatch)
    with pytest.raises(ValueError, match=r"^checkpoint: unreadable weights pv.safetensors: ") as exc:
        load_policy_value(path)
    assert "\n" not in str(exc.value)


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
