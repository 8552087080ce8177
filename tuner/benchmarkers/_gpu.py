"""GPU benchmarking with crash isolation: compile on every CPU core, time in one restartable process.

Compiling a config takes ~1.75 s on the H100 host while timing it takes ~10 ms, so compilation runs
ahead in a pool of spawn-started processes that fill Triton's disk cache. One timing process owns
the GPU; if a config kills its CUDA context or hangs, the process is replaced and the config costs
one failed measurement, not the run. The GPU code itself is injected (tuner.benchmarkers._cuda by default),
so this orchestration is tested on the CPU.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import importlib.resources
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import Connection
from typing import Any, Protocol

from kernels import kernel_arguments
from tuner.benchmarkers._base import Measurement
from tuner.benchmarkers._clock import COMPILE_WAIT, GPU, HAND_OFFS, TIMING_OVERHEAD, RunClock
from tuner.space import Config, Problem
from tuner.stopping import TuningError, interruptible

_SPAWN = mp.get_context("spawn")


class TimingSession(Protocol):
    device_name: str
    shared_memory_limit: int | None
    gpu_s: float  # the device's time in timed replays so far (what the run's duty cycle counts)

    def measure(self, problem: Problem, config: Config, prune_above_us: float | None) -> Measurement: ...

    def retime(self, problem: Problem, configs: Sequence[Config], rounds: int) -> dict[Config, list[float]]: ...


def _cuda_session(device_index: int) -> TimingSession:
    from tuner.benchmarkers._cuda import CudaTimingSession

    return CudaTimingSession(device_index)


def _cuda_compile(problem: Problem, config: Config) -> Measurement | None:
    from tuner.benchmarkers._cuda import compile_config

    return compile_config(problem, config)


def _timing_process(conn: Connection, session_factory: Callable[[int], TimingSession], device_index: int) -> None:
    """Serve measure and retime requests until told to stop; exit after any error that is not a measurement.

    Each answer comes with the seconds the request took here and the GPU's share of them.
    """
    try:
        session = session_factory(device_index)
        conn.send((session.device_name, session.shared_memory_limit))
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


def _ignore_ctrl_c() -> None:
    """Compile processes leave Ctrl-C to the parent, which stops the run and shuts the pool down.

    An idle compile process that took it would print a traceback: fifteen of them on the H100 host.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def gpu_software() -> dict[str, str]:
    """What besides the problem and the device decides a GPU timing: Triton, torch and the kernel's source.

    The source is every module of the kernels package that holds a Triton kernel (the kernel and
    its launcher), read as installed.
    """
    import torch
    import triton

    digest = hashlib.sha256()
    for source in sorted(importlib.resources.files("kernels").iterdir(), key=lambda f: f.name):
        if source.name.endswith(".py") and "@triton.jit" in (text := source.read_text()):
            digest.update(f"{source.name}\n{text}".encode())
    return {"triton": triton.__version__, "torch": torch.__version__, "kernel_source": digest.hexdigest()[:16]}


