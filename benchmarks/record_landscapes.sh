#!/usr/bin/env bash
# Records the landscapes of 2026-12-06 (studies/landscapes/, tuner/samplers/landscapes/) and the device's ceilings.
# Asked of an H200 kind, it ran on an H100 80GB HBM3: the files are named after the device they hold.
# Usage on the GPU machine, from the repo root, with .whl carried:
#   setsid nohup bash benchmarks/record_landscapes.sh /tmp/ls > /tmp/ls.log 2>&1 &
# Shapes, fp8 e4m3 in, float16 out, block [128, 128], M 1 16 64 256 1024 4096, cheapest first:
# DeepSeek-V3's narrow kv_a (576, 7168) and its dense gate_up at TP 8 (4608, 7168), and Qwen3-32B's down projection
# at TP 4, (5120, 6400); then the Hopper grid (benchmarks/hopper_check.py) of the narrow DeepSeek-V3
# shapes (576, 7168), (512, 7168) and (3072, 7168) at M 1 4 16 64 256. Each step appends to
# OUTDIR/progress.txt when it ends; the sweeps resume from their files if rerun.
set -u
. benchmarks/device_setup.sh "${1:?OUTDIR}"
python3 benchmarks/device_ceilings.py > "$out/ceilings.txt" 2>&1
step ceilings done
for shape in 576x7168 4608x7168 5120x6400; do
  N=${shape%x*}; K=${shape#*x}
  python3 -m tuner.sweep --N $N --K $K --out-dtype float16 --batch-sizes 1 16 64 256 1024 4096 \
    --out "$out/fp8_fp16_$shape.csv.gz" >> "$out/sweep.log" 2>&1
  step sweep $shape exit $?
done
python3 benchmarks/hopper_check.py --shapes 576x7168 512x7168 3072x7168 --batch-sizes 1 4 16 64 256 \
  --out-dtype float16 --out "$out/fp8_fp16_hopper_grid_narrow.csv" > "$out/hopper_check.txt" 2>&1
step hopper grid exit $?
date -u >> "$out/env.txt"
touch "$out/DONE"
