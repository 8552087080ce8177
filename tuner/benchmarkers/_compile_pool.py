"""Compile processes fed from one queue, each job timed from when a process takes it.

Compiling a config takes ~1.75 s on the H100 host and timing it ~10 ms, so configs compile ahead in
several spawn-started processes that fill Triton's disk cache. A thread of the parent hands each
process one job at a time over its own pipe, so the parent knows which job runs where and since
when: a compile that hangs costs its own process (killed timeout_s after it started, and replaced)
and its own config, never the jobs queued behind it; a process that dies costs the job it ran.
Either is told once (compile_timeout, compile_crash) and then forgotten, so that the config is
compiled anew when it is asked for again: a busy host's OOM killer or a slow compile is no fact
about the config. A job that a measurement waits for goes before those compiled ahead, and queued
jobs that nothing asks for any more (an earlier problem's lookahead) can be dropped before they start.

The processes die with the parent (tuner.stopping.die_with_parent), leave Ctrl-C to it, and
compile for the benchmarker's device: each sees that device alone (CUDA_VISIBLE_DEVICES).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from tuner.benchmarkers._base import COMPILE_FAILURES, Measurement
from tuner.space import Config, Problem
from tuner.stopping import TuningError, die_with_parent, ignore_ctrl_c

_SPAWN = mp.get_context("spawn")
CompileFn = Callable[[Problem, Config], Measurement | None]
# A compile's outcome: the failure (None: it compiled) and its seconds (None: it never finished).
Outcome = tuple[Measurement | None, float | None]


def _compile_process(conn: Connection, compile_fn: CompileFn, visible_device: str, parent_pid: int) -> None:
    """Compile each job the parent sends until it sends None or goes away; answer each with its Outcome."""
    die_with_parent(parent_pid)
    ignore_ctrl_c()
    os.environ["CUDA_VISIBLE_DEVICES"] = visible_device  # before anything asks CUDA which devices there are
    conn.send("ready")
    try:
        while (job := conn.recv()) is not None:
            problem, config = job
            started = time.perf_counter()
            try:
                failure = compile_fn(problem, config)
            except Exception as error:  # noqa: BLE001 - a compiler failure Triton does not classify
                failure = Measurement("compile_error", reason=f"{type(error).__name__}: {str(error)[:300]}")
            conn.send((failure, time.perf_counter() - started))
    except EOFError:  # the parent is gone
        pass


def visible_device(device_index: int) -> str:
    """The CUDA_VISIBLE_DEVICES entry of device_index as this process numbers devices."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return str(device_index)
    entries = [entry.strip() for entry in visible.split(",")]
    if not 0 <= device_index < len(entries):
        raise ValueError(f"device {device_index} is not among CUDA_VISIBLE_DEVICES={visible!r}.")
    return entries[device_index]


@dataclass(eq=False)
class _Job:
    problem: Problem
    config: Config
    done: threading.Event = field(default_factory=threading.Event)


@dataclass(eq=False)
class _Process:
    process: Any  # a spawn context's Process
    conn: Connection
    ready: bool = False
    key: Hashable | None = None  # the job it compiles, if any
    started: float = 0.0  # when it took that job (time.monotonic)


