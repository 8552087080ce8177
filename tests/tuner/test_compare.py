"""tuner.compare's choice of contenders and its command line (the GPU timing itself runs only on a GPU)."""

from __future__ import annotations

import pytest
import torch

from tuner.benchmarkers import Measurement
from tuner.cli.compare import candidates, compile_jobs, main, time_picks
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


class RecordingSession:
    """Answers with set latencies per config and records what it was asked."""

    def __init__(self, latencies: dict[Config, list[float]], failing: set[Config] = frozenset()) -> None:
        self.latencies, self.failing = latencies, failing
        self.checked: list[Config] = []
        self.retimed: list[Config] = []

    def measure(self, problem, config, prune_above_us):
        self.checked.append(config)
        return Measurement("failed", reason="wrong result") if config in self.failing else Measurement("ok", us=1.0)

    def retime(self, problem, configs, rounds):
        self.retimed = list(configs)
        return {config: self.latencies[config][:rounds] for config in configs}


def test_labels_on_one_config_share_its_one_timing_and_a_failing_config_drops_its_label():
    default = default_config(128, 128)
    broken = SHIPPED[1]
    session = RecordingSession({TUNED[1]: [30.0, 10.0, 20.0], default: [50.0, 40.0, 60.0]}, failing={broken})
    picks = {"tuned": TUNED[1], "vllm": TUNED[1], "sglang": broken, "default": default}
    medians = time_picks(session, Problem(N=7168, K=18432, M=1), picks, rounds=3)
    assert medians == {"tuned": 20.0, "vllm": 20.0, "default": 50.0}
    assert session.checked == [TUNED[1], broken, default]  # each distinct config checked once
    assert session.retimed == [TUNED[1], default]


def test_each_round_of_a_retime_starts_with_another_config(monkeypatch):
    """The real session's rounds, with the GPU's part (operands, launches, timing) stood in for."""
    from kernels.timing import GraphTiming
    from tuner.benchmarkers import _cuda

    problem, (a, b, c) = Problem(N=7168, K=18432, M=1), (TUNED[1], TUNED[256], SHIPPED[1])
    session = object.__new__(_cuda.CudaTimingSession)  # no CUDA context on this machine
    session.gpu_s = 0.0
    monkeypatch.setattr(session, "operands", lambda problem: ["set"], raising=False)
    monkeypatch.setattr(session, "_bound_launches", lambda problem, config, sets: [lambda: config], raising=False)
    order: list[Config] = []

    def fake_time_launches(launch, n_sets):
        order.append(launch(0))
        return GraphTiming(estimate_us=1.0, median_us=1.0, p20_us=1.0, p80_us=1.0, launches_per_replay=1)

    monkeypatch.setattr(session, "_time", fake_time_launches, raising=False)
    times = session.retime(problem, [a, b, c], 3)
    assert order == [a, b, c, b, c, a, c, a, b]
    assert times == {a: [1.0] * 3, b: [1.0] * 3, c: [1.0] * 3}


def test_a_folder_gives_each_shape_its_file_this_devices_first(tmp_path):
    from tuner.cli.compare import _shape_files
    from tuner.export import config_file_name

    problem = Problem(N=576, K=5120, M=1, block_n=32, block_k=32)
    write_configs(tmp_path / config_file_name(576, 5120, "NVIDIA_H200", "fp8", 32, 32), SHIPPED)
    write_configs(tmp_path / config_file_name(576, 5120, "NVIDIA_H200", "fp8", 128, 128), TUNED)  # another block
    assert _shape_files({"shipped": tmp_path}, problem, "NVIDIA_H100_80GB_HBM3") == {"shipped": SHIPPED}
    write_configs(tmp_path / config_file_name(576, 5120, "NVIDIA_H100_80GB_HBM3", "fp8", 32, 32, vllm=True), TUNED)
    assert _shape_files({"shipped": tmp_path}, problem, "NVIDIA_H100_80GB_HBM3") == {"shipped": TUNED}
    assert _shape_files({"shipped": tmp_path}, Problem(N=1, K=1, M=1), "X") == {}  # no file of that shape


def test_several_shapes_take_folders(tmp_path, capsys):
    write_configs(tmp_path / "good.json", TUNED)
    argv = ["--N", "576", "7168", "--K", "7168", "18432", "--config", f"tuned={tmp_path}/good.json", "--out",
            str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 2
    assert "several shapes take a folder of config files" in capsys.readouterr().err
