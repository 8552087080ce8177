"""Study names carry the software behind their timings: other versions, kernel or landscape mean other studies."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
import triton

import tuner.space
import tuner.study._tuning
from tests.tuner.fake_compiler import fake_compile
from tests.tuner.fake_gpu import FakeSession
from tests.tuner.synthetic import synthetic_rows, write_landscape
from tuner.benchmarkers import HEADER, GpuBenchmarker, ReplayBenchmarker, Row
from tuner.benchmarkers._gpu import gpu_software
from tuner.benchmarkers._software import driver_version, source_digest, timing_sources
from tuner.cli.run import main
from tuner.space import Problem
from tuner.stopping import TuningError
from tuner.study import TuneOptions, make_storage, study_name, timed_trials, tune_problem

PROBLEM = Problem(N=512, K=256, M=16)
SOFTWARE = {"triton": "3.6.0", "torch": "2.11.0+cu130", "cuda": "13.0", "driver": "580.159.04",
            "timing_source": "0123456789abcdef"}  # fmt: skip


def _tune(storage, software: dict[str, str]):
    with GpuBenchmarker(compile_workers=1, timeout_s=10, session_factory=FakeSession, compile_fn=fake_compile,
                        software=software) as bench:  # fmt: skip
        result = tune_problem(storage, PROBLEM, bench, TuneOptions(trials=3, seed=0), seeds=[])
        study = optuna.load_study(study_name=study_name(PROBLEM, bench.device_name, "gpu", software), storage=storage)
    return result, study


@pytest.mark.parametrize(
    "change",
    [
        {"triton": "3.7.0"},
        {"torch": "2.12.0+cu130"},
        {"cuda": "12.8"},
        {"driver": "580.65.06"},
        {"timing_source": "fedcba9876543210"},
    ],
    ids=["triton", "torch", "cuda", "driver", "timing-source"],
)
def test_a_finished_study_is_not_reused_by_other_software(tmp_path, change):
    storage = make_storage(f"sqlite:///{tmp_path}/s.db")
    _, before = _tune(storage, SOFTWARE)
    resumed, again = _tune(storage, SOFTWARE)
    assert again.study_name == before.study_name and resumed.timed == 3  # same software: finished, skipped
    assert len(timed_trials(again)) == 3
    upgraded, after = _tune(storage, {**SOFTWARE, **change})
    assert after.study_name != before.study_name
    assert upgraded.timed == len(timed_trials(after)) == 3  # timed anew
    assert {key: after.user_attrs[key] for key in SOFTWARE} == {**SOFTWARE, **change}
    assert {key: before.user_attrs[key] for key in SOFTWARE} == SOFTWARE  # the old one is kept as it was
    assert len(optuna.get_all_study_summaries(storage)) == 2


def test_gpu_software_is_this_triton_torch_cuda_driver_and_timing_source():
    software = gpu_software()
    assert (software["triton"], software["torch"]) == (triton.__version__, torch.__version__)
    assert software["cuda"] == (torch.version.cuda or "none")
    assert software["driver"] == driver_version()  # "unknown" without NVML or /proc/driver/nvidia
    assert len(software["timing_source"]) == 16 and software == gpu_software()


def test_the_timing_source_covers_every_file_that_decides_a_timing():
    # It held only the files with a Triton kernel: a change of the timing protocol, the tolerance,
    # the argument layout or the harness reused finished studies silently.
    names = [source.name for source in timing_sources()]
    assert {"_w8a8_block.py", "timing.py", "_reference.py", "_arguments.py", "_checks.py", "_cuda.py"} <= set(names)
    assert "bench.py" not in names  # a command comparing with SGLang: it times nothing the tuner stores


def test_the_timing_source_changes_with_any_of_its_files(tmp_path):
    files = [tmp_path / "timing.py", tmp_path / "_cuda.py"]
    for path in files:
        path.write_text("ROUNDS = 20\n")
    before = source_digest(files)
    files[0].write_text("ROUNDS = 21\n")
    assert source_digest(files) != before


@pytest.mark.parametrize(
    ("line", "version"),
    [
        ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.159.04  Thu Oct  9 2025", "580.159.04"),
        ("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  Release Build", "580.65.06"),
        ("something else", "unknown"),
        (None, "unknown"),  # no driver loaded: no such file
    ],
    ids=["proprietary", "open", "unreadable", "absent"],
)
def test_the_driver_version_comes_from_the_kernel_module_without_nvml(tmp_path, monkeypatch, line, version):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # NVML's bindings absent, as on most hosts
    proc = tmp_path / "version"
    if line is not None:
        proc.write_text(line + "\nGCC version: gcc version 13.3.0\n")
    assert driver_version(proc) == version


def _rows(slower: float = 0.0) -> list[Row]:
    rows = list(synthetic_rows([(PROBLEM.N, PROBLEM.K)], [1, 16]))
    first = rows[0]
    return [Row(first.device, first.problem, first.config, first.status, first.us + slower), *rows[1:]]


def test_replay_studies_key_on_the_landscapes_rows_not_its_file():
    rows = _rows()
    same = ReplayBenchmarker(reversed(rows)).software  # another order, as another file would hold them
    assert ReplayBenchmarker(rows).software == same
    assert ReplayBenchmarker(_rows(slower=1.0)).software != same


def _write(path, rows: list[Row]):
    text = ",".join(HEADER) + "\n" + "".join(",".join(row.as_csv()) + "\n" for row in rows)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def test_a_run_on_another_landscape_tunes_anew_and_says_so(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/s.db"
    argv = ["--N", str(PROBLEM.N), "--K", str(PROBLEM.K), "--batch-sizes", "1", "16", "--trials", "3", "--storage",
            url, "--save-path", str(tmp_path / "cfg"), "--no-prior", "--seed", "0", "--replay"]  # fmt: skip
    # A study named as before names carried the software, for one of the two batch sizes.
    legacy = study_name(PROBLEM, "Synthetic_GPU", "replay", {}).rsplit("_", 1)[0]
    optuna.create_study(storage=make_storage(url), study_name=legacy)
    assert main([*argv, str(_write(tmp_path / "a.csv", _rows()))]) == 0
    assert "note: 1 of the studies" in capsys.readouterr().err
    assert main([*argv, str(_write(tmp_path / "a.csv.gz", _rows()))]) == 0  # the same rows: resumed, no note
    assert "note:" not in capsys.readouterr().err
    assert main([*argv, str(_write(tmp_path / "b.csv", _rows(slower=1.0)))]) == 0
    assert "note: 3 of the studies of these problems in the storage were made with other software" in (
        capsys.readouterr().err
    )
    assert len(optuna.get_all_study_summaries(make_storage(url))) == 5


# Made by the tuner as it was before study names carried the space's choices (commit dc68f27):
#   python -m tuner.run --N 512 --K 1024 --batch-sizes 16 --replay L --trials 4 --storage ... --no-prior --seed 0
# with L = write_landscape(L, [(512, 1024)], [16]), which the test writes again (its rows key the study).
BEFORE_CHOICES_KEY = Path(__file__).parent / "data" / "storage_before_space_key.sqlite3"


def test_a_storage_made_before_names_carried_the_spaces_choices_resumes_its_studies(tmp_path):
    shutil.copy(BEFORE_CHOICES_KEY, tmp_path / "s.sqlite3")
    url = f"sqlite:///{tmp_path}/s.sqlite3"
    landscape = write_landscape(tmp_path / "l.csv", [(512, 1024)], [16])
    command = [sys.executable, "-m", "tuner.run", "--N", "512", "--K", "1024", "--batch-sizes", "16", "--replay",
               str(landscape), "--trials", "6", "--storage", url, "--save-path", str(tmp_path / "cfg"), "--no-prior",
               "--seed", "0"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "0 of 1 studies finished earlier, 1 resumes where it stopped" in done.stdout
    assert "--trials 6 extends 1 studies tuned to 4 earlier" in done.stdout
    (study,) = optuna.get_all_study_summaries(make_storage(url))
    assert len(timed_trials(optuna.load_study(study_name=study.study_name, storage=make_storage(url)))) == 6


def _study_names(url: str) -> set[str]:
    return {s.study_name for s in optuna.get_all_study_summaries(make_storage(url))}


def test_a_release_that_changes_a_choice_tunes_a_new_study_beside_the_old_one(tmp_path, monkeypatch, request):
    caches = (tuner.study._tuning._space, tuner.study._tuning._members, tuner.study._tuning._searchable)
    for cache in caches:  # the space is built once per process
        request.addfinalizer(cache.cache_clear)
    url = f"sqlite:///{tmp_path}/s.db"
    bench = ReplayBenchmarker(synthetic_rows([(PROBLEM.N, PROBLEM.K)], [PROBLEM.M]))
    tune_problem(make_storage(url), PROBLEM, bench, TuneOptions(trials=3, seed=0), seeds=[])
    (before,) = _study_names(url)
    monkeypatch.setattr(tuner.space, "NUM_STAGES", (2, 3, 4))  # the release drops a choice
    for cache in caches:  # as a new process would build it
        cache.cache_clear()
    after = study_name(PROBLEM, bench.device_name, bench.kind, bench.software)
    assert after != before
    result = tune_problem(make_storage(url), PROBLEM, bench, TuneOptions(trials=3, seed=0), seeds=[])
    assert result.timed == 3 and _study_names(url) == {before, after}
    new = optuna.load_study(study_name=after, storage=make_storage(url))
    assert {t.distributions["num_stages"].choices for t in new.trials} == {(2, 3, 4)}


def test_a_study_holding_other_distributions_is_refused_not_mixed(tmp_path):
    # Choices unchanged, but what fits the device narrowed (a release that counts shared memory
    # otherwise): the same study, other distributions. Optuna's writes refuse to mix them; so does the tuner.
    url = f"sqlite:///{tmp_path}/s.db"
    bench = ReplayBenchmarker(synthetic_rows([(PROBLEM.N, PROBLEM.K)], [PROBLEM.M]))
    tune_problem(make_storage(url), PROBLEM, bench, TuneOptions(trials=3, seed=0), seeds=[])
    bench.shared_memory_limit = 20_000  # no BLOCK_SIZE_M 256 fits any more
    with pytest.raises(TuningError, match="holds parameter BLOCK_SIZE_M as .* this run would write"):
        tune_problem(make_storage(url), PROBLEM, bench, TuneOptions(trials=6, seed=0), seeds=[])
    (name,) = _study_names(url)
    study = optuna.load_study(study_name=name, storage=make_storage(url))
    assert len(study.trials) == 3  # nothing mixed in
