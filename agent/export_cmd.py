"""``forklift export checkpoint=PATH format=onnx``: the network as ONNX, parity-checked.

    forklift export checkpoint=learning/weights/grid_pv.safetensors
    forklift export checkpoint=outputs/RUN/checkpoints/iter_000100 out=robot/policy.onnx

Writes ``<out>.onnx`` and ``<out>.json`` (I/O spec, weights digest, parity numbers) and
prints the max absolute difference between onnxruntime and torch on a seeded batch; a
difference above ``atol`` fails with exit 2. See :mod:`learning.export`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent.config import ConfigError
from agent.verbs import Invocation, register_verb

__all__ = ["ExportSection", "export_verb"]


@dataclass(frozen=True)
class ExportSection:
    """The ``export`` verb's own top-level keys.

    Attributes:
        checkpoint: a ``.safetensors`` file, a train checkpoint dir or run dir; null = the
            shipped weights (``learning.DEFAULT_WEIGHTS``).
        format: export format (``onnx``).
        out: the ``.onnx`` path; null = ``<run dir>/policy_value.onnx``.
        check_batch: rows of the parity check.
        atol: bound on max |onnxruntime - torch| (legal logits and value).
    """

    checkpoint: str | None = None
    format: Literal["onnx"] = "onnx"
    out: str | None = None
    check_batch: int = 256
    atol: float = 1e-4

    def check(self) -> None:
        """Raise :class:`ConfigError` (one line) for a bad value; nothing is written before."""
        import math

        if self.checkpoint is not None and not Path(self.checkpoint).exists():
            raise ConfigError("checkpoint", "no such file or directory; allowed a .safetensors file, "
                              "a forklift train checkpoint dir or run dir, or null", self.checkpoint)
        if self.out is not None and not self.out.endswith(".onnx"):
            raise ConfigError("out", "must end in .onnx (or null)", self.out)
        if self.check_batch < 1:
            raise ConfigError("check_batch", "must be >= 1", self.check_batch)
        if not (math.isfinite(self.atol) and self.atol > 0):
            raise ConfigError("atol", "must be a finite number > 0", self.atol)


@register_verb("export", "export the policy/value network (ONNX), checked with onnxruntime",
               config_name="export", section=ExportSection)
def export_verb(inv: Invocation) -> int:
    """``forklift export``: ONNX + JSON spec; prints the parity check."""
    sec: ExportSection = inv.section
    from learning.evaluator import DEFAULT_WEIGHTS
    from learning.export import export_onnx, resolve_weights

    ckpt = sec.checkpoint if sec.checkpoint is not None else str(DEFAULT_WEIGHTS)
    try:
        resolve_weights(ckpt)
    except ValueError as e:
        raise ConfigError("", str(e)) from None
    import torch

    torch.set_num_threads(1)
    out = Path(sec.out) if sec.out else inv.out_dir / "policy_value.onnx"
    try:
        rep = export_onnx(ckpt, out, batch=sec.check_batch, atol=sec.atol, seed=inv.app.seed)
    except ValueError as e:  # bad checkpoint contents, or parity above atol
        raise ConfigError("", str(e)) from None
    print(f"exported {rep.weights} -> {rep.onnx_path} ({rep.bytes / 1e6:.2f} MB, opset 18); "
          f"onnxruntime vs torch on {rep.batch} rows: max abs diff logits {rep.max_abs_diff_logits:.2e}, "
          f"value {rep.max_abs_diff_value:.2e} (bound {rep.atol:g})")
    return 0
