"""What a timing returns, and the protocol that GPU timing and landscape replay both implement.

The study code sees only this protocol, so the whole tuner runs without a GPU against a recorded
landscape, and the GPU path is one thin implementation of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from tuner.space import Config, Problem

Status = Literal[
    "ok",
    "pruned",
    "out_of_resources",
    "compile_error",
    "wrong_result",
    "crash",
    "timeout",
    "compile_crash",
    "compile_timeout",
]
# The config's own failures: what a landscape records beside ok.
FAILURES: tuple[Status, ...] = ("out_of_resources", "compile_error", "wrong_result", "crash", "timeout")
# The compiler's process died (the OOM killer of a busy host, say) or hung: a failure of the host,
# not yet the config's, so the config is compiled again, up to COMPILE_TRIES times in all; after
# that the failure is the config's own (compile_failed).
COMPILE_FAILURES: tuple[Status, ...] = ("compile_crash", "compile_timeout")
COMPILE_TRIES = 2
# Statuses that mean "this config was measured"; a trial that failed with any other status (stopped
# by Ctrl-C, a repeat, over the budget, a compile process lost) or with none (its process died)
# measured nothing.
MEASURED: tuple[Status, ...] = ("ok", "pruned", *FAILURES)


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


def compile_failed(last: Measurement) -> Measurement:
    """The config's own compile_error, once its compile process died or hung on each of COMPILE_TRIES tries."""
    return Measurement(
        "compile_error", reason=f"{last.reason} (on each of {COMPILE_TRIES} tries)", compile_s=last.compile_s
    )


class Benchmarker(Protocol):
    """Times configs of one device; GPU timing and landscape replay implement it."""

    device_name: str
    kind: Literal["gpu", "replay"]
    # The device's limits as it reports them (in replay, as known for the landscape's device), or
    # None where unknown: shared memory per block in bytes (opt-in maximum) and streaming multiprocessors.
    shared_memory_limit: int | None
    sm_count: int | None
    # What besides the problem and the device decides the timings (software versions, a landscape).
    software: dict[str, str]

    def batch_sizes(self, problem: Problem) -> frozenset[int] | None:
        """The batch sizes this benchmarker can time problem's GEMM at, or None for any (a GPU runs any M).

        What a coverage check probes between the tuned batch sizes: in replay, the M the landscape recorded.
        """

    def measurable(self, problem: Problem) -> frozenset[Config] | None:
        """The configs this benchmarker can time for problem, or None for every config (a GPU tries any).

        A study searches only these: a landscape recorded over part of the space has no number for
        the rest, so searching them would only spend trials on its gaps.
        """

    def prepare(self, problem: Problem, configs: Iterable[Config], *, replace: bool = False) -> None:
        """Start any slow preparation (compilation) for configs likely to be measured soon, in this order.

        With replace, what earlier calls asked for and has not started yet is dropped first: a new
        problem's configs replace the last one's lookahead. Without, they queue behind it (a sweep).
        """

    def measure(self, problem: Problem, config: Config, *, prune_above_us: float | None = None) -> Measurement:
        """Time config on problem; a failure is a status with a reason, never an exception."""

    def retime(self, problem: Problem, configs: Sequence[Config], *, rounds: int) -> dict[Config, list[float]]:
        """Time configs again together, in rounds interleaved so that drift hits each alike.

        Each config gets one latency per round (none if it fails now): what a pick is confirmed on.
        """

    def probe(
        self, problem: Problem, configs: Sequence[Config], *, rounds: int, quick: bool = False
    ) -> dict[Config, list[float] | Measurement]:
        """Time configs at a batch size where they may never have run, in interleaved rounds as retime does.

        Each config is compiled for this M (ahead, where prepare asked for it) and checked once
        against the reference before it is timed; one that fails here gets its failed Measurement
        instead of latencies. quick asks for a shorter timing per round: a screen, whose verdicts a
        full round confirms before anything depends on them.
        """
