"""Attention ops for forklift: one public API, dispatching by device.

Backends:
  * ``"triton"``: fused FlashAttention-2 style Triton kernels (``kernels.triton_impl``), the
    default for CUDA tensors in float16 / bfloat16 / float32 with head dim D <= 128 when triton
    is installed. Under ``TRITON_INTERPRET=1`` they also run on CPU tensors (tests), but
    ``"auto"`` never picks them there.
  * ``"torch"``: ``F.scaled_dot_product_attention`` with the fully-masked-row fix
    (``kernels.torch_impl``), falling back to the reference for dtypes SDPA cannot run. The
    default for everything else (CPU tensors, triton missing, D > 128, float64).
  * ``"reference"``: the plain-torch oracle (``kernels.reference``); slow, for tests.

Semantics, identical on every backend:
  * ``key_padding_mask`` (B, Lk) bool, True where a key is valid; masked keys get probability
    exactly 0, so the output does not depend on their (finite) content.
  * A query with no valid key returns zeros (never NaN), and gradients through it are zero.
  * ``topk_attention``: each query attends only to the keys whose score ``q.k * scale`` is
    >= its k-th largest valid score. Unselected keys are set to -inf before the softmax
    (probability exactly 0, not score 0). Ties at the k-th score are all kept, so a query
    attends to more than ``top_k`` keys only on exact ties; the rule is symmetric in the keys
    (permutation-equivariant). Selection uses float32 scores (float64 for float64 inputs) and
    is not differentiated; ``top_k >= Lk`` is dense attention.

Triton is optional: ``import kernels`` never imports it; the first CUDA call does.
"""

from __future__ import annotations

from typing import Literal

import torch

from . import torch_impl
from ._validate import check_key_padding_mask, check_qkv, check_top_k, resolve_scale
from .reference import attention_reference, topk_attention_reference

__all__ = [
    "Backend",
    "attention_reference",
    "cross_attention",
    "select_backend",
    "topk_attention",
    "topk_attention_reference",
    "triton_available",
]

Backend = Literal["auto", "triton", "torch", "reference"]
_BACKENDS = ("auto", "triton", "torch", "reference")
_TRITON_STATE: dict[str, object] = {}


def _triton_impl():
    """Imports ``kernels.triton_impl`` once; None when triton is not importable."""
    if "module" not in _TRITON_STATE:
        try:
            from . import triton_impl as module
        except Exception as err:  # noqa: BLE001 - missing or broken triton: "no triton".
            module = None
            _TRITON_STATE["error"] = f"{type(err).__name__}: {err}"
        _TRITON_STATE["module"] = module
    return _TRITON_STATE["module"]


def _unit_stride(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Copies only the tensors whose last dim is not unit-stride (the Triton kernels need it)."""
    return tuple(t if t.shape[-1] <= 1 or t.stride(-1) == 1 else t.contiguous() for t in tensors)


def triton_available() -> bool:
    """True when triton imports and the Triton kernels can be used."""
    return _triton_impl() is not None


def select_backend(q: torch.Tensor, backend: Backend = "auto") -> str:
    """Resolves ``backend`` for inputs like ``q`` (B, H, Lq, D).

    Args:
        q: The query tensor (device, dtype and head dim decide).
        backend: "auto", "triton", "torch" or "reference".

    Returns:
        "triton", "torch" or "reference".

    Raises:
        ValueError: unknown backend, or "triton" requested but triton is not importable.
    """
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    if backend == "triton" and not triton_available():
        raise ValueError(
            "backend='triton' needs an importable triton (pip install forklift[triton]); "
            f"import failed with {_TRITON_STATE.get('error')}"
        )
    if backend != "auto":
        return backend
    if (
        q.device.type == "cuda"
        and q.dtype in (torch.float16, torch.bfloat16, torch.float32)
        and q.shape[-1] <= 128
        and triton_available()
    ):
        return "triton"
    return "torch"


def cross_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    *,
    backend: Backend = "auto",
) -> torch.Tensor:
    """Scaled dot-product attention of queries over keys, with a key padding mask.

    Args:
        q: Queries (B, H, Lq, D).
        k: Keys (B, H, Lk, D).
        v: Values (B, H, Lk, D).
        key_padding_mask: Bool (B, Lk), True where a key is valid; None = all valid.
        scale: Softmax scale (> 0); default 1 / sqrt(D).
        backend: "auto" (by device, see module docstring), "triton", "torch" or "reference".

    Returns:
        (B, H, Lq, D) in q's dtype. Queries with no valid key get zeros and zero gradients.

    Raises:
        ValueError: on malformed inputs (shapes, dtypes, devices, mask, scale, backend).
    """
    check_qkv(q, k, v)
    check_key_padding_mask(key_padding_mask, k)
    scale = resolve_scale(scale, q.shape[-1])
    chosen = select_backend(q, backend)
    if chosen == "triton":
        q, k, v = _unit_stride(q, k, v)
        return _triton_impl().attention(q, k, v, key_padding_mask, None, scale)
    if chosen == "reference":
        return attention_reference(q, k, v, key_padding_mask, scale)
    return torch_impl.attention(q, k, v, key_padding_mask, scale)


def topk_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    top_k: int,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    *,
    backend: Backend = "auto",
) -> torch.Tensor:
    """Dynamic sparse attention: each query attends only to its ``top_k`` best valid keys.

    Args:
        q: Queries (B, H, Lq, D).
        k: Keys (B, H, Lk, D).
        v: Values (B, H, Lk, D).
        top_k: Keys kept per query (int >= 1). Keys scoring >= the k-th largest valid score
            are kept (ties all kept); ``top_k >= Lk`` equals ``cross_attention``.
        key_padding_mask: Bool (B, Lk), True where a key is valid; None = all valid.
        scale: Softmax scale (> 0); default 1 / sqrt(D).
        backend: "auto", "triton", "torch" or "reference".

    Returns:
        (B, H, Lq, D) in q's dtype; unselected keys have probability exactly 0.

    Raises:
        ValueError: on malformed inputs or top_k < 1.
    """
    check_qkv(q, k, v)
    check_key_padding_mask(key_padding_mask, k)
    top_k = check_top_k(top_k)
    scale = resolve_scale(scale, q.shape[-1])
    if top_k >= k.shape[2]:
        return cross_attention(q, k, v, key_padding_mask, scale, backend=backend)
    chosen = select_backend(q, backend)
    if chosen == "triton":
        q, k, v = _unit_stride(q, k, v)
        return _triton_impl().topk_attention(q, k, v, top_k, key_padding_mask, scale)
    if chosen == "reference":
        return topk_attention_reference(q, k, v, top_k, key_padding_mask, scale)
    return torch_impl.topk_attention(q, k, v, top_k, key_padding_mask, scale)
