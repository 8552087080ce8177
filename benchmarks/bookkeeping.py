"""What the tuner's own bookkeeping costs per timed config: a whole model in replay, no GPU.

    PYTHONPATH=. python benchmarks/bookkeeping.py                       # SQLite files in a temporary folder
    PYTHONPATH=. python benchmarks/bookkeeping.py --postgres URL         # databases on a PostgreSQL server
    PYTHONPATH=. python benchmarks/bookkeeping.py --trials 8 --shapes 4  # a reduced run

Tunes DeepSeek-V3's 13 TP8 shapes at SGLang's 18 batch sizes (32 configs per study by default) with
`tuner.study.tune_units`, as `python -m tuner.run --tp-size 8 --replay ...` does, against a synthetic
landscape of every shape (tests/tuner/synthetic.py's smooth latency model, written once to a
temporary file). Replay times nothing, so all of a config's wall time outside the benchmarker is the
study loop's own: Optuna's storage, the sampler, warm starts, config files. That cost is printed in
milliseconds per timed config for the first shape, the last shape and the whole run, twice: into an
empty storage, and into a storage that already holds an earlier run of another model (Qwen3-32B FP8
at TP 1, four shapes), which must cost the same (O(1) in the size of the storage). Each run's own
clock line follows (where the run says its time went).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import sqlalchemy

from tests.tuner.synthetic import fresh_database, write_landscape
from tuner.benchmarkers import CATEGORIES, DEVICE_CATEGORIES, LABELS, ReplayBenchmarker, RunClock
from tuner.shapes import deepseek_v3_shapes, load_model_config, model_plan
from tuner.space import DEFAULT_BATCH_SIZES, Config, Problem
from tuner.study import WorkerSpec, tune_units

EARLIER_MODEL = Path(__file__).parent.parent / "tests" / "tuner" / "models" / "qwen3_32b_fp8.json"


@dataclass
class _Shape:
    """One shape's stretch of a run: from its first measurement to the next shape's first."""

    started: float
    bench_s: float
    configs: int = 0
    wall_s: float = 0.0
    own_s: float = 0.0  # wall_s less the benchmarker's time: the study loop's


@dataclass
class _Watch:
    """A replay benchmarker that notes the time spent inside it and where each shape starts."""

    bench: ReplayBenchmarker
    clock: RunClock | None = None  # the run's, as tune_units hands it to the benchmarker's maker
    bench_s: float = 0.0
    shapes: dict[tuple[int, int], _Shape] = field(default_factory=dict)
    _current: tuple[int, int] | None = None

    def __getattr__(self, name: str):  # device_name, kind, software, shared_memory_limit
        return getattr(self.bench, name)

    def _inside(self, method, *args, **kwargs):
        started = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            self.bench_s += time.perf_counter() - started

    def measurable(self, problem: Problem):
        return self._inside(self.bench.measurable, problem)

    def prepare(self, problem: Problem, configs: Iterable[Config], *, replace: bool = False) -> None:
        self._inside(self.bench.prepare, problem, configs, replace=replace)

    def measure(self, problem: Problem, config: Config, *, prune_above_us: float | None = None):
        shape = (problem.N, problem.K)
        if shape != self._current and shape not in self.shapes:
            self.close()
            self.shapes[shape] = _Shape(time.perf_counter(), self.bench_s)
            self._current = shape
        self.shapes[self._current].configs += 1
        return self._inside(self.bench.measure, problem, config, prune_above_us=prune_above_us)

    def retime(self, problem: Problem, configs: Sequence[Config], *, rounds: int):
        return self._inside(self.bench.retime, problem, configs, rounds=rounds)

    def made(self, clock: RunClock) -> _Watch:
        self.clock = clock
        return self

    def close(self) -> None:
        """End the current shape's stretch now."""
        if self._current is not None:
            shape = self.shapes[self._current]
            shape.wall_s = time.perf_counter() - shape.started
            shape.own_s = shape.wall_s - (self.bench_s - shape.bench_s)


@dataclass(frozen=True)
class Outcome:
    configs: int
    own_ms: float  # per timed config, the whole run
    first_ms: float
    last_ms: float
    cpu_ms: float  # this process's CPU time per timed config, less sensitive to other load on the machine
    categories: dict[str, float]  # the run's clock: ms per timed config in each category


