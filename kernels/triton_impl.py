"""Triton attention kernels: FlashAttention-2 style forward and backward, plus top-k.

Importing this module imports triton; ``kernels`` imports it lazily and only when triton is
installed. Kernels run on CUDA tensors, or on CPU tensors under the Triton interpreter
(``TRITON_INTERPRET=1`` set before triton is imported), which is how the tests run them.

Algorithm (per (batch, head) and block of BLOCK_M queries):
  * forward: stream key/value tiles of BLOCK_N keys, online softmax in the log2 domain
    (scores pre-multiplied by ``scale * log2(e)``), fp32 accumulators; write O and the row
    log2-sum-exp2 ``lse2`` (B, H, Lq) fp32. A row with no valid key has l = 0: O = 0 and
    lse2 = -inf. The running max starts at a finite -1e30, so masked tiles never produce
    ``-inf - -inf``.
  * backward: ``delta = rowsum(dO * O)`` (torch); one kernel per key tile recomputes
    ``P = exp2(s - lse2)`` (masked to exactly 0) over all query tiles and accumulates dK, dV;
    one kernel per query tile accumulates dQ. No atomics: deterministic and safe to autotune.
    Rows with no valid key have P = 0 and O = 0, so their gradients are exactly zero.
  * masks: ``key_padding_mask`` (B, Lk) and/or a per-query ``attn_mask`` (B, H, Lq, Lk),
    both bool, True = attend; loaded as uint8 tiles.
  * head dim D is padded to BLOCK_D = next_pow2(max(D, 16)) with masked loads (D <= 128).
  * float32 inputs use ``input_precision="ieee"`` (no TF32) so fp32 results match torch.

Top-k: the selection is computed first, from float32 scores (torch matmul + ``torch.topk``):
the k-th largest valid score of each query is its threshold and keys with score >= threshold
are selected (ties at the threshold are all kept). The selection is then passed as
``attn_mask`` to the same kernels, so forward and backward use one identical selection and the
unselected keys get probability exactly 0. This is a quality feature (sparse attention
pattern); at fusion sizes it costs a dense score pass more than dense attention.

Interpreter caveat: the Triton interpreter cannot ``tl.dot`` bfloat16 (it multiplies the raw
bit patterns, triton-lang/triton#11584). Under the interpreter bfloat16 tiles are upcast to
float32 before every dot (``DOT_F32``); on GPU bfloat16 dots run natively.
"""

from __future__ import annotations

import os

import torch
import triton

from ._validate import check_key_padding_mask, check_qkv, check_top_k, resolve_scale
from .torch_impl import topk_mask
from .triton_kernels import (
    attn_bwd_dkdv_kernel,
    attn_bwd_dq_kernel,
    attn_fwd_kernel,
    autotuned,
)

LOG2E = 1.4426950408889634
MAX_HEAD_DIM = 128
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)

_FWD_TUNED = autotuned(attn_fwd_kernel)
_DKDV_TUNED = autotuned(attn_bwd_dkdv_kernel)
_DQ_TUNED = autotuned(attn_bwd_dq_kernel)


def unit_last_stride(t: torch.Tensor) -> bool:
    """True when the kernels can index t's last dim with stride 1."""
    return t.shape[-1] <= 1 or t.stride(-1) == 1


