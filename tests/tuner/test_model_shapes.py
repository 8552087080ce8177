"""Shapes from a Hugging Face config.json, and the --dry-run plan, with configs written here."""

from __future__ import annotations

import json
import re

import pytest

from tuner.run import main
from tuner.shapes import deepseek_v3_shapes, load_model_config, model_shapes

# A Qwen3-32B-like dense model: hidden 5120, intermediate 25600, 64 heads, 8 KV heads, head_dim 128.
DENSE = {"hidden_size": 5120, "intermediate_size": 25600, "num_attention_heads": 64,
         "num_key_value_heads": 8, "head_dim": 128}  # fmt: skip


# (tp, expected (layer, N, K)): column-parallel layers split N, row-parallel ones split K.
@pytest.mark.parametrize(
    ("tp", "expected"),
    [
        (
            1,
            [
                ("qkv_proj", 10240, 5120),
                ("o_proj", 5120, 8192),
                ("gate_up_proj", 51200, 5120),
                ("down_proj", 5120, 25600),
            ],
        ),  # fmt: skip
        # 8 KV heads over 8 ranks: one each, so QKV is (8 + 2) heads of 128.
        (
            8,
            [("qkv_proj", 1280, 5120), ("o_proj", 5120, 1024), ("gate_up_proj", 6400, 5120), ("down_proj", 5120, 3200)],
        ),  # fmt: skip
        # 16 ranks but 8 KV heads: KV heads are replicated, one per rank.
        (
            16,
            [("qkv_proj", 768, 5120), ("o_proj", 5120, 512), ("gate_up_proj", 3200, 5120), ("down_proj", 5120, 1600)],
        ),  # fmt: skip
    ],
)
def test_dense_model_layers(tp, expected):
    assert model_shapes(DENSE, tp) == expected


def test_head_dim_and_kv_heads_default_like_hugging_face():
    config = {"hidden_size": 4096, "intermediate_size": 11008, "num_attention_heads": 32}
    assert model_shapes(config, 1)[0] == ("qkv_proj", 3 * 4096, 4096)


def test_deepseek_v3_config_maps_to_the_spec_list():
    config = {"model_type": "deepseek_v3", "kv_lora_rank": 512, "hidden_size": 7168}
    assert [(N, K) for _, N, K in model_shapes(config, 8)] == deepseek_v3_shapes(8)


@pytest.mark.parametrize("args", [["--tp-size", "8"], []])
def test_tp_size_alone_still_plans_deepseek_v3s_fixed_list(capsys, args):
    assert main([*args, "--trials", "1", "--dry-run"]) == 0
    shapes = re.findall(r"^  N=(\d+) +K=(\d+) +\((\w+)\)", capsys.readouterr().out, flags=re.MULTILINE)
    assert [(int(N), int(K)) for N, K, _ in shapes] == deepseek_v3_shapes(8)
    assert {name for *_, name in shapes} == {"deepseek_v3"}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"intermediate_size": 1, "num_attention_heads": 1}, "'hidden_size'"),  # missing field
        ({**DENSE, "num_attention_heads": "64"}, "'num_attention_heads'"),  # not an int
        ({**DENSE, "num_attention_heads": 60}, "--tp-size 8 must divide"),  # TP does not divide heads
    ],
)
def test_bad_model_config_raises(config, message):
    with pytest.raises(ValueError, match=message):
        model_shapes(config, 8)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "does not exist"), ("{not json", "not a JSON config file"), ("[1, 2]", "must hold a JSON object")],
)
def test_bad_model_file_raises(tmp_path, content, message):
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_model_config(path)


def test_dry_run_prints_the_plan_and_touches_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "config.json"
    model.write_text(json.dumps(DENSE))
    assert main(["--model", str(model), "--tp-size", "1", "--trials", "32", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "4 shapes x 18 batch sizes x 32 trials = 2304 timed configs" in out
    assert "N=51200  K=5120   (gate_up_proj)" in out and "estimate: about" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]  # no storage, no configs


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "missing.json"], "does not exist"),
        (["--model", "config.json", "--N", "1", "--K", "1"], "not both"),
    ],
)
def test_model_usage_errors_exit_2_with_one_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(DENSE))
    assert main([*args, "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]
