"""What a user needs to drop a run's files into SGLang or vLLM: where they go, what each accepts, what made them.

Read in the released packages: SGLang 0.5.23's wheel (sglang/kernels/ops/gemm/fp8_kernel.py and its
is_sm90 probe) and vLLM 0.34.0's (vllm/model_executor/layers/quantization/utils/fp8_utils.py); each
looks up the exact file name beside its kernel module.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from tuner.export import OUT_DTYPE, is_vllm_name

# What a user of a file with SPLIT_K / SWAP_AB entries must know before dropping it into SGLang.
# Where each loader looks for its files, inside the installed package.
SGLANG_FOLDER = (
    "sglang/kernels/ops/gemm/configs/ (SGLang 0.5.23; older releases: sglang/srt/layers/quantization/configs/)"
)
VLLM_FOLDER = "vllm/model_executor/layers/quantization/utils/configs/ (vLLM 0.34.0)"


def run_record(replay: str | None, devices: list[int], device_name: str, out_dtype: str) -> dict[str, str]:
    """What made a run's entries, for the provenance record beside each file (tuner.export.write_configs),
    the output dtype among it, which the file's name does not carry."""
    import torch
    import triton

    record = {
        "made_by": "python -m tuner.run " + shlex.join(sys.argv[1:]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": device_name,
        OUT_DTYPE: out_dtype,
        "torch": torch.__version__,
        "triton": triton.__version__,
    }
    if replay is not None:
        return {**record, "timing": f"replay of {replay}: the latencies recorded there, on {device_name}"}
    try:  # the NVIDIA driver, which neither torch nor Triton reports
        query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", f"--id={devices[0]}"]
        driver = subprocess.run(query, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        driver = "unknown (nvidia-smi did not answer)"
    return {**record, "timing": "measured on this GPU", "driver": driver, "cuda": str(torch.version.cuda)}


def where_files_go(paths: Sequence[Path], device_name: str) -> str:
    """Where to copy the files this run wrote, and what must match, in a few lines."""
    sglang = any(not is_vllm_name(path.name) for path in paths)
    vllm = any(is_vllm_name(path.name) for path in paths)
    lines = ["where the files go, inside the installed package (each loader reads the file of its exact name):"]
    if sglang:
        lines.append(f"  SGLang's names: {SGLANG_FOLDER}")
    if vllm:
        lines.append(f"  vLLM's names: {VLLM_FOLDER}; vLLM runs them only where it picks its Triton kernel")
    lines.append(f"  the device_name in each name ({device_name}) must be the serving GPU's, as torch names it "
                 "with spaces as underscores; what made each entry is in <file>.provenance beside it")  # fmt: skip
    return "\n".join(lines)