def interpreter_active() -> bool:
    """True when the Triton interpreter runs kernels on CPU tensors (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


# ------------------------------------------------------------------------- host side


def _check_inputs(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None,
    attn_mask: torch.Tensor | None,
) -> None:
    """Checks what the kernels assume; raises ValueError naming the argument."""
    check_qkv(q, k, v)
    check_key_padding_mask(key_padding_mask, k)
    if q.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"triton attention supports float16, bfloat16, float32; got {q.dtype}")
    if q.device.type != "cuda" and not interpreter_active():
        raise ValueError(
            f"triton attention needs CUDA tensors, got device {q.device}; to run on CPU set "
            "TRITON_INTERPRET=1 before triton is imported"
        )
    if q.shape[-1] > MAX_HEAD_DIM:
        raise ValueError(
            f"triton attention supports head dim D <= {MAX_HEAD_DIM}, got {q.shape[-1]}"
        )
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not unit_last_stride(t):
            raise ValueError(
                f"{name} must be contiguous in its last dim (stride 1), got strides {t.stride()}; "
                "call .contiguous()"
            )
    if attn_mask is not None:
        expected = (q.shape[0], q.shape[1], q.shape[2], k.shape[2])
        if attn_mask.dtype != torch.bool or tuple(attn_mask.shape) != expected:
            raise ValueError(
                f"attn_mask must be bool of shape (B, H, Lq, Lk) = {expected}, "
                f"got dtype {attn_mask.dtype}, shape {tuple(attn_mask.shape)}"
            )
        if attn_mask.device != q.device:
            raise ValueError(f"attn_mask must be on {q.device}, got {attn_mask.device}")


def _check_blocks(block_m: int | None, block_n: int | None) -> None:
    for name, blk in (("block_m", block_m), ("block_n", block_n)):
        if blk is not None and (blk < 16 or blk & (blk - 1)):
            raise ValueError(f"{name} must be None or a power of two >= 16, got {blk}")


def _mask_args(
    q: torch.Tensor, key_padding_mask: torch.Tensor | None, attn_mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int, int, int]]:
    """uint8 views of the masks (a dummy pointer when absent) and their strides."""
    kpm, am = q, q
    kpm_stride, am_strides = 0, (0, 0, 0)
    if key_padding_mask is not None:
        kpm = key_padding_mask.contiguous().view(torch.uint8)  # [B, Lk]
        kpm_stride = kpm.stride(0)
    if attn_mask is not None:
        am = attn_mask if attn_mask.stride(-1) == 1 else attn_mask.contiguous()
        am = am.view(torch.uint8)  # [B, H, Lq, Lk]
        am_strides = (am.stride(0), am.stride(1), am.stride(2))
    return kpm, am, (kpm_stride, *am_strides)


def _flags(q: torch.Tensor, key_padding_mask, attn_mask) -> dict:
    return {
        "HAS_KPM": key_padding_mask is not None,
        "HAS_AMASK": attn_mask is not None,
        "IEEE": q.dtype == torch.float32,
        "DOT_F32": interpreter_active() and q.dtype == torch.bfloat16,
        "BLOCK_D": max(16, triton.next_power_of_2(q.shape[-1])),
    }


def _launch(
    tuned,
    raw,
    tile: str,
    length: int,
    bh: int,
    args: tuple,
    flags: dict,
    block_m: int | None,
    block_n: int | None,
) -> None:
    """Autotuned launch on GPU; fixed tiles when given or under the interpreter."""
    if block_m is None and block_n is None and not interpreter_active():
        tuned[lambda meta: (triton.cdiv(length, meta[tile]), bh)](*args, **flags)
        return
    blocks = {"BLOCK_M": block_m or 16, "BLOCK_N": block_n or 16}
    raw[(triton.cdiv(length, blocks[tile]), bh)](*args, **flags, **blocks, num_warps=4)


def _common_strides(q, k, v) -> tuple:
    return (*q.stride()[:3], *k.stride()[:3], *v.stride()[:3])


def attention_fwd(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    attn_mask: torch.Tensor | None = None,
    scale: float | None = None,
    *,
    block_m: int | None = None,
    block_n: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused attention forward (no autograd).

    Args:
        q: Queries (B, H, Lq, D), float16/bfloat16/float32, CUDA (or CPU under the interpreter).
        k: Keys (B, H, Lk, D).
        v: Values (B, H, Lk, D).
        key_padding_mask: Bool (B, Lk), True where a key is valid, or None.
        attn_mask: Bool (B, H, Lq, Lk), True where the query may attend the key, or None.
        scale: Softmax scale; default 1 / sqrt(D).
        block_m: Query tile (power of two >= 16); None = autotuned (16 under the interpreter).
        block_n: Key tile (power of two >= 16); None = autotuned (16 under the interpreter).

    Returns:
        out (B, H, Lq, D) in q's dtype, and lse2 (B, H, Lq) float32: log2-sum-exp2 of the
        scores times ``scale * log2(e)``; -inf for a row with no valid key (its out is 0).
    """
    _check_inputs(q, k, v, key_padding_mask, attn_mask)
    _check_blocks(block_m, block_n)
    scale = resolve_scale(scale, q.shape[-1])
    return _fwd(q, k, v, key_padding_mask, attn_mask, scale, block_m, block_n)


