"""The files a user already has: found in installed SGLang and vLLM layouts, timed, never exported slower.

Installed packages are real folders on sys.path (or PYTHONPATH, for the command), laid out as the
released wheels lay them out; nothing about finding them is faked.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from tests.tuner.synthetic import DEVICE, synthetic_rows, synthetic_us, write_landscape
from tuner.analysis import summary_table
from tuner.baselines import (
    BASELINES,
    DEFAULT_CONFIG_WARNING,
    SGLANG_CONFIG_FOLDERS,
    VLLM_CONFIG_FOLDER,
    ConfigFolder,
    baseline_folders,
    baseline_lines,
    find_baselines,
    installed_folders,
    split_missing,
)
from tuner.benchmarkers import ReplayBenchmarker
from tuner.cli.run import main as run_main
from tuner.export import config_file_name, read_config_file, write_configs
from tuner.shapes import deepseek_v3_shapes
from tuner.space import Config, Problem, default_config, search_space
from tuner.study import TuneOptions, format_table, make_storage, tune_shape

REPO = Path(__file__).resolve().parents[2]
SHAPE = (256, 512)
BATCH_SIZES = (1, 256)
PROBLEM = Problem(N=SHAPE[0], K=SHAPE[1], M=1)
SGLANG_NAME = config_file_name(*SHAPE, DEVICE, "fp8", 128, 128)
VLLM_NAME = config_file_name(*SHAPE, DEVICE, "fp8", 128, 128, vllm=True)
# A config the synthetic landscape makes slow at every M, and one it makes fastest at small M:
# three trials from SGLang's default (64/128/128) reach neither.
SLOW = Config(block_m=256, block_n=256, block_k=64, group_m=64, num_warps=8, num_stages=2)
FAST = Config(block_m=16, block_n=32, block_k=128, group_m=1, num_warps=4, num_stages=3)


def install(site: Path, engine: str, files: dict[str, dict[int, Config]] | None = None, *, layout: int = 0) -> Path:
    """A package folder laid out as the released wheel lays it out, with files in its config folder.

    layout picks SGLang's folder: 0 as in 0.5.23 (sglang/kernels/ops/gemm/configs), 1 as before.
    """
    package = site / engine
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("raise ImportError('the tuner must not import me')\n")
    folder = package / (SGLANG_CONFIG_FOLDERS[layout] if engine == "sglang" else VLLM_CONFIG_FOLDER)
    folder.mkdir(parents=True, exist_ok=True)
    for name, entries in (files or {}).items():
        write_configs(folder / name, entries)
    return folder


@pytest.fixture
def site(tmp_path, monkeypatch) -> Path:
    """A folder that is this Python's only place to import packages from (the standard library aside)."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.setattr(sys, "path", [str(site), *(p for p in sys.path if "-packages" not in p and p)])
    importlib.invalidate_caches()
    return site


# (what is installed, the folders found as (label, path under site)): what each case covers.
@pytest.mark.parametrize(
    ("engines", "expected"),
    [
        ([], []),  # neither installed: no folder, no baseline
        ([("sglang", 0)], [("SGLang", "sglang/kernels/ops/gemm/configs")]),  # SGLang 0.5.23's layout
        ([("sglang", 1)], [("SGLang", "sglang/srt/layers/quantization/configs")]),  # older SGLang
        ([("vllm", 0)], [("vLLM", "vllm/model_executor/layers/quantization/utils/configs")]),  # vLLM 0.34.0's
        # both, SGLang's first
        (
            [("vllm", 0), ("sglang", 0)],
            [
                ("SGLang", "sglang/kernels/ops/gemm/configs"),
                ("vLLM", "vllm/model_executor/layers/quantization/utils/configs"),
            ],
        ),
    ],
)
def test_installed_folders_are_found_where_the_packages_are(site, engines, expected):
    for engine, layout in engines:
        install(site, engine, layout=layout)
    found = installed_folders()
    assert [(f.label, f.path.relative_to(site).as_posix()) for f in found] == expected
    assert "sglang" not in sys.modules and "vllm" not in sys.modules  # located, never imported


def test_an_sglang_of_unknown_layout_counts_as_holding_no_file(site):
    (site / "sglang").mkdir()
    (site / "sglang" / "__init__.py").touch()
    (folder,) = installed_folders()
    assert folder.path == site / "sglang" / SGLANG_CONFIG_FOLDERS[0] and not folder.path.exists()
    assert folder.file_for(PROBLEM, DEVICE) is None


