"""The prior: per device first, else a device of the same architecture; it says which; only shipped files."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import optuna
import pytest

from tests.tuner.synthetic import synthetic_rows
from tuner.benchmarkers import ReplayBenchmarker, Row
from tuner.samplers import PRIOR_DEVICE, Prior, architecture
from tuner.samplers._prior import PRIOR_FOLDER, PRIOR_PACKAGE, SHIPPED
from tuner.space import Config, Problem
from tuner.study import TuneOptions, study_name, tune_problem

H100, H200, B200, A100 = "NVIDIA_H100_80GB_HBM3", "NVIDIA_H200", "NVIDIA_B200", "NVIDIA_A100-SXM4-80GB"
PROBLEM = Problem(N=256, K=512, M=16)
WIDE = Config(block_m=16, block_n=128, block_k=128, group_m=1, num_warps=4, num_stages=3)
NARROW = Config(block_m=16, block_n=32, block_k=128, group_m=1, num_warps=4, num_stages=3)


def rows(device: str, shapes: list[tuple[int, int]], best: Config) -> list[Row]:
    """Two configs per shape at M = 16, best the faster one: which config ranks first tells the source."""
    out = []
    for N, K in shapes:
        problem = Problem(N=N, K=K, M=16)
        out += [Row(device, problem, c, "ok", 10.0 if c == best else 20.0) for c in (WIDE, NARROW)]
    return out


@pytest.mark.parametrize(
    ("name", "family"),
    [(H100, "Hopper"), (H200, "Hopper"), ("NVIDIA_H20", "Hopper"), ("NVIDIA GH200 480GB", "Hopper"),
     (B200, "Blackwell"), (A100, None), ("Synthetic_GPU", None)],
)  # fmt: skip
def test_architecture_from_the_device_name(name, family):
    assert architecture(name) == family


def test_a_device_with_landscapes_of_its_own_is_ranked_from_them():
    prior = Prior([*rows(H200, [(512, 512)], NARROW), *rows(H100, [(512, 512), (1024, 512)], WIDE)])
    assert prior.source(PROBLEM, H200) == H200
    assert prior.ranking(PROBLEM, H200)[0] == NARROW


def test_a_device_without_landscapes_is_ranked_from_the_same_architectures_and_never_another():
    # Before, the ranking keyed on the device name exactly: an H200 run had no prior at all.
    prior = Prior([*rows(H100, [(512, 512)], WIDE), *rows(A100, [(512, 512)], NARROW)])
    assert (prior.source(PROBLEM, H200), prior.ranking(PROBLEM, H200)[:1]) == (H100, [WIDE])
    assert (prior.source(PROBLEM, B200), prior.ranking(PROBLEM, B200)) == (None, [])  # Blackwell: no kin here
    assert (prior.source(PROBLEM, "NVIDIA_A10"), prior.ranking(PROBLEM, "NVIDIA_A10")) == (None, [])  # unknown


def test_the_shape_under_test_never_counts_and_the_kin_with_most_shapes_is_chosen():
    prior = Prior([
        *rows(H200, [(PROBLEM.N, PROBLEM.K)], NARROW),  # the shape being tuned: not a source
        *rows("NVIDIA_H800", [(512, 512)], NARROW),
        *rows(H100, [(512, 512), (1024, 512)], WIDE),
    ])  # fmt: skip
    assert prior.source(PROBLEM, H200) == H100
    assert prior.ranking(PROBLEM, H200)[0] == WIDE


def test_a_study_records_which_devices_prior_seeded_it():
    landscape = [replace(row, device=H200) for row in synthetic_rows([(PROBLEM.N, PROBLEM.K)], [PROBLEM.M])]
    bench = ReplayBenchmarker(landscape)
    prior = Prior(replace(row, device=H100) for row in synthetic_rows([(512, 1024)], [PROBLEM.M]))
    for options, recorded in ((TuneOptions(trials=2, prior=prior), H100), (TuneOptions(trials=2), None)):
        storage = optuna.storages.InMemoryStorage()
        tune_problem(storage, PROBLEM, bench, options, [])
        study = optuna.load_study(study_name=study_name(PROBLEM, H200, bench.kind, bench.software), storage=storage)
        assert study.user_attrs.get(PRIOR_DEVICE) == recorded


def test_the_prior_reads_exactly_what_package_data_ships():
    # Package data installs one pattern; a file the prior accepted beyond it (a plain .csv) would be
    # read in a checkout and missing from every install.
    root = Path(__file__).resolve().parents[2]
    assert f'"{PRIOR_PACKAGE}" = ["{PRIOR_FOLDER}/{SHIPPED}"]' in (root / "pyproject.toml").read_text()
    folder = root / PRIOR_PACKAGE.replace(".", "/") / PRIOR_FOLDER
    shipped = sorted(folder.glob(SHIPPED))
    assert shipped and Prior.shipped().shapes == Prior.from_files(shipped).shapes == len(shipped)


def test_the_shipped_prior_says_which_blocks_it_learned_and_a_32_block_dry_run_says_it_has_none(tmp_path, capsys):
    from tests.tuner.synthetic import write_landscape
    from tuner.cli.run import main as run_main
    from tuner.samplers import Prior

    assert Prior.shipped().blocks == {(128, 128)}  # a [32, 32] study warm-starts from no other block's landscapes
    landscape = write_landscape(tmp_path / "l.csv", [(96, 160)], [1], block=(32, 32))
    argv = [
        "--N",
        "96",
        "--K",
        "160",
        "--block-n",
        "32",
        "--block-k",
        "32",
        "--batch-sizes",
        "1",
        "--replay",
        str(landscape),
        "--storage",
        f"sqlite:///{tmp_path}/s.db",
        "--save-path",
        str(tmp_path),
        "--dry-run",
    ]
    assert run_main(argv) == 0
    out = capsys.readouterr().out
    assert "prior: none (no shipped landscape was recorded at [32, 32] blocks)" in out
    assert "fp8 in [32, 32] blocks, float16 out" in out


def test_a_config_a_shape_did_not_record_is_unknown_there_and_one_that_failed_counts_as_failed():
    # A cut-short sweep records part of the space. Scored as failures there, the configs it lacks all
    # ranked low: with the partial (24576, 1536) sweep in the prior, every 64-row tile did.
    complete = Problem(N=512, K=512, M=16)
    partial = Problem(N=1024, K=512, M=16)
    recorded = [Row(H100, complete, WIDE, "ok", 10.0), Row(H100, complete, NARROW, "ok", 11.0)]
    assert Prior([*recorded, Row(H100, partial, NARROW, "ok", 10.0)]).ranking(PROBLEM, H100) == [WIDE, NARROW]
    failed = Row(H100, partial, WIDE, "out_of_resources", None)
    assert Prior([*recorded, Row(H100, partial, NARROW, "ok", 10.0), failed]).ranking(PROBLEM, H100) == [NARROW, WIDE]
