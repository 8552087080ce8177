"""tuner.compare's choice of contenders (the GPU timing itself runs only on a GPU)."""

from __future__ import annotations

from tuner.compare import candidates
from tuner.measure import Problem
from tuner.space import Config, default_config

TUNED = {1: Config(16, 64, 128, 1, 8, 5), 256: Config(64, 128, 128, 32, 4, 3)}
SHIPPED = {1: Config(64, 64, 128, 32, 4, 5), 4096: Config(64, 128, 128, 16, 4, 3)}


def test_each_file_contributes_sglangs_pick_plus_optimum_and_default():
    optimum = Config(64, 256, 128, 32, 8, 3)
    picks = candidates(Problem(7168, 18432, 3000), {"tuned": TUNED, "sglang": SHIPPED}, optimum)
    assert picks == {"tuned": TUNED[256], "sglang": SHIPPED[4096], "optimum": optimum,
                     "default": default_config(128, 128)}  # fmt: skip


def test_without_a_landscape_there_is_no_optimum():
    assert set(candidates(Problem(7168, 18432, 1), {"tuned": TUNED}, None)) == {"tuned", "default"}
