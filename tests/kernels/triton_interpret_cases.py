"""Triton kernels on CPU under the Triton interpreter (TRITON_INTERPRET=1).

Not collected by default (the name does not match test_*.py): ``test_kernels_triton.py`` runs
this file in a subprocess with TRITON_INTERPRET=1 set before triton is imported, so the whole
suite can still run in one pytest process. To run it by hand:

    TRITON_INTERPRET=1 python -m pytest tests/kernels/triton_interpret_cases.py -q

Interpreter runs are slow: shapes are small but irregular (Lq=3, Lk=37, D=24, ...).

On a machine with a CUDA GPU the same cases run compiled on real CUDA tensors:

    FORKLIFT_TEST_DEVICE=cuda python -m pytest tests/kernels/triton_interpret_cases.py -q
"""

from __future__ import annotations

import os

import pytest

ON_CUDA = os.environ.get("FORKLIFT_TEST_DEVICE") == "cuda"
if os.environ.get("TRITON_INTERPRET") != "1" and not ON_CUDA:
    pytest.skip(
        "needs TRITON_INTERPRET=1 before triton is imported (CPU), or FORKLIFT_TEST_DEVICE=cuda",
        allow_module_level=True,
    )
triton = pytest.importorskip("triton")

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_test_cases import (
    MASK_KINDS,
    assert_matches_reference,
    make_mask,
    make_qkv,
    probabilities,
)

import kernels
from kernels import triton_impl, triton_kernels

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
TILES = ((16, 16), (32, 64))


def _tri(block_m=None, block_n=None):
    return lambda q, k, v, m, scale=None: triton_impl.attention(
        q, k, v, m, None, scale, block_m=block_m, block_n=block_n
    )


def _tri_topk(top_k, block_m=None, block_n=None):
    return lambda q, k, v, m, scale=None: triton_impl.topk_attention(
        q, k, v, top_k, m, scale, block_m=block_m, block_n=block_n
    )


