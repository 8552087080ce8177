"""GPU benchmarking with crash isolation: compile on every CPU core, time in one restartable process.

Compiling a config takes ~1.75 s on the H100 host while timing it ~10 ms, so compilation runs
ahead in a pool of processes (tuner.benchmarkers._compile_pool) that fill Triton's disk cache. One
timing process owns the GPU; if a config kills its CUDA context or hangs, the process is replaced
and the config costs one failed measurement, not the run. The GPU code itself is injected
(tuner.benchmarkers._cuda by default), so this orchestration is tested on the CPU. Every process
started here dies with the run, even when the run is killed outright.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterable, Sequence
from multiprocessing.connection import Connection
from typing import Any, Protocol

from kernels import kernel_arguments
from tuner.benchmarkers._base import COMPILE_FAILURES, COMPILE_TRIES, Measurement, compile_failed
from tuner.benchmarkers._clock import COMPILE_WAIT, GPU, HAND_OFFS, TIMING_OVERHEAD, RunClock
from tuner.benchmarkers._compile_pool import CompilePool
from tuner.benchmarkers._software import gpu_software
from tuner.space import Config, Problem
from tuner.stopping import TuningError, die_with_parent, interruptible

_SPAWN = mp.get_context("spawn")


class TimingSession(Protocol):
    device_name: str
    shared_memory_limit: int | None
    sm_count: int | None
    gpu_s: float  # the device's time in timed replays so far (what the run's duty cycle counts)

    def measure(self, problem: Problem, config: Config, prune_above_us: float | None) -> Measurement: ...

    def retime(self, problem: Problem, configs: Sequence[Config], rounds: int) -> dict[Config, list[float]]: ...

    def probe(
        self, problem: Problem, configs: Sequence[Config], rounds: int, quick: bool
    ) -> dict[Config, list[float] | Measurement]: ...


def _cuda_session(device_index: int) -> TimingSession:
    from tuner.benchmarkers._cuda import CudaTimingSession

    return CudaTimingSession(device_index)


def _cuda_compile(problem: Problem, config: Config) -> Measurement | None:
    from tuner.benchmarkers._cuda import compile_config

    return compile_config(problem, config)


def _timing_process(
    conn: Connection, session_factory: Callable[[int], TimingSession], device_index: int, parent_pid: int
) -> None:
    """Serve measure and retime requests until told to stop; exit after any error that is not a measurement.

    First says what the device is, or why the session could not start. Each answer comes with the
    seconds the request took here and the GPU's share of them.
    """
    die_with_parent(parent_pid)
    try:
        try:
            session = session_factory(device_index)
        except Exception as error:  # noqa: BLE001 - no CUDA, a busy or broken device: the parent says it in a line
            conn.send(("failed", f"{type(error).__name__}: {str(error).strip()[:300]}"))
            return
        conn.send(("ready", session.device_name, session.shared_memory_limit, session.sm_count))
        while (request := conn.recv()) is not None:
            method, args = request
            started, gpu_s = time.perf_counter(), session.gpu_s
            try:
                result = getattr(session, method)(*args)
            except Exception as error:  # noqa: BLE001 - the context is suspect: report, then die
                crash = Measurement("crash", reason=f"{type(error).__name__}: {str(error)[:300]}")
                conn.send((crash, time.perf_counter() - started, session.gpu_s - gpu_s))
                os._exit(1)
            conn.send((result, time.perf_counter() - started, session.gpu_s - gpu_s))
    except (EOFError, KeyboardInterrupt):
        pass


def _int_class(value: int) -> tuple:
    """How Triton's binder specializes an int argument: 1 is a constant, others by width and % 16."""
    width = "i32" if -(2**31) <= value < 2**31 else "u64" if value >= 2**63 else "i64"
    return value == 1, value % 16 == 0, width


def specialization(problem: Problem, config: Config) -> tuple:
    """What makes Triton compile a config anew: dtypes, constexprs and the classes of the int arguments.

    The ints are exactly those the launch passes (strides included: the scale strides are
    cdiv(K, block_k), 56 for K=7168 and 144 for K=18432), so two problems share a key exactly when
    Triton's cache serves one with the other's binary.
    """
    p = problem
    ints, constexprs = kernel_arguments(p.M, p.N, p.K, [p.block_n, p.block_k], config.as_sglang())
    return (config, p.input_type, p.out_dtype, tuple(sorted(constexprs.items())), tuple(map(_int_class, ints)))