def test_each_engine_reads_its_own_naming_and_vllm_fp8_alone(tmp_path):
    sglang = ConfigFolder(label="SGLang", path=tmp_path, namings=("sglang",))
    vllm = ConfigFolder(label="vLLM", path=tmp_path, namings=("vllm",), input_types=("fp8",))
    named = ConfigFolder(label="--baseline", path=tmp_path, namings=("sglang", "vllm"))
    (tmp_path / VLLM_NAME).write_text("{}")
    assert sglang.file_for(PROBLEM, DEVICE) is None  # block_shape=[128,128] is not SGLang's name
    assert vllm.file_for(PROBLEM, DEVICE) == named.file_for(PROBLEM, DEVICE) == tmp_path / VLLM_NAME
    assert vllm.file_for(PROBLEM, "Other_GPU") is None  # another device's file serves nobody here
    (tmp_path / SGLANG_NAME).write_text("{}")
    assert named.file_for(PROBLEM, DEVICE) == tmp_path / SGLANG_NAME  # SGLang's name first
    int8 = Problem(N=SHAPE[0], K=SHAPE[1], M=1, input_type="int8")
    for vllm_name in (False, True):
        (tmp_path / config_file_name(*SHAPE, DEVICE, "int8", 128, 128, vllm=vllm_name)).write_text("{}")
    assert vllm.file_for(int8, DEVICE) is None  # vLLM 0.34.0 loads no int8 block file
    assert sglang.file_for(int8, DEVICE) is not None


def test_a_file_the_tuner_cannot_read_is_named_and_no_baseline(tmp_path):
    folder = ConfigFolder(label="SGLang", path=tmp_path, namings=("sglang",))
    amd_entry = {**FAST.as_sglang(), "waves_per_eu": 0}  # AMD's files carry keys of their own
    (tmp_path / SGLANG_NAME).write_text(f'{{"1": {amd_entry}}}'.replace("'", '"'))
    baselines, skipped = find_baselines([folder], PROBLEM, DEVICE)
    assert baselines == [] and len(skipped) == 1 and SGLANG_NAME in skipped[0]
    (tmp_path / SGLANG_NAME).write_text("{}")
    assert find_baselines([folder], PROBLEM, DEVICE)[0] == []  # no entry, nothing to compare


def test_baseline_choices(tmp_path):
    assert baseline_folders("none") == []
    (folder,) = baseline_folders(str(tmp_path))
    assert folder.path == tmp_path and set(folder.namings) == {"sglang", "vllm"}
    with pytest.raises(ValueError, match="--baseline must be auto, none or a folder"):
        baseline_folders(str(tmp_path / "nowhere"))


def test_the_start_line_says_which_file_or_that_none_exists(site):
    install(site, "sglang", {SGLANG_NAME: {1: FAST, 16: Config.from_sglang({**FAST.as_sglang(), "SPLIT_K": 2,
                                                                               "SWAP_AB": False})}})  # fmt: skip
    install(site, "vllm")
    folders = installed_folders()
    other = Problem(N=512, K=512, M=1)
    lines = baseline_lines("auto", folders, [PROBLEM, other], DEVICE, "base")
    assert lines[0].startswith(f"baseline: the files for {DEVICE} in SGLang's {site}") and "vLLM's" in lines[0]
    assert lines[1] == (f"  N=256 K=512: {SGLANG_NAME} (SGLang) (1 of its 2 entries lie outside --space base: "
                        "not compared)")  # fmt: skip
    assert lines[2] == "  N=512 K=512: none, the default config is what runs now"
    assert baseline_lines("auto", folders, [PROBLEM], DEVICE, "hopper")[1] == f"  N=256 K=512: {SGLANG_NAME} (SGLang)"
    assert baseline_lines("none", [], [PROBLEM], DEVICE, "base") == [
        "baseline: none (--baseline none; --baseline DIR compares with a folder of config files)"
    ]
    assert "no SGLang or vLLM is installed" in baseline_lines("auto", [], [PROBLEM], DEVICE, "base")[0]