def _fwd(q, k, v, key_padding_mask, attn_mask, scale: float, block_m, block_n):
    """``attention_fwd`` on checked inputs (the autograd path checks once, up front)."""
    bsz, heads, lq, dim = q.shape
    lk = k.shape[2]
    out = torch.empty((bsz, heads, lq, dim), dtype=q.dtype, device=q.device)
    lse2 = torch.empty((bsz, heads, lq), dtype=torch.float32, device=q.device)
    if out.numel() == 0:
        return out, lse2.fill_(float("-inf"))
    kpm, am, mask_strides = _mask_args(q, key_padding_mask, attn_mask)
    args = (
        q,
        k,
        v,
        kpm,
        am,
        out,
        lse2,
        scale * LOG2E,
        *_common_strides(q, k, v),
        *out.stride()[:3],
        *mask_strides,
        heads,
        lq,
        lk,
        dim,
        triton.next_power_of_2(lq),
        triton.next_power_of_2(max(lk, 1)),
    )
    flags = _flags(q, key_padding_mask, attn_mask)
    _launch(_FWD_TUNED, attn_fwd_kernel, "BLOCK_M", lq, bsz * heads, args, flags, block_m, block_n)
    return out, lse2


def attention_bwd(
    do: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse2: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    attn_mask: torch.Tensor | None = None,
    scale: float | None = None,
    *,
    block_m: int | None = None,
    block_n: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused attention backward from the saved output and lse2 (FlashAttention-2 style).

    Args:
        do: Gradient of the output (B, H, Lq, D).
        q, k, v, key_padding_mask, attn_mask, scale, block_m, block_n: As in ``attention_fwd``.
        out: Forward output (B, H, Lq, D).
        lse2: Forward log2-sum-exp2 (B, H, Lq) float32.

    Returns:
        dq (B, H, Lq, D), dk and dv (B, H, Lk, D), in the input dtype.
    """
    _check_inputs(q, k, v, key_padding_mask, attn_mask)
    _check_blocks(block_m, block_n)
    if do.shape != q.shape or out.shape != q.shape:
        raise ValueError(f"do and out must have q's shape {tuple(q.shape)}, got {tuple(do.shape)}")
    scale = resolve_scale(scale, q.shape[-1])
    return _bwd(do, q, k, v, out, lse2, key_padding_mask, attn_mask, scale, block_m, block_n)


def _bwd(do, q, k, v, out, lse2, key_padding_mask, attn_mask, scale: float, block_m, block_n):
    """``attention_bwd`` on checked inputs."""
    do = do.to(q.dtype)
    do = do if do.stride(-1) == 1 else do.contiguous()
    bsz, heads, lq, dim = q.shape
    lk = k.shape[2]
    if q.numel() == 0 or k.numel() == 0:
        return torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    # Every in-bounds row is stored by the kernels (zeros where nothing is valid): no memset.
    dq = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    dk = torch.empty(k.shape, dtype=k.dtype, device=k.device)
    dv = torch.empty(v.shape, dtype=v.dtype, device=v.device)
    delta = (do.float() * out.float()).sum(-1).contiguous()  # [B, H, Lq] = rowsum(dO * O)
    lse2 = lse2.contiguous()
    kpm, am, mask_strides = _mask_args(q, key_padding_mask, attn_mask)
    flags = _flags(q, key_padding_mask, attn_mask)
    tail = (
        *mask_strides,
        heads,
        lq,
        lk,
        dim,
        triton.next_power_of_2(lq),
        triton.next_power_of_2(lk),
    )
    head = (q, k, v, kpm, am, do, lse2, delta)
    common = (scale * LOG2E, scale, *_common_strides(q, k, v), *do.stride()[:3])
    _launch(
        _DKDV_TUNED,
        attn_bwd_dkdv_kernel,
        "BLOCK_N",
        lk,
        bsz * heads,
        (*head, dk, dv, *common, *dk.stride()[:3], *tail),
        flags,
        block_m,
        block_n,
    )
    _launch(
        _DQ_TUNED,
        attn_bwd_dq_kernel,
        "BLOCK_M",
        lq,
        bsz * heads,
        (*head, dq, *common, *dq.stride()[:3], *tail),
        flags,
        block_m,
        block_n,
    )
    return dq, dk, dv


class _TritonAttention(torch.autograd.Function):
    """Autograd wrapper: saves (q, k, v, out, lse2, masks); backward recomputes P."""

    @staticmethod
    def forward(ctx, q, k, v, key_padding_mask, attn_mask, scale, block_m, block_n):
        out, lse2 = _fwd(q, k, v, key_padding_mask, attn_mask, scale, block_m, block_n)
        ctx.save_for_backward(q, k, v, out, lse2, key_padding_mask, attn_mask)
        ctx.scale, ctx.blocks = scale, (block_m, block_n)
        return out

    @staticmethod
    def backward(ctx, do):
        q, k, v, out, lse2, key_padding_mask, attn_mask = ctx.saved_tensors
        block_m, block_n = ctx.blocks
        dq, dk, dv = _bwd(
            do, q, k, v, out, lse2, key_padding_mask, attn_mask, ctx.scale, block_m, block_n
        )
        return dq, dk, dv, None, None, None, None, None


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    attn_mask: torch.Tensor | None = None,
    scale: float | None = None,
    *,
    block_m: int | None = None,
    block_n: int | None = None,
) -> torch.Tensor:
    """Differentiable fused attention; arguments as in ``attention_fwd``.

    Returns:
        (B, H, Lq, D) in q's dtype; rows with no valid key are zero with zero gradient.
    """
    _check_inputs(q, k, v, key_padding_mask, attn_mask)
    _check_blocks(block_m, block_n)
    scale = resolve_scale(scale, q.shape[-1])
    return _TritonAttention.apply(q, k, v, key_padding_mask, attn_mask, scale, block_m, block_n)


def topk_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    top_k: int,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    *,
    block_m: int | None = None,
    block_n: int | None = None,
) -> torch.Tensor:
    """Differentiable top-k sparse attention: threshold selection, then the masked kernel.

    Args:
        top_k: Keys kept per query (>= 1); keys scoring >= the k-th largest valid score are
            kept (ties all kept). ``top_k >= Lk`` is dense attention.
        Others: as in ``attention_fwd``.

    Returns:
        (B, H, Lq, D) in q's dtype.
    """
    top_k = check_top_k(top_k)
    _check_inputs(q, k, v, key_padding_mask, None)
    scale = resolve_scale(scale, q.shape[-1])
    if top_k >= k.shape[2]:
        return attention(q, k, v, key_padding_mask, None, scale, block_m=block_m, block_n=block_n)
    selected = topk_mask(q, k, top_k, key_padding_mask, scale)  # [B, H, Lq, Lk]
    return attention(q, k, v, None, selected, scale, block_m=block_m, block_n=block_n)
