#!/usr/bin/env bash
# Do two checkouts of the tuner export the same files from every recorded landscape? (No GPU needed.)
#   bash benchmarks/same_picks.sh OLD_CHECKOUT NEW_CHECKOUT OUTDIR
# Replays, with each checkout's own code, every shipped base landscape (tuner/samplers/landscapes/, base space) and
# every Hopper grid (studies/landscapes/hopper/, --space hopper) at its recorded batch sizes, 32 configs per study,
# seed 0, no baseline, and compares the exported config files byte for byte. Prints one line per file and a count.
set -u
old=${1:?OLD_CHECKOUT}; new=${2:?NEW_CHECKOUT}; out=${3:?OUTDIR}
replay() {  # checkout label N K out_dtype "batch sizes" landscape space
  local code=$1 dir=$out/$2/$8_$5; mkdir -p "$dir"
  (cd "$code" && PYTHONPATH=$code TRITON_INTERPRET=1 python3 -m tuner.run --N "$3" --K "$4" --out-dtype "$5" \
    --batch-sizes $6 --trials 32 --seed 0 --baseline none --space "$8" --replay "$7" \
    --storage "sqlite:///$dir/$3x$4.db" --save-path "$dir" > "$dir/$3x$4.txt" 2>&1) || echo "$2 $3x$4 $8 failed"
}
for side in old new; do
  code=$old; [ $side = new ] && code=$new
  for land in "$new"/tuner/samplers/landscapes/*.csv.gz; do
    name=$(basename "$land" .csv.gz); shape=${name##*_}; dtype=bfloat16; case "$name" in *fp16*) dtype=float16;; esac
    replay "$code" $side "${shape%x*}" "${shape#*x}" $dtype "1 16 64 256 1024 4096" "$land" base
  done
  for shape in 576x7168 512x7168 3072x7168 4608x7168 7168x18432; do
    replay "$code" $side "${shape%x*}" "${shape#*x}" bfloat16 "1 16 64" "$new/studies/landscapes/hopper/h100_fp8_hopper_grid.csv.gz" hopper
  done
  for shape in 576x7168 512x7168 3072x7168; do
    replay "$code" $side "${shape%x*}" "${shape#*x}" float16 "1 4 16 64 256" "$new/studies/landscapes/hopper/h100_fp8_fp16_hopper_grid_narrow.csv.gz" hopper
  done
done
same=0; total=0
for f in "$out"/old/*/*.json; do
  g=${f/\/old\//\/new\/}; total=$((total + 1))
  if cmp -s "$f" "$g"; then same=$((same + 1)); echo "same ${f#$out/old/}"; else echo "DIFFERENT ${f#$out/old/}"; fi
done
echo "$same of $total files the same"
