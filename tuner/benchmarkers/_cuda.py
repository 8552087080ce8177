"""The GPU-only part of timing: compile a config, check it once against the reference, time it.

Runs inside worker processes (see tuner.benchmarkers._gpu). Failures are classified exactly as Triton reports
them; anything else means the CUDA context can no longer be trusted and the process must go.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from triton.compiler.errors import CompilationError
from triton.runtime.errors import OutOfResources, PTXASError

from kernels import (
    INPUT_DTYPES,
    OUTPUT_DTYPES,
    RELATIVE_TOLERANCE,
    bind_w8a8_block_matmul,
    compile_w8a8_block_matmul,
    w8a8_block_matmul_reference,
)
from kernels.timing import make_operand_sets, make_weight_sets, rotation_sets_needed, time_launches
from tuner.benchmarkers._base import Measurement
from tuner.space import Config, Problem

# A search ranks configs, and the best few are re-timed in full before any is exported (the confirmation
# round), so a search's timing replays its graph for half the time, three times, after one warm-up.
SEARCH_TIMING = {"target_replay_us": 500.0, "replays": 3}
# A quick timing, for a coverage check that times a handful of configs at each of ~90 M per shape: half
# a search's replay span and three replays (~1.5 ms of GPU against ~7 for a full timing). The check
# decides on interleaved rounds and their spread, never on one quick number.
QUICK_TIMING = {"target_replay_us": 250.0, "replays": 3}


class ContextLost(Exception):
    """The CUDA context failed (illegal access, launch failure): the process must be replaced."""


def _classify(error: Exception) -> Measurement | None:
    if isinstance(error, OutOfResources):
        return Measurement("out_of_resources", reason=str(error).strip()[:300])
    if isinstance(error, (CompilationError, PTXASError)):
        return Measurement("compile_error", reason=f"{type(error).__name__}: {str(error).strip()[:300]}")
    return None


def compile_config(problem: Problem, config: Config) -> Measurement | None:
    """Compile config for problem's specialization into Triton's disk cache; a failure, or None."""
    try:
        compile_w8a8_block_matmul(
            problem.M,
            problem.N,
            problem.K,
            [problem.block_n, problem.block_k],
            INPUT_DTYPES[problem.input_type],
            OUTPUT_DTYPES[problem.out_dtype],
            config.as_sglang(),
        )
    except Exception as error:  # noqa: BLE001 - classified below, the rest re-raised
        failure = _classify(error)
        if failure is None:
            raise
        return failure
    return None


class CudaTimingSession:
    """Holds one device's operands and reference outputs and times configs on them."""

    # What waits for the device and what times launches in graphs: the CPU tests' fake GPU replaces these.
    _synchronize = staticmethod(torch.cuda.synchronize)
    _time = staticmethod(time_launches)

    def __init__(self, device_index: int = 0) -> None:
        torch.cuda.set_device(device_index)
        torch.backends.cuda.matmul.allow_tf32 = False  # the reference must be true float32
        props = torch.cuda.get_device_properties(device_index)
        self.device_name = torch.cuda.get_device_name(device_index).replace(" ", "_")
        self.shared_memory_limit = props.shared_memory_per_block_optin
        self.sm_count = props.multi_processor_count
        self._l2_bytes = props.L2_cache_size
        self._weights_key: tuple | None = None
        self._weights: list = []
        self._operands: dict[Problem, list] = {}
        self._references: dict[Problem, torch.Tensor] = {}
        self._outputs: dict[Problem, torch.Tensor] = {}  # the one C every timing of a problem writes
        self.gpu_s = 0.0  # the device's time in timed replays so far, for the run's duty cycle

    def operands(self, problem: Problem) -> list:
        """The rotating operand sets for problem, made on first use (weights shared across M)."""
        p = problem
        block_size = [p.block_n, p.block_k]
        weights_key = (p.N, p.K, p.block_n, p.block_k, p.input_type)
        if weights_key != self._weights_key:  # a new shape: drop the old one's buffers
            self._operands.clear()
            self._references.clear()
            self._outputs.clear()
            self._weights = []
            torch.cuda.empty_cache()
            n = rotation_sets_needed(1, p.N, p.K, l2_bytes=self._l2_bytes, block_size=block_size)
            self._weights = make_weight_sets(p.N, p.K, block_size, INPUT_DTYPES[p.input_type], n)
            self._weights_key = weights_key
        if p not in self._operands:
            n = rotation_sets_needed(p.M, p.N, p.K, l2_bytes=self._l2_bytes, block_size=block_size)
            self._operands[p] = make_operand_sets(p.M, self._weights, block_size, n)
            a, b, a_scales, b_scales = self._operands[p][0]
            self._references[p] = w8a8_block_matmul_reference(a, b, a_scales, b_scales, block_size, torch.float32)
            self._outputs[p] = torch.empty((p.M, p.N), dtype=OUTPUT_DTYPES[p.out_dtype], device=a.device)
        return self._operands[p]

    def retime(
        self, problem: Problem, configs: Sequence[Config], rounds: int, quick: bool = False
    ) -> dict[Config, list[float]]:
        """Time configs again in interleaved rounds, each starting with a different config.

        They ran and passed the check when they were measured, so a failure here is a lost context.
        Binding launches each once first, which loads a binary this process may never have run (a
        resumed study's, or one measured before the process was replaced) outside any capture.
        quick times each round's replays for QUICK_TIMING's shorter span.
        """
        replays = QUICK_TIMING if quick else {}
        sets = self.operands(problem)
        times: dict[Config, list[float]] = {config: [] for config in configs}
        try:
            launches = {config: self._bound_launches(problem, config, sets) for config in configs}
            for r in range(rounds):
                for config in [*configs[r % len(configs) :], *configs[: r % len(configs)]]:
                    timing = self._time(lambda i, bound=launches[config]: bound[i](), len(sets), **replays)
                    self.gpu_s += timing.gpu_us * 1e-6
                    times[config].append(timing.median_us)
        except Exception as error:  # noqa: BLE001 - the context is suspect
            raise ContextLost(f"{type(error).__name__}: {error}") from error
        return times

    def _bound_launches(
        self, problem: Problem, config: Config, sets: Sequence, *, launch_first: bool = True
    ) -> list[Callable[[], None]]:
        """Each set's launch of config, bound (kernels.bind_w8a8_block_matmul), every one writing the
        problem's one output and one split-K buffer: only the inputs rotate. The first set's runs once
        now (unless launch_first is False), loading the binary outside any capture."""
        block_size = [problem.block_n, problem.block_k]
        out = self._outputs[problem]
        splits = (config.split_k, problem.M, problem.N)
        partials = torch.empty(splits, dtype=torch.float32, device=out.device) if config.split_k > 1 else None
        entry, out_dtype = config.as_sglang(), OUTPUT_DTYPES[problem.out_dtype]
        return [
            bind_w8a8_block_matmul(
                *s, block_size, out_dtype, entry, out=out, partials=partials, launch=launch_first and i == 0
            )[0]
            for i, s in enumerate(sets)
        ]

    def check(self, problem: Problem, config: Config) -> Measurement | None:
        """Run config once, eagerly, on the first operand set and compare with the float32 reference:
        its failure, or None. The launch loads the config's binary for this M, outside any capture."""
        sets = self.operands(problem)
        try:
            self._bound_launches(problem, config, sets[:1])  # one launch, on the first set
            self._synchronize()
        except Exception as error:  # noqa: BLE001 - classified below, the rest is a lost context
            failure = _classify(error)
            if failure is None:
                raise ContextLost(f"{type(error).__name__}: {error}") from error
            return failure
        reference, out = self._references[problem], self._outputs[problem]
        error = ((out.float() - reference).norm() / reference.norm()).item()
        if not error < RELATIVE_TOLERANCE[OUTPUT_DTYPES[problem.out_dtype]]:
            return Measurement("wrong_result", reason=f"relative error {error:.3g} vs the float32 reference")
        return None

    def probe(
        self, problem: Problem, configs: Sequence[Config], rounds: int, quick: bool
    ) -> dict[Config, list[float] | Measurement]:
        """Check each config at problem's M (a new binary where the M's class is new), then retime those that pass."""
        failures = {config: self.check(problem, config) for config in configs}
        passed = [config for config in configs if failures[config] is None]
        times = self.retime(problem, passed, rounds, quick) if passed else {}
        return {config: failures[config] or times[config] for config in configs}

    def measure(self, problem: Problem, config: Config, prune_above_us: float | None) -> Measurement:
        """Check config once against the reference, then time it in CUDA graphs."""
        failure = self.check(problem, config)
        if failure is not None:
            return failure
        sets = self.operands(problem)
        try:  # the check loaded the binary: binding every set now only looks it up
            launches = self._bound_launches(problem, config, sets, launch_first=False)
            timing = self._time(lambda i: launches[i](), len(sets), prune_above_us=prune_above_us, **SEARCH_TIMING)
        except Exception as error:  # noqa: BLE001 - a failure while timing leaves the context unknown
            raise ContextLost(f"{type(error).__name__}: {error}") from error
        self.gpu_s += timing.gpu_us * 1e-6
        if timing.median_us is None:
            return Measurement("pruned", us=timing.estimate_us, reason=f"first estimate {timing.estimate_us:.1f} us")
        return Measurement("ok", us=timing.median_us)
