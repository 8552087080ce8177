"""SGLang's Hopper space in the tuner: config entries, the search space and its moves, landscapes, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tuner.benchmarkers import HEADER, LandscapeWriter, Measurement, ReplayBenchmarker, Row, read_rows
from tuner.cli.run import main as run_main
from tuner.dispatch import HOPPER_NOTE
from tuner.export import config_file_name, read_config_file, write_configs
from tuner.samplers import neighbours
from tuner.space import HOPPER_KEYS, SGLANG_KEYS, Config, Problem, search_space

H100 = "NVIDIA_H100_80GB_HBM3"
BASE = Config(block_m=16, block_n=64, block_k=128, group_m=1, num_warps=4, num_stages=4)
SPLIT = Config(block_m=16, block_n=64, block_k=128, group_m=1, num_warps=4, num_stages=4, split_k=16, swap_ab=True)


def test_the_hopper_space_is_the_base_space_at_every_split_and_swap():
    base, hopper = search_space(128), search_space(128, "hopper")
    assert len(hopper) == 12 * len(base) == 15360
    assert set(base) == {c for c in hopper if not c.hopper}
    with pytest.raises(ValueError, match="--space must be one of"):
        search_space(128, "blackwell")


# (config, its file entry's extra keys): the file rule, both keys exactly on the Hopper path.
@pytest.mark.parametrize(
    ("config", "extra"),
    [
        (BASE, {}),  # SPLIT_K 1 without swap: the base kernel, six keys
        (SPLIT, {"SPLIT_K": 16, "SWAP_AB": True}),
        (Config(**{**vars(BASE), "split_k": 2}), {"SPLIT_K": 2, "SWAP_AB": False}),  # a split alone
        (Config(**{**vars(BASE), "swap_ab": True}), {"SPLIT_K": 1, "SWAP_AB": True}),  # a swap alone
    ],
)
def test_a_file_entry_carries_the_hopper_keys_exactly_on_the_hopper_path(config, extra):
    entry = config.as_sglang()
    assert entry == {**BASE.as_sglang(), **extra}
    assert Config.from_sglang(entry) == config
    assert json.dumps(entry).count("true") == (extra.get("SWAP_AB") is True)  # a JSON bool, not 1


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({**BASE.as_sglang(), "SPLIT_K": 2}, "both of"),  # one key without the other
        ({**BASE.as_sglang(), "SPLIT_K": 3, "SWAP_AB": False}, "SPLIT_K must be one of"),
        ({**BASE.as_sglang(), "SPLIT_K": 2, "SWAP_AB": 1}, "SWAP_AB a bool"),
    ],
)
def test_bad_hopper_entries_are_refused(entry, message):
    with pytest.raises(ValueError, match=message):
        Config.from_sglang(entry)


def test_the_searcher_steps_split_k_and_flips_swap_ab_only_in_a_hopper_study():
    hopper_keys = (*SGLANG_KEYS, *HOPPER_KEYS)
    near = neighbours(Config(**{**vars(BASE), "split_k": 4}), [64, 128], hopper_keys)
    one_step = near[: near.index(Config(**{**vars(BASE), "split_k": 4, "swap_ab": True})) + 1]
    assert {c.split_k for c in one_step} == {2, 4, 8}  # SPLIT_K's neighbours, then the flip
    assert any(c.swap_ab for c in one_step)
    assert all(not c.hopper for c in neighbours(BASE, [64, 128]))  # a base study never leaves its space


def test_a_hopper_landscape_round_trips_and_a_base_one_refuses_hopper_rows(tmp_path):
    problem = Problem(N=576, K=7168, M=1, out_dtype="bfloat16")
    path = tmp_path / "hopper.csv.gz"
    with LandscapeWriter(path, hopper=True) as writer:
        writer.write(H100, problem, BASE, Measurement("ok", us=17.5))
        writer.write(H100, problem, SPLIT, Measurement("ok", us=6.0))
    assert [(row.config, row.us) for row in read_rows(path)] == [(BASE, 17.5), (SPLIT, 6.0)]
    with pytest.raises(ValueError, match="appending here needs"):
        LandscapeWriter(path)  # the columns must match
    with LandscapeWriter(tmp_path / "base.csv") as writer, pytest.raises(ValueError, match="SPLIT_K and SWAP_AB"):
        writer.write(H100, problem, SPLIT, Measurement("ok", us=6.0))


def _hopper_landscape(path, device: str, M: int = 1):
    """Every config of the Hopper space at one M: each doubling of SPLIT_K takes a tenth off."""
    problem = Problem(N=576, K=7168, M=M, out_dtype="bfloat16")
    with LandscapeWriter(path, hopper=True) as writer:
        for config in search_space(128, "hopper"):
            if config.shared_memory_bytes() <= 232448:
                us = 10 + config.block_m / 16 + 64 / config.block_n + abs(math.log2(config.num_stages / 4))
                writer.write(device, problem, config, Measurement("ok", us=us * 0.9 ** math.log2(config.split_k)))
    return path


def _run(tmp_path, landscape, *extra):
    argv = ["--N", "576", "--K", "7168", "--out-dtype", "bfloat16", "--batch-size", "1", "--trials", "24",
            "--space", "hopper", "--replay", str(landscape), "--storage", f"sqlite:///{tmp_path}/s.db",
            "--save-path", str(tmp_path / "cfg"), "--no-prior", *extra]  # fmt: skip
    return run_main(argv)


def test_hopper_space_tunes_exports_the_hopper_keys_and_says_which_sglang_runs_them(tmp_path, capsys):
    assert _run(tmp_path, _hopper_landscape(tmp_path / "h.csv.gz", H100)) == 0
    out = capsys.readouterr().out
    (path,) = (tmp_path / "cfg").glob("*.json")  # beside it, its .provenance record
    entry = json.loads(path.read_text())["1"]
    assert entry["SPLIT_K"] >= 4 and set(entry) == {*SGLANG_KEYS, *HOPPER_KEYS}  # found the splits' gains
    assert f"note: {HOPPER_NOTE}" in out


def test_hopper_space_needs_an_sm90_device(tmp_path, capsys):
    landscape = _hopper_landscape(tmp_path / "a100.csv.gz", "NVIDIA_A100-SXM4-80GB")
    assert _run(tmp_path, landscape) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --space hopper") and "SM90" in err and err.count("\n") == 1
    assert not (tmp_path / "cfg").exists()


def test_base_landscapes_still_read_with_their_sixteen_columns(tmp_path):
    path = tmp_path / "base.csv"
    row = Row(H100, Problem(N=576, K=7168, M=1), BASE, "ok", 17.5)
    path.write_text(",".join(HEADER) + "\n" + ",".join(row.as_csv()) + "\n")
    assert list(read_rows(path)) == [row]


def test_the_recorded_hopper_grid_replays_through_the_whole_run(tmp_path, capsys):
    # The shipped H100 grid, the shipped prior (its base configs lie outside the grid): every M lands
    # on the grid's optimum, and the file holds Hopper entries only where they run on that path.
    grid = Path(__file__).resolve().parents[2] / "studies" / "landscapes" / "hopper" / "h100_fp8_hopper_grid.csv.gz"
    argv = ["--N", "576", "--K", "7168", "--out-dtype", "bfloat16", "--batch-sizes", "1", "16", "64",
            "--space", "hopper", "--replay", str(grid), "--trials", "32", "--storage", f"sqlite:///{tmp_path}/h.db",
            "--save-path", str(tmp_path / "cfg")]  # fmt: skip
    assert run_main(argv) == 0
    (path,) = (tmp_path / "cfg").glob("*.json")  # beside it, its .provenance record
    entries = read_config_file(path)
    bench = ReplayBenchmarker.from_file(grid)
    for M, config in entries.items():
        problem = Problem(N=576, K=7168, M=M, out_dtype="bfloat16")
        assert bench.latency(problem, config) == bench.optimum(problem)[1]
        entry = json.loads(path.read_text())[str(M)]
        assert set(entry) == ({*SGLANG_KEYS, *HOPPER_KEYS} if config.hopper else set(SGLANG_KEYS))
    assert sorted(entries) == [1, 16, 64] and all(c.hopper for c in entries.values())


@pytest.mark.parametrize("faster", [True, False], ids=["faster-kept", "slower-replaced"])
def test_a_hopper_entry_in_the_file_is_replaced_under_the_base_space_only_by_a_faster_config(tmp_path, capsys, faster):
    # The file a --space base run writes into already holds a Hopper entry at its M: the run says so, times it
    # beside its search, and keeps it unless the search found a faster base config.
    landscape = _hopper_landscape(tmp_path / "h.csv.gz", H100)
    bench = ReplayBenchmarker.from_file(landscape)
    problem = Problem(N=576, K=7168, M=1, out_dtype="bfloat16")
    hopper = [c for c in search_space(128, "hopper") if c.hopper and bench.latency(problem, c) is not None]
    held = (min if faster else max)(hopper, key=lambda c: bench.latency(problem, c))
    path = tmp_path / "cfg" / config_file_name(576, 7168, H100, "fp8", 128, 128)
    write_configs(path, {1: held})
    assert _run(tmp_path, landscape, "--space", "base") == 0  # the last --space wins
    out = capsys.readouterr().out
    assert f"note: {path.name} holds Hopper entries (SPLIT_K, SWAP_AB) at M 1: --space base times each" in out
    exported = read_config_file(path)[1]
    assert (exported == held) is faster and (exported.hopper is faster)
