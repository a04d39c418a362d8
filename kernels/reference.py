"""Plain-torch reference attention: the oracle every backend is tested against.

Written for clarity, not speed: it materialises the (B, H, Lq, Lk) score matrix and computes in
float32 (float64 for float64 inputs), then casts the result to the input dtype. Autograd gives
the reference gradients.

Semantics shared by every backend (see ``kernels/__init__.py``):
  * a key with ``key_padding_mask`` False gets probability exactly 0;
  * a query with no valid key returns zeros, and its gradient is zero;
  * top-k keeps the keys whose score is >= the k-th largest valid score of that query
    (ties at the k-th place are all kept); unselected keys get probability exactly 0.
"""

from __future__ import annotations

import torch

from ._validate import check_key_padding_mask, check_qkv, check_top_k, resolve_scale


def _accum_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def masked_softmax_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, valid: torch.Tensor | None, scale: float
) -> torch.Tensor:
    """Attention with an arbitrary boolean validity mask, in float32 or float64.

    Args:
        q: Queries (B, H, Lq, D).
        k: Keys (B, H, Lk, D).
        v: Values (B, H, Lk, D).
        valid: Bool mask broadcastable to (B, H, Lq, Lk), True where a (query, key) pair may
            attend; None means all pairs.
        scale: Softmax scale applied to q.k.

    Returns:
        (B, H, Lq, D) in q's dtype; rows with no valid key are zero.
    """
    acc = _accum_dtype(q.dtype)
    scores = torch.matmul(q.to(acc), k.to(acc).transpose(-1, -2)) * scale  # [B, H, Lq, Lk]
    if valid is None:
        probs = torch.softmax(scores, dim=-1)
    else:
        valid = valid.expand_as(scores)
        row_ok = valid.any(dim=-1, keepdim=True)  # [B, H, Lq, 1]
        # Rows without a valid key are softmaxed over constant zeros and then multiplied by 0:
        # finite forward, zero gradient.
        scores = scores.masked_fill(~valid, float("-inf")).masked_fill(~row_ok, 0.0)
        probs = torch.softmax(scores, dim=-1) * row_ok
    return torch.matmul(probs, v.to(acc)).to(q.dtype)


def topk_selection(
    scores: torch.Tensor, top_k: int, key_valid: torch.Tensor | None
) -> torch.Tensor:
    """Selects, per query, the keys whose score is >= the k-th largest valid score.

    Args:
        scores: (B, H, Lq, Lk) scores (any float dtype); not differentiated.
        top_k: Number of keys to keep per query (>= 1).
        key_valid: Bool (B, Lk), True where a key is valid, or None.

    Returns:
        Bool (B, H, Lq, Lk) selection. Ties at the k-th score are all selected, so a row may
        select more than ``top_k`` keys only on exact ties; masked keys are never selected; a
        row with fewer than ``top_k`` valid keys selects all of them.
    """
    scores = scores.detach()
    lk = scores.shape[-1]
    if lk == 0:
        return torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    if key_valid is not None:
        scores = scores.masked_fill(~key_valid[:, None, None, :], float("-inf"))
    kth = torch.topk(scores, min(top_k, lk), dim=-1).values[..., -1:]  # [B, H, Lq, 1]
    selected = scores >= kth
    if key_valid is not None:
        selected = selected & key_valid[:, None, None, :]
    return selected


def attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """Dense reference attention (see module docstring for semantics).

    Args:
        q: Queries (B, H, Lq, D).
        k: Keys (B, H, Lk, D).
        v: Values (B, H, Lk, D).
        key_padding_mask: Bool (B, Lk), True where a key is valid; None = all valid.
        scale: Softmax scale; default 1 / sqrt(D).

    Returns:
        (B, H, Lq, D) in q's dtype.
    """
    check_qkv(q, k, v)
    check_key_padding_mask(key_padding_mask, k)
    scale = resolve_scale(scale, q.shape[-1])
    valid = None if key_padding_mask is None else key_padding_mask[:, None, None, :]
    return masked_softmax_attention(q, k, v, valid, scale)


def topk_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    top_k: int,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """Top-k sparse reference attention: scores of unselected keys are -inf before softmax.

    Args:
        q: Queries (B, H, Lq, D).
        k: Keys (B, H, Lk, D).
        v: Values (B, H, Lk, D).
        top_k: Keys kept per query (>= 1); ties at the k-th score are all kept.
        key_padding_mask: Bool (B, Lk), True where a key is valid; None = all valid.
        scale: Softmax scale; default 1 / sqrt(D).

    Returns:
        (B, H, Lq, D) in q's dtype.
    """
    check_qkv(q, k, v)
    check_key_padding_mask(key_padding_mask, k)
    top_k = check_top_k(top_k)
    scale = resolve_scale(scale, q.shape[-1])
    acc = _accum_dtype(q.dtype)
    scores = torch.matmul(q.detach().to(acc), k.detach().to(acc).transpose(-1, -2)) * scale
    selected = topk_selection(scores, top_k, key_padding_mask)
    return masked_softmax_attention(q, k, v, selected, scale)
