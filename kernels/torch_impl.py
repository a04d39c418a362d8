"""Torch backend: ``F.scaled_dot_product_attention`` with the fully-masked-row fix.

Older SDPA backends return NaN for a query whose keys are all masked (softmax of an all -inf
row) and NaN gradients with it. Recent CPU backends return zeros. At import we probe, per
dtype, whether SDPA on CPU already returns zeros with zero, finite gradients; where it does, the
dispatcher calls SDPA untouched (never slower than SDPA). Elsewhere (a probe failed, CUDA
tensors on this path) the fix is applied:

  * ``safe = valid | ~row_ok``: a row without valid keys attends to every key (finite);
  * ``out * row_ok``: that row is then zeroed, and its gradient (through the multiply) is zero
    for q, k and v.

Dtypes SDPA cannot run on the device fall back to the reference implementation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .reference import masked_softmax_attention, topk_selection

_PROBE_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _probe_cpu_sdpa(dtype: torch.dtype) -> tuple[bool, bool]:
    """Runs SDPA once on a tiny fully-masked case on CPU.

    Returns:
        (supported, zeroes_empty_rows): SDPA runs forward+backward in ``dtype``; and it already
        returns zeros with zero, finite gradients for a row whose keys are all masked.
    """
    try:
        gen = torch.Generator().manual_seed(0)
        q = torch.randn(1, 1, 2, 8, generator=gen).to(dtype).requires_grad_()
        k = torch.randn(1, 1, 3, 8, generator=gen).to(dtype).requires_grad_()
        v = torch.randn(1, 1, 3, 8, generator=gen).to(dtype).requires_grad_()
        mask = torch.tensor([[True, False, True], [False, False, False]]).view(1, 1, 2, 3)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out.float().sum().backward()
        grads = (q.grad[:, :, 1], k.grad, v.grad)
        zero_row = bool((out[:, :, 1] == 0).all())
        finite = all(bool(torch.isfinite(g).all()) for g in grads)
        zero_grad = bool((q.grad[:, :, 1] == 0).all())
        return True, zero_row and finite and zero_grad
    except Exception:  # noqa: BLE001 - any failure means "do not rely on SDPA here".
        return False, False


_CPU_SDPA: dict[torch.dtype, tuple[bool, bool]] = {dt: _probe_cpu_sdpa(dt) for dt in _PROBE_DTYPES}


def sdpa_supported(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether SDPA is used for this device and dtype (else the reference path)."""
    if device.type == "cpu":
        return _CPU_SDPA.get(dtype, (False, False))[0]
    return True


def _needs_row_fix(device: torch.device, dtype: torch.dtype) -> bool:
    if device.type == "cpu":
        return not _CPU_SDPA.get(dtype, (False, False))[1]
    return True


def masked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    valid: torch.Tensor | None,
    scale: float,
) -> torch.Tensor:
    """SDPA (or reference) attention with a boolean validity mask and zeroed empty rows.

    Args:
        q: Queries (B, H, Lq, D).
        k: Keys (B, H, Lk, D).
        v: Values (B, H, Lk, D).
        valid: Bool broadcastable to (B, H, Lq, Lk), True where a pair may attend, or None.
        scale: Softmax scale.

    Returns:
        (B, H, Lq, D) in q's dtype.
    """
    if k.shape[2] == 0:
        return torch.zeros_like(q)
    if not sdpa_supported(q.device, q.dtype):
        return masked_softmax_attention(q, k, v, valid, scale)
    if valid is None:
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    if not _needs_row_fix(q.device, q.dtype):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=valid, scale=scale)
    row_ok = valid.any(dim=-1, keepdim=True)  # [B, 1 or H, 1 or Lq, 1]
    safe = valid | ~row_ok
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=safe, scale=scale)
    return out * row_ok.to(out.dtype)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None,
    scale: float,
) -> torch.Tensor:
    """Dense attention on the torch path; inputs already validated.

    Args:
        q: Queries (B, H, Lq, D).
        k: Keys (B, H, Lk, D).
        v: Values (B, H, Lk, D).
        key_padding_mask: Bool (B, Lk), True where a key is valid, or None.
        scale: Softmax scale.

    Returns:
        (B, H, Lq, D) in q's dtype.
    """
    valid = None
    if key_padding_mask is not None:
        valid = key_padding_mask.reshape(k.shape[0], 1, 1, k.shape[2])  # [B, 1, 1, Lk]
    return masked_attention(q, k, v, valid, scale)


def topk_mask(
    q: torch.Tensor,
    k: torch.Tensor,
    top_k: int,
    key_padding_mask: torch.Tensor | None,
    scale: float,
) -> torch.Tensor:
    """Per-query top-k key selection from float32 scores (float64 for float64 inputs).

    The selection is piecewise constant in q and k, so it is computed without autograd.

    Returns:
        Bool (B, H, Lq, Lk), True where the query attends to the key.
    """
    acc = torch.float64 if q.dtype == torch.float64 else torch.float32
    with torch.no_grad():
        scores = torch.matmul(q.to(acc), k.to(acc).transpose(-1, -2)) * scale  # [B, H, Lq, Lk]
        return topk_selection(scores, top_k, key_padding_mask)


def topk_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    top_k: int,
    key_padding_mask: torch.Tensor | None,
    scale: float,
) -> torch.Tensor:
    """Top-k sparse attention on the torch path; inputs already validated, top_k < Lk.

    Returns:
        (B, H, Lq, D) in q's dtype.
    """
    selected = topk_mask(q, k, top_k, key_padding_mask, scale)
    return masked_attention(q, k, v, selected, scale)
