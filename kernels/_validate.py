"""Input checks shared by every attention backend.

Each check raises ``ValueError`` with a one-line message that names the argument, what was
expected and what was received. Checks only read shapes, dtypes and devices (never values), so
they are free under ``torch.jit.trace`` / ``torch.export``.
"""

from __future__ import annotations

import math

import torch

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _describe(t: torch.Tensor) -> str:
    return f"shape {tuple(t.shape)}, dtype {t.dtype}, device {t.device}"


def check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """Checks q (B, H, Lq, D), k and v (B, H, Lk, D): ranks, matching sizes, dtype, device.

    Raises:
        ValueError: if any argument is not a tensor of the documented layout.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            msg = f"{name} must be a torch.Tensor, got {type(t).__name__}"
            raise ValueError(msg)  # noqa: TRY004 - the API raises ValueError for any bad input
        if t.dim() != 4:
            raise ValueError(f"{name} must have 4 dims (B, H, L, D), got {_describe(t)}")
        if t.dtype not in _FLOAT_DTYPES:
            raise ValueError(
                f"{name} dtype must be one of float16, bfloat16, float32, float64, got {t.dtype}"
            )
    if k.shape != v.shape:
        raise ValueError(
            f"k and v must have the same shape, got k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3]:
        raise ValueError(
            "q (B, H, Lq, D) and k (B, H, Lk, D) must agree on B, H and D, "
            f"got q {tuple(q.shape)}, k {tuple(k.shape)}"
        )
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v must share one device, got {q.device}, {k.device}, {v.device}")


def check_key_padding_mask(mask: torch.Tensor | None, k: torch.Tensor) -> None:
    """Checks a key padding mask: bool (B, Lk), True where a key is valid, on k's device.

    Raises:
        ValueError: if the mask has another dtype, shape or device.
    """
    if mask is None:
        return
    if not isinstance(mask, torch.Tensor):
        msg = f"key_padding_mask must be a bool tensor or None, got {type(mask).__name__}"
        raise ValueError(msg)  # noqa: TRY004 - the API raises ValueError for any bad input
    expected = (k.shape[0], k.shape[2])
    if mask.dtype != torch.bool or tuple(mask.shape) != expected:
        raise ValueError(
            f"key_padding_mask must be bool of shape (B, Lk) = {expected} (True = valid key), "
            f"got {_describe(mask)}"
        )
    if mask.device != k.device:
        raise ValueError(f"key_padding_mask must be on {k.device}, got {mask.device}")


def resolve_scale(scale: float | None, head_dim: int) -> float:
    """Returns the softmax scale: ``scale`` or ``1 / sqrt(head_dim)`` when None.

    Raises:
        ValueError: if scale is not a finite positive number (top-k ranking assumes > 0).
    """
    if scale is None:
        return 1.0 / math.sqrt(head_dim) if head_dim > 0 else 1.0
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        msg = f"scale must be a positive float or None, got {type(scale).__name__}"
        raise ValueError(msg)  # noqa: TRY004 - the API raises ValueError for any bad input
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a finite positive float, got {scale}")
    return float(scale)


def check_top_k(top_k: int) -> int:
    """Returns top_k as an int.

    Raises:
        ValueError: if top_k is not an int >= 1.
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be an int >= 1, got {top_k!r}")
    return top_k
