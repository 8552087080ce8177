"""tuner.compare's choice of contenders (the GPU timing itself runs only on a GPU)."""

from __future__ import annotations

from tuner.cli.compare import candidates
from tuner.space import Config, Problem, default_config

TUNED = {
    1: Config(block_m=16, block_n=64, block_k=128, group_m=1, num_warps=8, num_stages=5),
    256: Config(block_m=64, block_n=128, block_k=128, group_m=32, num_warps=4, num_stages=3),
}
SHIPPED = {
    1: Config(block_m=64, block_n=64, block_k=128, group_m=32, num_warps=4, num_stages=5),
    4096: Config(block_m=64, block_n=128, block_k=128, group_m=16, num_warps=4, num_stages=3),
}


def test_each_file_contributes_sglangs_pick_plus_optimum_and_default():
    optimum = Config(block_m=64, block_n=256, block_k=128, group_m=32, num_warps=8, num_stages=3)
    picks = candidates(Problem(N=7168, K=18432, M=3000), {"tuned": TUNED, "sglang": SHIPPED}, optimum)
    assert picks == {"tuned": TUNED[256], "sglang": SHIPPED[4096], "optimum": optimum,
                     "default": default_config(128, 128)}  # fmt: skip


def test_without_a_landscape_there_is_no_optimum():
    assert set(candidates(Problem(N=7168, K=18432, M=1), {"tuned": TUNED}, None)) == {"tuned", "default"}
