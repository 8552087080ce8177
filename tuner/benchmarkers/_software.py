"""What besides the problem and the device decides a GPU timing: the software a study's name is keyed on.

A finished study is reused only by the same software (tuner.study's study_name hashes this), so
everything that can change a timing or its verdict must be here: Triton and torch, the CUDA runtime
torch was built with and the driver, and the source of every file that decides what is timed and
how. Those files are hashed rather than tracked by a protocol version bumped by hand: a forgotten
bump would reuse studies of another harness silently, while hashing costs at most a re-tune after
an edit that changed nothing (a comment).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importlib.resources.abc is Python 3.11's
    from importlib.resources.abc import Traversable

# The kernels package's command that compares with SGLang: it decides no timing the tuner stores.
_NOT_TIMING = {"bench.py"}
_PROC_DRIVER = Path("/proc/driver/nvidia/version")


def timing_sources() -> list[Traversable]:
    """The files that decide a timing, as installed.

    Every module of kernels (the kernel and launcher, argument layout, dtype maps and input checks,
    the reference and its tolerance, the timing protocol in kernels/timing.py) and the harness that
    checks and times a config (tuner/benchmarkers/_cuda.py).
    """
    kernels = importlib.resources.files("kernels")
    modules = [f for f in kernels.iterdir() if f.name.endswith(".py") and f.name not in _NOT_TIMING]
    return [*sorted(modules, key=lambda f: f.name), importlib.resources.files("tuner.benchmarkers") / "_cuda.py"]


def source_digest(sources: Iterable[Traversable | Path]) -> str:
    """A short hash of the files' names and texts."""
    digest = hashlib.sha256()
    for source in sources:
        digest.update(f"{source.name}\n{source.read_text()}".encode())
    return digest.hexdigest()[:16]


def driver_version(proc_version: Path = _PROC_DRIVER) -> str:
    """The NVIDIA driver's version (e.g. 580.159.04) from NVML or Linux's /proc, or 'unknown' where neither says."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:  # noqa: BLE001 - no NVML bindings or library: try the kernel module's own line
        pass
    try:
        first_line = proc_version.read_text().splitlines()[0]
    except (OSError, IndexError):
        return "unknown"
    # "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.159.04  Thu ..." (or "Open Kernel Module for x86_64  ...")
    match = re.search(r"Module\b.*?\s(\d+\.\d+(?:\.\d+)?)\s", first_line + " ")
    return match.group(1) if match else "unknown"


def gpu_software() -> dict[str, str]:
    """Triton, torch, the CUDA runtime torch was built with, the driver, and the hash of timing_sources()."""
    import torch
    import triton

    return {
        "triton": triton.__version__,
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "none",
        "driver": driver_version(),
        "timing_source": source_digest(timing_sources()),
    }
