"""Attention ops on the torch path (CPU): semantics, gradients, dispatch, validation, export."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_test_cases import (
    MASK_KINDS,
    assert_matches_reference,
    make_mask,
    make_qkv,
    naive_topk_zero_score_bug,
    probabilities,
)

import kernels
from kernels import torch_impl

REPO = Path(__file__).resolve().parents[2]
DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
SHAPES = ((2, 3, 3, 37, 24), (3, 2, 1, 8, 16), (1, 4, 32, 65, 40))


@pytest.mark.parametrize("backend", ["auto", "torch"])
@pytest.mark.parametrize("mask_kind", MASK_KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_attention__matches_reference(dtype, mask_kind, backend):
    for i, shape in enumerate(SHAPES):
        q, k, v = make_qkv(shape, dtype, seed=i)
        mask = make_mask(mask_kind, shape[0], shape[3], seed=i)
        assert_matches_reference(
            lambda q, k, v, m: kernels.cross_attention(q, k, v, m, backend=backend), q, k, v, mask
        )


@pytest.mark.parametrize("backend", ["torch", "reference"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_attention__all_masked_query_is_zero_with_zero_grad(dtype, backend):
    q, k, v = make_qkv((2, 2, 3, 9, 8), dtype)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1] = False
    out = kernels.cross_attention(q, k, v, mask, backend=backend)
    assert torch.isfinite(out).all()
    assert (out[1] == 0).all()
    assert (out[0].abs().sum() > 0).item()
    dq, dk, dv = torch.autograd.grad(out.float().sum(), (q, k, v))
    for g in (dq, dk, dv):
        assert torch.isfinite(g).all()
        assert (g[1] == 0).all()


@pytest.mark.parametrize("fix", [False, True])
def test_masked_attention__row_fix_path_zeroes_empty_rows(fix, monkeypatch):
    # Exercise both branches of the SDPA wrapper whatever this torch version's SDPA does.
    monkeypatch.setattr(torch_impl, "_needs_row_fix", lambda device, dtype: fix)
    q, k, v = make_qkv((2, 2, 3, 9, 8), torch.float32)
    mask = make_mask("empty_row", 2, 9)
    assert_matches_reference(lambda q, k, v, m: kernels.cross_attention(q, k, v, m), q, k, v, mask)
    out = kernels.cross_attention(q, k, v, mask)
    assert (out[0] == 0).all()


@pytest.mark.parametrize("dtype", (torch.float32, torch.float16))
def test_cross_attention__invariant_to_masked_key_content(dtype):
    q, k, v = make_qkv((2, 2, 4, 23, 16), dtype)
    mask = make_mask("random", 2, 23)
    out = kernels.cross_attention(q, k, v, mask)
    k2, v2 = k.detach().clone(), v.detach().clone()
    k2[~mask[:, None, :, None].expand_as(k2)] = 1e3
    v2[~mask[:, None, :, None].expand_as(v2)] = -7e2
    out2 = kernels.cross_attention(q, k2, v2, mask)
    torch.testing.assert_close(out, out2, atol=0, rtol=0)


def test_cross_attention__no_keys_returns_zeros():
    q, k, v = make_qkv((2, 2, 3, 0, 8), torch.float32)
    out = kernels.cross_attention(q, k, v, torch.zeros(2, 0, dtype=torch.bool))
    assert out.shape == (2, 2, 3, 8) and (out == 0).all()


@settings(max_examples=15, deadline=None)
@given(
    bsz=st.integers(1, 3),
    heads=st.integers(1, 3),
    lq=st.integers(1, 9),
    lk=st.integers(1, 40),
    dim=st.integers(1, 40),
    p_valid=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_cross_attention__hypothesis_shapes_match_reference(bsz, heads, lq, lk, dim, p_valid, seed):
    q, k, v = make_qkv((bsz, heads, lq, lk, dim), torch.float32, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(bsz, lk, generator=gen) < p_valid
    assert_matches_reference(lambda q, k, v, m: kernels.cross_attention(q, k, v, m), q, k, v, mask)


# ----------------------------------------------------------------------------- top-k


def _topk(top_k, backend="auto"):
    return lambda q, k, v, m, scale=None: kernels.topk_attention(
        q, k, v, top_k, m, scale, backend=backend
    )


def assert_unselected_keys_have_zero_probability(attn, q, k, mask, top_k):
    """Probabilities: exactly 0 off the top-k (ties kept), rows sum to 1 or are empty."""
    probs = probabilities(attn, q, k, mask).double()  # [B, H, Lq, Lk]
    scores = torch.matmul(q.detach().float(), k.detach().float().transpose(-1, -2))
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    kth = torch.topk(scores, min(top_k, scores.shape[-1]), dim=-1).values[..., -1:]
    selected = (scores >= kth) & torch.isfinite(scores)
    assert (probs[~selected] == 0).all(), "an unselected key has non-zero probability"
    row_sum = probs.sum(-1)
    has_key = selected.any(-1)
    torch.testing.assert_close(
        row_sum[has_key], torch.ones_like(row_sum[has_key]), atol=1e-2, rtol=0
    )
    assert (row_sum[~has_key] == 0).all()


@pytest.mark.parametrize("backend", ["torch", "reference"])
@pytest.mark.parametrize("mask_kind", ["none", "random", "empty_row"])
def test_topk_attention__unselected_keys_have_exactly_zero_probability(mask_kind, backend):
    q, k, _ = make_qkv((2, 2, 5, 19, 12), torch.float32)
    mask = make_mask(mask_kind, 2, 19)
    assert_unselected_keys_have_zero_probability(_topk(4, backend), q, k, mask, 4)


def test_topk_attention__zero_score_bug_is_detected():
    q, k, _ = make_qkv((2, 2, 5, 19, 12), torch.float32)

    def buggy(q, k, v, m, scale):
        return naive_topk_zero_score_bug(q, k, v, 4, m, scale)

    with pytest.raises(AssertionError, match="unselected"):
        assert_unselected_keys_have_zero_probability(buggy, q, k, None, 4)


@pytest.mark.parametrize("mask_kind", MASK_KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_topk_attention__matches_reference(dtype, mask_kind):
    for top_k in (1, 3, 8):
        q, k, v = make_qkv((2, 3, 3, 37, 24), dtype, seed=top_k)
        mask = make_mask(mask_kind, 2, 37, seed=top_k)

        def ref(q, k, v, m, top_k=top_k):
            return kernels.topk_attention_reference(q, k, v, top_k, m)

        assert_matches_reference(_topk(top_k), q, k, v, mask, ref_fn=ref)


@pytest.mark.parametrize("top_k", [37, 38, 100])
def test_topk_attention__top_k_ge_lk_equals_dense(top_k):
    q, k, v = make_qkv((2, 2, 3, 37, 24), torch.float32)
    mask = make_mask("random", 2, 37)
    dense = kernels.cross_attention(q, k, v, mask)
    torch.testing.assert_close(kernels.topk_attention(q, k, v, top_k, mask), dense, atol=0, rtol=0)


def test_topk_attention__ties_at_threshold_are_all_kept():
    q = torch.ones(1, 1, 1, 4)
    k = torch.ones(1, 1, 6, 4)
    k[0, 0, 4:] = -1.0  # keys 0-3 tie for first place, keys 4-5 lose
    probs = probabilities(_topk(2), q, k, None)[0, 0, 0]
    torch.testing.assert_close(probs, torch.tensor([0.25, 0.25, 0.25, 0.25, 0.0, 0.0]))


def test_topk_attention__fewer_valid_keys_than_k_uses_all_valid():
    q, k, v = make_qkv((2, 2, 3, 10, 8), torch.float32)
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[:, :3] = True
    out = kernels.topk_attention(q, k, v, 5, mask)
    torch.testing.assert_close(out, kernels.cross_attention(q, k, v, mask))


def test_topk_attention__masked_keys_never_selected_whatever_their_content():
    q, k, v = (t.detach() for t in make_qkv((2, 2, 4, 21, 16), torch.float32))
    q = q.abs()
    mask = make_mask("random", 2, 21)
    masked = ~mask[:, None, :, None].expand_as(k)
    k2, v2 = k.clone(), v.clone()
    k2[masked], v2[masked] = 50.0, 9.0  # masked keys now score highest for every query
    out = kernels.topk_attention(q, k, v, 3, mask)
    torch.testing.assert_close(kernels.topk_attention(q, k2, v2, 3, mask), out, atol=0, rtol=0)


# ----------------------------------------------------------------- dispatch, errors, export


def test_select_backend__cpu_picks_torch_and_rejects_unknown():
    q = torch.zeros(1, 1, 2, 8)
    assert kernels.select_backend(q) == "torch"
    assert kernels.select_backend(q, "reference") == "reference"
    with pytest.raises(ValueError, match="backend must be one of"):
        kernels.select_backend(q, "cuda")


def test_cross_attention__cpu_dispatch_calls_sdpa(monkeypatch):
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(1)
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(torch_impl.F, "scaled_dot_product_attention", counting)
    q, k, v = make_qkv((2, 2, 3, 9, 8), torch.float32)
    kernels.cross_attention(q, k, v, make_mask("random", 2, 9))
    kernels.cross_attention(q, k, v)
    kernels.topk_attention(q, k, v, 2)
    assert len(calls) == 3


_BAD_INPUTS = [
    ("rank", lambda q, k, v: (q[0], k, v, None), "4 dims"),
    ("head dim", lambda q, k, v: (q[..., :4], k, v, None), "agree on B, H and D"),
    ("k/v shape", lambda q, k, v: (q, k, v[:, :, :3], None), "same shape"),
    ("dtype mix", lambda q, k, v: (q.double(), k, v, None), "one dtype"),
    ("int dtype", lambda q, k, v: (q.long(), k.long(), v.long(), None), "dtype must be"),
    ("mask dtype", lambda q, k, v: (q, k, v, torch.ones(2, 9)), "key_padding_mask must be bool"),
    ("mask shape", lambda q, k, v: (q, k, v, torch.ones(2, 8, dtype=torch.bool)), "(B, Lk)"),
]


@pytest.mark.parametrize("case", _BAD_INPUTS, ids=[c[0] for c in _BAD_INPUTS])
def test_cross_attention__bad_inputs_raise_value_error(case):
    _, build, message = case
    q, k, v = (t.detach() for t in make_qkv((2, 2, 3, 9, 8), torch.float32))
    args = build(q, k, v)
    with pytest.raises(ValueError, match=message):
        kernels.cross_attention(*args)
    with pytest.raises(ValueError, match=message):
        kernels.topk_attention(args[0], args[1], args[2], 2, args[3])


@pytest.mark.parametrize("top_k", [0, -1, 2.5, True])
def test_topk_attention__bad_top_k_raises(top_k):
    q, k, v = (t.detach() for t in make_qkv((1, 1, 2, 5, 8), torch.float32))
    with pytest.raises(ValueError, match="top_k"):
        kernels.topk_attention(q, k, v, top_k)


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan")])
def test_cross_attention__bad_scale_raises(scale):
    q, k, v = (t.detach() for t in make_qkv((1, 1, 2, 5, 8), torch.float32))
    with pytest.raises(ValueError, match="scale"):
        kernels.cross_attention(q, k, v, scale=scale)


class _TinyAttention(torch.nn.Module):
    def forward(self, q, k, v, mask):
        return kernels.cross_attention(q, k, v, mask) + kernels.topk_attention(q, k, v, 3, mask)


def test_cross_attention__torch_export_matches_eager():
    q, k, v = (t.detach() for t in make_qkv((2, 2, 3, 9, 8), torch.float32))
    mask = make_mask("empty_row", 2, 9)
    module = _TinyAttention()
    exported = torch.export.export(module, (q, k, v, mask))
    torch.testing.assert_close(exported.module()(q, k, v, mask), module(q, k, v, mask))


def test_kernels__import_and_run_without_triton():
    code = (
        "import sys; sys.modules['triton'] = None\n"
        "import torch, kernels\n"
        "assert not kernels.triton_available()\n"
        "q = torch.randn(1, 2, 3, 8)\n"
        "out = kernels.cross_attention(q, q, q)\n"
        "assert out.shape == q.shape\n"
        "try:\n"
        "    kernels.cross_attention(q, q, q, backend='triton')\n"
        "    raise SystemExit('expected ValueError')\n"
        "except ValueError as err:\n"
        "    assert 'triton' in str(err)\n"
        "print('ok')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]
