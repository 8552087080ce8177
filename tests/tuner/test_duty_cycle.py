"""The line that ends a run: the GPU duty cycle and where the rest of the wall time went.

On the GPU path with the fake session (injected through tune_units' benchmarker, never patched)
and in replay; the line's own formatting is tested in test_clock.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from tests.tuner.fake_compiler import fake_compile
from tests.tuner.fake_gpu import FakeSession, fake_gpu_s, fake_latency
from tests.tuner.synthetic import write_landscape
from tuner.benchmarkers import (
    COMPILE_WAIT,
    CONFIG_FILES,
    DEVICE_CATEGORIES,
    GPU,
    HAND_OFFS,
    SAMPLING,
    STORAGE,
    TIMING_OVERHEAD,
    GpuBenchmarker,
    ReplayBenchmarker,
    RunClock,
)
from tuner.space import STATUS, Problem, config_of
from tuner.study import CONFIRM_ROUND, WorkerSpec, confirmation_of, tune_units

SHAPE = (512, 1024)
BATCH_SIZES = (1, 64)
TRIALS = 8
_WALL = re.compile(r"(?:of|in) (\d+\.\d) s wall")


def _spec(tmp_path: Path, replay: Path | None = None) -> WorkerSpec:
    return WorkerSpec(storage_url=f"sqlite:///{tmp_path}/s.db", save_path=str(tmp_path / "cfg"), trials=TRIALS,
                      seed=0, use_prior=False, replay=None if replay is None else str(replay))  # fmt: skip


def _run(spec: WorkerSpec, make_bench, capsys) -> tuple[RunClock, list[str]]:
    """tune_units over one shape with the benchmarker make_bench makes; its clock and its lines on stdout."""
    clocks = []

    def benchmarker(clock: RunClock):
        clocks.append(clock)
        return make_bench(clock)

    units = [[Problem(N=SHAPE[0], K=SHAPE[1], M=M) for M in BATCH_SIZES]]
    tune_units(spec, 0, units, benchmarker=benchmarker)
    (clock,) = clocks
    return clock, capsys.readouterr().out.splitlines()


def _printed_wall(line: str) -> float:
    (wall,) = _WALL.findall(line)
    return float(wall)


def _gpu_s_in_storage(storage_url: str) -> float:
    """The GPU time the fake session reported, from what the storage says it timed: every measurement
    that reached the timing (ok or pruned) and every confirmation-round timing."""
    total = 0.0
    for summary in optuna.get_all_study_summaries(storage_url):
        study = optuna.load_study(study_name=summary.study_name, storage=storage_url)
        problem = Problem(N=SHAPE[0], K=SHAPE[1], M=study.user_attrs["M"])
        timed = [config_of(t) for t in study.trials if t.user_attrs.get(STATUS) in ("ok", "pruned")]
        total += sum(fake_gpu_s(fake_latency(problem, config)) for config in timed)
        by_label = {config.short(): config for config in timed}  # the round's contenders were all timed
        for label, times in confirmation_of(study.user_attrs)[CONFIRM_ROUND].items():
            total += len(times) * fake_gpu_s(fake_latency(problem, by_label[label]))
    return total


def test_on_the_gpu_path_the_gpu_time_is_what_the_session_reported(tmp_path, capsys):
    spec = _spec(tmp_path)

    def fake_gpu(clock: RunClock) -> GpuBenchmarker:
        return GpuBenchmarker(compile_workers=2, timeout_s=5, session_factory=FakeSession, compile_fn=fake_compile,
                              clock=clock)  # fmt: skip

    clock, lines = _run(spec, fake_gpu, capsys)
    duty = [line for line in lines if "duty cycle" in line]
    assert len(duty) == 1 and duty[0].startswith("GPU 0 duty cycle "), lines  # once per run
    per_config = lines[lines.index(duty[0]) + 1]
    assert per_config.startswith(f"per measured config ({len(BATCH_SIZES) * TRIALS}): GPU ")

    seconds = clock.seconds()
    assert seconds[GPU] == pytest.approx(_gpu_s_in_storage(spec.storage_url), rel=1e-9)
    assert seconds[GPU] > 0.1  # 16 measurements and their rounds of 200 launches of 10-30 us
    assert all(seconds[c] > 0 for c in (COMPILE_WAIT, TIMING_OVERHEAD, HAND_OFFS, STORAGE, SAMPLING, CONFIG_FILES)), (
        seconds
    )
    assert sum(seconds.values()) <= _printed_wall(duty[0]) + 0.05  # printed to a tenth of a second


def test_in_replay_the_line_says_where_the_time_went_without_gpu_figures(tmp_path, capsys):
    landscape = write_landscape(tmp_path / "l.csv", [SHAPE], BATCH_SIZES)
    delay_s = 0.01  # simulated timing: the benchmarker's time, which no category claims
    clock, lines = _run(
        _spec(tmp_path, landscape), lambda clock: ReplayBenchmarker.from_file(landscape, delay_s=delay_s), capsys
    )
    measured = len(BATCH_SIZES) * TRIALS
    (line,) = [line for line in lines if line.startswith("replay worker 0: ")]
    assert line.startswith(f"replay worker 0: {measured} configs read from the landscape in ")
    assert "duty cycle" not in "\n".join(lines) and "GPU" not in "\n".join(lines)  # replay times no GPU
    seconds = clock.seconds()
    assert seconds[STORAGE] > 0 and seconds[SAMPLING] > 0
    assert all(seconds[c] == 0 for c in DEVICE_CATEGORIES), seconds
    assert sum(seconds.values()) + measured * delay_s <= _printed_wall(line) + 0.05


@pytest.mark.parametrize(("gpus", "lines"), [(None, 1), ("0,1", 2)])  # one worker; two, one line each
def test_the_command_prints_the_line_once_per_worker(tmp_path, gpus, lines):
    landscape = write_landscape(tmp_path / "l.csv", [SHAPE], BATCH_SIZES)
    command = [sys.executable, "-m", "tuner.run", "--N", str(SHAPE[0]), "--K", str(SHAPE[1]), "--batch-sizes",
               *map(str, BATCH_SIZES), "--replay", str(landscape), "--trials", str(TRIALS),
               "--storage", f"sqlite:///{tmp_path}/s.db", "--save-path", str(tmp_path / "cfg"), "--no-prior",
               *(["--gpus", gpus] if gpus else [])]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    closing = sorted(line for line in done.stdout.splitlines() if "configs read from the landscape" in line)
    assert [line.split(":")[0] for line in closing] == [f"replay worker {i}" for i in range(lines)], done.stdout
    assert "configs read" not in done.stderr  # stdout only, apart from the progress bar


def test_the_next_shapes_first_seeds_compile_while_this_shapes_last_study_is_searched(tmp_path):
    # A shape's first study otherwise waits for its seeds' compiles: the pool gets them one study early.
    shapes = [(256, 512), (512, 256)]
    landscape = write_landscape(tmp_path / "l.csv", shapes, [1, 16])
    events: list[tuple[str, tuple[int, int, int]]] = []

    class Recording(ReplayBenchmarker):
        def prepare(self, problem, configs, *, replace=False):
            events.append(("prepare", (problem.N, problem.K, problem.M)))

        def measure(self, problem, config, *, prune_above_us=None):
            events.append(("measure", (problem.N, problem.K, problem.M)))
            return super().measure(problem, config, prune_above_us=prune_above_us)

    units = [[Problem(N=N, K=K, M=M) for M in (1, 16)] for N, K in shapes]
    tune_units(_spec(tmp_path, landscape), 0, units, benchmarker=lambda clock: Recording.from_file(landscape))
    last_of_first = max(i for i, (kind, key) in enumerate(events) if kind == "measure" and key == (256, 512, 16))
    assert ("prepare", (512, 256, 1)) in events[:last_of_first]