def _run(url: str, landscape: ReplayBenchmarker, shapes, trials: int, save: Path) -> Outcome:
    """One whole-model run in one process, as tuner.run does with one GPU (the announcement included)."""
    from tuner.cli.run import _announce, _storage

    spec = WorkerSpec(storage_url=url, save_path=str(save), trials=trials, seed=0, use_prior=True, replay="synthetic")
    problems = [[Problem(N=N, K=K, M=M) for M in batch_sizes] for (N, K), batch_sizes in shapes]
    watch = _Watch(landscape)
    started, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        storage, where = _storage(url, dry_run=False)
        _announce(spec, storage, where, landscape.device_name, "replay", landscape.software, problems, files=True)
        tune_units(spec, 0, problems, benchmarker=watch.made)
    wall_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    watch.close()
    stretches = [watch.shapes[shape] for shape, _ in shapes if shape in watch.shapes]
    configs = sum(s.configs for s in stretches)
    seconds = watch.clock.seconds()
    categories = {LABELS[c]: 1e3 * seconds[c] / configs for c in CATEGORIES if c not in DEVICE_CATEGORIES}
    categories["other"] = 1e3 * (wall_s - watch.bench_s) / configs - sum(categories.values())
    return Outcome(
        configs=configs,
        own_ms=1e3 * (wall_s - watch.bench_s) / configs,
        first_ms=1e3 * stretches[0].own_s / stretches[0].configs,
        last_ms=1e3 * stretches[-1].own_s / stretches[-1].configs,
        cpu_ms=1e3 * cpu_s / configs,
        categories=categories,
    )


def _fresh_url(folder: Path, name: str, postgres: str | None) -> str:
    return f"sqlite:///{folder}/{name}.sqlite3" if postgres is None else fresh_database(postgres, name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=32, help="configs timed per study (default: %(default)s)")
    parser.add_argument("--shapes", type=int, default=13, help="the first this many of the 13 shapes (default: all)")
    parser.add_argument("--batch-sizes", type=int, default=len(DEFAULT_BATCH_SIZES), help="the first this many M")
    parser.add_argument("--postgres", default=None, metavar="URL", help="a PostgreSQL server instead of SQLite")
    parser.add_argument("--no-earlier", action="store_true", help="only the run into an empty storage")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    batch_sizes = DEFAULT_BATCH_SIZES[: args.batch_sizes]
    model = [(shape, batch_sizes) for shape in deepseek_v3_shapes(8)[: args.shapes]]
    earlier = [(shape, batch_sizes) for shape in model_plan(load_model_config(EARLIER_MODEL), 1).shapes()]
    with tempfile.TemporaryDirectory(prefix="bookkeeping-") as tmp:
        folder = Path(tmp)
        every_shape = [shape for shape, _ in model + earlier]
        print(f"writing a synthetic landscape of {len(every_shape)} shapes x {len(batch_sizes)} M ...", file=sys.stderr)
        path = write_landscape(folder / "landscape.csv", every_shape, batch_sizes)
        landscape = ReplayBenchmarker.from_file(path)
        backend = "PostgreSQL" if args.postgres else "SQLite"
        print(f"DeepSeek-V3 TP8 in replay: {len(model)} shapes x {len(batch_sizes)} M x {args.trials} configs, "
              f"{backend}; optuna {optuna.__version__}, sqlalchemy {sqlalchemy.__version__}, "
              f"Python {platform.python_version()}")  # fmt: skip
        print(f"{'storage':<30} {'configs':>7} {'ms/config':>9} {'CPU ms':>6} {'first shape':>11} {'last shape':>10} "
              f"{'last/first':>10}")  # fmt: skip
        scenarios = [("empty", None)] + ([] if args.no_earlier else [("after Qwen3-32B, 4 shapes", earlier)])
        for i, (label, before) in enumerate(scenarios):
            url = _fresh_url(folder, f"bookkeeping_{i}", args.postgres)
            if before is not None:
                print("  (tuning Qwen3-32B first ...)", file=sys.stderr)
                _run(url, landscape, before, args.trials, folder / f"cfg{i}")
            out = _run(url, landscape, model, args.trials, folder / f"cfg{i}")
            print(f"{label:<30} {out.configs:>7} {out.own_ms:>9.1f} {out.cpu_ms:>6.1f} {out.first_ms:>11.1f} "
                  f"{out.last_ms:>10.1f} {out.last_ms / out.first_ms:>10.2f}")  # fmt: skip
            parts = ", ".join(f"{name} {ms:.2f}" for name, ms in out.categories.items())
            print(f"  ms per config by the run's clock: {parts}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
