#!/usr/bin/env bash
# Records the [32, 32] landscapes (tuner/samplers/landscapes/, studies/landscapes/hopper/): SGLang's base space
# and the Hopper check's grid at [32, 32] blocks, fp8 e4m3 in, float16 out, M 1 16 64 256 1024 4096, on one narrow
# and one wide shape of SGLang's shipped [32, 32] files: (576, 5120) and (5120, 2048). Both shapes specialise alike
# in Triton, so the second reuses the first's binaries. Before them, the K-tile check (benchmarks/block_k_check.py)
# and the timing process's overhead (benchmarks/timing_overhead.py).
# Usage on the GPU machine, from a copy of the repo root, with .whl carried:
#   setsid nohup bash benchmarks/record_block32.sh /tmp/b32 > /tmp/b32.log 2>&1 &
# Each step appends to OUTDIR/progress.txt when it ends; the sweeps resume from their files if rerun.
set -u
. benchmarks/device_setup.sh "${1:?OUTDIR}"
python3 -m pytest -q -m gpu tests/gpu > "$out/gpu_tests.txt" 2>&1
step gpu tests exit $?
python3 benchmarks/block_k_check.py > "$out/block_k_check.txt" 2>&1
step block_k_check exit $?
python3 benchmarks/timing_overhead.py --profile > "$out/timing_overhead.txt" 2>&1
step timing_overhead exit $?
for shape in 576x5120 5120x2048; do
  N=${shape%x*}; K=${shape#*x}
  python3 -m tuner.sweep --N $N --K $K --block-n 32 --block-k 32 --out-dtype float16 \
    --batch-sizes 1 16 64 256 1024 4096 --out "$out/fp8_fp16_b32_$shape.csv.gz" >> "$out/sweep.log" 2>&1
  step sweep $shape exit $?
done
python3 benchmarks/hopper_check.py --shapes 576x5120 5120x2048 --block-n 32 --block-k 32 \
  --batch-sizes 1 16 64 256 1024 4096 --out-dtype float16 --out "$out/fp8_fp16_b32_hopper_grid.csv" \
  > "$out/hopper_check.txt" 2>&1
step hopper grid exit $?
date -u >> "$out/env.txt"
touch "$out/DONE"
