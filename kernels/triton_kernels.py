"""Triton kernels for attention: FlashAttention-2 style forward, backward dK/dV and dQ.

Device code and autotuning configs only; the host wrappers, checks, autograd and the algorithm
notes live in ``kernels.triton_impl``. Importing this module imports triton.

All kernels take q/k/v with unit stride in the head dim and arbitrary other strides, a uint8
key padding mask (B, Lk) and/or a uint8 per-query mask (B, H, Lq, Lk), and work in the log2
domain: ``qk_scale = scale * log2(e)``, ``LSE`` holds log2-sum-exp2 per query row.
"""

from __future__ import annotations

import triton
import triton.language as tl

# ----------------------------------------------------------------------------- kernels


@triton.jit
def _mm(a, b, IEEE: tl.constexpr):
    if IEEE:
        c = tl.dot(a, b, input_precision="ieee")
    else:
        c = tl.dot(a, b)
    return c


@triton.jit
def _valid_tile(
    KPM,
    AM,
    b,
    h,
    offs_m,
    offs_n,
    LQ,
    LK,
    stride_kpm_b,
    stride_ab,
    stride_ah,
    stride_am,
    HAS_KPM: tl.constexpr,
    HAS_AMASK: tl.constexpr,
):
    """[BLOCK_M, BLOCK_N] bool: in bounds, key valid, pair selected."""
    m_ok = offs_m < LQ
    n_ok = offs_n < LK
    valid = m_ok[:, None] & n_ok[None, :]
    if HAS_KPM:
        kp = tl.load(KPM + b * stride_kpm_b + offs_n, mask=n_ok, other=0)
        valid = valid & (kp != 0)[None, :]
    if HAS_AMASK:
        am_ptrs = AM + b * stride_ab + h * stride_ah + offs_m[:, None] * stride_am + offs_n[None, :]
        am = tl.load(am_ptrs, mask=m_ok[:, None] & n_ok[None, :], other=0)
        valid = valid & (am != 0)
    return valid


@triton.jit
def attn_fwd_kernel(
    Q,
    K,
    V,
    KPM,
    AM,
    O,
    LSE,
    qk_scale,
    stride_qb,
    stride_qh,
    stride_qm,
    stride_kb,
    stride_kh,
    stride_kn,
    stride_vb,
    stride_vh,
    stride_vn,
    stride_ob,
    stride_oh,
    stride_om,
    stride_kpm_b,
    stride_ab,
    stride_ah,
    stride_am,
    H,
    LQ,
    LK,
    D,
    LQ_KEY,
    LK_KEY,
    HAS_KPM: tl.constexpr,
    HAS_AMASK: tl.constexpr,
    IEEE: tl.constexpr,
    DOT_F32: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    m_ok = offs_m < LQ
    d_ok = offs_d < D
    md_mask = m_ok[:, None] & d_ok[None, :]
    q = tl.load(
        Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qm + offs_d[None, :],
        mask=md_mask,
        other=0.0,
    )
    if DOT_F32:
        q = q.to(tl.float32)
    m_i = tl.full([BLOCK_M], -1.0e30, dtype=tl.float32)  # running max (log2 units), finite
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # running sum of exp2
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh
    for start_n in range(0, LK, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        nd_mask = (offs_n < LK)[:, None] & d_ok[None, :]
        k = tl.load(k_base + offs_n[:, None] * stride_kn + offs_d[None, :], mask=nd_mask, other=0.0)
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :], mask=nd_mask, other=0.0)
        if DOT_F32:
            k = k.to(tl.float32)
            v = v.to(tl.float32)
        s = _mm(q, tl.trans(k), IEEE) * qk_scale  # [BLOCK_M, BLOCK_N]
        valid = _valid_tile(
            KPM,
            AM,
            b,
            h,
            offs_m,
            offs_n,
            LQ,
            LK,
            stride_kpm_b,
            stride_ab,
            stride_ah,
            stride_am,
            HAS_KPM,
            HAS_AMASK,
        )
        s = tl.where(valid, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])  # exactly 0 where masked
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + _mm(p.to(v.dtype), v, IEEE)
        m_i = m_new
    has_key = l_i > 0.0
    l_safe = tl.where(has_key, l_i, 1.0)
    out = acc / l_safe[:, None]
    tl.store(
        O + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_om + offs_d[None, :],
        out.to(O.dtype.element_ty),
        mask=md_mask,
    )
    lse2 = tl.where(has_key, m_i + tl.log2(l_safe), float("-inf"))
    tl.store(LSE + pid_bh * LQ + offs_m, lse2, mask=m_ok)


