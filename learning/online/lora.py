"""Hand-written LoRA (Hu et al., 2021) for ``nn.Linear`` layers, with exact merge/unmerge.

:class:`LoRALinear` *is* an ``nn.Linear`` (same ``weight`` / ``bias`` parameters, same
state-dict keys) plus ``lora_A`` [r, in] and ``lora_B`` [out, r]::

    y = x W^T + b + (alpha / r) * (x A^T) B^T          (B = 0 at start: y unchanged)

:func:`apply_lora` swaps the Linear modules whose names match fnmatch patterns for
LoRALinear in place and freezes everything else. :meth:`LoRALinear.merge` folds the delta
into ``weight`` (one matmul per layer: inference then costs exactly the base network);
:meth:`LoRALinear.unmerge` restores the exact pre-merge weight (a saved copy, not a
subtraction, so merge/unmerge round trips are bit-exact). :func:`merged_copy` builds a plain
:class:`PolicyValueNet` with the merged weights (what production runs and what
:func:`learning.checkpoint.save_policy_value` saves). Adapters are stored as safetensors
(``<module>.lora_A`` / ``<module>.lora_B``) with rank, alpha and targets in the metadata.
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from learning.network import PolicyValueNet

__all__ = [
    "LoRALinear",
    "adapter_state",
    "apply_lora",
    "load_adapter_state",
    "load_adapters",
    "lora_modules",
    "merged_copy",
    "save_adapters",
]


class LoRALinear(nn.Linear):
    """``nn.Linear`` with a rank-``r`` trainable delta.

    Args:
        base: the layer adapted (its weight and bias are shared, not copied, and frozen).
        rank: r >= 1.
        alpha: delta scale numerator (scale = alpha / r).
        generator: draws ``lora_A`` ~ U(-1/sqrt(in), 1/sqrt(in)); ``lora_B`` starts at 0.
    """

    def __init__(
        self, base: nn.Linear, rank: int, alpha: float, generator: torch.Generator
    ) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        self.rank, self.alpha = int(rank), float(alpha)
        self.scale = self.alpha / self.rank
        bound = 1.0 / math.sqrt(self.in_features)
        a = torch.empty(rank, self.in_features).uniform_(-bound, bound, generator=generator)
        self.lora_A = nn.Parameter(a.to(base.weight.dtype))  # [r, in]
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank, dtype=base.weight.dtype))
        self._saved: torch.Tensor | None = None  # exact weight before merge

    @property
    def merged(self) -> bool:
        """The delta is folded into ``weight``."""
        return self._saved is not None

    def delta(self) -> torch.Tensor:
        """[out, in] weight delta ``scale * B @ A``."""
        return self.scale * (self.lora_B @ self.lora_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nn.functional.linear(x, self.weight, self.bias)
        if self.merged:
            return y
        return y + self.scale * ((x @ self.lora_A.T) @ self.lora_B.T)

    @torch.no_grad()
    def merge(self) -> None:
        """Folds the delta into ``weight`` (no-op when merged)."""
        if self.merged:
            return
        self._saved = self.weight.detach().clone()
        self.weight.add_(self.delta())

    @torch.no_grad()
    def unmerge(self) -> None:
        """Restores the exact pre-merge ``weight`` (no-op when not merged)."""
        if self._saved is None:
            return
        self.weight.copy_(self._saved)
        self._saved = None


def apply_lora(
    net: nn.Module,
    targets: Sequence[str],
    *,
    rank: int,
    alpha: float,
    generator: torch.Generator,
) -> list[str]:
    """Replaces matching ``nn.Linear`` modules by :class:`LoRALinear`; freezes the rest.

    Args:
        net: the network (changed in place).
        targets: fnmatch patterns over ``net.named_modules()`` names.
        rank, alpha: adapter rank and scale numerator.
        generator: draws the adapters' A matrices (in module order).

    Returns:
        The adapted module names, in module order.

    Raises:
        ValueError: no Linear module matches.
    """
    names = [
        n
        for n, m in net.named_modules()
        if type(m) is nn.Linear and any(fnmatch.fnmatchcase(n, p) for p in targets)
    ]
    if not names:
        raise ValueError(f"lora.targets: {list(targets)!r}; allowed patterns matching nn.Linear")
    for p in net.parameters():
        p.requires_grad_(False)
    for name in names:
        parent_name, _, attr = name.rpartition(".")
        parent = net.get_submodule(parent_name) if parent_name else net
        setattr(parent, attr, LoRALinear(getattr(parent, attr), rank, alpha, generator))
    return names


def lora_modules(net: nn.Module) -> dict[str, LoRALinear]:
    """Name -> adapted layer."""
    return {n: m for n, m in net.named_modules() if isinstance(m, LoRALinear)}


def adapter_state(net: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of every adapter tensor: ``<module>.lora_A`` [r, in], ``<module>.lora_B`` [out, r]."""
    out = {}
    for n, m in lora_modules(net).items():
        out[f"{n}.lora_A"] = m.lora_A.detach().clone()
        out[f"{n}.lora_B"] = m.lora_B.detach().clone()
    return out


