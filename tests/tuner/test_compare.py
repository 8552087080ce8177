"""tuner.compare's choice of contenders and its command line (the GPU timing itself runs only on a GPU)."""

from __future__ import annotations

import pytest
import torch

from tuner.cli.compare import candidates, compile_jobs, main
from tuner.export import write_configs
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


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("{tmp}/missing.json", "error: --config must be LABEL=PATH, but got '{tmp}/missing.json'."),
        ("tuned={tmp}/missing.json", "error: {tmp}/missing.json is not a readable JSON config file: "),
        ("tuned={tmp}/corrupt.json", "error: {tmp}/corrupt.json is not a readable JSON config file: "),
        ("default={tmp}/good.json", "error: --config label 'default' is taken; give each file its own label."),
    ],
    ids=["no-label", "missing-file", "corrupt-file", "taken-label"],
)
def test_a_bad_config_is_one_line_and_exit_2(tmp_path, capsys, config, message):
    (tmp_path / "corrupt.json").write_text('{"1": {"BLOCK_SIZE_M": 64,')
    write_configs(tmp_path / "good.json", TUNED)
    argv = ["--N", "7168", "--K", "18432", "--config", config.format(tmp=tmp_path), "--out", str(tmp_path / "c.csv")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(message.format(tmp=tmp_path)), err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks what a machine without a GPU is told")
def test_without_a_gpu_one_line_and_exit_1(tmp_path, capsys):
    write_configs(tmp_path / "good.json", TUNED)
    argv = ["--N", "7168", "--K", "18432", "--config", f"tuned={tmp_path}/good.json", "--out", str(tmp_path / "c.csv")]
    assert main(argv) == 1
    assert capsys.readouterr().err == "error: tuner.compare times kernels on a CUDA GPU and none is visible.\n"
    assert not (tmp_path / "c.csv").exists()


def test_help_says_it_needs_a_gpu_and_gives_defaults(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit):
        main(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "(needs a CUDA GPU)" in shown
    assert "--rounds ROUNDS interleaved rounds, the median of which is reported (default: 3)" in shown


def test_compile_jobs_share_a_binary_across_labels_and_batch_sizes():
    # M=16 and M=160 specialise alike (Triton keys an int on == 1 and % 16 == 0);
    # M=1 gets binaries of its own. At M=160 the tuned file's pick (key 256) is SGLang's default.
    problems = [Problem(N=7168, K=18432, M=M) for M in (1, 16, 160)]
    picks = {p: candidates(p, {"tuned": TUNED, "same": TUNED}, None) for p in problems}
    assert picks[problems[2]]["tuned"] == default_config(128, 128)
    jobs = compile_jobs(picks)
    assert sorted((p.M, c.block_m) for p, c in jobs) == [(1, 16), (1, 64), (16, 16), (16, 64)]
