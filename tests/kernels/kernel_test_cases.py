"""Shared helpers for the attention tests: inputs, masks, tolerance tables, comparisons.

Imported by the torch-path tests and by the Triton interpreter cases (run in a subprocess).
Tensors are made on ``DEVICE``: CPU unless ``FORKLIFT_TEST_DEVICE=cuda`` (the GPU check runs the
Triton cases on real CUDA tensors that way).
"""

from __future__ import annotations

import os

import torch

from kernels import attention_reference

DEVICE = torch.device(os.environ.get("FORKLIFT_TEST_DEVICE", "cpu"))

# (atol, rtol) for outputs and for gradients, against the float32 reference on upcast inputs.
OUT_TOL: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-9, 1e-9),
    torch.float32: (2e-5, 2e-5),
    torch.float16: (3e-3, 3e-3),
    torch.bfloat16: (2e-2, 2e-2),
}
GRAD_TOL: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-9, 1e-9),
    torch.float32: (5e-5, 5e-5),
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (6e-2, 6e-2),
}


def make_qkv(
    shape: tuple[int, int, int, int, int], dtype: torch.dtype, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random leaf q (B, H, Lq, D), k and v (B, H, Lk, D) for shape (B, H, Lq, Lk, D)."""
    bsz, heads, lq, lk, dim = shape
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(bsz, heads, lq, dim, generator=gen)
    k = torch.randn(bsz, heads, lk, dim, generator=gen)
    v = torch.randn(bsz, heads, lk, dim, generator=gen)
    return tuple(t.to(DEVICE, dtype).requires_grad_() for t in (q, k, v))


def make_mask(kind: str, bsz: int, lk: int, seed: int = 0) -> torch.Tensor | None:
    """Key padding masks (B, Lk) on ``DEVICE`` by kind: none, random, ragged, empty_row."""
    mask = _make_mask_cpu(kind, bsz, lk, seed)
    return None if mask is None else mask.to(DEVICE)


def _make_mask_cpu(kind: str, bsz: int, lk: int, seed: int) -> torch.Tensor | None:
    gen = torch.Generator().manual_seed(seed + 1)
    if kind == "none":
        return None
    if kind == "random":
        mask = torch.rand(bsz, lk, generator=gen) > 0.4
        mask[:, 0] = True
        return mask
    if kind == "ragged":  # valid prefix of a different length per batch element
        lengths = torch.randint(1, lk + 1, (bsz,), generator=gen)
        return torch.arange(lk)[None, :] < lengths[:, None]
    if kind == "empty_row":  # batch element 0 has no valid key at all
        mask = torch.rand(bsz, lk, generator=gen) > 0.3
        mask[0] = False
        return mask
    raise ValueError(f"unknown mask kind {kind}")


MASK_KINDS = ("none", "random", "ragged", "empty_row")


def assert_matches_reference(fn, q, k, v, mask, *, seed: int = 0, ref_fn=None) -> None:
    """Asserts fn(q, k, v, mask) matches the reference in output and in q, k, v gradients.

    The reference runs in float32 (float64 for float64) on upcast copies of the inputs; the
    tolerance comes from the (dtype, atol, rtol) tables above.
    """
    ref_fn = ref_fn or attention_reference
    dtype = q.dtype
    up = torch.float64 if dtype == torch.float64 else torch.float32
    q32, k32, v32 = (t.detach().to(up).requires_grad_() for t in (q, k, v))
    out = fn(q, k, v, mask)
    ref = ref_fn(q32, k32, v32, mask)
    assert out.dtype == dtype and out.shape == q.shape
    atol, rtol = OUT_TOL[dtype]
    torch.testing.assert_close(out.to(up), ref, atol=atol, rtol=rtol)
    gen = torch.Generator().manual_seed(seed + 7)
    grad_out = torch.randn(out.shape, generator=gen).to(out.device)
    grads = torch.autograd.grad(out, (q, k, v), grad_out.to(dtype))
    ref_grads = torch.autograd.grad(ref, (q32, k32, v32), grad_out.to(up))
    atol, rtol = GRAD_TOL[dtype]
    for name, g, rg in zip("qkv", grads, ref_grads):
        assert torch.isfinite(g).all(), f"non-finite d{name}"
        torch.testing.assert_close(g.to(up), rg, atol=atol, rtol=rtol, msg=f"d{name} mismatch")


def probabilities(attn_fn, q, k, mask) -> torch.Tensor:
    """Recovers the attention probabilities (B, H, Lq, Lk) by attending over one-hot values.

    With v = identity (Lk x Lk, one row per key) the output row of a query is exactly its
    probability vector; q and k are zero-padded to head dim Lk so shapes agree.
    """
    bsz, heads, _, dim = q.shape
    lk = k.shape[2]
    width = max(dim, lk)
    pad = width - dim
    scale = dim**-0.5
    qp = torch.nn.functional.pad(q.detach(), (0, pad))
    kp = torch.nn.functional.pad(k.detach(), (0, pad))
    eye = torch.eye(lk, width, dtype=q.dtype, device=q.device).expand(bsz, heads, lk, width).contiguous()
    return attn_fn(qp, kp, eye, mask, scale)[..., :lk]


def naive_topk_zero_score_bug(q, k, v, top_k, mask, scale):
    """The known-wrong top-k: unselected scores set to 0 (not -inf) before the softmax."""
    scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    kth = torch.topk(scores, top_k, dim=-1).values[..., -1:]
    scores = torch.where(scores >= kth, scores, torch.zeros_like(scores))
    return torch.matmul(torch.softmax(scores, -1), v.float()).to(q.dtype)
