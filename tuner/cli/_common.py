"""What every command of the tuner shares: one-line usage errors and checking outputs before any work."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tuner.space import DEFAULT_OUT_DTYPE, INPUT_TYPES, OUT_DTYPES


class OneLineParser(argparse.ArgumentParser):
    """Raises ValueError instead of printing usage, so each CLI reports it as one line, exit 2.

    A flag must be spelled out: argparse would otherwise take a prefix for the one flag it starts
    (`--n` for `--no-prior`), and a mistyped flag would pass as another.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message: str) -> None:
        raise ValueError(message)


# The quantization a GEMM has unless the flags (or a model's config) say otherwise.
QUANTIZATION_DEFAULTS = {"input_type": "fp8", "block_n": 128, "block_k": 128}


def count(n: int, one: str, many: str | None = None) -> str:
    """n with its noun in the right number: '1 shape', '13 shapes', '2 studies'."""
    return f"{n} {one if n == 1 else many or one + 's'}"


def add_gemm_flags(parser: argparse.ArgumentParser, *, model_aware: bool = False) -> None:
    """The flags that say which GEMM is tuned, with one default each across the commands.

    model_aware: input type and block shape default to None, for the command to take them from a
    model's quantization config (else QUANTIZATION_DEFAULTS), and to tell a given flag from a default.
    """
    default = dict.fromkeys(QUANTIZATION_DEFAULTS) if model_aware else QUANTIZATION_DEFAULTS
    model = "the model's quantization config, else " if model_aware else ""
    parser.add_argument(
        "--input-type", choices=INPUT_TYPES, default=default["input_type"],
        help=f"8-bit type of A and B (default: {model}fp8)",
    )  # fmt: skip
    parser.add_argument(
        "--out-dtype", choices=OUT_DTYPES, default=DEFAULT_OUT_DTYPE, help="output dtype (default: %(default)s)"
    )
    for flag, name in (("--block-n", "block_n"), ("--block-k", "block_k")):
        along = name[-1].upper()
        parser.add_argument(flag, type=int, default=default[name],
                            help=f"quantization block along {along} (default: {model}128)")  # fmt: skip


def gemm_setup(args: argparse.Namespace) -> dict[str, object]:
    """add_gemm_flags' values as Problem's keyword arguments."""
    return {
        "block_n": args.block_n,
        "block_k": args.block_k,
        "input_type": args.input_type,
        "out_dtype": args.out_dtype,
    }


def check_writable(path: Path, option: str, *, folder: bool) -> None:
    """Fail before the work, not after it, when an output cannot be written; nothing is created here.

    path is a folder to write into (folder=True) or a file to write; the deepest part of its folder
    that already exists must be a writable folder, since the command creates the rest.
    """
    if not folder and path.is_dir():
        raise ValueError(f"{option} {str(path)!r} is a folder; give a file name.")
    existing = path if folder else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {str(path)!r} is not writable: {str(existing)!r} is not a writable folder.")


def no_gpu(command: str) -> bool:
    """True, after one line on stderr, when no CUDA GPU is visible: where a command that times kernels stops."""
    import torch

    if torch.cuda.is_available():
        return False
    print(f"error: {command} times kernels on a CUDA GPU and none is visible.", file=sys.stderr)
    return True