@triton.jit
def attn_bwd_dkdv_kernel(
    Q,
    K,
    V,
    KPM,
    AM,
    DO,
    LSE,
    DELTA,
    DK,
    DV,
    qk_scale,
    sm_scale,
    stride_qb,
    stride_qh,
    stride_qm,
    stride_kb,
    stride_kh,
    stride_kn,
    stride_vb,
    stride_vh,
    stride_vn,
    stride_dob,
    stride_doh,
    stride_dom,
    stride_gb,
    stride_gh,
    stride_gn,
    stride_kpm_b,
    stride_ab,
    stride_ah,
    stride_am,
    H,
    LQ,
    LK,
    D,
    LQ_KEY,
    LK_KEY,
    HAS_KPM: tl.constexpr,
    HAS_AMASK: tl.constexpr,
    IEEE: tl.constexpr,
    DOT_F32: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < D
    nd_mask = (offs_n < LK)[:, None] & d_ok[None, :]
    k = tl.load(
        K + b * stride_kb + h * stride_kh + offs_n[:, None] * stride_kn + offs_d[None, :],
        mask=nd_mask,
        other=0.0,
    )
    v = tl.load(
        V + b * stride_vb + h * stride_vh + offs_n[:, None] * stride_vn + offs_d[None, :],
        mask=nd_mask,
        other=0.0,
    )
    if DOT_F32:
        k = k.to(tl.float32)
        v = v.to(tl.float32)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    q_base = Q + b * stride_qb + h * stride_qh
    do_base = DO + b * stride_dob + h * stride_doh
    for start_m in range(0, LQ, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        m_ok = offs_m < LQ
        md_mask = m_ok[:, None] & d_ok[None, :]
        q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_d[None, :], mask=md_mask, other=0.0)
        do = tl.load(
            do_base + offs_m[:, None] * stride_dom + offs_d[None, :], mask=md_mask, other=0.0
        )
        if DOT_F32:
            q = q.to(tl.float32)
            do = do.to(tl.float32)
        lse2 = tl.load(LSE + pid_bh * LQ + offs_m, mask=m_ok, other=0.0)
        delta = tl.load(DELTA + pid_bh * LQ + offs_m, mask=m_ok, other=0.0)
        s = _mm(q, tl.trans(k), IEEE) * qk_scale  # [BLOCK_M, BLOCK_N]
        valid = _valid_tile(
            KPM,
            AM,
            b,
            h,
            offs_m,
            offs_n,
            LQ,
            LK,
            stride_kpm_b,
            stride_ab,
            stride_ah,
            stride_am,
            HAS_KPM,
            HAS_AMASK,
        )
        p = tl.where(valid, tl.exp2(s - lse2[:, None]), 0.0)
        dv += _mm(tl.trans(p.to(do.dtype)), do, IEEE)
        dp = _mm(do, tl.trans(v), IEEE)
        ds = p * (dp - delta[:, None])
        dk += _mm(tl.trans(ds.to(q.dtype)), q, IEEE)
    g_off = b * stride_gb + h * stride_gh + offs_n[:, None] * stride_gn + offs_d[None, :]
    tl.store(DK + g_off, (dk * sm_scale).to(DK.dtype.element_ty), mask=nd_mask)
    tl.store(DV + g_off, dv.to(DV.dtype.element_ty), mask=nd_mask)


@triton.jit
def attn_bwd_dq_kernel(
    Q,
    K,
    V,
    KPM,
    AM,
    DO,
    LSE,
    DELTA,
    DQ,
    qk_scale,
    sm_scale,
    stride_qb,
    stride_qh,
    stride_qm,
    stride_kb,
    stride_kh,
    stride_kn,
    stride_vb,
    stride_vh,
    stride_vn,
    stride_dob,
    stride_doh,
    stride_dom,
    stride_gb,
    stride_gh,
    stride_gm,
    stride_kpm_b,
    stride_ab,
    stride_ah,
    stride_am,
    H,
    LQ,
    LK,
    D,
    LQ_KEY,
    LK_KEY,
    HAS_KPM: tl.constexpr,
    HAS_AMASK: tl.constexpr,
    IEEE: tl.constexpr,
    DOT_F32: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    m_ok = offs_m < LQ
    d_ok = offs_d < D
    md_mask = m_ok[:, None] & d_ok[None, :]
    q = tl.load(
        Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qm + offs_d[None, :],
        mask=md_mask,
        other=0.0,
    )
    do = tl.load(
        DO + b * stride_dob + h * stride_doh + offs_m[:, None] * stride_dom + offs_d[None, :],
        mask=md_mask,
        other=0.0,
    )
    if DOT_F32:
        q = q.to(tl.float32)
        do = do.to(tl.float32)
    lse2 = tl.load(LSE + pid_bh * LQ + offs_m, mask=m_ok, other=0.0)
    delta = tl.load(DELTA + pid_bh * LQ + offs_m, mask=m_ok, other=0.0)
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh
    for start_n in range(0, LK, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        nd_mask = (offs_n < LK)[:, None] & d_ok[None, :]
        k = tl.load(k_base + offs_n[:, None] * stride_kn + offs_d[None, :], mask=nd_mask, other=0.0)
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :], mask=nd_mask, other=0.0)
        if DOT_F32:
            k = k.to(tl.float32)
            v = v.to(tl.float32)
        s = _mm(q, tl.trans(k), IEEE) * qk_scale
        valid = _valid_tile(
            KPM,
            AM,
            b,
            h,
            offs_m,
            offs_n,
            LQ,
            LK,
            stride_kpm_b,
            stride_ab,
            stride_ah,
            stride_am,
            HAS_KPM,
            HAS_AMASK,
        )
        p = tl.where(valid, tl.exp2(s - lse2[:, None]), 0.0)
        dp = _mm(do, tl.trans(v), IEEE)
        ds = p * (dp - delta[:, None])
        dq += _mm(ds.to(k.dtype), k, IEEE)
    tl.store(
        DQ + b * stride_gb + h * stride_gh + offs_m[:, None] * stride_gm + offs_d[None, :],
        (dq * sm_scale).to(DQ.dtype.element_ty),
        mask=md_mask,
    )


# ------------------------------------------------------------------------ autotuning

BLOCKS_M = (16, 32, 64)
BLOCKS_N = (16, 32, 64, 128)
CONFIGS = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
    for bm in BLOCKS_M
    for bn in BLOCKS_N
    for w in (2, 4, 8)
    for s in (1, 2, 3)
]
TUNE_KEY = ["LQ_KEY", "LK_KEY", "BLOCK_D", "HAS_KPM", "HAS_AMASK", "IEEE"]


