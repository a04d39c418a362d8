"""Attention kernels at fusion shapes: the dispatching op vs SDPA vs a naive implementation.

Measures forward and forward+backward time (torch.utils.benchmark; the fastest block over
interleaved rounds; single-threaded CPU runs in thread CPU time, so a busy shared machine does
not distort them) for
``kernels.cross_attention`` (what the fusion encoder calls), raw
``F.scaled_dot_product_attention`` with the same boolean mask, and the naive reference
(materialised scores, float32). On CUDA it adds the Triton kernels and SDPA restricted to the
flash backend (mask-free, where available).

Usage:
    python benchmarks/bench_kernels.py [--device cpu|cuda] [--dtype float32|float16|bfloat16]
                                       [--min-run-time 0.05] [--rounds 3] [--threads 1]

The last line holds the geometric-mean ratios over shapes, e.g.
``ratio dispatch/sdpa fwd=1.01 fwdbwd=1.00 naive/sdpa fwd=2.10 fwdbwd=2.50``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils import benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kernels

# (B, H, Lq, Lk, D): agent cross-attention, sensor self-attention, longer scans, big heads.
SHAPES = (
    (64, 4, 2, 42, 16),
    (64, 4, 40, 40, 16),
    (32, 4, 16, 256, 32),
    (8, 4, 32, 512, 64),
)

AttnFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def make_inputs(shape, device, dtype, seed=0):
    """q, k, v (requires grad) and a key padding mask with ~20% padding, one empty row."""
    bsz, heads, lq, lk, dim = shape
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (
        torch.randn(bsz, heads, n, dim, generator=gen).to(device, dtype).requires_grad_()
        for n in (lq, lk, lk)
    )
    mask = torch.rand(bsz, lk, generator=gen) > 0.2
    mask[0] = False
    return q, k, v, mask.to(device)


def sdpa(q, k, v, mask):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])


def implementations(device: str) -> dict[str, AttnFn]:
    impls: dict[str, AttnFn] = {
        "dispatch": lambda q, k, v, m: kernels.cross_attention(q, k, v, m),
        "sdpa": sdpa,
        "naive": lambda q, k, v, m: kernels.attention_reference(q, k, v, m),
    }
    if device == "cuda" and kernels.triton_available():
        impls["triton"] = lambda q, k, v, m: kernels.cross_attention(q, k, v, m, backend="triton")
        impls["triton_nomask"] = lambda q, k, v, m: kernels.cross_attention(
            q, k, v, backend="triton"
        )
        impls["flash_nomask"] = _flash_nomask
    return impls


def _flash_nomask(q, k, v, m):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        return F.scaled_dot_product_attention(q, k, v)


def time_fn(
    fn: AttnFn, inputs, backward: bool, min_run_time: float, clock: Callable[[], float]
) -> float | None:
    """Seconds of one forward (or forward+backward) call; None if unsupported."""
    q, k, v, mask = inputs
    grad = torch.randn_like(q)

    def step():
        out = fn(q, k, v, mask)
        if backward:
            q.grad = k.grad = v.grad = None
            out.backward(grad)

    try:
        for _ in range(2):  # warm-up: autotuning, allocator, lazy init
            step()
    except RuntimeError:  # e.g. no flash kernel for this dtype / head dim
        return None
    timer = benchmark.Timer(stmt="step()", globals={"step": step}, timer=clock)
    # The fastest block: other processes only ever add time (timeit's argument for min).
    return min(timer.blocked_autorange(min_run_time=min_run_time).times)


def measure_shape(
    impls: dict[str, AttnFn], inputs, rounds: int, min_run_time: float, clock: Callable[[], float]
) -> dict:
    """{impl: (fwd s, fwd+bwd s)}: best over interleaved rounds (robust to a busy CPU)."""
    best: dict[str, list[float | None]] = {name: [None, None] for name in impls}
    for _ in range(rounds):
        for name, fn in impls.items():
            for idx, backward in enumerate((False, True)):
                t = time_fn(fn, inputs, backward, min_run_time, clock)
                if t is not None and (best[name][idx] is None or t < best[name][idx]):
                    best[name][idx] = t
    return {name: tuple(ts) for name, ts in best.items()}


def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in values) / len(values)) if values else float("nan")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--min-run-time", type=float, default=0.05, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; best is kept")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1 = steady numbers on a shared box, 0 = default)",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    impls = implementations(args.device)
    # Single-threaded CPU runs are timed in thread CPU time: other processes on a shared
    # machine then cannot inflate them. Otherwise wall time (CUDA-synchronised on GPU).
    cpu_clock = args.device == "cpu" and torch.get_num_threads() == 1
    clock = time.thread_time if cpu_clock else timeit.default_timer
    print(
        f"device={args.device} dtype={args.dtype} threads={torch.get_num_threads()} "
        f"clock={'thread-cpu' if cpu_clock else 'wall'} "
        f"backend(auto)={kernels.select_backend(torch.empty(1, 1, 1, 16, device=args.device, dtype=dtype))}"
    )
    print(f"{'shape (B,H,Lq,Lk,D)':24s} {'impl':14s} {'fwd us':>10s} {'fwd+bwd us':>12s}")
    ratios: dict[str, list[float]] = {}
    for shape in SHAPES:
        inputs = make_inputs(shape, args.device, dtype)
        times = measure_shape(impls, inputs, args.rounds, args.min_run_time, clock)
        for name in impls:
            fwd, fwdbwd = (f"{t * 1e6:.1f}" if t else "-" for t in times[name])
            print(f"{shape!s:24s} {name:14s} {fwd:>10s} {fwdbwd:>12s}")
        for name in impls:
            for mode, idx in (("fwd", 0), ("fwdbwd", 1)):
                base = times["flash_nomask" if name == "triton_nomask" else "sdpa"][idx]
                if name not in ("sdpa", "flash_nomask") and times[name][idx] and base:
                    ratios.setdefault(f"{name}|{mode}", []).append(times[name][idx] / base)
    parts = []
    for name in impls:
        if name in ("sdpa", "flash_nomask"):
            continue
        denom = "flash" if name == "triton_nomask" else "sdpa"
        fwd = geomean(ratios.get(f"{name}|fwd", []))
        fwdbwd = geomean(ratios.get(f"{name}|fwdbwd", []))
        parts.append(f"{name}/{denom} fwd={fwd:.2f} fwdbwd={fwdbwd:.2f}")
    print("ratio " + " ".join(parts))


if __name__ == "__main__":
    main()
