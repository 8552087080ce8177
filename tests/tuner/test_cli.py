"""`python -m tuner.run` end to end in replay: exported files, studies, reruns, what it says, usage errors, no GPU."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import optuna
import pytest
import torch

from tests.tuner.stoppable import ctrl_c_as_in_a_terminal
from tests.tuner.synthetic import synthetic_rows, write_landscape
from tuner.benchmarkers import HEADER
from tuner.cli.run import identity_notes, resume_line
from tuner.cli.run import main as run_main
from tuner.dispatch import deepgemm_note
from tuner.space import DEFAULT_BATCH_SIZES, TIMED, Config, search_space
from tuner.study import StudyState

SHAPE = (256, 512)
BATCH_SIZES = ("1", "16")
TRIALS = 8
CONFIG_NAME = "N=256,K=512,device_name=Synthetic_GPU,dtype=fp8_w8a8,block_shape=[128, 128].json"
ENV = {**os.environ, "TRITON_INTERPRET": "1"}
H100 = "NVIDIA_H100_80GB_HBM3"

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
    # exact name, its provenance record, no temp files
    assert sorted(p.name for p in (tmp / "cfg").iterdir()) == [CONFIG_NAME, CONFIG_NAME + ".provenance"]
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


def test_run_starts_with_its_storage_and_what_is_done(tuned):
    tmp, _, result = tuned
    assert result.stdout.splitlines()[:3] == [
        f"storage: sqlite:///{tmp}/s.db",
        f"created new storage {tmp}/s.db",  # a mistyped path would show here
        f"2 studies, none begun earlier in {tmp}/s.db",
    ]


def test_rerun_times_nothing_new(tuned):
    tmp, argv, result = tuned
    assert result.returncode == 0, result.stderr
    before = timed_counts(f"sqlite:///{tmp}/s.db")
    exported = (tmp / "cfg" / CONFIG_NAME).read_bytes()
    again = subprocess.run(argv, cwd=tmp, env=ENV, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[:2] == [
        f"storage: sqlite:///{tmp}/s.db",
        "2 of 2 studies finished earlier; nothing to time",  # not a silent jump of the bar to 100%
    ]
    assert timed_counts(f"sqlite:///{tmp}/s.db") == before  # not even an untimed trial was added
    assert (tmp / "cfg" / CONFIG_NAME).read_bytes() == exported
    assert "timed configs" not in again.stderr  # no progress bar at 100% after "nothing to time"


def _state(timed: int, sampler: str = "local", budget: int = 8, schedules: int = 320) -> StudyState | None:
    return StudyState(timed=timed, sampler=sampler, budget=budget, schedules=schedules) if timed else None


@pytest.mark.parametrize(
    ("states", "line"),
    [
        ([_state(8), _state(8), _state(8)], "3 of 3 studies finished earlier; nothing to time"),
        ([_state(8), _state(3), None], "1 of 3 studies finished earlier, 1 resumes where it stopped"),
        ([_state(8), None, None], "1 of 3 studies finished earlier"),
        ([_state(2), _state(3), None], "0 of 3 studies finished earlier, 2 resume where they stopped"),
        ([None, None, None], "3 studies, none begun earlier in /s/t.db"),  # a fresh run, or another storage
        ([_state(12), _state(8), _state(9)], "3 of 3 studies finished earlier; nothing to time"),  # a smaller budget
        # a space that holds 5 distinct configs is finished at 5, whatever --trials says
        ([_state(5, schedules=5), _state(8)], "2 of 2 studies finished earlier; nothing to time"),
    ],
)
def test_resume_line(states, line):
    assert resume_line(states, 8, "/s/t.db") == line


@pytest.mark.parametrize(
    ("states", "trials", "sampler", "notes"),
    [
        ([_state(8), _state(8)], 8, "local", []),  # the same command again
        (
            [_state(8), _state(8), None],
            8,
            "tpe",
            ["note: 2 studies were made with another sampler (2 with local) and resume with it; --sampler tpe "
             "applies to new studies (another --storage tunes all anew)"],
        ),
        ([_state(8), _state(3)], 16, "local", ["note: --trials 16 extends 1 studies tuned to 8 earlier"]),
        ([_state(5, schedules=5)], 16, "local", []),  # nothing left to extend it with
    ],
)  # fmt: skip
def test_identity_notes(states, trials, sampler, notes):
    assert identity_notes(states, trials, sampler) == notes


def test_another_sampler_is_said_to_apply_to_new_studies_only(tuned, landscape, tmp_path):
    # A user comparing samplers in one storage must learn that the old studies resume as they were made.
    tmp, _, result = tuned
    assert result.returncode == 0, result.stderr
    shutil.copy(tmp / "s.db", tmp_path / "s.db")
    argv = command(tmp_path, landscape, {"--sampler": "tpe", "--trials": "12"})
    again = subprocess.run(argv, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[1:4] == [
        "0 of 2 studies finished earlier, 2 resume where they stopped",
        "note: 2 studies were made with another sampler (2 with local) and resume with it; --sampler tpe applies "
        "to new studies (another --storage tunes all anew)",
        "note: --trials 12 extends 2 studies tuned to 8 earlier",
    ]


FIVE = {(32, 3), (32, 4), (64, 3), (64, 4), (128, 3)}  # (BLOCK_SIZE_N, stages) of a small recorded grid


def test_a_budget_beyond_the_space_is_capped_and_said(tmp_path):
    # A landscape of 20 configs at M=1 (5 schedules, each with its 4 GROUP_SIZE_M twins): 30 trials
    # would spin on repeats; the study times the 5, says so once, and a rerun finds it finished.
    def kept(c: Config) -> bool:
        return (c.block_m, c.block_k, c.num_warps) == (64, 128, 4) and (c.block_n, c.num_stages) in FIVE

    rows = [r for r in synthetic_rows([(256, 512)], [1]) if kept(r.config)]
    landscape = tmp_path / "small.csv"
    landscape.write_text("\n".join([",".join(HEADER), *(",".join(r.as_csv()) for r in rows)]) + "\n")
    argv = command(tmp_path, landscape, {"--batch-sizes": ["1"], "--trials": "30"})
    first = subprocess.run(argv, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "note: 1 of 1 studies can time fewer than --trials 30 distinct configs (M=1: 5); each stops there." in (
        first.stderr.splitlines()
    )
    counts = timed_counts(f"sqlite:///{tmp_path}/s.db")
    assert [timed for timed, _ in counts.values()] == [5]
    assert [trials for _, trials in counts.values()] == [5]  # no repeat trials
    again = subprocess.run(argv, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert again.stdout.splitlines()[1] == "1 of 1 studies finished earlier; nothing to time"
    assert timed_counts(f"sqlite:///{tmp_path}/s.db") == counts


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
    message: str | None = None  # the whole error line, where the test pins it


BAD_INPUTS = [
    # --N without --K: a shape needs both
    BadInput("N-without-K", {"--K": None}),
    # an empty dimension: the message names the flag, not Problem's field
    BadInput("N-zero", {"--N": "0"}, message="error: --N must be a positive int, but got 0."),
    BadInput("K-negative", {"--K": "-512"}, message="error: --K must be a positive int, but got -512."),
    # a batch size of nothing, alone or among others
    BadInput(
        "batch-size-zero",
        {"--batch-sizes": None, "--batch-size": "0"},
        message="error: --batch-size must be a positive int, but got 0.",
    ),
    BadInput(
        "batch-sizes-with-zero",
        {"--batch-sizes": ["1", "0"]},
        message="error: --batch-sizes must be a positive int, but got 0.",
    ),
    # without --N/--K: DeepSeek-V3's shapes at a tensor-parallel size of nothing
    BadInput(
        "tp-size-zero",
        {"--N": None, "--K": None, "--tp-size": "0"},
        message="error: --tp-size must be a positive int, but got 0.",
    ),
    # numpy seeds Optuna's samplers with 0 <= seed < 2**32: found before the storage is made, not after
    BadInput(
        "seed-negative", {"--seed": "-1"}, message="error: --seed must be an int from 0 to 2**32 - 1, but got -1."
    ),
    # argparse choices: only fp8 and int8 inputs
    BadInput("input-type-fp16", {"--input-type": "fp16"}),
    # argparse choices: int8 is an input type, not an output dtype
    BadInput("out-dtype-int8", {"--out-dtype": "int8"}),
    # quantization blocks must be powers of two
    BadInput("block-n-96", {"--block-n": "96"}, message="error: --block-n must be a power of two, but got 96."),
    BadInput("block-k-zero", {"--block-k": "0"}, message="error: --block-k must be a power of two, but got 0."),
    # a power of two that neither BLOCK_SIZE_K (64, 128) divides
    BadInput("block-k-32", {"--block-k": "32"}),
    # a budget of nothing
    BadInput("trials-zero", {"--trials": "0"}, message="error: --trials must be a positive int, but got 0."),
    # the landscape file does not exist
    BadInput("replay-missing", {"--replay": "{tmp}/missing.csv"}),
    # a CSV that is not a landscape
    BadInput("replay-wrong-header", {"--replay": "{tmp}/bad.csv"}, _wrong_header),
    # a landscape of another shape than --N/--K
    BadInput("replay-lacks-shape", {"--replay": "{tmp}/other.csv"}, _other_shape),
    # an Optuna storage URL with no driver
    BadInput("storage-unknown-scheme", {"--storage": "notadb://x"}),
    # an in-memory SQLite database ends with the process: nothing could resume its studies, no worker share them
    BadInput(
        "storage-in-memory",
        {"--storage": "sqlite:///:memory:"},
        message="error: --storage sqlite:///:memory: is an in-memory SQLite database, which is gone when the process "
        "ends: nothing could resume its studies or read them; give a file, e.g. sqlite:///studies/tuner.sqlite3.",
    ),
    BadInput("storage-in-memory-no-path", {"--storage": "sqlite://"}),
    # a folder that does not exist is a mistyped path, not a wish for new folders and a fresh storage
    BadInput("storage-folder-missing", {"--storage": "sqlite:///{tmp}/nonexistent/dir/x.sqlite3"}),
    # three slashes meant as absolute: a path from the working folder, whose folders do not exist there
    BadInput("storage-relative-folder-missing", {"--storage": "sqlite:///nonexistent/dir/x.sqlite3"}),
    # --save-path under a regular file cannot be created
    BadInput("save-path-not-writable", {"--save-path": "{tmp}/file/cfg"}, _regular_file),
    # an existing config file that is not valid JSON must stop the run, not be overwritten, and say what to do
    BadInput("corrupt-config-file", {}, _corrupt_config),
    # --N/--K is the shape one rank runs: a --tp-size beside it would be ignored
    BadInput("tp-size-with-N-K", {"--tp-size": "8"}),
    # a malformed --gpus is named as such, in replay as without it
    BadInput(
        "gpus-malformed",
        {"--gpus": "a,b"},
        message="error: --gpus must be comma-separated device indices, but got 'a,b'.",
    ),
    # Hopper entries under vLLM's name would crash vLLM's Triton kernel: with vLLM's file alone there is none to fill
    BadInput(
        "hopper-space-for-vllm",
        {"--space": "hopper", "--format": "vllm"},
        message="error: --space hopper writes SPLIT_K/SWAP_AB entries, which only SGLang's file carries, but --format "
        "vllm writes vLLM's alone (vLLM's Triton kernel takes no SPLIT_K or SWAP_AB); use --format sglang or both, or "
        "--space base.",
    ),
    # vLLM 0.34.0 loads block-scaled files for fp8 alone: an int8 file under its name is never read
    BadInput(
        "int8-for-vllm",
        {"--input-type": "int8", "--format": "vllm"},
        message="error: --format vllm writes files that no engine reads: vLLM 0.34.0 loads block-scaled config files "
        "for fp8 only, not int8; use --format sglang.",
    ),
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


@dataclass(frozen=True)
class Launched:
    code: int
    stdout: str
    stderr: str


def launch(logs: Path, runs: dict[str, tuple[Path, list[str]]], timeout: int = 120) -> dict[str, Launched]:
    """Run `python -m tuner.run` once per id -> (cwd, arguments after the module) through _LAUNCHER."""
    cases = [{"cwd": str(cwd), "args": args, "stdout": str(logs / f"{id}.out"), "stderr": str(logs / f"{id}.err")}
             for id, (cwd, args) in runs.items()]  # fmt: skip
    launcher = subprocess.run([sys.executable, "-c", _LAUNCHER], input=json.dumps(cases), cwd=logs, env=ENV,
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip
    assert launcher.stderr == "", launcher.stderr  # importing the CLI's dependencies prints nothing
    codes = [int(line) for line in launcher.stdout.split()]
    assert len(codes) == len(runs), launcher.stdout
    return {id: Launched(code, (logs / f"{id}.out").read_text(), (logs / f"{id}.err").read_text())
            for id, code in zip(runs, codes)}  # fmt: skip


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory, landscape):
    """Every bad-input case, each in its own folder, as a run and as a dry run:
    (id, dry) -> (exit status, stderr, files before, files after)."""
    runs, folders = {}, {}
    for case in BAD_INPUTS:
        for dry in (False, True):
            tmp = tmp_path_factory.mktemp(case.id)
            if case.setup is not None:
                case.setup(tmp)
            folders[case.id, dry] = (tmp, _files(tmp))
            args = command(tmp, landscape, case.change)[3:]  # after `python -m tuner.run`
            runs[f"{case.id}{'-dry' if dry else ''}"] = (tmp, [*args, "--dry-run"] if dry else args)
    launched = launch(tmp_path_factory.mktemp("logs"), runs)
    outcomes = {}
    for (id, dry), (tmp, before) in folders.items():
        done = launched[f"{id}{'-dry' if dry else ''}"]
        outcomes[id, dry] = (done.code, done.stderr, before, _files(tmp))
    return outcomes


# A dry run checks what the run checks: each bad input fails it with the run's own line.
DRY = pytest.mark.parametrize("dry", [False, True], ids=["run", "dry-run"])


@DRY
@pytest.mark.parametrize("case_id", [case.id for case in BAD_INPUTS])
def test_bad_input_exits_2_and_writes_nothing(bad_runs, case_id, dry):
    returncode, stderr, before, after = bad_runs[case_id, dry]
    assert returncode == 2, stderr
    assert stderr.splitlines()[-1:] and stderr.splitlines()[-1].startswith("error: "), stderr
    assert after == before  # no storage file, no config file, and an existing file's bytes unchanged


@pytest.mark.parametrize(
    "case_id",
    [case.id for case in BAD_INPUTS],
)
@DRY
def test_bad_input_prints_one_error_line(bad_runs, case_id, dry):
    _, stderr, _, _ = bad_runs[case_id, dry]
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr


@pytest.mark.parametrize("case", [case for case in BAD_INPUTS if case.message], ids=lambda case: case.id)
@DRY
def test_bad_value_error_names_the_flag(bad_runs, case, dry):
    _, stderr, _, _ = bad_runs[case.id, dry]
    assert stderr.splitlines() == [case.message]


@pytest.mark.parametrize(
    ("case_id", "why"),
    [
        ("storage-folder-missing", "is the path mistyped?"),
        (
            "storage-relative-folder-missing",
            "sqlite:/// names a path from the working folder, sqlite://// an absolute one",
        ),
    ],
)
def test_a_storage_in_a_missing_folder_says_which_folder(bad_runs, case_id, why):
    for dry in (False, True):
        _, stderr, _, _ = bad_runs[case_id, dry]
        assert stderr.endswith(f"/nonexistent/dir, a folder that does not exist ({why}); make the folder first, or "
                               "give a file in one that exists.\n")  # fmt: skip


def test_a_corrupt_config_file_says_what_to_do(bad_runs):
    _, stderr, _, _ = bad_runs["corrupt-config-file", False]
    assert stderr.rstrip().endswith("move it aside, or give another --save-path)"), stderr


@pytest.mark.parametrize(
    "expected",
    [
        "--trials T distinct configs timed per (N, K, M) study (default: 32)",
        "--tp-size TP tensor parallelism: of --model (default 1), or of SGLang's list of DeepSeek-V3 shapes without "
        "--model or --N/--K (default 8); not with --N/--K, which give the shape one rank runs",
        "--save-path DIR folder for the config files (default: configs/, or studies/replay/configs/ with --replay)",
        "--storage URL Optuna storage URL (default: sqlite:///studies/tuner.sqlite3, or "
        "sqlite:///studies/replay/tuner.sqlite3 with --replay)",
        "or both; vLLM's file gets base-space entries alone, each file confirmed against what its own engine runs "
        "(default: sglang)",  # --format
        "--input-type {fp8,int8} 8-bit type of A and B (default: the model's quantization config, else fp8)",
        "--space {auto,base,hopper} base: SGLang's grid of configs (1280 at [128, 128] blocks); hopper:",
        "examples: python -m tuner.run --N 7168 --K 18432 one weight shape",  # float16: SGLang's Triton path
        "docs/contracts.md",  # where file names and formats are specified
    ],
)
def test_help_shows_defaults_and_examples(capsys, monkeypatch, expected):
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps at the terminal's width; a narrow one breaks URLs
    with pytest.raises(SystemExit) as exit:
        run_main(["--help"])
    assert exit.value.code == 0
    assert expected in " ".join(capsys.readouterr().out.split())  # whatever width argparse wraps at


def _h100_landscape(out_dtype: str) -> Callable[[Path], None]:
    """A synthetic landscape of SHAPE recorded, by its name, on an H100 (an SM90 GPU)."""

    def setup(tmp: Path) -> None:
        rows = synthetic_rows([SHAPE], [int(m) for m in BATCH_SIZES], out_dtype=out_dtype)
        with open(tmp / "h100.csv", "w") as f:
            f.write(",".join(HEADER) + "\n")
            for row in rows:
                f.write(",".join(replace(row, device=H100).as_csv()) + "\n")

    return setup


@dataclass(frozen=True)
class GoodRun:
    id: str
    change: dict[str, str | list[str] | None]
    setup: Callable[[Path], None] | None = None


GOOD_RUNS = [
    # vLLM's file name alone
    GoodRun("format-vllm", {"--format": "vllm"}),
    # both names, one content
    GoodRun("format-both", {"--format": "both"}),
    # a replay without --save-path or --storage: its files and studies must not pass for real tuning results
    GoodRun("replay-default-save-path", {"--save-path": None, "--storage": None}),
    # bf16 output on an SM90 GPU (in replay, the landscape's device): SGLang sends it to DeepGEMM
    GoodRun("bf16-on-h100", {"--replay": "{tmp}/h100.csv", "--out-dtype": "bfloat16"}, _h100_landscape("bfloat16")),
    # float16 output on the same GPU: SGLang's Triton path, so no note
    GoodRun("fp16-on-h100", {"--replay": "{tmp}/h100.csv"}, _h100_landscape("float16")),
    # --gpus in replay: replay workers, none on a GPU, and the run says so
    GoodRun("replay-workers", {"--gpus": "0,1"}),
]


@pytest.fixture(scope="module")
def good_runs(tmp_path_factory, landscape) -> dict[str, tuple[Launched, Path]]:
    """Every GoodRun, each in its own folder: id -> (what it printed, its folder)."""
    runs = {}
    for case in GOOD_RUNS:
        tmp = tmp_path_factory.mktemp(case.id)
        if case.setup is not None:
            case.setup(tmp)
        runs[case.id] = (tmp, command(tmp, landscape, case.change)[3:])
    launched = launch(tmp_path_factory.mktemp("good-logs"), runs, timeout=300)
    for id, done in launched.items():
        assert done.code == 0, (id, done.stderr)
    return {id: (launched[id], runs[id][0]) for id in runs}


VLLM_NAME = "N=256,K=512,device_name=Synthetic_GPU,dtype=fp8_w8a8,block_shape=[128,128].json"


@pytest.mark.parametrize(
    ("case_id", "names"),
    [
        ("format-vllm", [VLLM_NAME]),  # vLLM's loader finds only this name
        ("format-both", [CONFIG_NAME, VLLM_NAME]),
    ],
)
def test_format_writes_the_chosen_file_names_with_one_content(good_runs, case_id, names):
    done, tmp = good_runs[case_id]
    # byte-exact names, a provenance record each, no temp files
    assert sorted(p.name for p in (tmp / "cfg").iterdir()) == sorted([*names, *(n + ".provenance" for n in names)])
    assert len({(tmp / "cfg" / name).read_bytes() for name in names}) == 1
    assert list(json.loads((tmp / "cfg" / names[0]).read_text())) == list(BATCH_SIZES)
    for name in names:
        assert str(tmp / "cfg" / name) in done.stdout.splitlines()  # the end table names every file


@pytest.mark.parametrize(("case_id", "noted"), [("bf16-on-h100", True), ("fp16-on-h100", False)])
def test_deepgemm_note_starts_a_bf16_run_on_sm90(good_runs, case_id, noted):
    done, _ = good_runs[case_id]
    head = done.stdout.split("\n\n")[0].splitlines()  # what the run says before its tables
    notes = [line for line in head if "DeepGEMM" in line]
    assert notes == ([f"note: {deepgemm_note(H100, 'bfloat16')}"] if noted else [])


def test_replay_writes_apart_from_real_results_and_says_so(good_runs, landscape):
    done, tmp = good_runs["replay-default-save-path"]
    written = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*.json"))
    assert written == [f"studies/replay/configs/{CONFIG_NAME}"]
    assert not (tmp / "configs").exists()
    assert done.stdout.splitlines()[:2] == [
        f"storage: sqlite:///studies/replay/tuner.sqlite3 ({tmp}/studies/replay/tuner.sqlite3)",  # where that is
        f"created new storage {tmp}/studies/replay/tuner.sqlite3",
    ]
    assert (tmp / "studies" / "replay" / "tuner.sqlite3").is_file() and not (tmp / "studies" / "tuner.sqlite3").exists()
    assert done.stdout.splitlines()[-1] == f"replay of {landscape}: latencies are the landscape's, not measured now"


FULL = "studies/landscapes/h100_fp8_7168x18432.csv.gz"
HOPPER_GRID = "studies/landscapes/hopper/h100_fp8_hopper_grid.csv.gz"
PARTIAL = "studies/landscapes/partial/h100_fp8_24576x1536_first445configs.csv.gz"
SIX = "1 16 64 256 1024 4096"
RUN = "python -m tuner.run"


@dataclass(frozen=True)
class NoGpu:
    id: str
    args: str
    explains: str  # the start of the line's explanation, up to the command
    command: str


NO_GPU = [
    # a shipped landscape covers the shape: the user's budget, at every batch size the landscape holds
    NoGpu(
        "partial-landscape",
        "--N 24576 --K 1536 --out-dtype bfloat16 --trials 200",
        "No CUDA GPU is visible; the same run works in replay against a partial landscape",
        f"{RUN} --N 24576 --K 1536 --input-type fp8 --out-dtype bfloat16 --batch-sizes {SIX} --trials 200 "
        f"--replay {PARTIAL}",
    ),
    # only the requested batch sizes the landscape holds (2 is not recorded), the seed and the choices kept
    NoGpu(
        "batch-sizes-intersected",
        "--N 7168 --K 18432 --out-dtype bfloat16 --batch-sizes 1 2 16 --seed 3 --no-prior --format vllm",
        "No CUDA GPU is visible; the same run works in replay against a landscape recorded on NVIDIA_H100",
        f"{RUN} --N 7168 --K 18432 --input-type fp8 --out-dtype bfloat16 --batch-sizes 1 16 --trials 32 "
        f"--seed 3 --no-prior --format vllm --replay {FULL}",
    ),
    # DeepSeek-V3's shapes at TP 8: the one a landscape covers
    NoGpu(
        "one-of-many-shapes",
        "--out-dtype bfloat16 --trials 16",
        "No CUDA GPU is visible; of your 13 shapes, N=7168 K=18432 works in replay",
        f"{RUN} --N 7168 --K 18432 --input-type fp8 --out-dtype bfloat16 --batch-sizes {SIX} --trials 16 "
        f"--replay {FULL}",
    ),
    # no landscape of this shape: say so, naming it, and give the closest example of the same types with the
    # user's budget (a bfloat16 landscape of a nearer shape would tune what SGLang sends to DeepGEMM)
    NoGpu(
        "other-shape",
        "--N 5120 --K 25600 --trials 200",
        "No CUDA GPU is visible, and no shipped landscape covers fp8 N=5120 K=25600 block "
        "[128, 128] -> float16; the closest example runs in replay",
        f"{RUN} --N 4608 --K 7168 --input-type fp8 --out-dtype float16 --batch-sizes {SIX} --trials 200 "
        f"--replay studies/landscapes/h100_fp8_fp16_4608x7168.csv.gz",
    ),
    # the shape of the partial landscape, but another output dtype: the closest float16 one comes first
    NoGpu(
        "other-out-dtype",
        "--N 24576 --K 1536",
        "No CUDA GPU is visible, and no shipped landscape covers fp8 N=24576 K=1536 block "
        "[128, 128] -> float16; the closest example runs in replay",
        f"{RUN} --N 5120 --K 6400 --input-type fp8 --out-dtype float16 --batch-sizes {SIX} --trials 32 "
        f"--replay studies/landscapes/h100_fp8_fp16_5120x6400.csv.gz",
    ),
    # README's first command on a machine without a GPU: its own shape replays in float16
    NoGpu(
        "readme-first-command",
        "--N 576 --K 7168 --trials 32",
        "No CUDA GPU is visible; the same run works in replay against a landscape recorded on NVIDIA_H100",
        f"{RUN} --N 576 --K 7168 --input-type fp8 --out-dtype float16 --batch-sizes {SIX} --trials 32 "
        f"--replay studies/landscapes/h100_fp8_fp16_576x7168.csv.gz",
    ),
    # int8 is recorded nowhere: the closest is one of the 13 shapes in fp8, with the same output dtype
    NoGpu(
        "int8",
        "--input-type int8 --seed 3 --batch-sizes 1 2",
        "No CUDA GPU is visible, and no shipped landscape covers any of your 13 shapes (int8, "
        "block [128, 128] -> float16); the closest example runs in replay",
        f"{RUN} --N 4608 --K 7168 --input-type fp8 --out-dtype float16 --batch-sizes {SIX} --trials 32 "
        f"--seed 3 --replay studies/landscapes/h100_fp8_fp16_4608x7168.csv.gz",
    ),
    # float16, the default, of DeepSeek-V3's list at TP 8: float16 landscapes cover two of its shapes, each named
    NoGpu(
        "float16-of-many-shapes",
        "--tp-size 8 --trials 16",
        "No CUDA GPU is visible; of your 13 shapes, N=576 K=7168 and N=4608 K=7168 work in replay against "
        "landscapes recorded on NVIDIA_H100_80GB_HBM3, one command each",
        f"{RUN} --N 576 --K 7168 --input-type fp8 --out-dtype float16 --batch-sizes {SIX} --trials 16 "
        f"--replay studies/landscapes/h100_fp8_fp16_576x7168.csv.gz && "
        f"{RUN} --N 4608 --K 7168 --input-type fp8 --out-dtype float16 --batch-sizes {SIX} --trials 16 "
        f"--replay studies/landscapes/h100_fp8_fp16_4608x7168.csv.gz",
    ),
    # the Hopper space: the Hopper grid covers the shape; the sampler, storage and save path are the user's
    NoGpu(
        "hopper-space",
        "--N 576 --K 7168 --out-dtype bfloat16 --space hopper --sampler tpe --storage sqlite:///h.db --save-path out",
        "No CUDA GPU is visible; the same run works in replay against a landscape recorded on NVIDIA_H100",
        f"{RUN} --N 576 --K 7168 --input-type fp8 --out-dtype bfloat16 --batch-sizes 1 16 64 --trials 32 "
        f"--sampler tpe --space hopper --storage sqlite:///h.db --save-path out --replay {HOPPER_GRID}",
    ),
    # no Hopper landscape of this shape: the closest of the Hopper space, never a base-space one
    NoGpu(
        "hopper-space-other-shape",
        "--N 7168 --K 2048 --out-dtype bfloat16 --space hopper",
        "No CUDA GPU is visible, and no shipped landscape of the hopper space covers fp8 N=7168 K=2048 block "
        "[128, 128] -> bfloat16; the closest example runs in replay",
        f"{RUN} --N 4608 --K 7168 --input-type fp8 --out-dtype bfloat16 --batch-sizes 1 16 64 --trials 32 "
        f"--space hopper --replay {HOPPER_GRID}",
    ),
    # the shape is covered, but at none of the requested batch sizes
    NoGpu(
        "batch-sizes-not-recorded",
        "--N 7168 --K 18432 --out-dtype bfloat16 --batch-sizes 2 3",
        "No CUDA GPU is visible, and no shipped landscape covers fp8 N=7168 K=18432 block "
        "[128, 128] -> bfloat16 at M = 2 3; the closest example runs in replay",
        f"{RUN} --N 7168 --K 18432 --input-type fp8 --out-dtype bfloat16 --batch-sizes {SIX} --trials 32 "
        f"--replay {FULL}",
    ),
]


@pytest.fixture(scope="module")
def no_gpu_runs(tmp_path_factory) -> dict[str, Launched]:
    repo = Path(__file__).resolve().parents[2]
    return launch(tmp_path_factory.mktemp("no-gpu"), {case.id: (repo, case.args.split()) for case in NO_GPU})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message a machine without a GPU prints")
@pytest.mark.parametrize("case", NO_GPU, ids=lambda case: case.id)
def test_without_a_gpu_the_hint_is_the_users_run_in_replay(no_gpu_runs, case):
    done = no_gpu_runs[case.id]
    assert done.code == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith(case.explains), line
    assert line.split(": ", 1)[1] == case.command


def test_a_dense_landscape_is_hinted_at_sglangs_batch_sizes_not_at_every_m_it_records():
    # A dense landscape records every M to 64 and more beyond, for a coverage check to probe: a run tunes
    # SGLang's batch sizes on it, as on any landscape that holds them.
    from tuner.cli._replay_hint import Coverage, replay_hint
    from tuner.cli.run import _problems, build_parser

    parser = build_parser()
    args = parser.parse_args(["--N", "576", "--K", "7168"])
    shapes, _, _ = _problems(args)
    dense = Coverage(Path("dense.csv.gz"), "NVIDIA_H100_80GB_HBM3", "fp8", "float16", 576, 7168, 128, 128,
                     tuple(range(1, 4097)))  # fmt: skip
    line = replay_hint(args, parser, shapes, [dense])
    assert f"--batch-sizes {' '.join(map(str, DEFAULT_BATCH_SIZES))} --trials 32 --replay dense.csv.gz" in line


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


def test_replay_says_what_gpus_means_there(good_runs):
    done, tmp = good_runs["replay-workers"]
    note = "note: --gpus with --replay runs 2 replay workers, one process per index given, none on a GPU: the "
    assert note + "multi-GPU path without GPUs" in done.stderr.splitlines()
    assert "replay worker 1: " in done.stdout  # the second worker did run, and said what it read
    assert list(json.loads((tmp / "cfg" / CONFIG_NAME).read_text())) == list(BATCH_SIZES)


@pytest.mark.parametrize(
    ("case_id", "sglang", "vllm"),
    [("format-both", True, True), ("format-vllm", False, True), ("replay-default-save-path", True, False)],
)
def test_the_end_says_where_each_file_goes(good_runs, case_id, sglang, vllm):
    done, _ = good_runs[case_id]
    assert ("SGLang's names: sglang/kernels/ops/gemm/configs/ (SGLang 0.5.23; older releases: "
            "sglang/srt/layers/quantization/configs/)" in done.stdout) is sglang  # fmt: skip
    assert ("vLLM's names: vllm/model_executor/layers/quantization/utils/configs/ (vLLM 0.34.0)" in done.stdout) is vllm
    assert "(Synthetic_GPU) must be the serving GPU's" in done.stdout


def test_beside_each_file_a_record_of_what_made_it(good_runs, landscape):
    _, tmp = good_runs["format-both"]
    for name in (CONFIG_NAME, VLLM_NAME):
        record = json.loads((tmp / "cfg" / (name + ".provenance")).read_text())
        assert sorted(record["entries"]) == sorted(BATCH_SIZES, key=int)
        entry = record["entries"]["16"]
        assert (
            entry["made_by"].startswith("python -m tuner.run --N 256 --K 512 ") and "--format both" in entry["made_by"]
        )
        assert entry["device"] == "Synthetic_GPU" and entry["timing"].startswith(f"replay of {landscape}")
        assert entry["torch"] == torch.__version__ and entry["date"].startswith("20")
        assert entry["entry"] == json.loads((tmp / "cfg" / name).read_text())["16"]


def test_a_dry_run_in_replay_says_what_it_would_use_and_find(tuned, landscape, capsys):
    tmp, argv, result = tuned
    assert result.returncode == 0, result.stderr
    before = _files(tmp)
    assert run_main([*argv[3:], "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["plan: 1 shape x 2 batch sizes x 8 trials = 16 timed configs in 2 studies, fp8 in [128, 128] "
                       "blocks, float16 out",
                       "  N=256    K=512    (given)  M = 1 16"]  # fmt: skip
    assert out[2:8] == [
        f"mode: replay of {landscape}, recorded on Synthetic_GPU: no GPU is used",
        "files: SGLang's file: --space base (SGLang runs Hopper entries on SM90 GPUs alone, and Synthetic_GPU is not "
        "one), 1280 configs per batch size",
        "sampler: auto (local); prior: none (--no-prior)",
        f"save path: {tmp}/cfg/ (SGLang's file names)",
        f"storage: sqlite:///{tmp}/s.db",
        "2 of 2 studies finished earlier; nothing to time",  # what the storage already holds
    ]
    assert out[-1] == (
        "estimate: no GPU time, the latencies are the landscape's; about 1 s of CPU for the sampler and the storage "
        "(at 9 ms a trial, measured on a 2-core CPU)"
    )
    assert _files(tmp) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="a dry run on a machine without a GPU")
def test_a_live_dry_run_needs_no_gpu_and_creates_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run_main(["--N", "7168", "--K", "18432", "--batch-size", "1", "--trials", "4", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert (
        "mode: live, on a CUDA GPU; none is visible here, so the device, existing files and studies are unknown" in out
    )
    assert f"storage: sqlite:///studies/tuner.sqlite3 ({tmp_path}/studies/tuner.sqlite3)" in out
    assert f"no storage at {tmp_path}/studies/tuner.sqlite3 yet: the run creates it" in out
    assert "save path: configs/ (SGLang's file names)" in out
    assert out[-1].startswith("estimate: about 1 s at most, at the rate of a whole model on one NVIDIA H100")
    assert list(tmp_path.iterdir()) == []


def test_a_dry_run_counts_each_study_at_the_budget_the_run_caps_it_to(tmp_path, landscape, capsys):
    # At M = 1 the space's 1280 configs launch 320 distinct schedules, the most a study there times; at
    # M = 16 too (one row of tiles): 400 trials asked, 640 timed in all, as the run itself would.
    argv = command(tmp_path, landscape, {"--trials": "400"})[3:]
    assert run_main([*argv, "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("plan: 1 shape x 2 batch sizes x 400 trials = 640 timed configs in 2 studies, ")
    assert "note: 2 of 2 studies can time fewer than --trials 400 distinct configs (M=1: 320, M=16: 320); each " \
           "stops there." in out  # fmt: skip
    assert out[-1].startswith("estimate: no GPU time, the latencies are the landscape's; about 6 s of CPU")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a dry run on a machine without a GPU")
def test_a_live_dry_run_caps_the_budget_at_the_spaces_schedules(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run_main(["--N", "7168", "--K", "18432", "--batch-sizes", "1", "4096", "--trials", "1000", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("plan: 1 shape x 2 batch sizes x 1000 trials = 1320 timed configs in 2 studies, ")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without a GPU")
def test_a_malformed_gpus_list_is_a_usage_error_without_a_gpu_too(capsys):
    assert run_main(["--N", "7168", "--K", "18432", "--gpus", "a,b"]) == 2
    assert capsys.readouterr().err == "error: --gpus must be comma-separated device indices, but got 'a,b'.\n"


def test_deepseek_v3s_fixed_list_says_how_it_differs_from_the_models_own(capsys):
    assert run_main(["--tp-size", "8", "--dry-run"]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if "SGLang's fixed list" in line]
    assert notes == [
        "note: without --model, --tp-size plans SGLang's fixed list of DeepSeek-V3 shapes (13 at TP 8: kv_a_proj "
        "alone, a plain q_proj and unsplit copies, as SGLang's tuning script has them); --model with DeepSeek-V3's "
        "config.json plans only what the model runs, the fused 2112 x 7168 A projection among them."
    ]


def test_an_unwritable_save_path_found_late_is_one_line_and_keeps_the_results(tmp_path, landscape):
    # /proc passes the up-front check for root (no permission bit stops root), yet takes no new folder.
    argv = command(tmp_path, landscape, {"--save-path": "/proc/tuner-test/cfg", "--batch-sizes": ["1"]})
    done = subprocess.run(argv, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    (line,) = [line for line in done.stderr.splitlines() if line and "timed configs" not in line]  # but the bar
    if os.geteuid() != 0:  # refused up front
        assert done.returncode == 2 and line.startswith("error: --save-path '/proc/tuner-test/cfg' is not writable")
        return
    assert done.returncode == 1, done.stderr
    assert line.startswith("failed: cannot write /proc/tuner-test/cfg/N=256,K=512,")
    assert line.endswith("rerun the command with a --save-path that can be written, and it writes the files from "
                         "the finished studies without tuning them again.")  # fmt: skip
    assert [timed for timed, _ in timed_counts(f"sqlite:///{tmp_path}/s.db").values()] == [TRIALS]


@pytest.mark.parametrize("delay_s", [0.15, 0.5])
def test_ctrl_c_while_the_run_starts_is_one_line(tmp_path, landscape, delay_s):
    process = subprocess.Popen(command(tmp_path, landscape, {"--trials": "64"}), cwd=tmp_path, env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=ctrl_c_as_in_a_terminal)  # fmt: skip
    time.sleep(delay_s)  # while Python loads the tuner's dependencies (torch, Optuna), about a second here
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and stderr.splitlines()[-1].startswith("interrupted"), stderr
