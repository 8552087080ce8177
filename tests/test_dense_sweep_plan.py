"""benchmarks/dense_sweep_plan.py: the configs a dense landscape records, from a finished tuning run, and its sweep."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tuner.synthetic import STORED_SHAPE, shared_replay_storage
from tuner.analysis import load_studies
from tuner.export import read_config_file
from tuner.space import Config, search_space
from tuner.study import CONFIRMED, best, confirmation_of, dense_batch_sizes

REPO = Path(__file__).resolve().parents[1]
N, K = STORED_SHAPE


def _plan(tmp_path, *args):
    out = tmp_path / "configs.json"
    command = [sys.executable, "benchmarks/dense_sweep_plan.py", "--N", str(N), "--K", str(K), "--configs-out",
               str(out), "--landscape", str(tmp_path / "dense.csv.gz"), "--cores", "16", *args]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # as its usage line runs it: PYTHONPATH=. from the checkout
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    return done, out


def _one_step(a: Config, b: Config) -> bool:
    keys = ("block_m", "block_n", "block_k", "group_m", "num_warps", "num_stages")
    return sum(getattr(a, k) != getattr(b, k) for k in keys) == 1


def test_it_writes_the_winners_and_their_one_step_neighbours_and_prints_the_sweep(tmp_path, tmp_path_factory):
    url, _ = shared_replay_storage(tmp_path_factory)
    done, out = _plan(tmp_path, "--storage", url)
    assert done.returncode == 0, done.stderr
    configs = [Config.from_sglang(entry) for entry in json.loads(out.read_text())]
    winners = set()
    for record in load_studies(url):
        winners.add(Config.from_sglang(confirmation_of(record.study.user_attrs)[CONFIRMED]))
        winners.add(best(record.trials)[0])
    assert winners <= set(configs) and len(configs) == len(set(configs)) <= len(search_space(128))
    assert all(c in winners or any(_one_step(c, w) for w in winners) for c in configs)
    summary, cost, command = done.stdout.strip().splitlines()
    assert summary.startswith(f"fp8 N={N} K={K} block [128, 128] -> float16: {len(configs)} configs ({len(winners)} ")
    assert cost.startswith("estimate: ") and "over 15 processes" in cost
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "tuner.sweep"] and argv[argv.index("--configs") + 1] == str(out)
    batch_sizes = argv[argv.index("--batch-sizes") + 1 : argv.index("--out")]
    assert list(map(int, batch_sizes)) == dense_batch_sizes()


def test_config_files_give_the_winners_instead(tmp_path, tmp_path_factory):
    _, file = shared_replay_storage(tmp_path_factory)
    done, out = _plan(tmp_path, "--config-files", str(file), "--no-neighbours")
    assert done.returncode == 0, done.stderr
    entries = set(read_config_file(file).values())
    assert {Config.from_sglang(entry) for entry in json.loads(out.read_text())} == entries


@pytest.mark.parametrize("args", [["--out-dtype", "float32"], ["--space", "hopper"]])
def test_a_shape_the_storage_did_not_tune_is_one_line_and_exit_2(tmp_path, tmp_path_factory, args):
    url, _ = shared_replay_storage(tmp_path_factory)
    done, out = _plan(tmp_path, "--storage", url, *args)
    assert done.returncode == 2 and not out.exists()
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: the storage holds no current") and f"N={N} K={K}" in line