def _tune(tmp_path: Path, folders: list[ConfigFolder], trials: int = 3):
    bench = ReplayBenchmarker(synthetic_rows([SHAPE], BATCH_SIZES))
    storage = make_storage(f"sqlite:///{tmp_path}/s.db")
    problems = [PROBLEM.at(M) for M in BATCH_SIZES]
    options = TuneOptions(trials=trials, seed=0)
    results, (path,) = tune_shape(storage, bench, problems, options, tmp_path / "cfg", baseline_folders=folders)
    return bench, storage, results, read_config_file(path)


def test_a_faster_baseline_is_seeded_timed_and_exported(tmp_path):
    baseline = tmp_path / "baseline"
    baseline.mkdir()
    write_configs(baseline / VLLM_NAME, {M: FAST for M in BATCH_SIZES})
    bench, _, without, exported_without = _tune(tmp_path / "none", [])
    assert all(exported_without[M] != FAST for M in BATCH_SIZES)  # three trials alone do not find it
    bench, storage, results, exported = _tune(tmp_path / "with", baseline_folders(str(baseline)))
    for result in results:
        fast_us = bench.latency(result.problem, FAST)
        assert exported[result.problem.M] == FAST and result.best_us == result.baseline_us == fast_us
    table = summary_table(storage).set_index("M")
    assert list(table.file) == [f"{VLLM_NAME} (--baseline)"] * 2  # the report compares with it unasked
    assert list(table.file_us) == [bench.latency(r.problem, FAST) for r in results]
    assert "baseline us" in format_table(results) and "baseline us" not in format_table(without)


def test_a_slower_baseline_is_timed_but_not_exported(tmp_path):
    baseline = tmp_path / "baseline"
    baseline.mkdir()
    write_configs(baseline / SGLANG_NAME, {1: SLOW, 4096: FAST})  # M = 256 picks the nearest key, 1
    bench, storage, results, exported = _tune(tmp_path, baseline_folders(str(baseline)))
    for result in results:
        assert result.baseline_us == bench.latency(result.problem, SLOW) > result.best_us
        assert exported[result.problem.M] != SLOW
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        assert study.user_attrs[BASELINES] == {f"{SGLANG_NAME} (--baseline)": SLOW.as_sglang()}
        assert study.trials[0].params == SLOW.as_sglang()  # timed first, in full
        assert study.trials[0].state == optuna.trial.TrialState.COMPLETE


# --- the command, in a fresh interpreter with the installed packages on PYTHONPATH --------------------


def run_tuner(site: Path, cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]), "TRITON_INTERPRET": "1"}
    command = [sys.executable, "-m", "tuner.run", *argv, "--storage", f"sqlite:///{cwd}/s.db", "--save-path",
               str(cwd / "cfg"), "--no-prior", "--seed", "0"]  # fmt: skip
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_command_announces_the_installed_file_and_never_exports_slower(tmp_path):
    site = tmp_path / "site"
    install(site, "sglang", {SGLANG_NAME: {M: FAST for M in BATCH_SIZES}})
    install(site, "vllm", {VLLM_NAME: {M: SLOW for M in BATCH_SIZES}})
    landscape = write_landscape(tmp_path / "l.csv", [SHAPE], BATCH_SIZES)
    bench = ReplayBenchmarker.from_file(landscape)
    argv = ["--N", str(SHAPE[0]), "--K", str(SHAPE[1]), "--batch-sizes", *map(str, BATCH_SIZES), "--trials", "3",
            "--replay", str(landscape), "--format", "both"]  # fmt: skip
    done = run_tuner(site, tmp_path, *argv)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("baseline:"))  # after the storage's lines
    assert lines[at - 1].startswith("files: SGLang and vLLM's files: --space base")  # one search fills both
    assert lines[at].startswith(f"baseline: the files for {DEVICE} in SGLang's {site / 'sglang'}")
    assert lines[at + 1] == f"  N=256 K=512: {SGLANG_NAME} (SGLang), {VLLM_NAME} (vLLM)"
    exported = read_config_file(tmp_path / "cfg" / SGLANG_NAME)
    for M in BATCH_SIZES:
        problem = PROBLEM.at(M)
        assert bench.latency(problem, exported[M]) <= bench.latency(problem, FAST) < bench.latency(problem, SLOW)
    row = next(line.split() for line in lines if line.split()[:1] == ["1"])
    assert row[5:7] == [f"{synthetic_us(PROBLEM, FAST):.1f}", "1.00x"]  # the fastest baseline's us, and ours over it


