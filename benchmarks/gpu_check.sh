#!/usr/bin/env bash
# One prepared GPU check for the Triton attention kernels (run on a CUDA machine, from the repo root):
#   1. (RUN_TESTS=1, in the background) the Triton interpreter cases, compiled, on real CUDA tensors (outputs,
#      gradients, masks, dtypes);
#   2. compile + autotune warm-up for every (dtype, shape) in parallel processes (Triton's
#      on-disk caches), then benchmarks/bench_kernels.py timed one run at a time: wall clock
#      (host overhead included) and CUDA-graph replay (device time), Triton vs SDPA.
# Logs go to $OUT (or ./gpu_check_out). Each stage has its own time limit so partial results survive.
set -u
OUT=${OUT:-gpu_check_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} TRITON_CACHE_AUTOTUNING=1
PY=${PY:-python3}
DTYPES=${DTYPES:-float16 bfloat16}
IMPLS=${IMPLS:-triton,sdpa}
{
  nvidia-smi -L
  $PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"
} 2>&1 | tee "$OUT/env.log"
if [ "${RUN_TESTS:-1}" = 1 ]; then
  FORKLIFT_TEST_DEVICE=cuda timeout "${TEST_LIMIT:-240}" $PY -m pytest -q -p no:cacheprovider \
    tests/kernels/triton_interpret_cases.py >"$OUT/tests.log" 2>&1 &  # alongside the warm-up
fi
for dt in $DTYPES; do
  for shape in 0 1 2 3; do
    timeout "${WARM_LIMIT:-170}" $PY benchmarks/bench_kernels.py --device cuda --dtype "$dt" \
      --shapes "$shape" --impls "$IMPLS" --warmup-only >>"$OUT/warmup.log" 2>&1 &
  done
done
wait
tail -3 "$OUT/tests.log" 2>/dev/null
for dt in $DTYPES; do
  for mode in "" "--graph"; do
    timeout "${BENCH_LIMIT:-60}" $PY benchmarks/bench_kernels.py --device cuda --dtype "$dt" \
      --impls "$IMPLS" --rounds 2 --min-run-time 0.02 $mode 2>&1 | grep -v Warning | tee -a "$OUT/bench.log"
  done
done