class GpuBenchmarker:
    """The Benchmarker for a real GPU (see tuner.benchmarkers).

    Where its time goes is counted on clock (a RunClock): the GPU's time in timed kernels, the
    timing process's other work, waits for compiles, and timing-process starts and hand-offs.
    timeout_s bounds one compile from when a process takes it, and one timing. Make and use it from
    one thread that outlives it: Linux ends the timing process when the thread that started it ends.
    """

    kind = "gpu"

    def __init__(
        self,
        *,
        device_index: int = 0,
        compile_workers: int | None = None,
        timeout_s: float = 60.0,
        session_factory: Callable[[int], TimingSession] = _cuda_session,
        compile_fn: Callable[[Problem, Config], Measurement | None] = _cuda_compile,
        software: dict[str, str] | None = None,
        clock: RunClock | None = None,
    ) -> None:
        self.device_index = device_index
        self.clock = clock if clock is not None else RunClock()
        self._software = software
        self.timeout_s = timeout_s
        self._session_factory = session_factory
        n_compile = max(1, (os.cpu_count() or 2) - 1) if compile_workers is None else compile_workers
        self._compiles = (
            CompilePool(compile_fn, processes=n_compile, timeout_s=timeout_s, device_index=device_index)
            if n_compile
            else None
        )
        self._process: Any = None
        self._conn: Connection | None = None
        self.restarts = 0
        try:
            self.device_name, self.shared_memory_limit, self.sm_count = self._start()
        except BaseException:
            self.close()
            raise

    @property
    def software(self) -> dict[str, str]:
        """gpu_software() unless given; read on first use, so a benchmarker starts without Triton."""
        if self._software is None:
            self._software = gpu_software()
        return self._software

    def measurable(self, problem: Problem) -> None:
        """Any config: a GPU tries each, and a failure is a measurement like a latency."""
        return None

    def batch_sizes(self, problem: Problem) -> None:
        """Any M: a GPU times any batch size."""
        return None

    # --- the timing process -------------------------------------------------------------------
    def _start(self) -> tuple[str, int | None, int | None]:
        """Start the timing process; what it says of its device, or a TuningError that says why it did not start."""
        with self.clock.timing(HAND_OFFS):  # a spawned interpreter, torch and a CUDA context: seconds
            parent, child = _SPAWN.Pipe()
            process = _SPAWN.Process(
                target=_timing_process,
                args=(child, self._session_factory, self.device_index, os.getpid()),
                daemon=True,
            )
            try:
                process.start()
            finally:
                child.close()
            self._process, self._conn = process, parent
            wait_s = max(self.timeout_s, 120.0)
            with interruptible():
                started = parent.poll(wait_s)
            if not started:
                raise TuningError(f"the GPU timing process did not start within {wait_s:.0f} s.")
            try:
                message = parent.recv()
            except EOFError:
                self._process.join(timeout=10)
                raise TuningError(
                    f"the GPU timing process exited (status {self._process.exitcode}) before it was ready; "
                    "its own error, if it wrote one, is above."
                ) from None
            if message[0] != "ready":
                raise TuningError(f"the GPU timing process could not start on device {self.device_index}: {message[1]}")
            return message[1:]

    def _restart(self) -> None:
        self.restarts += 1
        self._stop_process()
        self._start()

    def _stop_process(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.kill()
        if self._process is not None:
            self._process.join(timeout=10)
        if self._conn is not None:
            self._conn.close()

    # --- compiling and timing -----------------------------------------------------------------
    def prepare(self, problem: Problem, configs: Iterable[Config], *, replace: bool = False) -> None:
        """Compile configs ahead, in this order; with replace, drop first what earlier calls queued and nothing took."""
        if self._compiles is None:
            return
        if replace:
            self._compiles.drop_queued()
        self._compiles.submit((specialization(problem, config), problem, config) for config in configs)

    def measure(self, problem: Problem, config: Config, *, prune_above_us: float | None = None) -> Measurement:
        compile_s = None
        if self._compiles is not None:
            with self.clock.timing(COMPILE_WAIT), interruptible():
                failure, compile_s = self._compiles.result(specialization(problem, config), problem, config)
            if failure is not None:
                return Measurement(failure.status, reason=failure.reason, compile_s=compile_s)
        result = self._time(problem, config, prune_above_us)
        return Measurement(result.status, result.us, result.reason, compile_s)

    def retime(self, problem: Problem, configs: Sequence[Config], *, rounds: int) -> dict[Config, list[float]]:
        """Time configs again, interleaved, in the timing process (whichever process measured them).

        Each gets a latency per round, or none at all if the process is lost meanwhile.
        """
        result = self._ask("retime", (problem, list(configs), rounds), self.timeout_s * max(1, len(configs)) * rounds)
        return result if isinstance(result, dict) else {config: [] for config in configs}

    def probe(
        self, problem: Problem, configs: Sequence[Config], *, rounds: int, quick: bool = False
    ) -> dict[Config, list[float] | Measurement]:
        """Time configs at a new M: wait for their compiles (asked for now if not ahead), then check and
        time those that compiled, in the timing process; a lost process fails every config it held.

        A compile process that dies or hangs is the host's (the pool forgets it): the config is compiled
        again, and fails here only as its own compile_error after COMPILE_TRIES such losses, as a sweep's.
        """
        failed: dict[Config, Measurement] = {}
        if self._compiles is not None:
            self.prepare(problem, configs)
            with self.clock.timing(COMPILE_WAIT), interruptible():
                for config in configs:
                    for _ in range(COMPILE_TRIES):
                        failure, _ = self._compiles.result(specialization(problem, config), problem, config)
                        if failure is None or failure.status not in COMPILE_FAILURES:
                            break
                    else:  # lost on every try
                        failure = compile_failed(failure)
                    if failure is not None:
                        failed[config] = failure
        ready = [config for config in configs if config not in failed]
        result = {}
        if ready:
            limit_s = self.timeout_s * len(ready) * (rounds + 1)  # each config's check, then its rounds
            result = self._ask("probe", (problem, ready, rounds, quick), limit_s)
            if not isinstance(result, dict):  # the process died or hung: every config in flight is lost with it
                result = dict.fromkeys(ready, result)
        return {config: failed.get(config) or result[config] for config in configs}

    def _time(self, problem: Problem, config: Config, prune_above_us: float | None) -> Measurement:
        return self._ask("measure", (problem, config, prune_above_us), self.timeout_s)

    def _ask(self, method: str, args: tuple, timeout_s: float) -> Any:
        """One request to the timing process; a dead or silent process is replaced, and says why.

        Its time goes on the clock: the GPU's share the process reports, the rest of the process's
        own time as timing overhead, and the time in transit (pickling, the pipe) as hand-offs.
        """
        assert self._conn is not None
        sent = time.perf_counter()
        try:
            self._conn.send((method, args))
            with interruptible():
                answered = self._conn.poll(timeout_s)
            if answered:
                result, busy_s, gpu_s = self._conn.recv()
                self.clock.add(GPU, gpu_s)
                self.clock.add(TIMING_OVERHEAD, max(0.0, busy_s - gpu_s))
                self.clock.add(HAND_OFFS, max(0.0, time.perf_counter() - sent - busy_s))
                if not self._process.is_alive() or getattr(result, "status", None) == "crash":
                    self._restart()
                return result
            reason = f"no result within {timeout_s:.0f} s"
            status = "timeout"
        except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
            reason, status = "the timing process died", "crash"
        self.clock.add(TIMING_OVERHEAD, time.perf_counter() - sent)  # spent on the config that hung or killed it
        self._restart()
        return Measurement(status, reason=reason)

    def close(self) -> None:
        if self._conn is not None and self._process is not None and self._process.is_alive():
            try:
                self._conn.send(None)
            except OSError:
                pass
        self._stop_process()
        if self._compiles is not None:
            self._compiles.close()  # compiles still running are not needed, and a hung one would hold the exit

    def __enter__(self) -> GpuBenchmarker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
