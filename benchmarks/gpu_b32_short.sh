#!/usr/bin/env bash
# A short lease's share of benchmarks/gpu_evidence_b32.sh: five of SGLang 0.5.23's ten [32, 32] shapes (the narrow
# 576 x 5120 and 1152 x 5120, and 5120 x 1024, 5120 x 288, 4096 x 1280), tuned from an empty storage and a cold Triton
# cache in the Hopper space against the shipped files (each its shape's baseline), then re-timed in one harness.
# Usage on the GPU machine, from a copy of the repo root, with .whl carried:
#   setsid nohup bash benchmarks/gpu_b32_short.sh /tmp/ev > /tmp/ev.log 2>&1 &
set -u
. benchmarks/device_setup.sh "${1:?OUTDIR}"
mkdir -p "$out/shipped32"
export TRITON_CACHE_DIR=/tmp/triton-cache-b32
device=$(python3 -c 'import torch; print(torch.cuda.get_device_name().replace(" ", "_"))')
for shape in 576,K=5120 1152,K=5120 5120,K=1024 5120,K=288 4096,K=1280; do
  f=$(ls benchmarks/sglang_shipped/"N=$shape,device_name=NVIDIA_H200,dtype=fp8_w8a8,block_shape=[32, 32].json")
  name=$(basename "$f"); cp "$f" "$out/shipped32/${name/device_name=NVIDIA_H200,/device_name=$device,}"
done
start=$SECONDS
python3 -m tuner.run --shipped --baseline "$out/shipped32" --block-n 32 --block-k 32 --space hopper --trials 32 \
  --storage "sqlite:///$out/b32.sqlite3" --save-path "$out/cfg32" > "$out/b32_run.txt" 2>&1
echo "exit $? wall_s $((SECONDS - start))" >> "$out/b32_run.txt"
start=$SECONDS
python3 -m tuner.compare --N 576 1152 5120 5120 4096 --K 5120 5120 1024 288 1280 --block-n 32 --block-k 32 \
  --config "tuned=$out/cfg32" --config "shipped=$out/shipped32" --out "$out/compare32" > "$out/compare32.txt" 2>&1
echo "exit $? wall_s $((SECONDS - start))" >> "$out/compare32.txt"
touch "$out/DONE"
