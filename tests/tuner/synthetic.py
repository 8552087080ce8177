"""Synthetic landscapes for tests: a smooth latency model over the space, with realistic failures."""

from __future__ import annotations

import math
from pathlib import Path

from tuner.benchmarkers import HEADER, Row
from tuner.space import Config, Problem, search_space

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
