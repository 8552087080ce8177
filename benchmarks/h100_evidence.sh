#!/usr/bin/env bash
# The live H100 evidence of issue 6 (and issue 2's kernel comparison), in one background job.
# Usage on the GPU machine, from the repo root, with .whl carried:  bash benchmarks/h100_evidence.sh OUTDIR
# Order matters: the live tuning runs first, on a cold Triton cache and an empty storage.
# It writes about ten files and the device tool returns at most eight: fetch them as one archive,
# `tar czf $OUT/evidence.tgz -C OUTDIR .`, and start the script with setsid so that it survives the
# 10-minute call limit (poll with back-to-back calls: an idle machine is given back after 30 s).
set -u
out=${1:?OUTDIR}
mkdir -p "$out" /tmp/live
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
name='N=7168,K=18432,device_name=NVIDIA_H100_80GB_HBM3,dtype=fp8_w8a8,block_shape=[128, 128].json'
{ nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv; date -u;
  python3 -c 'import torch, triton, optuna; print("torch", torch.__version__, "triton", triton.__version__, "optuna", optuna.__version__)'; } > "$out/env.txt" 2>&1

# 1. Live: the whole shape, 18 batch sizes, 32 timed configs per study, from nothing.
start=$(date +%s)
python3 -m tuner.run --N 7168 --K 18432 --out-dtype bfloat16 --trials 32 \
  --storage sqlite:////tmp/live/live.sqlite3 --save-path /tmp/live/configs > "$out/live_run.txt" 2>&1
echo "exit $? wall_s $(( $(date +%s) - start ))" >> "$out/live_run.txt"
cp "/tmp/live/configs/$name" "$out/live_tuned.json"; cp /tmp/live/live.sqlite3 "$out/"

# 2. One harness re-times tuned, landscape optimum, default, SGLang's shipped file and cuBLAS.
python3 -m tuner.compare --N 7168 --K 18432 --out-dtype bfloat16 \
  --config "tuned=/tmp/live/configs/$name" --config "sglang=benchmarks/sglang_shipped/$name" \
  --landscape studies/landscapes/h100_fp8_7168x18432.csv.gz --out "$out/compare.csv" > "$out/compare.txt" 2>&1

# 3. Issue 5 on one GPU: two processes share one SQLite storage and the GPU (the multi-host recipe).
start=$(date +%s)
for w in 1 2; do
  python3 -m tuner.run --N 4096 --K 7168 --out-dtype bfloat16 --batch-sizes 1 16 64 256 --trials 16 \
    --storage sqlite:////tmp/live/two.sqlite3 --save-path /tmp/live/two > "$out/two_workers_$w.txt" 2>&1 &
done
wait
echo "wall_s $(( $(date +%s) - start ))" >> "$out/two_workers_1.txt"
cp /tmp/live/two.sqlite3 "$out/"

# 4. The kernel against SGLang's published latencies.
python3 -m kernels.bench > "$out/kernel_bench.txt" 2>&1
date -u >> "$out/env.txt"
touch "$out/DONE"
