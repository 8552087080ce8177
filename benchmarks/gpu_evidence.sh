#!/usr/bin/env bash
# The live evidence of 2026-12-06, in one background job, most important first: DeepSeek-V3 at TP 8 from
# an empty storage and a cold Triton cache (the whole-model speed) and a soak check around it; our kernel
# against SGLang's released one; a one-harness compare of the run's files against the run before the
# speed work, SGLang's and vLLM's shipped files and the default; on an H200 its landscapes; the same TP 8
# run seeded by the shipped files; the Hopper space against the base space and cuBLAS; float32 and int8
# output once each. The TP 8 run passes --baseline none, so that it shows the searcher alone.
# Usage on the GPU machine, from the repo root, with .whl and .sgl carried (.sgl: SGLang 0.5.23's
# sglang/kernels/ops/gemm/fp8_kernel.py, and in .sgl/site the config folders of the SGLang 0.5.23 and
# vLLM 0.34.0 wheels with their packages' __init__.py, which is all --baseline auto reads):
#   setsid nohup bash benchmarks/gpu_evidence.sh /tmp/ev > /tmp/ev.log 2>&1 < /dev/null &
# then poll OUTDIR/progress.txt; fetch the results as one archive (the device tool returns eight files).
set -u
. benchmarks/device_setup.sh "${1:?OUTDIR}"
export TRITON_CACHE_DIR=$out/triton_cache
dev=$(python3 -c 'import torch; print(torch.cuda.get_device_name().replace(" ", "_"))')
# What a process tree leaves behind: processes, shared memory, file handles, memory, disk.
snapshot() { { date -u +%T; ps -eo pid,ppid,stat,rss,etime,cmd --sort=pid | grep -v ' ps -eo'
  echo "--- /dev/shm"; ls -la /dev/shm; echo "--- file-nr $(cat /proc/sys/fs/file-nr)"; free -m; df -h / /tmp
  echo "--- tmp"; ls -la /tmp; } > "$out/$1" 2>&1; }
cfg() { echo "N=$1,K=$2,device_name=$3,dtype=fp8_w8a8,block_shape=[128, 128].json"; }
# The --config arguments of one shape's compare: the labels whose file exists.
contenders() {
  args=(--config "after=$out/cfg/$(cfg $1 $2 $dev)")
  local f="benchmarks/results/h200_before_2026-12-04/$(cfg $1 $2 NVIDIA_H200)"
  [ -f "$f" ] && args+=(--config "before=$f")
  f="benchmarks/sglang_shipped/$(cfg $1 $2 $dev)"; [ -f "$f" ] && args+=(--config "sglang=$f")
  f="benchmarks/vllm_shipped/N=$1,K=$2,device_name=$dev,dtype=fp8_w8a8,block_shape=[128,128].json"
  [ -f "$f" ] && args+=(--config "vllm=$f")
}
# The shapes where the run before the speed work lost to a shipped file come first.
SHAPES="4608x7168 576x7168 3072x7168 3072x1536 7168x16384 24576x7168 32768x512 7168x18432 4096x512 512x7168 7168x2304 7168x2048 7168x256"

# 1. The whole model, live: wall time and the run's clock lines; GPU utilisation sampled once a second.
snapshot soak_before.txt
nvidia-smi --query-gpu=timestamp,utilization.gpu --format=csv,noheader -l 1 > "$out/utilisation.csv" 2>&1 &
smi=$!
start=$(date +%s)
python3 -m tuner.run --tp-size 8 --trials 32 --baseline none --storage "sqlite:///$out/tp8.sqlite3" \
  --save-path "$out/cfg" > "$out/tp8_run.txt" 2>&1
echo "exit $? wall_s $(( $(date +%s) - start ))" >> "$out/tp8_run.txt"
kill $smi
step tp8 done
# 2. Soak: what the run left behind, and whether a fresh interpreter still loads torch.
snapshot soak_after.txt
python3 -c "import torch; print('fresh python3: torch', torch.__version__, torch.cuda.is_available())" >> "$out/soak_after.txt" 2>&1
step soak done
# 3. Our kernel against SGLang's released kernels, same operands.
python3 benchmarks/against_sglang_kernel.py --sglang-source .sgl/fp8_kernel.py --repeats 5 > "$out/against_sglang.txt" 2>&1
step kernel done
# 4. One harness: after / before / shipped files / default, per shape, 18 M, 3 interleaved rounds.
for shape in $SHAPES; do
  N=${shape%x*}; K=${shape#*x}
  contenders $N $K
  python3 -m tuner.compare --N $N --K $K "${args[@]}" --out "$out/compare_$shape.csv" > "$out/compare_$shape.txt" 2>&1
done
step compare done
# 5. On an H200, its own landscapes and measured ceilings (the H100's exist), by the script that recorded the H100's.
if [[ $dev == *H200* ]]; then
  bash benchmarks/record_landscapes.sh "$out/landscapes"
  step landscapes exit $?
fi
# 6. The same run seeded by the files of an installed SGLang 0.5.23 and vLLM 0.34.0 (--baseline auto; their
# config folders from the released wheels, in .sgl/site), into a storage of its own, with a warm Triton cache;
# its end table times each shipped entry beside the pick in the confirmation round.
start=$(date +%s)
PYTHONPATH=$PYTHONPATH:$PWD/.sgl/site python3 -m tuner.run --tp-size 8 --trials 32 \
  --storage "sqlite:///$out/tp8_auto.sqlite3" --save-path "$out/cfg_auto" > "$out/tp8_auto_run.txt" 2>&1
echo "exit $? wall_s $(( $(date +%s) - start ))" >> "$out/tp8_auto_run.txt"
step tp8 auto done
# 7. The Hopper space on the narrow shapes, seeded by the base studies of step 1, against the base files and cuBLAS.
for shape in 576x7168 512x7168; do
  N=${shape%x*}; K=${shape#*x}
  python3 -m tuner.run --N $N --K $K --space hopper --trials 32 --storage "sqlite:///$out/tp8.sqlite3" \
    --save-path "$out/cfg_hopper" > "$out/hopper_run_$shape.txt" 2>&1
  python3 -m tuner.compare --N $N --K $K --config "base=$out/cfg/$(cfg $N $K $dev)" \
    --config "hopper=$out/cfg_hopper/$(cfg $N $K $dev)" --out "$out/compare_hopper_$shape.csv" \
    > "$out/compare_hopper_$shape.txt" 2>&1
done
step hopper done
# 8. float32 output and int8 inputs, once each, six batch sizes of one shape, from an empty storage.
for variant in "--out-dtype float32" "--input-type int8"; do
  name=$(echo $variant | tr -d ' -')
  start=$(date +%s)
  python3 -m tuner.run --N 7168 --K 2048 $variant --batch-sizes 1 16 64 256 1024 4096 --trials 32 \
    --storage "sqlite:///$out/$name.sqlite3" --save-path "$out/cfg_$name" > "$out/run_$name.txt" 2>&1
  echo "exit $? wall_s $(( $(date +%s) - start ))" >> "$out/run_$name.txt"
done
step dtypes done
date -u >> "$out/env.txt"
touch "$out/DONE"
