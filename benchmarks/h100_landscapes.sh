#!/usr/bin/env bash
# Records the H100 landscapes committed under studies/landscapes/ (see studies/landscapes/README.md).
# Usage: bash benchmarks/h100_landscapes.sh OUTDIR   (on the GPU machine, from the repo root)
set -u
out=${1:?OUTDIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
{ nvidia-smi; python3 -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__)'; date -u; } > "$out/env.txt" 2>&1
python3 benchmarks/check_compile_cache.py > "$out/cache_check.txt" 2>&1
python3 -m kernels.bench > "$out/kernel_bench.txt" 2>&1
python3 -m tuner.sweep --N 7168 --K 18432 --out-dtype bfloat16 \
  --batch-sizes 1 2 4 8 16 24 32 48 64 96 128 256 512 1024 1536 2048 3072 4096 \
  --out "$out/h100_fp8_7168x18432.csv" > "$out/sweep1.log" 2>&1
python3 -m tuner.sweep --N 24576 4096 5120 10240 --K 1536 7168 25600 5120 --out-dtype bfloat16 \
  --out "$out/h100_fp8_more.csv" > "$out/sweep2.log" 2>&1
date -u >> "$out/env.txt"
touch "$out/DONE"
