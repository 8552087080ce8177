# Sourced by the GPU jobs in this folder (`. benchmarks/device_setup.sh OUTDIR`), from the repo root on the GPU
# machine with .whl carried: installs the carried wheels, exports PYTHONPATH, defines `step` (a timestamped line in
# OUTDIR/progress.txt) and writes OUTDIR/env.txt (GPU, driver, clocks, cores, versions). Exits where the wheels do
# not install.
out=${1:?OUTDIR}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
step() { echo "$(date -u +%T) $*" >> "$out/progress.txt"; }
{ nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv; date -u; nproc
  python3 -c 'import sys, torch, triton, optuna; print("python", sys.version.split()[0], "torch", torch.__version__, "triton", triton.__version__, "optuna", optuna.__version__)'; } > "$out/env.txt" 2>&1
