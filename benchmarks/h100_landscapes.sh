#!/usr/bin/env bash
# Records the H100 landscapes committed under studies/landscapes/ and the kernel benchmark.
# Usage on the GPU machine, from the repo root:  bash benchmarks/h100_landscapes.sh OUTDIR
# Shapes: DeepSeek-V3's (7168, 18432), (24576, 1536), (4096, 7168) (the shapes still to record), and a
# Qwen3-32B-like model's QKV (10240, 5120) and O projection (5120, 8192) at TP 1.
set -u
out=${1:?OUTDIR}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv; date -u;
  python3 -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__)'; } > "$out/env.txt" 2>&1
python3 -m tuner.sweep --N 7168 24576 4096 10240 5120 --K 18432 1536 7168 5120 8192 --out-dtype bfloat16 \
  --batch-sizes 1 16 64 256 1024 4096 --out "$out/h100_fp8_bf16.csv" > "$out/sweep.log" 2>&1
python3 -m kernels.bench > "$out/kernel_bench.txt" 2>&1
date -u >> "$out/env.txt"
touch "$out/DONE"