def test_missing_tunes_only_the_shapes_an_installed_engine_lacks(tmp_path):
    shapes = deepseek_v3_shapes(8)
    entries = {1: default_config(128, 128)}
    names = {shape: config_file_name(*shape, DEVICE, "fp8", 128, 128) for shape in shapes}
    vllm_names = {shape: config_file_name(*shape, DEVICE, "fp8", 128, 128, vllm=True) for shape in shapes}
    no_sglang, no_vllm = shapes[:2], shapes[5:6]
    site = tmp_path / "site"
    install(site, "sglang", {names[s]: entries for s in shapes if s not in no_sglang})
    install(site, "vllm", {vllm_names[s]: entries for s in shapes if s not in no_vllm})
    missing = [*no_sglang, *no_vllm]
    # The landscape holds the missing shapes alone: a run that tried any other would stop at once.
    landscape = write_landscape(tmp_path / "l.csv", missing, [1])
    done = run_tuner(site, tmp_path, "--tp-size", "8", "--missing", "--batch-sizes", "1", "--trials", "2",
                     "--replay", str(landscape))  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"--missing: 3 of {len(shapes)} shapes lack a file or entries for {DEVICE} in SGLang's")
    warning = DEFAULT_CONFIG_WARNING.format("FP8")
    assert lines[1] == f'  tuning N={shapes[0][0]} K={shapes[0][1]}: no file in SGLang\'s folder (it logs "{warning}")'
    assert f'  tuning N={no_vllm[0][0]} K={no_vllm[0][1]}: no file in vLLM\'s folder (it logs "{warning}")' in lines
    assert sum(line.startswith("  skipping ") for line in lines) == len(shapes) - 3
    assert sorted(p.name for p in (tmp_path / "cfg").glob("*.json")) == sorted(names[s] for s in missing)


def test_missing_with_every_file_installed_tunes_nothing(tmp_path):
    site = tmp_path / "site"
    shapes = deepseek_v3_shapes(8)
    install(site, "sglang", {config_file_name(*shape, DEVICE, "fp8", 128, 128): {1: FAST} for shape in shapes})
    landscape = write_landscape(tmp_path / "l.csv", [SHAPE], [1])
    done = run_tuner(site, tmp_path, "--tp-size", "8", "--missing", "--batch-sizes", "1", "--replay", str(landscape))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"--missing: 0 of {len(shapes)} shapes lack a file or entries for {DEVICE}")
    assert not (tmp_path / "cfg").exists() and not (tmp_path / "s.db").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--N", "256", "--K", "512", "--missing"], "--missing chooses among a model's shapes"),
        (["--tp-size", "8", "--missing", "--baseline", "none"], "--missing needs the installed SGLang or vLLM"),
        (["--N", "256", "--K", "512", "--baseline", "{tmp}/nowhere"], "--baseline must be auto, none or a folder"),
    ],
)
def test_bad_baseline_flags_are_one_line_and_exit_2(tmp_path, capsys, argv, message):
    landscape = write_landscape(tmp_path / "l.csv", [SHAPE], [1])
    argv = [a.format(tmp=tmp_path) for a in argv] + ["--batch-sizes", "1", "--replay", str(landscape),
                                                     "--storage", f"sqlite:///{tmp_path}/s.db"]  # fmt: skip
    assert run_main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {message}"), err
    assert not (tmp_path / "s.db").exists()


