"""Synthetic landscapes for tests: a smooth latency model over the space, with realistic failures.

Also the storage that the report, dashboard and notebook tests read: one shape tuned in replay by
the real command line, made once per test session; and fresh databases on the PostgreSQL server
that TUNER_TEST_POSTGRES names (.ci/postgres.sh starts one) and on the MariaDB server that
TUNER_TEST_MYSQL names (.ci/mariadb.sh starts one).
"""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
import sqlalchemy

from tuner.benchmarkers import HEADER, HOPPER_HEADER, Row
from tuner.export import config_file_name
from tuner.space import DEFAULT_BATCH_SIZES, SPLIT_K, SWAP_AB, Config, Problem, search_space

DEVICE = "Synthetic_GPU"


def synthetic_us(problem: Problem, config: Config) -> float | None:
    """A latency with one optimum per M that moves with M, like the real landscapes; None = fails."""
    if config.shared_memory_bytes() > 232448:
        return None
    tiles = math.ceil(problem.M / config.block_m) * math.ceil(problem.N / config.block_n)
    waves = math.ceil(tiles / 132)
    work = waves * config.block_m * config.block_n * problem.K / 2e6
    waste = abs(math.log2(config.num_stages / 3)) + 0.3 * (config.num_warps == 8) + 0.05 * math.log2(config.group_m)
    return round(5 + work * (1 + 0.2 * waste) + 3 * (config.block_k == 64), 3)


def synthetic_rows(shapes, batch_sizes, *, block=(128, 128), input_type="fp8", out_dtype="float16"):
    for N, K in shapes:
        for M in batch_sizes:
            problem = Problem(
                N=N, K=K, M=M, block_n=block[0], block_k=block[1], input_type=input_type, out_dtype=out_dtype
            )
            for config in search_space(block[1]):
                us = synthetic_us(problem, config)
                yield Row(DEVICE, problem, config, "ok" if us is not None else "out_of_resources", us)


def write_landscape(path: Path, shapes, batch_sizes, **kwargs) -> Path:
    with open(path, "w") as f:
        f.write(",".join(HEADER) + "\n")
        for row in synthetic_rows(shapes, batch_sizes, **kwargs):
            f.write(",".join(row.as_csv()) + "\n")
    return path


def dense_us(problem: Problem, config: Config) -> float | None:
    """A latency with wave quantization that moves the optimum between SGLang's batch sizes; None = fails.

    Each wave of tiles on 132 SMs takes the longer of its MMA work (small tiles use the tensor cores
    less well) and streaming its operands, so the best tile height steps with M, and a key's entry
    can be far off a few M away (M = 17 on 16-row tiles takes two waves where 32-row ones take one).
    """
    if config.shared_memory_bytes() > 232448:
        return None
    M, N, K, bm, bn = problem.M, problem.N, problem.K, config.block_m, config.block_n
    waves = math.ceil(math.ceil(M / bm) * math.ceil(N / bn) / 132)
    per_wave = max(bm * bn * K / 4.0e6 * (1 + 16 / bm + 16 / bn), (bm + bn) * K / 2.5e4)
    waste = 0.15 * abs(math.log2(config.num_stages / 4)) + 0.08 * (config.block_k == 64)
    waste += 0.1 * (config.num_warps == 8) * (bm * bn < 8192) + 0.1 * (config.num_warps == 4) * (bm * bn >= 32768)
    waste += 0.02 * math.log2(config.group_m) * (M > bm)  # the tile order matters only with several rows
    return round(4 + waves * per_wave * (1 + waste), 3)


# A dense landscape's M: every M up to 64, then steps of ~10% to 4096 (not multiples of 16, unlike a
# check's probes on a GPU), and SGLang's batch sizes; and the configs it records at each, a subset of
# the space around the optimum of every M, so that a test reads 17k rows rather than 137k.
DENSE_BATCH_SIZES = tuple(sorted({*range(1, 65), *DEFAULT_BATCH_SIZES, *(round(64 * 1.1**i) for i in range(1, 44))}))
DENSE_CONFIGS = [
    Config(block_m=bm, block_n=bn, block_k=128, group_m=g, num_warps=w, num_stages=s)
    for bm, bn, g, w, s in itertools.product((16, 32, 64, 128, 256), (32, 64, 128, 256), (1, 32), (4, 8), (3, 4))
]


def write_dense_landscape(path: Path, shapes, batch_sizes=DENSE_BATCH_SIZES) -> Path:
    """A landscape of dense_us over DENSE_CONFIGS at every M of batch_sizes, for float16 out."""
    with open(path, "w") as f:
        f.write(",".join(HEADER) + "\n")
        for N, K in shapes:
            for M in batch_sizes:
                problem = Problem(N=N, K=K, M=M)
                for config in DENSE_CONFIGS:
                    us = dense_us(problem, config)
                    row = Row(DEVICE, problem, config, "ok" if us is not None else "out_of_resources", us)
                    f.write(",".join(row.as_csv()) + "\n")
    return path


# The Hopper check's grid (benchmarks/hopper_check.py): 18 tiles at GROUP_SIZE_M 1 and 4 warps, each
# at every SPLIT_K and SWAP_AB; 216 of the Hopper space's 15,360 configs.
HOPPER_GRID = [
    Config(block_m=bm, block_n=bn, block_k=128, group_m=1, num_warps=4, num_stages=s, split_k=k, swap_ab=swap)
    for bm, bn, s, k, swap in itertools.product((16, 32, 64), (32, 64, 128), (3, 4), SPLIT_K, SWAP_AB)
]


