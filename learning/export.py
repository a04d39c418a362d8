"""The policy/value network as ONNX for robots, checked against torch with onnxruntime.

The exported graph (opset :data:`OPSET`, batch axis ``B`` dynamic)::

    inputs   proprio            float32 [B, 12]      task / pose vector (grid-model units)
             occupancy          float32 [B, S, S]    local occupancy crop (S = crop_size)
             action_mask        float32 [B, A]       > 0.5 = legal macro action
             occupancy_present  bool    [B]          modality mask: False = the occupancy
                                                     crop is missing / failed for that row
    outputs  logits             float32 [B, A]       illegal actions at ``illegal_logit``
             value              float32 [B]          predicted discounted return

``occupancy_present`` is the fusion encoder's per-sample presence mask (dynamic modality
routing): a row with it False is encoded from proprio alone, exactly like the torch net
given ``present={"occupancy": False}``. With every row present the outputs equal
``PolicyValueNet.forward``.

Weights come only from safetensors (:func:`learning.checkpoint.load_policy_value`):
a ``.safetensors`` file, a ``forklift train`` checkpoint dir (its ``network.safetensors``)
or a run dir (its latest checkpoint).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from learning.checkpoint import load_policy_value
from learning.network import PolicyValueNet

__all__ = [
    "INPUT_NAMES",
    "OPSET",
    "OUTPUT_NAMES",
    "ExportReport",
    "OnnxPolicyValue",
    "export_onnx",
    "parity_inputs",
    "resolve_weights",
]

OPSET = 18  # the torch.export-based exporter's own opset (no version conversion)
INPUT_NAMES = ("proprio", "occupancy", "action_mask", "occupancy_present")
OUTPUT_NAMES = ("logits", "value")


class OnnxPolicyValue(nn.Module):
    """:class:`PolicyValueNet` with the modality mask as an explicit input (export view).

    Args:
        net: the network (its parameters are shared, not copied).
    """

    def __init__(self, net: PolicyValueNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, proprio: torch.Tensor, occupancy: torch.Tensor, action_mask: torch.Tensor,
                occupancy_present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [B, A], value [B]) of the batch (shapes in the module docstring)."""
        net = self.net
        h = net.encoder({"proprio": net._proprio(proprio), "occupancy": net._pad(occupancy)},
                        present={"occupancy": occupancy_present})
        logits = net.policy_head(F.gelu(net.policy_hidden(h)))
        logits = logits.masked_fill(action_mask <= 0.5, net.config.illegal_logit)
        value = net.value_head(F.gelu(net.value_hidden(h)))[:, 0]
        return logits, value


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_onnx` wrote and measured.

    Attributes:
        onnx_path: the ``.onnx`` file.
        weights: the safetensors file exported.
        batch: rows of the parity check.
        max_abs_diff_logits / max_abs_diff_value: max |onnxruntime - torch| over the batch
            (legal actions' logits; illegal ones must match exactly).
        atol: the bound they had to meet.
        bytes: size of the ONNX file.
    """

    onnx_path: str
    weights: str
    batch: int
    max_abs_diff_logits: float
    max_abs_diff_value: float
    atol: float
    bytes: int


def resolve_weights(path: str | Path) -> Path:
    """The ``.safetensors`` file behind ``path`` (file, train checkpoint dir or run dir).

    Raises:
        ValueError: one line naming the problem (missing, not safetensors, no checkpoint).
    """
    p = Path(path)
    if not p.exists():
        raise ValueError(f"checkpoint={path}: no such file or directory; allowed a .safetensors "
                         "file, a forklift train checkpoint dir or run dir")
    if p.is_file():
        if p.suffix != ".safetensors":
            raise ValueError(f"checkpoint={path}: not a .safetensors file (weights are never "
                             "loaded from pickles); allowed a .safetensors file or a checkpoint dir")
        return p
    if (p / "network.safetensors").is_file():
        return p / "network.safetensors"
    found = sorted((p / "checkpoints").glob("iter_*/network.safetensors")) if (p / "checkpoints").is_dir() else []
    if found:
        return found[-1]
    raise ValueError(f"checkpoint={path}: no network.safetensors in this directory; allowed a "
                     ".safetensors file, a forklift train checkpoint dir or run dir")


def parity_inputs(net: PolicyValueNet, batch: int, *, seed: int) -> dict[str, np.ndarray]:
    """Seeded random inputs covering the cases: masked actions, rows without occupancy.

    Row 0 has every action legal and occupancy present; every other row has at least one
    legal action; about a quarter of the rows have ``occupancy_present`` False.
    """
    cfg = net.config
    rng = np.random.default_rng(seed)
    s, a = cfg.crop_size, cfg.num_actions
    mask = (rng.random((batch, a)) < 0.7).astype(np.float32)
    mask[np.arange(batch), rng.integers(0, a, batch)] = 1.0
    mask[0] = 1.0
    present = rng.random(batch) >= 0.25
    present[0] = True
    return {
        "proprio": rng.uniform(-1.0, 1.0, (batch, cfg.proprio_dim)).astype(np.float32),
        "occupancy": (rng.random((batch, s, s)) < 0.3).astype(np.float32),
        "action_mask": mask,
        "occupancy_present": present,
    }


def _torch_outputs(model: OnnxPolicyValue, x: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        logits, value = model(*(torch.from_numpy(x[k]) for k in INPUT_NAMES))
    return logits.numpy(), value.numpy()


def onnx_outputs(onnx_path: str | Path, x: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(logits, value) of the ONNX file under onnxruntime's CPU provider."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    logits, value = sess.run(list(OUTPUT_NAMES), {k: x[k] for k in INPUT_NAMES})
    return logits, value


def max_abs_diffs(ref: tuple[np.ndarray, np.ndarray], got: tuple[np.ndarray, np.ndarray],
                  mask: np.ndarray) -> tuple[float, float]:
    """(max |diff| of legal logits, max |diff| of values); inf if an illegal logit differs."""
    legal = mask > 0.5
    if not np.array_equal(ref[0][~legal], got[0][~legal]):
        return float("inf"), float(np.max(np.abs(ref[1] - got[1])))
    return float(np.max(np.abs(ref[0][legal] - got[0][legal]))), float(np.max(np.abs(ref[1] - got[1])))


def export_onnx(checkpoint: str | Path, out: str | Path, *, batch: int = 64, atol: float = 1e-4,
                seed: int = 0) -> ExportReport:
    """Exports the network of ``checkpoint`` to ``out`` and checks it with onnxruntime.

    Args:
        checkpoint: a ``.safetensors`` file, a train checkpoint dir or a run dir.
        out: the ``.onnx`` path (parent folders created); a JSON sidecar with the I/O spec
            and this report is written next to it (``.json``).
        batch: rows of the parity check (the graph itself has a dynamic batch axis).
        atol: bound on max |onnxruntime - torch| of legal logits and values.
        seed: seed of the parity inputs.

    Raises:
        ValueError: a bad checkpoint (one line), or parity worse than ``atol``.
    """
    import logging

    import onnx

    # the exporter logs a warning per torchvision op it cannot register (not used here)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    weights = resolve_weights(checkpoint)
    net, meta = load_policy_value(weights)
    model = OnnxPolicyValue(net).eval()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    example = parity_inputs(net, 2, seed=seed)
    batch_dim = torch.export.Dim("B", min=1, max=1 << 16)
    dyn = {k: {0: batch_dim} for k in INPUT_NAMES}
    with torch.no_grad(), warnings.catch_warnings():  # torch.export-based exporter (onnxscript)
        warnings.simplefilter("ignore")  # its deprecation chatter, not about this model
        program = torch.onnx.export(model, tuple(torch.from_numpy(example[k]) for k in INPUT_NAMES),
                                    input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                                    dynamic_shapes=dyn, opset_version=OPSET, dynamo=True,
                                    external_data=False, verbose=False)
    program.save(str(out), external_data=False)
    onnx.checker.check_model(onnx.load(str(out)))
    x = parity_inputs(net, batch, seed=seed)
    d_logits, d_value = max_abs_diffs(_torch_outputs(model, x), onnx_outputs(out, x), x["action_mask"])
    report = ExportReport(onnx_path=str(out), weights=str(weights), batch=batch,
                          max_abs_diff_logits=d_logits, max_abs_diff_value=d_value, atol=atol,
                          bytes=out.stat().st_size)
    cfg = net.config
    spec: dict[str, Any] = {
        "format": "forklift.policy_value.onnx", "opset": OPSET,
        "inputs": {"proprio": ["B", cfg.proprio_dim], "occupancy": ["B", cfg.crop_size, cfg.crop_size],
                   "action_mask": ["B", cfg.num_actions], "occupancy_present": ["B"]},
        "outputs": {"logits": ["B", cfg.num_actions], "value": ["B"]},
        "actions": meta.get("actions"), "illegal_logit": cfg.illegal_logit,
        "weights_sha256": meta.get("sha256"),
        "parity": {**asdict(report), "max_abs_diff_logits": _finite(d_logits)},
    }
    out.with_suffix(".json").write_text(json.dumps(spec, indent=1, allow_nan=False) + "\n")
    if not (d_logits <= atol and d_value <= atol):
        raise ValueError(f"export: onnxruntime differs from torch by {d_logits:.3g} (logits) / "
                         f"{d_value:.3g} (value); allowed <= {atol}")
    return report


def _finite(x: float) -> float | None:
    return x if np.isfinite(x) else None