@pytest.mark.parametrize("dry", [False, True], ids=["run", "dry-run"])
@pytest.mark.parametrize("baseline", [["--baseline", "none"], []], ids=["baseline-none", "no-engine-installed"])
def test_missing_without_a_folder_to_look_in_is_refused_before_a_gpu_is_asked_for(site, tmp_path, monkeypatch, capsys,
                                                                                  baseline, dry):  # fmt: skip
    # Live, with or without a GPU: the flags alone decide it, so a dry run and a machine without a GPU
    # refuse it with the run's own line (site: neither SGLang nor vLLM is installed).
    monkeypatch.chdir(tmp_path)
    assert run_main(["--tp-size", "8", "--missing", *baseline, *(["--dry-run"] if dry else [])]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: --missing needs the installed SGLang or vLLM"), err
    assert list(tmp_path.iterdir()) == [site]


def test_split_missing_needs_a_folder():
    with pytest.raises(ValueError, match="--missing needs"):
        split_missing([], [[PROBLEM]], DEVICE)


def test_the_baselines_entries_are_members_of_the_space_they_compete_in():
    assert FAST in search_space(128) and SLOW in search_space(128)  # else the tests above would prove nothing


def test_missing_tunes_the_batch_sizes_a_sparse_file_lacks_and_keeps_its_other_keys(tmp_path):
    # A file keyed 2048 and up serves decode at M = 1 with its M = 2048 entry: M = 1 is missing there.
    site = tmp_path / "site"
    shapes = deepseek_v3_shapes(8)
    files = {config_file_name(*shape, DEVICE, "fp8", 128, 128): {1: FAST, 2048: FAST} for shape in shapes}
    files[config_file_name(*SHAPE, DEVICE, "fp8", 128, 128)] = {2048: SLOW, 4096: SLOW}
    install(site, "sglang", files)
    landscape = write_landscape(tmp_path / "l.csv", [SHAPE], [1, 2048])  # the other shapes are not tuned
    done = run_tuner(site, tmp_path, "--shipped", "--missing", "--batch-sizes", "1", "2048", "--trials", "2",
                     "--replay", str(landscape))  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"--missing: 1 of {len(shapes) + 1} shapes lack a file or entries for {DEVICE}")
    assert "  tuning N=256 K=512: SGLang's file has no entry at M 1 (its keys: 2048 4096; the nearest key's" in (
        "\n".join(lines)
    )
    exported = read_config_file(tmp_path / "cfg" / SGLANG_NAME)
    assert set(exported) == {1, 2048, 4096} and exported[2048] == exported[4096] == SLOW  # tuned 1 only, kept the rest
    provenance = json.loads((tmp_path / "cfg" / (SGLANG_NAME + ".provenance")).read_text())["entries"]
    assert provenance["4096"]["made_by"].startswith("copied from ") and provenance["1"]["made_by"].startswith(
        "python -m tuner.run"
    )


def test_shipped_tunes_the_shapes_of_the_installed_files_at_their_block_shape(tmp_path):
    site = tmp_path / "site"
    b32 = {config_file_name(*shape, DEVICE, "fp8", 32, 32): {1: default_config(32, 32)} for shape in [SHAPE, (64, 96)]}
    install(site, "sglang", {**b32, SGLANG_NAME: {1: FAST}})  # and a [128, 128] file, which --block-k 32 leaves out
    landscape = write_landscape(tmp_path / "l.csv", [SHAPE, (64, 96)], [1], block=(32, 32))
    argv = ["--shipped", "--block-n", "32", "--block-k", "32", "--batch-sizes", "1", "--trials", "2",
            "--replay", str(landscape)]  # fmt: skip
    done = run_tuner(site, tmp_path, *argv, "--dry-run")
    assert done.returncode == 0, done.stderr
    assert (
        "  N=64     K=96     (shipped)  M = 1" in done.stdout and "  N=256    K=512    (shipped)  M = 1" in done.stdout
    )
    done = run_tuner(site, tmp_path, *argv)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "cfg").glob("*.json")) == sorted(b32)
    none = run_tuner(site, tmp_path, "--shipped", "--block-n", "64", "--block-k", "64", "--replay", str(landscape))
    assert (
        none.returncode == 2 and none.stderr.startswith("error: --shipped: ") and "block_shape=[64, 64]" in none.stderr
    )


def test_vllms_file_is_confirmed_against_vllms_own_default(tmp_path):
    # vLLM runs num_stages 2 without a file: that, not SGLang's default, is what its file must beat.
    landscape = write_landscape(tmp_path / "l.csv", [SHAPE], [1])
    done = run_tuner(tmp_path / "site", tmp_path, "--N", "256", "--K", "512", "--batch-sizes", "1", "--trials", "2",
                     "--format", "vllm", "--replay", str(landscape))  # fmt: skip
    assert done.returncode == 0, done.stderr
    vllm_default = Config.from_sglang({**default_config(128, 128).as_sglang(), "num_stages": 2})
    row = next(line.split() for line in done.stdout.splitlines() if re.match(r"\s+1\s+\d", line))
    assert row[3] == f"{synthetic_us(PROBLEM, vllm_default):.1f}"  # the "default us" column is vLLM's default