def synthetic_hopper_us(problem: Problem, config: Config) -> float:
    """The base latency, split over SPLIT_K programs while they still find idle SMs, plus a reduce launch;
    SWAP_AB pays at small M. Like the recorded grid, its optimum splits narrow shapes most."""
    base = synthetic_us(problem, replace(config, split_k=1, swap_ab=False))
    tiles = math.ceil(problem.M / config.block_m) * math.ceil(problem.N / config.block_n)
    splits = min(config.split_k, max(1, 132 // tiles))
    swap = (0.8 if problem.M <= 16 else 1.1) if config.swap_ab else 1.0
    return round(2 + (base - 2) * swap / splits + 0.9 * (config.split_k > 1) + 0.01 * config.split_k, 3)


def write_hopper_landscape(path: Path, shapes, batch_sizes) -> Path:
    """A landscape of the Hopper check's grid, with the SPLIT_K and SWAP_AB columns."""
    with open(path, "w") as f:
        f.write(",".join(HOPPER_HEADER) + "\n")
        for N, K in shapes:
            for M in batch_sizes:
                problem = Problem(N=N, K=K, M=M)
                for config in HOPPER_GRID:
                    row = Row(DEVICE, problem, config, "ok", synthetic_hopper_us(problem, config))
                    f.write(",".join(row.as_csv(hopper=True)) + "\n")
    return path


# The shared storage: its shape, batch sizes, budget and exported file.
STORED_SHAPE = (512, 1024)
STORED_BATCH_SIZES = (1, 16, 256)
STORED_TRIALS = 8
STORED_FILE_NAME = config_file_name(*STORED_SHAPE, DEVICE, "fp8", 128, 128)


def planted_failure(config: Config) -> str | None:
    """Failures planted on the search's path: the default's neighbours with 8 warps or 5 stages."""
    return "compile_error" if config.num_warps == 8 else "timeout" if config.num_stages == 5 else None


def stored_rows(batch_sizes=STORED_BATCH_SIZES) -> list[Row]:
    """The landscape the shared storage was tuned on: STORED_SHAPE with the planted failures."""
    rows = []
    for row in synthetic_rows([STORED_SHAPE], batch_sizes):
        if (status := planted_failure(row.config)) is not None:
            row = Row(row.device, row.problem, row.config, status, None)
        rows.append(row)
    return rows


def replay_storage(folder: Path, batch_sizes=STORED_BATCH_SIZES, trials: int = STORED_TRIALS) -> tuple[str, Path]:
    """Tune STORED_SHAPE in replay through the real CLI into folder: (storage URL, exported config file)."""
    landscape = folder / "landscape.csv"
    with open(landscape, "w") as f:
        f.write(",".join(HEADER) + "\n")
        for row in stored_rows(batch_sizes):
            f.write(",".join(row.as_csv()) + "\n")
    url = f"sqlite:///{folder}/s.db"
    N, K = STORED_SHAPE
    command = [sys.executable, "-m", "tuner.run", "--N", str(N), "--K", str(K),
               "--batch-sizes", *map(str, batch_sizes), "--replay", str(landscape), "--trials", str(trials),
               "--storage", url, "--save-path", str(folder / "cfg"), "--no-prior", "--seed", "0"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return url, folder / "cfg" / STORED_FILE_NAME


def shared_replay_storage(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """replay_storage, made once per test session: the report, dashboard and notebook tests only read it."""
    folder = tmp_path_factory.getbasetemp() / "replay_storage"
    if not (folder / "done").exists():
        folder.mkdir(exist_ok=True)
        replay_storage(folder)
        (folder / "done").touch()
    return f"sqlite:///{folder}/s.db", folder / "cfg" / STORED_FILE_NAME


POSTGRES = os.environ.get("TUNER_TEST_POSTGRES")
NO_POSTGRES = "needs TUNER_TEST_POSTGRES (.ci/postgres.sh starts a server)"


def fresh_database(server: str, name: str) -> str:
    """The URL of database name on the PostgreSQL server at URL server, created empty (dropped first)."""
    engine = sqlalchemy.create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    engine.dispose()
    return server.rsplit("/", 1)[0] + f"/{name}"


def postgres_database(name: str) -> str:
    """A fresh database on the test server, so each test starts from an empty storage."""
    return fresh_database(POSTGRES, name)


MYSQL = os.environ.get("TUNER_TEST_MYSQL")
NO_MYSQL = "needs TUNER_TEST_MYSQL (.ci/mariadb.sh starts a server)"


def mysql_database(name: str) -> str:
    """A fresh database on the MariaDB test server, so each test starts from an empty storage."""
    engine = sqlalchemy.create_engine(MYSQL, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    engine.dispose()
    return MYSQL.rsplit("/", 1)[0] + f"/{name}"


def widened_sqlite(path: Path) -> str:
    """The URL of a fresh SQLite storage whose trials table holds one column more than Optuna made.

    Real DDL on a real file: what a newer Optuna's tables could look like to this code, so the
    tuner's row writes do not serve it (tuner.study._fence) and its trials go through Optuna's calls.
    """
    url = f"sqlite:///{path}"
    optuna.storages.RDBStorage(url).engine.dispose()
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE trials ADD COLUMN note TEXT")
    engine.dispose()
    return url
