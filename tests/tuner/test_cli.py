"""`python -m tuner.run` end to end in replay: the exported file, the studies, a rerun, and usage errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import torch

from tests.tuner.synthetic import write_landscape
from tuner.space import TIMED, Config, search_space

SHAPE = (256, 512)
BATCH_SIZES = ("1", "16")
TRIALS = 8
CONFIG_NAME = "N=256,K=512,device_name=Synthetic_GPU,dtype=fp8_w8a8,block_shape=[128, 128].json"
ENV = {**os.environ, "TRITON_INTERPRET": "1"}

# The command every case starts from; {tmp} is the case's own folder (also its cwd). --no-prior keeps
# the run independent of whatever landscapes the repository ships.
BASE = {
    "--N": "256",
    "--K": "512",
    "--batch-sizes": list(BATCH_SIZES),
    "--trials": str(TRIALS),
    "--replay": "{landscape}",
    "--storage": "sqlite:///{tmp}/s.db",
    "--save-path": "{tmp}/cfg",
    "--no-prior": [],
}


def command(tmp: Path, landscape: Path, change: dict[str, str | list[str] | None] | None = None) -> list[str]:
    """BASE with some flags changed (None drops a flag), formatted for one folder."""
    argv = [sys.executable, "-m", "tuner.run"]
    for flag, value in {**BASE, **(change or {})}.items():
        if value is None:
            continue
        values = value if isinstance(value, list) else [value]
        argv += [flag, *(v.format(tmp=tmp, landscape=landscape) for v in values)]
    return argv


def timed_counts(url: str) -> dict[str, tuple[int, int]]:
    """Study name -> (timed trials, all trials)."""
    storage = optuna.storages.RDBStorage(url)
    counts = {}
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        trials = optuna.load_study(study_name=summary.study_name, storage=storage).trials
        counts[summary.study_name] = (sum(1 for t in trials if t.user_attrs.get(TIMED) is True), len(trials))
    storage.engine.dispose()
    return counts


@pytest.fixture(scope="module")
def landscape(tmp_path_factory) -> Path:
    return write_landscape(tmp_path_factory.mktemp("landscape") / "land.csv", [SHAPE], [int(m) for m in BATCH_SIZES])


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, landscape):
    """One replay run of BASE: its folder, command and result."""
    tmp = tmp_path_factory.mktemp("tuned")
    argv = command(tmp, landscape)
    return tmp, argv, subprocess.run(argv, cwd=tmp, env=ENV, capture_output=True, text=True, timeout=120)


def test_run_exports_one_entry_per_batch_size(tuned):
    tmp, _, result = tuned
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp / "cfg").iterdir()) == [CONFIG_NAME]  # exact name, no temp files
    entries = json.loads((tmp / "cfg" / CONFIG_NAME).read_text())
    assert list(entries) == list(BATCH_SIZES)
    space = set(search_space(128))
    assert all(Config.from_sglang(entry) in space for entry in entries.values())


def test_every_study_timed_exactly_the_budget(tuned):
    tmp, _, result = tuned
    assert result.returncode == 0, result.stderr
    counts = timed_counts(f"sqlite:///{tmp}/s.db")
    assert len(counts) == len(BATCH_SIZES)
    assert all(name.rsplit("_", 1)[0].endswith("_replay") for name in counts)  # then the software's hash
    assert [timed for timed, _ in counts.values()] == [TRIALS] * len(BATCH_SIZES)


def test_rerun_times_nothing_new(tuned):
    tmp, argv, result = tuned
    assert result.returncode == 0, result.stderr
    before = timed_counts(f"sqlite:///{tmp}/s.db")
    exported = (tmp / "cfg" / CONFIG_NAME).read_bytes()
    again = subprocess.run(argv, cwd=tmp, env=ENV, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert timed_counts(f"sqlite:///{tmp}/s.db") == before  # not even an untimed trial was added
    assert (tmp / "cfg" / CONFIG_NAME).read_bytes() == exported


def _wrong_header(tmp: Path) -> None:
    (tmp / "bad.csv").write_text("device,N,K,M,us\nGPU,256,512,1,3.0\n")


def _other_shape(tmp: Path) -> None:
    write_landscape(tmp / "other.csv", [(512, 512)], [1, 16])


def _regular_file(tmp: Path) -> None:
    (tmp / "file").write_text("not a folder\n")


def _corrupt_config(tmp: Path) -> None:
    (tmp / "cfg").mkdir()
    (tmp / "cfg" / CONFIG_NAME).write_text('{"1": {"BLOCK_SIZE_M": 64,')


@dataclass(frozen=True)
class BadInput:
    id: str
    change: dict[str, str | list[str] | None]
    setup: Callable[[Path], None] | None = None


BAD_INPUTS = [
    # --N without --K: a shape needs both
    BadInput("N-without-K", {"--K": None}),
    # an empty dimension
    BadInput("N-zero", {"--N": "0"}),
    # argparse choices: only fp8 and int8 inputs
    BadInput("input-type-fp16", {"--input-type": "fp16"}),
    # argparse choices: int8 is an input type, not an output dtype
    BadInput("out-dtype-int8", {"--out-dtype": "int8"}),
    # quantization blocks must be powers of two
    BadInput("block-n-96", {"--block-n": "96"}),
    # a power of two that neither BLOCK_SIZE_K (64, 128) divides
    BadInput("block-k-32", {"--block-k": "32"}),
    # a budget of nothing
    BadInput("trials-zero", {"--trials": "0"}),
    # the landscape file does not exist
    BadInput("replay-missing", {"--replay": "{tmp}/missing.csv"}),
    # a CSV that is not a landscape
    BadInput("replay-wrong-header", {"--replay": "{tmp}/bad.csv"}, _wrong_header),
    # a landscape of another shape than --N/--K
    BadInput("replay-lacks-shape", {"--replay": "{tmp}/other.csv"}, _other_shape),
    # an Optuna storage URL with no driver
    BadInput("storage-unknown-scheme", {"--storage": "notadb://x"}),
    # --save-path under a regular file cannot be created
    BadInput("save-path-not-writable", {"--save-path": "{tmp}/file/cfg"}, _regular_file),
    # an existing config file that is not valid JSON must stop the run, not be overwritten
    BadInput("corrupt-config-file", {}, _corrupt_config),
]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# `python -m tuner.run` for many cases at the cost of one start-up: a fresh interpreter imports torch
# once (any output of that import fails the tests), then forks per case and runs the module exactly as
# -m does (runpy runs it as __main__), with the case's cwd, argv, stdout and stderr. Thirteen separate
# interpreters would spend ~40 s of CPU importing torch on this 2-core machine.
_LAUNCHER = r"""
import json, os, runpy, sys, traceback
import kernels, optuna  # the slow imports, paid once (tuner.run itself must stay unimported for runpy)
for case in json.load(sys.stdin):
    pid = os.fork()
    if pid == 0:
        os.chdir(case["cwd"])
        for fd, name in ((1, "stdout"), (2, "stderr")):
            os.dup2(os.open(case[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        sys.argv = [sys.executable, *case["args"]]
        try:
            runpy.run_module("tuner.run", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else 0 if exit.code is None else 1
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory, landscape):
    """Every bad-input case, each in its own folder: id -> (exit status, stderr, files before, files after)."""
    logs = tmp_path_factory.mktemp("logs")
    cases, folders = [], {}
    for case in BAD_INPUTS:
        tmp = tmp_path_factory.mktemp(case.id)
        if case.setup is not None:
            case.setup(tmp)
        folders[case.id] = (tmp, _files(tmp))
        args = command(tmp, landscape, case.change)[3:]  # after `python -m tuner.run`
        cases.append({"cwd": str(tmp), "args": args, "stdout": str(logs / f"{case.id}.out"),
                      "stderr": str(logs / f"{case.id}.err")})  # fmt: skip
    launcher = subprocess.run([sys.executable, "-c", _LAUNCHER], input=json.dumps(cases), cwd=logs, env=ENV,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
    assert launcher.stderr == "", launcher.stderr  # importing the CLI's dependencies prints nothing
    codes = [int(line) for line in launcher.stdout.split()]
    assert len(codes) == len(BAD_INPUTS), launcher.stdout
    outcomes = {}
    for case, code in zip(BAD_INPUTS, codes):
        tmp, before = folders[case.id]
        outcomes[case.id] = (code, (logs / f"{case.id}.err").read_text(), before, _files(tmp))
    return outcomes


@pytest.mark.parametrize("case_id", [case.id for case in BAD_INPUTS])
def test_bad_input_exits_2_and_writes_nothing(bad_runs, case_id):
    returncode, stderr, before, after = bad_runs[case_id]
    assert returncode == 2, stderr
    assert stderr.splitlines()[-1:] and stderr.splitlines()[-1].startswith("error: "), stderr
    assert after == before  # no storage file, no config file, and an existing file's bytes unchanged


@pytest.mark.parametrize(
    "case_id",
    [case.id for case in BAD_INPUTS],
)
def test_bad_input_prints_one_error_line(bad_runs, case_id):
    _, stderr, _, _ = bad_runs[case_id]
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message a machine without a GPU prints")
def test_without_a_gpu_one_line_names_a_replay_command_that_runs(tmp_path):
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-m", "tuner.run", "--N", "7168", "--K", "18432"], cwd=repo,
                          capture_output=True, text=True, env=ENV)  # fmt: skip
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    command = line.split(": ", 1)[1].split()
    assert command[:3] == ["python", "-m", "tuner.run"] and "--replay" in command
    # The named command runs as printed (storage and output redirected into tmp_path).
    replay = subprocess.run([sys.executable, *command[1:], "--trials", "4", "--storage", f"sqlite:///{tmp_path}/s.db",
                             "--save-path", str(tmp_path / "cfg")], cwd=repo, capture_output=True, text=True,
                            env=ENV)  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    assert len(list((tmp_path / "cfg").glob("*.json"))) == 1