class CompilePool:
    """Up to `processes` compile processes and the queue that feeds them; see the module's docstring."""

    def __init__(self, compile_fn: CompileFn, *, processes: int, timeout_s: float, device_index: int = 0) -> None:
        if processes < 1:
            raise ValueError(f"processes must be at least 1, but got {processes}.")
        self._compile_fn = compile_fn
        self._max_processes = processes
        self.timeout_s = timeout_s
        self._device = visible_device(device_index)
        self._lock = threading.Lock()
        self._queued: OrderedDict[Hashable, _Job] = OrderedDict()  # in the order they start
        self._running: dict[Hashable, _Job] = {}
        self._outcomes: dict[Hashable, Outcome] = {}  # finished: small values, no jobs or processes
        self._processes: list[_Process] = []
        self._broken: str | None = None  # why no compile process can start, once that is known
        self._closing = False
        self._wake_reader, self._wake_writer = _SPAWN.Pipe(duplex=False)
        # Processes are started and ended by this thread alone: Linux kills a child when the thread
        # that started it ends (die_with_parent), and this one lives as long as the pool.
        self._thread = threading.Thread(target=self._serve, name="compile-pool", daemon=True)
        self._thread.start()

    # --- the parent's side ----------------------------------------------------------------------
    def submit(self, jobs: Iterable[tuple[Hashable, Problem, Config]]) -> None:
        """Compile each (key, problem, config) after the jobs queued so far, unless its key is known already."""
        with self._lock:
            for key, problem, config in jobs:
                if key not in self._outcomes and key not in self._running and key not in self._queued:
                    self._queued[key] = _Job(problem, config)
        self._wake()

    def drop_queued(self) -> None:
        """Forget the jobs no process has started: nothing asks for them any more."""
        with self._lock:
            self._queued.clear()

    def result(self, key: Hashable, problem: Problem, config: Config) -> Outcome:
        """The outcome of key's compile, which goes first if it has not started; blocks until it is known.

        A compile that hangs ends timeout_s after it started, as a compile_timeout; one whose process
        dies, as a compile_crash: told once, so that the next ask compiles it again. Raises
        TuningError if no compile process can start at all.
        """
        with self._lock:
            if key in self._outcomes:
                return self._told(key)
            job = self._running.get(key) or self._queued.get(key) or _Job(problem, config)
            if key not in self._running:
                self._queued[key] = job
                self._queued.move_to_end(key, last=False)
        self._wake()
        while not job.done.wait(0.5) and self._broken is None and self._thread.is_alive():
            pass
        with self._lock:
            if key in self._outcomes:
                return self._told(key)
        raise TuningError(self._broken or "the compile pool's thread stopped; its error, if any, is above.")

    def _told(self, key: Hashable) -> Outcome:
        """key's outcome, forgotten if its compile process was lost (see result); the caller holds the lock."""
        failure, _ = outcome = self._outcomes[key]
        if failure is not None and failure.status in COMPILE_FAILURES:
            del self._outcomes[key]
        return outcome

    def close(self) -> None:
        """End every compile process at once: what they compiled is on disk, and a hung one would hold the exit."""
        with self._lock:
            self._closing = True
        self._wake()
        self._thread.join()
        self._wake_reader.close()
        self._wake_writer.close()

    def _wake(self) -> None:
        try:
            self._wake_writer.send_bytes(b"")
        except OSError:  # closed: the pool has ended
            pass

    # --- the thread's side ----------------------------------------------------------------------
    def _serve(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._closing:
                        break
                    self._end_overdue()
                    self._hand_out()
                    busy = [p.started + self.timeout_s for p in self._processes if p.key is not None]
                    conns = {p.conn: p for p in self._processes}
                timeout = max(0.0, min(busy) - time.monotonic()) if busy else None
                for conn in wait([*conns, self._wake_reader], timeout):
                    if conn is self._wake_reader:
                        while self._wake_reader.poll():
                            self._wake_reader.recv_bytes()
                        continue
                    with self._lock:
                        self._receive(conns[conn])
        finally:
            with self._lock:
                for process in list(self._processes):
                    self._end(process)
                for job in [*self._running.values(), *self._queued.values()]:
                    job.done.set()  # nobody waits for them now; a waiter sees the thread gone

    def _hand_out(self) -> None:
        """Give queued jobs to idle processes, starting processes while there are more jobs than idle ones."""
        if self._broken is not None:
            return
        idle = [p for p in self._processes if p.ready and p.key is None]
        starting = sum(1 for p in self._processes if not p.ready)
        while len(self._queued) > len(idle) + starting and len(self._processes) < self._max_processes:
            self._start_process()
            starting += 1
        for process in idle:
            if not self._queued:
                break
            key, job = self._queued.popitem(last=False)
            try:
                process.conn.send((job.problem, job.config))
            except OSError:  # died since; its end of file says so next
                self._queued[key] = job
                self._queued.move_to_end(key, last=False)
                continue
            process.key, process.started = key, time.monotonic()
            self._running[key] = job

    def _start_process(self) -> None:
        parent, child = _SPAWN.Pipe()
        process = _SPAWN.Process(
            target=_compile_process, args=(child, self._compile_fn, self._device, os.getpid()), daemon=True
        )
        process.start()
        child.close()
        self._processes.append(_Process(process, parent))

    def _receive(self, process: _Process) -> None:
        try:
            message = process.conn.recv()
        except (EOFError, OSError):
            self._end(process)
            code = process.process.exitcode
            if not process.ready:
                self._broken = f"a compile process exited (status {code}) before it was ready; its error is above."
            elif process.key is not None:
                self._finish(
                    process, (Measurement("compile_crash", reason=f"the compile process died (status {code})"), None)
                )
            return
        if message == "ready":
            process.ready = True
        else:
            self._finish(process, message)

    def _end_overdue(self) -> None:
        now = time.monotonic()
        for process in list(self._processes):
            if process.key is not None and now - process.started >= self.timeout_s:
                self._end(process)
                timeout = Measurement("compile_timeout", reason=f"compilation took over {self.timeout_s:.0f} s")
                self._finish(process, (timeout, None))

    def _finish(self, process: _Process, outcome: Outcome) -> None:
        key, process.key = process.key, None
        self._outcomes[key] = outcome
        self._running.pop(key).done.set()

    def _end(self, process: _Process) -> None:
        """Kill process (it may hang in the compiler) and forget it; its job, if any, is the caller's to settle."""
        process.process.kill()
        process.process.join(timeout=10)
        process.conn.close()
        self._processes.remove(process)