def _timed_compile(compile_fn: Callable[[Problem, Config], Measurement | None], problem: Problem, config: Config):
    started = time.perf_counter()
    failure = compile_fn(problem, config)
    return failure, time.perf_counter() - started


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
        self._compile_fn = compile_fn
        self._n_compile = max(1, (os.cpu_count() or 2) - 1) if compile_workers is None else compile_workers
        self._pool: ProcessPoolExecutor | None = None
        self._compiled: dict[tuple, Future] = {}
        self._process: Any = None
        self._conn: Connection | None = None
        self.restarts = 0
        self.device_name, self.shared_memory_limit = self._start()

    @property
    def software(self) -> dict[str, str]:
        """gpu_software() unless given; read on first use, so a benchmarker starts without Triton."""
        if self._software is None:
            self._software = gpu_software()
        return self._software

    def measurable(self, problem: Problem) -> None:
        """Any config: a GPU tries each, and a failure is a measurement like a latency."""
        return None

    # --- the timing process -------------------------------------------------------------------
    def _start(self) -> tuple[str, int | None]:
        with self.clock.timing(HAND_OFFS):  # a spawned interpreter, torch and a CUDA context: seconds
            parent, child = _SPAWN.Pipe()
            self._process = _SPAWN.Process(
                target=_timing_process, args=(child, self._session_factory, self.device_index), daemon=True
            )
            self._process.start()
            child.close()
            self._conn = parent
            if not parent.poll(max(self.timeout_s, 120.0)):
                raise TuningError("the GPU timing process did not start; its own error, if it wrote one, is above.")
            return parent.recv()

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

    def _end_pool(self) -> None:
        """End the compile processes at once, then let the pool wind down; the next compile starts a new one.

        A hung compile never returns, so its process is killed rather than waited for (the pool
        cannot say which process runs which job: all go; what they compiled is on disk). Waiting
        for the pool to wind down also stops shutdown(wait=False) from racing Python 3.11's exit
        hook, which then writes to the pool's closed wake-up pipe.
        """
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for process in list((pool._processes or {}).values()):  # no public way to stop them
            process.kill()
        pool.shutdown(wait=True, cancel_futures=True)
        # Jobs the pool lost are compiled again when they are next prepared or measured.
        self._compiled = {
            key: future
            for key, future in self._compiled.items()
            if future.done() and not future.cancelled() and not isinstance(future.exception(), BrokenProcessPool)
        }

    # --- the compile pool ---------------------------------------------------------------------
    def _compile(self, problem: Problem, config: Config) -> Future | None:
        if self._n_compile == 0:
            return None
        key = specialization(problem, config)
        if key not in self._compiled:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(self._n_compile, mp_context=_SPAWN, initializer=_ignore_ctrl_c)
            self._compiled[key] = self._pool.submit(_timed_compile, self._compile_fn, problem, config)
        return self._compiled[key]

    def prepare(self, problem: Problem, configs: Iterable[Config]) -> None:
        for config in configs:
            self._compile(problem, config)

    def measure(self, problem: Problem, config: Config, *, prune_above_us: float | None = None) -> Measurement:
        compiled = self._compile(problem, config)
        compile_s = None
        if compiled is not None:
            # Jobs queued ahead of this one (a sweep queues thousands) must not count as its time.
            queued = sum(1 for f in self._compiled.values() if not f.done())
            wait_s = self.timeout_s * max(1.0, queued / self._n_compile)
            try:
                with self.clock.timing(COMPILE_WAIT), interruptible():
                    failure, compile_s = compiled.result(timeout=wait_s)
            except concurrent.futures.TimeoutError:  # not the builtin TimeoutError before Python 3.11
                self._end_pool()  # a hung compile would hold its process for good
                return Measurement("timeout", reason=f"compilation took over {wait_s:.0f} s")
            except BrokenProcessPool:
                self._end_pool()
                return Measurement("crash", reason="the compile process died")
            except Exception as error:  # noqa: BLE001 - an unclassified compiler failure
                return Measurement("compile_error", reason=f"{type(error).__name__}: {str(error)[:300]}")
            if failure is not None:
                return Measurement(failure.status, reason=failure.reason, compile_s=compile_s)
        result = self._time(problem, config, prune_above_us)
        return Measurement(result.status, result.us, result.reason, compile_s)

    def retime(self, problem: Problem, configs: Sequence[Config], *, rounds: int) -> dict[Config, list[float]]:
        """Time configs (already compiled and measured) again, interleaved, in the timing process."""
        result = self._ask("retime", (problem, list(configs), rounds), self.timeout_s * max(1, len(configs)) * rounds)
        return result if isinstance(result, dict) else {config: [] for config in configs}

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
        self._end_pool()  # compiles still running are not needed, and a hung one would hold the exit

    def __enter__(self) -> GpuBenchmarker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