@pytest.mark.parametrize("tiles", TILES)
@pytest.mark.parametrize("mask_kind", MASK_KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_triton_attention__matches_reference(dtype, mask_kind, tiles):
    q, k, v = make_qkv((2, 2, 3, 37, 24), dtype)
    mask = make_mask(mask_kind, 2, 37)
    assert_matches_reference(_tri(*tiles), q, k, v, mask)


@pytest.mark.parametrize(
    "shape", [(1, 2, 17, 5, 72), (2, 1, 33, 70, 16), (1, 1, 1, 1, 3), (3, 1, 2, 129, 128)]
)
def test_triton_attention__ragged_shapes_match_reference(shape):
    q, k, v = make_qkv(shape, torch.float32)
    mask = make_mask("ragged", shape[0], shape[3])
    assert_matches_reference(_tri(16, 32), q, k, v, mask)


@pytest.mark.parametrize("dtype", DTYPES)
def test_triton_attention__all_masked_query_is_zero_with_zero_grad(dtype):
    q, k, v = make_qkv((2, 2, 3, 21, 24), dtype)
    mask = torch.ones(2, 21, dtype=torch.bool, device=q.device)
    mask[1] = False
    out, lse2 = triton_impl.attention_fwd(q.detach(), k.detach(), v.detach(), mask)
    assert (out[1] == 0).all() and torch.isinf(lse2[1]).all() and torch.isfinite(lse2[0]).all()
    out = triton_impl.attention(q, k, v, mask)
    dq, dk, dv = torch.autograd.grad(out.float().sum(), (q, k, v))
    for g in (dq, dk, dv):
        assert torch.isfinite(g).all() and (g[1] == 0).all()
        assert g[0].abs().sum() > 0


def test_triton_attention__invariant_to_masked_key_content():
    q, k, v = (t.detach() for t in make_qkv((2, 2, 3, 37, 24), torch.float32))
    mask = make_mask("random", 2, 37)
    masked = ~mask[:, None, :, None].expand_as(k)
    k2, v2 = k.clone(), v.clone()
    k2[masked], v2[masked] = 1e3, -5e2
    out = triton_impl.attention(q, k, v, mask)
    torch.testing.assert_close(triton_impl.attention(q, k2, v2, mask), out, atol=0, rtol=0)


def test_triton_attention__no_keys_returns_zeros():
    q, k, v = make_qkv((2, 2, 3, 0, 8), torch.float32)
    out = triton_impl.attention(q, k, v)
    assert (out == 0).all()
    assert (torch.autograd.grad(out.sum(), q)[0] == 0).all()


@settings(max_examples=15, deadline=None)
@given(
    lq=st.integers(1, 20),
    lk=st.integers(1, 40),
    dim=st.integers(1, 40),
    p_valid=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_triton_attention__hypothesis_shapes_match_reference(lq, lk, dim, p_valid, seed):
    q, k, v = make_qkv((2, 1, lq, lk, dim), torch.float32, seed=seed)
    mask = torch.rand(2, lk, generator=torch.Generator().manual_seed(seed)) < p_valid
    mask = mask.to(q.device)
    assert_matches_reference(_tri(16, 16), q, k, v, mask)


@pytest.mark.parametrize("mask_kind", ["none", "random", "empty_row"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_triton_topk__matches_reference(dtype, mask_kind):
    q, k, v = make_qkv((2, 2, 3, 37, 24), dtype)
    mask = make_mask(mask_kind, 2, 37)

    def ref(q, k, v, m):
        return kernels.topk_attention_reference(q, k, v, 5, m)

    assert_matches_reference(_tri_topk(5, 16, 32), q, k, v, mask, ref_fn=ref)


def test_triton_topk__unselected_keys_have_exactly_zero_probability():
    q, k, _ = make_qkv((2, 2, 5, 19, 12), torch.float32)
    mask = make_mask("random", 2, 19)
    probs = probabilities(_tri_topk(4), q, k, mask)
    ref = probabilities(
        lambda q, k, v, m, s: kernels.topk_attention_reference(q, k, v, 4, m, s), q, k, mask
    )
    assert ((probs == 0) == (ref == 0)).all()
    assert ((probs > 0).sum(-1) == 4).all()
    torch.testing.assert_close(probs, ref, atol=1e-6, rtol=1e-5)


def test_triton_topk__top_k_ge_lk_equals_dense():
    q, k, v = (t.detach() for t in make_qkv((2, 2, 3, 37, 24), torch.float32))
    mask = make_mask("random", 2, 37)
    dense = triton_impl.attention(q, k, v, mask)
    torch.testing.assert_close(triton_impl.topk_attention(q, k, v, 37, mask), dense, atol=0, rtol=0)


def test_dispatch__explicit_triton_backend_runs_on_cpu_under_interpreter():
    q, k, v = make_qkv((2, 2, 3, 37, 24), torch.float32)
    mask = make_mask("random", 2, 37)
    # auto never picks triton on CPU; on CUDA it does
    assert kernels.select_backend(q) == ("triton" if q.is_cuda else "torch")
    assert_matches_reference(
        lambda q, k, v, m: kernels.cross_attention(q, k, v, m, backend="triton"), q, k, v, mask
    )
    # Non-contiguous (transposed) inputs are accepted by the dispatcher.
    qt = q.detach().transpose(-1, -2).contiguous().transpose(-1, -2)
    out = kernels.cross_attention(qt, k.detach(), v.detach(), mask, backend="triton")
    torch.testing.assert_close(out, kernels.cross_attention(q.detach(), k, v, mask))


_BAD = [
    ("float64", lambda q, k, v: (q.double(), k.double(), v.double()), {}, "float16, bfloat16"),
    (
        "head dim",
        lambda q, k, v: (q.repeat(1, 1, 1, 6), k.repeat(1, 1, 1, 6), v.repeat(1, 1, 1, 6)),
        {},
        "D <= 128",
    ),
    (
        "stride",
        lambda q, k, v: (q.transpose(-1, -2).contiguous().transpose(-1, -2), k, v),
        {},
        "stride 1",
    ),
    ("block", lambda q, k, v: (q, k, v), {"block_m": 24}, "power of two"),
]


@pytest.mark.parametrize("case", _BAD, ids=[c[0] for c in _BAD])
def test_triton_attention__bad_inputs_raise_value_error(case):
    _, build, kwargs, message = case
    q, k, v = (t.detach() for t in make_qkv((1, 1, 8, 9, 24), torch.float32))
    with pytest.raises(ValueError, match=message):
        triton_impl.attention(*build(q, k, v), **kwargs)


def test_triton_attention__bad_attn_mask_raises():
    q, k, v = (t.detach() for t in make_qkv((1, 1, 3, 9, 24), torch.float32))
    with pytest.raises(ValueError, match="attn_mask"):
        triton_impl.attention(
            q, k, v, None, torch.ones(1, 1, 3, 8, dtype=torch.bool, device=q.device)
        )


def test_prune_configs__fits_fusion_shapes():
    configs = triton_kernels.CONFIGS
    small = triton_kernels.prune_configs(configs, {"LQ_KEY": 2, "LK_KEY": 64}, BLOCK_D=32)
    assert small and all(c.kwargs["BLOCK_M"] == 16 for c in small)
    assert {c.kwargs["BLOCK_N"] for c in small} == {16, 32, 64}
    big = triton_kernels.prune_configs(configs, {"LQ_KEY": 32, "LK_KEY": 512}, BLOCK_D=128)
    assert all(c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"] <= 64 * 64 for c in big)
    assert len(big) < len(configs)
