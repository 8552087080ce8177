"""The engines that read the config files, and which search each file gets.

SGLang and vLLM read the same JSON content under two names, but not the same entries: vLLM 0.34.0
loads block-scaled files for fp8 alone, runs its own default config (two pipeline stages where
SGLang's has three) when it finds no file, and its Triton kernel takes no SPLIT_K or SWAP_AB, which
SGLang 0.5.23 runs on its Hopper kernel on SM90 GPUs. So a run plans its files as targets: each a
search space and the engines whose files it fills, each file confirmed against what its own engine
runs now. The installed packages are inspected without importing them (seconds, and a failure on a
machine set up for tuning alone).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from tuner.dispatch import is_hopper
from tuner.export import config_file_name
from tuner.space import INPUT_TYPES, Config, default_config

# Which files a run writes (--format): SGLang's name, vLLM's (no space inside block_shape), or both.
FORMATS = ("sglang", "vllm", "both")
# --space: base and hopper as asked, or auto: Hopper entries in SGLang's file where SGLang runs them.
SPACE_CHOICES = ("auto", "base", "hopper")
# The function SGLang's Hopper kernel is defined as, in SGLang 0.5.23's
# sglang/kernels/ops/gemm/fp8_kernel.py (older layout: sglang/srt/layers/quantization/fp8_kernel.py).
SGLANG_HOPPER_KERNEL = "_w8a8_block_fp8_matmul_hopper"
_SGLANG_KERNEL_FILES = ("kernels/ops/gemm/fp8_kernel.py", "srt/layers/quantization/fp8_kernel.py")


@dataclass(frozen=True, kw_only=True)
class Engine:
    """What one engine reads: its file name, the input types it loads, and the config it runs without a file."""

    name: str
    file_format: str  # the --format value that writes its file name
    input_types: tuple[str, ...]
    default_stages: int  # its default config is SGLang's with this many pipeline stages
    takes_hopper_entries: bool  # whether its kernel reads SPLIT_K and SWAP_AB

    def default(self, block_n: int, block_k: int) -> Config:
        """The config the engine runs for a shape it has no file for."""
        return replace(default_config(block_n, block_k), num_stages=self.default_stages)

    def file_name(self, N: int, K: int, device_name: str, input_type: str, block_n: int, block_k: int) -> str:
        return config_file_name(N, K, device_name, input_type, block_n, block_k, vllm=self.file_format == "vllm")


SGLANG = Engine(name="SGLang", file_format="sglang", input_types=INPUT_TYPES, default_stages=3,
                takes_hopper_entries=True)  # fmt: skip
# vllm/model_executor/layers/quantization/utils/fp8_utils.py: fp8 files only; default num_stages 2.
VLLM = Engine(name="vLLM", file_format="vllm", input_types=("fp8",), default_stages=2, takes_hopper_entries=False)
ENGINES = (SGLANG, VLLM)


def engines_of(file_format: str) -> tuple[Engine, ...]:
    """The engines whose files --format writes, SGLang's first."""
    if file_format not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, but got {file_format!r}.")
    return tuple(engine for engine in ENGINES if file_format in (engine.file_format, "both"))


def package_folder(name: str) -> Path | None:
    """Where the top-level package name would be imported from, found without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):  # a broken installation, or a module in sys.modules without a spec
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def sglang_hopper_kernel() -> Path | None:
    """The installed SGLang's kernel source if it defines the Hopper kernel, read without importing SGLang."""
    sglang = package_folder("sglang")
    for relative in _SGLANG_KERNEL_FILES if sglang is not None else ():
        source = sglang / relative
        try:
            if f"def {SGLANG_HOPPER_KERNEL}(" in source.read_text(errors="replace"):
                return source
        except OSError:
            continue
    return None


