#!/usr/bin/env bash
# The live H100 evidence, in one background job: the whole (7168, 18432) run from nothing, one-harness
# compares against SGLang's and vLLM's shipped files, and float32 / float16 output tuned live.
# Usage on the GPU machine, from the repo root, with .whl carried:
#   setsid nohup bash benchmarks/h100_evidence.sh /tmp/ev > /tmp/ev.log 2>&1 &
# then poll; fetch the results as one archive (`tar czf $OUT/ev.tgz -C /tmp/ev .`): the device tool
# returns at most eight files. Each step appends to OUTDIR/progress.txt when it ends.
set -u
out=${1:?OUTDIR}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TRITON_CACHE_DIR=$out/triton_cache
{ nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv; date -u; nproc
  python3 -c 'import sys, torch, triton, optuna; print("python", sys.version.split()[0], "torch", torch.__version__, "triton", triton.__version__, "optuna", optuna.__version__)'; } > "$out/env.txt" 2>&1
step() { echo "$(date -u +%T) $*" >> "$out/progress.txt"; }
tuned() { echo "$out/configs/N=$1,K=$2,device_name=NVIDIA_H100_80GB_HBM3,dtype=fp8_w8a8,block_shape=[128, 128].json"; }

# 1. Live: the whole shape, 18 batch sizes, 32 timed configs per study, empty storage, cold Triton cache.
start=$(date +%s)
python3 -m tuner.run --N 7168 --K 18432 --out-dtype bfloat16 --trials 32 \
  --storage "sqlite:///$out/live.sqlite3" --save-path "$out/configs" > "$out/live_h100_7168x18432.txt" 2>&1
echo "exit $? wall_s $(( $(date +%s) - start ))" >> "$out/live_h100_7168x18432.txt"
step live done

# 2. One harness re-times the tuned file, SGLang's shipped file, the landscape optimum, the default, cuBLAS.
python3 -m tuner.compare --N 7168 --K 18432 --out-dtype bfloat16 --config "tuned=$(tuned 7168 18432)" \
  --config "sglang=benchmarks/sglang_shipped/N=7168,K=18432,device_name=NVIDIA_H100_80GB_HBM3,dtype=fp8_w8a8,block_shape=[128, 128].json" \
  --landscape studies/landscapes/h100_fp8_7168x18432.csv.gz --out "$out/compare_h100_7168x18432.csv" \
  > "$out/compare_h100_7168x18432.txt" 2>&1
step compare 7168x18432 done

# 3. float32 and float16 output, tuned live (the Triton path's own users), six batch sizes.
for dtype in float32 float16; do
  start=$(date +%s)
  python3 -m tuner.run --N 7168 --K 18432 --out-dtype $dtype --batch-sizes 1 16 64 256 1024 4096 --trials 32 \
    --storage "sqlite:///$out/live_$dtype.sqlite3" --save-path "$out/configs_$dtype" > "$out/live_h100_$dtype.txt" 2>&1
  echo "exit $? wall_s $(( $(date +%s) - start ))" >> "$out/live_h100_$dtype.txt"
  step live $dtype done
done

# 4. Shapes vLLM ships H100 files for: tune them live, then compare in one harness.
for shape in 4608x7168 7168x2048 2112x7168 24576x7168; do
  N=${shape%x*}; K=${shape#*x}
  start=$(date +%s)
  python3 -m tuner.run --N $N --K $K --out-dtype bfloat16 --trials 32 \
    --storage "sqlite:///$out/live.sqlite3" --save-path "$out/configs" > "$out/live_h100_$shape.txt" 2>&1
  echo "exit $? wall_s $(( $(date +%s) - start ))" >> "$out/live_h100_$shape.txt"
  python3 -m tuner.compare --N $N --K $K --out-dtype bfloat16 --config "tuned=$(tuned $N $K)" \
    --config "vllm=benchmarks/vllm_shipped/N=$N,K=$K,device_name=NVIDIA_H100_80GB_HBM3,dtype=fp8_w8a8,block_shape=[128,128].json" \
    --out "$out/compare_h100_$shape.csv" > "$out/compare_h100_$shape.txt" 2>&1
  step shape $shape done
done
date -u >> "$out/env.txt"
touch "$out/DONE"
