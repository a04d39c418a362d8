"""Policy/value weights on disk: safetensors + a small JSON of metadata. Never pickle.

A checkpoint ``NAME.safetensors`` has a sidecar ``NAME.json``::

    {"format": "forklift.policy_value", "version": 1,
     "config": {PolicyValueConfig fields}, "obs_spec": {key: per-sample shape},
     "actions": [macro action names], "tensors": {name: {"shape": [...], "dtype": ...}},
     "sha256": hex digest of the .safetensors file, "training": {free-form info}}

Loading trusts nothing: the JSON is parsed and checked (format, version, config fields,
obs spec), the weights file must match its digest, and every tensor must exist with the
shape and dtype the config implies, and be finite. Any problem raises a one-line
``ValueError`` starting with ``checkpoint:`` that names it. Tensors are read with
``safetensors`` (no code execution, unlike ``torch.load``). Both files are written
atomically (temporary file + rename), so a reader never sees half a checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from learning.network import PolicyValueConfig, PolicyValueNet
from sim.types import MacroAction

__all__ = [
    "FORMAT",
    "VERSION",
    "load_policy_value",
    "metadata_path",
    "read_metadata",
    "save_policy_value",
]

FORMAT = "forklift.policy_value"
VERSION = 1


def _fail(msg: str) -> ValueError:
    return ValueError(f"checkpoint: {msg}")


def metadata_path(path: str | Path) -> Path:
    """The JSON sidecar of weights file ``path`` (``x.safetensors`` -> ``x.json``)."""
    return Path(path).with_suffix(".json")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _atomic_write(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; weights are shared, read-only files
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _sorted_metadata(blob: bytes) -> bytes:
    """``blob`` (a safetensors file) with its ``__metadata__`` keys in sorted order.

    safetensors keeps the metadata in a Rust ``HashMap``, whose order is random per
    process: the same weights saved twice gave files with different sha256. The header is
    rewritten in place (same length); anything unexpected leaves the blob as it was.
    """
    n = int.from_bytes(blob[:8], "little")
    raw = blob[8 : 8 + n]
    try:
        head = json.loads(raw)
        meta = head.get("__metadata__")
        if not isinstance(meta, dict):
            return blob
        head["__metadata__"] = dict(sorted(meta.items()))
        text = json.dumps(head, separators=(",", ":"), ensure_ascii=False).encode()
    except (ValueError, UnicodeDecodeError):
        return blob
    if len(text) > n or json.loads(text) != json.loads(raw):
        return blob
    return blob[:8] + text.ljust(n, b" ") + blob[8 + n :]


def save_policy_value(
    net: PolicyValueNet, path: str | Path, *, training: dict[str, Any] | None = None
) -> Path:
    """Writes ``path`` (.safetensors) and its JSON sidecar.

    Args:
        net: the network.
        path: weights file, must end in ``.safetensors``; parent folders are created.
        training: JSON-serialisable training info (seed, steps, losses, ...).

    Returns:
        The weights path.

    Raises:
        ValueError: a path without the ``.safetensors`` suffix.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise _fail(f"path {str(path)!r} must end in '.safetensors'")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in net.state_dict().items()}
    blob = _sorted_metadata(save(tensors, metadata={"format": FORMAT, "version": str(VERSION)}))
    _atomic_write(path, lambda tmp: Path(tmp).write_bytes(blob))
    cfg = net.config
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "config": dataclasses.asdict(cfg),
        "obs_spec": cfg.obs_spec(),
        "actions": [a.name.lower() for a in MacroAction],
        "tensors": {
            k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
            for k, v in tensors.items()
        },
        "sha256": _sha256(path),
        "training": training or {},
    }
    text = json.dumps(meta, indent=1, sort_keys=True, allow_nan=False) + "\n"
    _atomic_write(metadata_path(path), lambda tmp: Path(tmp).write_text(text))
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Parses and checks the JSON sidecar of ``path`` (format, version, keys).

    Raises:
        ValueError: ``checkpoint: ...`` naming the problem.
    """
    mpath = metadata_path(path)
    try:
        meta = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise _fail(f"missing metadata file {str(mpath)!r}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _fail(f"unreadable metadata {str(mpath)!r}: {_first_line(e)}") from None
    if not isinstance(meta, dict):
        raise _fail(f"metadata {str(mpath)!r} is not a JSON object")
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise _fail(
            f"unsupported format {meta.get('format')!r} version {meta.get('version')!r}; "
            f"allowed {FORMAT!r} version {VERSION}"
        )
    for key, kind in (("config", dict), ("obs_spec", dict), ("tensors", dict), ("sha256", str)):
        if not isinstance(meta.get(key), kind):
            raise _fail(f"metadata field {key!r} missing or not a {kind.__name__}")
    return meta


def _config_from(meta: dict[str, Any]) -> PolicyValueConfig:
    raw = meta["config"]
    names = {f.name for f in dataclasses.fields(PolicyValueConfig)}
    unknown, missing = sorted(set(raw) - names), sorted(names - set(raw))
    if unknown:
        raise _fail(f"unknown config field {unknown[0]!r}")
    if missing:
        raise _fail(f"missing config field {missing[0]!r}")
    # JSON has no tuples: restore the tuple-typed fields (lists of ints in the file).
    raw = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    try:
        cfg = PolicyValueConfig(**raw)
    except (TypeError, ValueError) as e:
        raise _fail(f"invalid config: {_first_line(e)}") from None
    if meta["obs_spec"] != cfg.obs_spec():
        raise _fail(f"obs_spec {meta['obs_spec']} does not match the config's {cfg.obs_spec()}")
    return cfg


def _check_expected(cfg: PolicyValueConfig, expected: PolicyValueConfig | None) -> None:
    if expected is None:
        return
    for f in dataclasses.fields(PolicyValueConfig):
        got, want = getattr(cfg, f.name), getattr(expected, f.name)
        if got != want:
            raise _fail(f"config mismatch {f.name}={got} in file vs {want} expected")


def _check_tensors(tensors: dict[str, torch.Tensor], net: PolicyValueNet) -> None:
    want = net.state_dict()
    for name in want:
        if name not in tensors:
            raise _fail(f"missing tensor {name!r}")
    for name in tensors:
        if name not in want:
            raise _fail(f"unexpected tensor {name!r}")
    for name, t in tensors.items():
        w = want[name]
        if tuple(t.shape) != tuple(w.shape):
            raise _fail(f"tensor {name!r} has shape {tuple(t.shape)} vs {tuple(w.shape)}")
        if t.dtype != w.dtype:
            raise _fail(f"tensor {name!r} has dtype {t.dtype} vs {w.dtype}")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise _fail(f"tensor {name!r} has non-finite values")


def load_policy_value(
    path: str | Path, *, expected: PolicyValueConfig | None = None, device: str = "cpu"
) -> tuple[PolicyValueNet, dict[str, Any]]:
    """Loads and validates a checkpoint written by :func:`save_policy_value`.

    Args:
        path: the ``.safetensors`` weights file (its ``.json`` sidecar next to it).
        expected: if given, the checkpoint's config must equal it field by field.
        device: where the network goes.

    Returns:
        (network in eval mode, metadata dict).

    Raises:
        ValueError: ``checkpoint: ...`` one line naming the problem (missing or corrupted
            file, digest mismatch, config mismatch, missing / unexpected / misshapen tensor).
    """
    path = Path(path)
    meta = read_metadata(path)
    cfg = _config_from(meta)
    _check_expected(cfg, expected)
    if not path.is_file():
        raise _fail(f"missing weights file {str(path)!r}")
    digest = _sha256(path)
    if digest != meta["sha256"]:
        raise _fail(
            f"sha256 mismatch for {path.name} ({digest[:12]} vs {meta['sha256'][:12]}): "
            "corrupted or replaced file"
        )
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise _fail(f"unreadable weights {path.name}: {_first_line(e)}") from None
    net = PolicyValueNet(cfg)
    _check_tensors(tensors, net)
    net.load_state_dict(tensors, strict=True)
    return net.to(device).eval(), meta


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