def prune_configs(configs: list, named_args: dict, **kwargs) -> list:
    """Keeps tile configs that fit the problem: fusion shapes are short (Lq <= 32, Lk <= 512).

    Drops tiles larger than the (power-of-two bucketed) sequence lengths, 8 warps for small
    tiles, and the largest tiles at D = 128 (register pressure).
    """
    lq = named_args.get("LQ_KEY", kwargs.get("LQ_KEY", 16))
    lk = named_args.get("LK_KEY", kwargs.get("LK_KEY", 16))
    block_d = kwargs.get("BLOCK_D", named_args.get("BLOCK_D", 64))
    kept = []
    for cfg in configs:
        bm, bn = cfg.kwargs["BLOCK_M"], cfg.kwargs["BLOCK_N"]
        if bm > max(16, lq) or bn > max(16, lk):
            continue
        if cfg.num_warps == 8 and bm * bn < 64 * 64:
            continue
        if cfg.num_warps == 2 and bm * bn > 32 * 64:
            continue
        if block_d >= 128 and bm * bn > 64 * 64:
            continue
        kept.append(cfg)
    return kept or [configs[0]]


def autotuned(kernel):
    """``triton.autotune`` over ``CONFIGS`` keyed on the length buckets, head tile and flags."""
    return triton.autotune(
        configs=CONFIGS, key=TUNE_KEY, prune_configs_by={"early_config_prune": prune_configs}
    )(kernel)
