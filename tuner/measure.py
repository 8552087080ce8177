"""What a timing returns, and the protocol that GPU timing and landscape replay both implement.

The study code sees only this protocol, so the whole tuner runs without a GPU against a recorded
landscape, and the GPU path is one thin implementation of it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

from tuner.space import Config

Status = Literal["ok", "pruned", "out_of_resources", "compile_error", "wrong_result", "crash", "timeout"]
FAILURES: tuple[Status, ...] = ("out_of_resources", "compile_error", "wrong_result", "crash", "timeout")


@dataclass(frozen=True)
class Measurement:
    """The outcome of timing one config at one batch size.

    us is the median latency when status is ok, the cheap first estimate when pruned, else None.
    """

    status: Status
    us: float | None = None
    reason: str = ""
    compile_s: float | None = None

    def __post_init__(self) -> None:
        if (self.us is None) == (self.status in ("ok", "pruned")):
            raise ValueError(f"a {self.status!r} measurement must {'' if self.us is None else 'not '}carry us.")


@dataclass(frozen=True)
class Problem:
    """One GEMM to tune: a weight shape, a batch size, the quantization and the output dtype."""

    N: int
    K: int
    M: int
    block_n: int = 128
    block_k: int = 128
    input_type: Literal["fp8", "int8"] = "fp8"
    out_dtype: Literal["bfloat16", "float16", "float32"] = "float16"

    def __post_init__(self) -> None:
        for name in ("N", "K", "M", "block_n", "block_k"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, but got {value!r}.")
        if self.input_type not in ("fp8", "int8"):
            raise ValueError(f"input type must be fp8 or int8, but got {self.input_type!r}.")
        if self.out_dtype not in ("bfloat16", "float16", "float32"):
            raise ValueError(f"out dtype must be bfloat16, float16 or float32, but got {self.out_dtype!r}.")

    @property
    def flops(self) -> int:
        return 2 * self.M * self.N * self.K

    @property
    def min_bytes(self) -> int:
        """Each operand read once and C written once: the memory-bound floor's traffic."""
        out_bytes = 4 if self.out_dtype == "float32" else 2
        scale_groups = -(-self.K // self.block_k)
        scales = 4 * (self.M * scale_groups + -(-self.N // self.block_n) * scale_groups)
        return self.M * self.K + self.N * self.K + out_bytes * self.M * self.N + scales


class Benchmarker(Protocol):
    """Times configs of one device; GPU timing and landscape replay implement it."""

    device_name: str
    kind: Literal["gpu", "replay"]
    shared_memory_limit: int | None

    def prepare(self, problem: Problem, configs: Iterable[Config]) -> None:
        """Start any slow preparation (compilation) for configs likely to be measured soon."""

    def measure(self, problem: Problem, config: Config, *, prune_above_us: float | None = None) -> Measurement:
        """Time config on problem; a failure is a status with a reason, never an exception."""