@dataclass(frozen=True, kw_only=True)
class Target:
    """The files of a shape that one search fills: its space, the engines that read them, and why that space."""

    space: str
    engines: tuple[Engine, ...]
    why: str

    def defaults(self, block_n: int, block_k: int) -> list[Config]:
        return defaults(self.engines, block_n, block_k)

    def describe(self) -> str:
        files = f"{' and '.join(e.name for e in self.engines)}'s file{'s' if len(self.engines) > 1 else ''}"
        return f"{files}: --space {self.space} ({self.why})"


def defaults(engines: Sequence[Engine], block_n: int, block_k: int) -> list[Config]:
    """What each engine runs without a file, the first engine's first (a run's "default")."""
    return list(dict.fromkeys(engine.default(block_n, block_k) for engine in engines))


def plan_targets(space: str, file_format: str, input_type: str, device_name: str | None) -> list[Target]:
    """Which search fills which engine's file; ValueError for a run that would write files no engine reads.

    auto gives SGLang's file Hopper entries where SGLang runs them: an SM90 device (in replay, the
    landscape's) and an installed SGLang whose kernels define the Hopper kernel; hopper gives them
    wherever asked (SM90 devices only); vLLM's file is always the base space's. device_name None (a
    dry run without a GPU) plans auto as the base space.
    """
    if space not in SPACE_CHOICES:
        raise ValueError(f"--space must be one of {', '.join(SPACE_CHOICES)}, but got {space!r}.")
    engines = engines_of(file_format)
    readers = tuple(engine for engine in engines if input_type in engine.input_types)
    if not readers:
        raise ValueError(f"--format {file_format} writes files that no engine reads: vLLM 0.34.0 loads block-scaled "
                         f"config files for fp8 only, not {input_type}; use --format sglang.")  # fmt: skip
    if space == "hopper" and not any(engine.takes_hopper_entries for engine in readers):
        raise ValueError(
            f"--space hopper writes SPLIT_K/SWAP_AB entries, which only SGLang's file carries, but --format "
            f"{file_format} writes vLLM's alone (vLLM's Triton kernel takes no SPLIT_K or SWAP_AB); use --format "
            "sglang or both, or --space base."
        )
    if space == "hopper" and device_name is not None and not is_hopper(device_name):
        raise ValueError(
            f"--space hopper tunes SGLang's Hopper kernel, which runs on SM90 GPUs alone, but {device_name} is not "
            "one; use --space base."
        )
    hopper_why = _hopper_why(space, device_name)
    hopper = [e for e in readers if e.takes_hopper_entries and hopper_why is not None]
    base = [e for e in readers if e not in hopper]
    targets = [Target(space="hopper", engines=tuple(hopper), why=hopper_why)] if hopper else []
    if base:
        targets.append(Target(space="base", engines=tuple(base), why=_base_why(space, base, device_name)))
    return targets


def _hopper_why(space: str, device_name: str | None) -> str | None:
    """Why SGLang's file gets Hopper entries, or None where it gets base entries."""
    if space == "hopper":
        return "asked for"
    if space == "base" or device_name is None or not is_hopper(device_name):
        return None
    kernel = sglang_hopper_kernel()
    return None if kernel is None else f"{device_name} is SM90 and the installed SGLang runs its Hopper kernel there"


def _base_why(space: str, engines: list[Engine], device_name: str | None) -> str:
    if space == "base":
        return "asked for"
    if not any(engine.takes_hopper_entries for engine in engines):
        return "vLLM's kernel takes no SPLIT_K or SWAP_AB"
    if device_name is None:
        return "no GPU to ask whether it is SM90"
    if not is_hopper(device_name):
        return f"SGLang runs Hopper entries on SM90 GPUs alone, and {device_name} is not one"
    if package_folder("sglang") is None:
        return "no SGLang is installed for this Python to say whether it has the Hopper kernel; --space hopper " \
               "tunes Hopper entries anyway"  # fmt: skip
    return f"the installed SGLang defines no {SGLANG_HOPPER_KERNEL}, so it would fail on Hopper entries"
