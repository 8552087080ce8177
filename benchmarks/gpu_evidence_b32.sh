#!/usr/bin/env bash
# Live evidence of 2026-12-07 on one GPU: the [32, 32] files tuned against SGLang's shipped ones, then the whole
# DeepSeek-V3 TP8 model in the base space against the files of the 229 s run (benchmarks/results/h100_229s_2026-12-07/).
# Usage on the GPU machine, from a copy of the repo root, with .whl carried (STEPS: any of b32 compare32 tp8
# compare_tp8, default all, in this order):
#   setsid nohup bash benchmarks/gpu_evidence_b32.sh /tmp/ev [STEPS ...] > /tmp/ev.log 2>&1 &
# Steps (each appends to OUTDIR/progress.txt when it ends):
#  1. SGLang 0.5.23's ten [32, 32] files (benchmarks/sglang_shipped/, made for NVIDIA_H200) under this device's name in
#     OUTDIR/shipped32/, then `tuner.run --shipped` over them in the Hopper space, from an empty storage and a cold
#     Triton cache: each shipped file is its shape's baseline, never exported slower;
#  2. tuner.compare, one harness: the tuned files, the shipped entries as SGLang's loader picks them, the default;
#  3. `tuner.run --tp-size 8 --trials 32 --baseline none --space base`, empty storage and cold cache (issue target:
#     at most 150 s), then tuner.compare of its files against the 229 s run's.
set -u
out=${1:?OUTDIR}
shift
steps=" ${*:-b32 compare32 tp8 compare_tp8} "
want() { [[ $steps == *" $1 "* ]]; }
. benchmarks/device_setup.sh "$out"
mkdir -p "$out/shipped32"
timed() { local start=$SECONDS; "$@"; local rc=$?; echo "exit $rc wall_s $((SECONDS - start))"; return $rc; }
device=$(python3 -c 'import torch; print(torch.cuda.get_device_name().replace(" ", "_"))')
for f in benchmarks/sglang_shipped/*"block_shape=[32, 32].json"; do
  name=$(basename "$f"); cp "$f" "$out/shipped32/${name/device_name=NVIDIA_H200,/device_name=$device,}"
done
export TRITON_CACHE_DIR=/tmp/triton-cache-b32
want b32 && timed python3 -m tuner.run --shipped --baseline "$out/shipped32" --block-n 32 --block-k 32 --space hopper \
  --trials 32 --storage "sqlite:///$out/b32.sqlite3" --save-path "$out/cfg32" > "$out/b32_run.txt" 2>&1
want b32 && step b32 run "$(tail -n 1 "$out/b32_run.txt")"
Ns=(); Ks=()
for f in "$out"/shipped32/*.json; do n=$(basename "$f"); n=${n#N=}; Ns+=("${n%%,*}"); k=${n#*K=}; Ks+=("${k%%,*}"); done
want compare32 && timed python3 -m tuner.compare --N "${Ns[@]}" --K "${Ks[@]}" --block-n 32 --block-k 32 --config "tuned=$out/cfg32" \
  --config "shipped=$out/shipped32" --out "$out/compare32" > "$out/compare32.txt" 2>&1
want compare32 && step b32 compare "$(tail -n 1 "$out/compare32.txt")"
export TRITON_CACHE_DIR=/tmp/triton-cache-tp8
want tp8 && timed python3 -m tuner.run --tp-size 8 --trials 32 --baseline none --space base --storage "sqlite:///$out/tp8.sqlite3" \
  --save-path "$out/cfg_tp8" > "$out/tp8_run.txt" 2>&1
want tp8 && step tp8 run "$(tail -n 1 "$out/tp8_run.txt")"
Ns=(); Ks=()
for f in "$out"/cfg_tp8/*.json; do n=$(basename "$f"); n=${n#N=}; Ns+=("${n%%,*}"); k=${n#*K=}; Ks+=("${k%%,*}"); done
want compare_tp8 && timed python3 -m tuner.compare --N "${Ns[@]}" --K "${Ks[@]}" --config "new=$out/cfg_tp8" \
  --config "before=benchmarks/results/h100_229s_2026-12-07" --out "$out/compare_tp8" > "$out/compare_tp8.txt" 2>&1
want compare_tp8 && step tp8 compare "$(tail -n 1 "$out/compare_tp8.txt")"
date -u >> "$out/env.txt"
touch "$out/DONE"
