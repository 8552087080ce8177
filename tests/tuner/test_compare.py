"""tuner.compare's choice of contenders (the GPU timing itself runs only on a GPU)."""

from __future__ import annotations

from tuner.cli.compare import candidates, compile_jobs
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


def test_compile_jobs_share_a_binary_across_labels_and_batch_sizes():
    # M=16 and M=160 specialise alike (Triton keys an int on == 1 and % 16 == 0);
    # M=1 gets binaries of its own. At M=160 the tuned file's pick (key 256) is SGLang's default.
    problems = [Problem(N=7168, K=18432, M=M) for M in (1, 16, 160)]
    picks = {p: candidates(p, {"tuned": TUNED, "same": TUNED}, None) for p in problems}
    assert picks[problems[2]]["tuned"] == default_config(128, 128)
    jobs = compile_jobs(picks)
    assert sorted((p.M, c.block_m) for p, c in jobs) == [(1, 16), (1, 64), (16, 16), (16, 64)]
