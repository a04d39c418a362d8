"""Attention kernels at fusion shapes: the dispatching op vs SDPA vs a naive implementation.

Measures forward and forward+backward time (torch.utils.benchmark; the fastest block over
interleaved rounds; single-threaded CPU runs in thread CPU time, so a busy shared machine does
not distort them) for
``kernels.cross_attention`` (what the fusion encoder calls), raw
``F.scaled_dot_product_attention`` with the same boolean mask, and the naive reference
(materialised scores, float32). On CUDA it adds the Triton kernels and SDPA restricted to the
flash backend (mask-free, where available).

On CUDA, ``--graph`` times CUDA-graph replays instead (20 calls captured per graph): the
device time of the kernels without Python and launch overhead, which is what a captured or
compiled training step pays. Without it the numbers are host-bound at fusion sizes.

Usage:
    python benchmarks/bench_kernels.py [--device cpu|cuda] [--dtype float32|float16|bfloat16]
                                       [--min-run-time 0.05] [--rounds 3] [--threads 1]
                                       [--shapes 0,1,2,3] [--impls triton,sdpa] [--graph]
                                       [--warmup-only]

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


def time_graph(
    fn: AttnFn, inputs, backward: bool, reps: int = 20, replays: int = 10
) -> float | None:
    """Seconds of one call measured by CUDA-graph replay (device time, no host overhead)."""
    q, k, v, mask = inputs
    grad = torch.randn_like(q)

    def step():
        out = fn(q, k, v, mask)
        if backward:
            out.backward(grad)

    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up (autotuning) outside the capture
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(reps):
                step()
        graph.replay()
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        best = float("inf")
        for _ in range(3):
            start.record()
            for _ in range(replays):
                graph.replay()
            end.record()
            end.synchronize()
            best = min(best, start.elapsed_time(end) / 1e3 / (replays * reps))
        return best
    except RuntimeError:  # not capturable (host sync inside) or no kernel for this dtype
        torch.cuda.synchronize()
        return None


def measure_shape(
    impls: dict[str, AttnFn],
    inputs,
    rounds: int,
    min_run_time: float,
    clock: Callable[[], float],
    graph: bool = False,
) -> dict:
    """{impl: (fwd s, fwd+bwd s)}: best over interleaved rounds (robust to a busy CPU)."""
    best: dict[str, list[float | None]] = {name: [None, None] for name in impls}
    for _ in range(rounds):
        for name, fn in impls.items():
            for idx, backward in enumerate((False, True)):
                if graph:
                    t = time_graph(fn, inputs, backward)
                else:
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
    parser.add_argument(
        "--shapes",
        default=",".join(str(i) for i in range(len(SHAPES))),
        help=f"indices into SHAPES {SHAPES}",
    )
    parser.add_argument(
        "--graph", action="store_true", help="CUDA only: time CUDA-graph replays (device time)"
    )
    parser.add_argument(
        "--warmup-only",
        action="store_true",
        help="run every impl once per shape (compile / autotune caches), no timing",
    )
    parser.add_argument("--impls", default="", help="comma-separated subset of impls (default all)")
    args = parser.parse_args(argv)
    shapes = [SHAPES[int(i)] for i in args.shapes.split(",")]
    if args.graph and args.device != "cuda":
        parser.error("--graph needs --device cuda")
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    impls = implementations(args.device)
    if args.impls:
        wanted = args.impls.split(",")
        unknown = sorted(set(wanted) - set(impls))
        if unknown:
            parser.error(f"--impls: unknown {unknown}; allowed {sorted(impls)}")
        impls = {name: impls[name] for name in wanted}
    # Single-threaded CPU runs are timed in thread CPU time: other processes on a shared
    # machine then cannot inflate them. Otherwise wall time (CUDA-synchronised on GPU).
    cpu_clock = args.device == "cpu" and torch.get_num_threads() == 1
    clock = time.thread_time if cpu_clock else timeit.default_timer
    if args.warmup_only:
        for shape in shapes:
            inputs = make_inputs(shape, args.device, dtype)
            for name, fn in impls.items():
                for backward in (False, True):
                    time_fn(fn, inputs, backward, 0.0, clock)
            print(f"warmed {shape} {args.dtype}")
        return
    timer = "cuda-graph" if args.graph else ("thread-cpu" if cpu_clock else "wall")
    print(
        f"device={args.device} dtype={args.dtype} threads={torch.get_num_threads()} "
        f"clock={timer} "
        f"backend(auto)={kernels.select_backend(torch.empty(1, 1, 1, 16, device=args.device, dtype=dtype))}"
    )
    print(f"{'shape (B,H,Lq,Lk,D)':24s} {'impl':14s} {'fwd us':>10s} {'fwd+bwd us':>12s}")
    ratios: dict[str, list[float]] = {}
    for shape in shapes:
        inputs = make_inputs(shape, args.device, dtype)
        times = measure_shape(impls, inputs, args.rounds, args.min_run_time, clock, args.graph)
        for name in impls:
            fwd, fwdbwd = (f"{t * 1e6:.1f}" if t else "-" for t in times[name])
            print(f"{shape!s:24s} {name:14s} {fwd:>10s} {fwdbwd:>12s}")
        for name in impls:
            for mode, idx in (("fwd", 0), ("fwdbwd", 1)):
                base = times.get(
                    "flash_nomask" if name == "triton_nomask" else "sdpa", (None, None)
                )[idx]
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