@torch.no_grad()
def load_adapter_state(net: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copies ``state`` (from :func:`adapter_state`) into the adapters of ``net``.

    Raises:
        ValueError: a missing, unexpected or misshapen adapter tensor.
    """
    mods = lora_modules(net)
    want = {f"{n}.lora_{x}" for n in mods for x in "AB"}
    if set(state) != want:
        extra = sorted(set(state) ^ want)
        raise ValueError(f"lora: adapter tensors do not match the network ({extra[0]!r})")
    for n, m in mods.items():
        for x in "AB":
            src, dst = state[f"{n}.lora_{x}"], getattr(m, f"lora_{x}")
            if src.shape != dst.shape:
                raise ValueError(
                    f"lora: {n}.lora_{x} has shape {tuple(src.shape)} vs {tuple(dst.shape)}"
                )
            dst.copy_(src)


@torch.no_grad()
def merged_copy(net: PolicyValueNet) -> PolicyValueNet:
    """A plain :class:`PolicyValueNet` (no adapters) with the merged weights, in eval mode."""
    out = PolicyValueNet(net.config)
    deltas = {f"{n}.weight": m.delta() for n, m in lora_modules(net).items() if not m.merged}
    state = {}
    for k, v in net.state_dict().items():
        if ".lora_" in k:
            continue
        state[k] = v + deltas[k] if k in deltas else v.clone()
    out.load_state_dict(state, strict=True)
    return out.eval()


def save_adapters(net: nn.Module, path: str | Path, *, info: dict | None = None) -> Path:
    """Writes the adapters of ``net`` to ``path`` (.safetensors), settings in the metadata."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"lora: path {str(path)!r} must end in '.safetensors'")
    mods = lora_modules(net)
    if not mods:
        raise ValueError("lora: the network has no adapters")
    first = next(iter(mods.values()))
    meta = {
        "format": "forklift.lora",
        "rank": str(first.rank),
        "alpha": repr(first.alpha),
        "modules": json.dumps(list(mods)),
        "info": json.dumps(info or {}, allow_nan=False),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in adapter_state(net).items()}, str(path), metadata=meta)
    return path


def load_adapters(
    path: str | Path,
) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    """Reads adapters saved by :func:`save_adapters`.

    Returns:
        (adapter tensors, {"rank", "alpha", "modules", "info"}).

    Raises:
        ValueError: not a forklift adapter file, or non-finite tensors.
    """
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises several types for unreadable files
        raise ValueError(f"lora: unreadable adapters {str(path)!r}: {e}") from None
    if meta.get("format") != "forklift.lora":
        raise ValueError(f"lora: {str(path)!r} is not a forklift adapter file")
    for k, t in tensors.items():
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"lora: tensor {k!r} has non-finite values")
    info = {
        "rank": int(meta["rank"]),
        "alpha": float(meta["alpha"]),
        "modules": json.loads(meta["modules"]),
        "info": json.loads(meta["info"]),
    }
    return tensors, info
