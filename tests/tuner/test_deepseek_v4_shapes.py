"""DeepSeek-V4.x's block-quantized linear layers, derived from its config.json (models/deepseek_v4_1_flash.json)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tuner.cli.run import main
from tuner.shapes import load_model_config, model_plan

FLASH = Path(__file__).parent / "models" / "deepseek_v4_1_flash.json"


def flash(**text_fields) -> dict:
    """DeepSeek-V4.1-Flash's config.json, with text_config's fields replaced (None deletes one)."""
    config = load_model_config(FLASH)
    for name, value in text_fields.items():
        if value is None:
            del config["text_config"][name]
        else:
            config["text_config"][name] = value
    return config


# (tp, expected (layer, N, K)), worked out by hand from the published fields: engram.wkv maps
# (4 - 1) n-gram sizes x 8 heads x 256 = 6144 to 5120 x (hc_mult 4 + 1) = 25600, replicated; wqkv_a maps
# 5120 to q_lora 1280 + the KV head 512, replicated; wq_b lifts 1280 to 64 heads x 512 = 32768, split by
# heads; indexer.wq_b lifts 1280 to 32 index heads x 128 = 4096, replicated; wo_b maps 8 groups x o_lora
# 1024 = 8192 to 5120, split by groups; one shared expert of moe_intermediate_size 2304.
@pytest.mark.parametrize(
    ("tp", "expected"),
    [
        (1, [("engram.wkv", 25600, 6144), ("wqkv_a", 1792, 5120), ("wq_b", 32768, 1280),
             ("indexer.wq_b", 4096, 1280), ("wo_b", 5120, 8192),
             ("shared_experts.gate_up_proj", 4608, 5120), ("shared_experts.down_proj", 5120, 2304)]),
        # 16 heads and 2 output groups per rank; 2304 / 4 = 576.
        (4, [("engram.wkv", 25600, 6144), ("wqkv_a", 1792, 5120), ("wq_b", 8192, 1280),
             ("indexer.wq_b", 4096, 1280), ("wo_b", 5120, 2048),
             ("shared_experts.gate_up_proj", 1152, 5120), ("shared_experts.down_proj", 5120, 576)]),
        # 8 heads and 1 output group per rank; 2304 / 8 = 288. wq_b's share is the indexer's whole: one shape.
        (8, [("engram.wkv", 25600, 6144), ("wqkv_a", 1792, 5120), ("wq_b", 4096, 1280),
             ("indexer.wq_b", 4096, 1280), ("wo_b", 5120, 1024),
             ("shared_experts.gate_up_proj", 576, 5120), ("shared_experts.down_proj", 5120, 288)]),
    ],
)  # fmt: skip
def test_v4_1_flash_layers(tp, expected):
    plan = model_plan(load_model_config(FLASH), tp)
    assert list(plan.layers) == expected
    assert (plan.model, plan.tp_size, plan.block_shape, plan.input_type) == ("deepseek_v41", tp, (32, 32), "fp8")
    assert not any("refuse to load" in note for note in plan.notes)  # every split is whole [32, 32] blocks


# SGLang 0.5.23 ships these [32, 32] files, for NVIDIA_H200 only (sglang/kernels/ops/gemm/configs/), and
# the layers each shape is at TP 4 and at TP 8: the ten are exactly the two TP sizes' plans.
SHIPPED = {
    (25600, 6144): {4: "engram.wkv", 8: "engram.wkv"},
    (1792, 5120): {4: "wqkv_a", 8: "wqkv_a"},
    (8192, 1280): {4: "wq_b"},
    (4096, 1280): {4: "indexer.wq_b", 8: "wq_b+indexer.wq_b"},
    (5120, 2048): {4: "wo_b"},
    (5120, 1024): {8: "wo_b"},
    (1152, 5120): {4: "shared_experts.gate_up_proj"},
    (576, 5120): {8: "shared_experts.gate_up_proj"},
    (5120, 576): {4: "shared_experts.down_proj"},
    (5120, 288): {8: "shared_experts.down_proj"},
}


@pytest.mark.parametrize("tp", [4, 8])
def test_sglangs_shipped_block_32_files_are_v4_1_flash_at_tp_4_and_8(tp):
    expected = {shape: names[tp] for shape, names in SHIPPED.items() if tp in names}
    assert model_plan(load_model_config(FLASH), tp).shapes() == expected


def test_the_notes_name_what_is_not_tuned_and_why():
    notes = model_plan(load_model_config(FLASH), 8).notes
    [experts] = [note for note in notes if "routed experts" in note]
    assert experts.startswith("384 routed experts (moe_intermediate_size 2304: gate_up N=4608 and down K=2304")
    assert "fp4 weights (quantization_config.expert_dtype)" in experts and "not tuned here" in experts
    [wo_a] = [note for note in notes if note.startswith("wo_a")]
    assert "8 output groups, each (1024, 4096)" in wo_a and "never the block GEMM" in wo_a
    assert any("compressors" in note and "not block-quantized" in note for note in notes)
    assert any("(1280, 5120) and (512, 5120)" in note for note in notes)  # wq_a and wkv when not fused
    assert any(note.startswith("the 3 draft layers") for note in notes)


def test_a_flat_config_plans_as_the_nested_one():
    nested = load_model_config(FLASH)
    flat = {**nested["text_config"], "model_type": nested["model_type"],
            "quantization_config": nested["quantization_config"]}  # fmt: skip
    assert model_plan(flat, 8).layers == model_plan(nested, 8).layers
    assert model_plan(flat, 8).block_shape == model_plan(nested, 8).block_shape == (32, 32)


@pytest.mark.parametrize(
    ("fields", "indexed"),
    [
        # DeepSeek-V4: an indexer in each layer of compress ratio 4, with no index sources named.
        ({"model_type": "deepseek_v4", "compress_ratios": [0, 4, 128] * 14, "index_source_layer_ids": None}, True),
        ({"compress_ratios": [0, 128] * 20 + [0, 0, 0]}, False),  # ratio 128 compresses but has no indexer
        ({"index_source_layer_ids": None}, False),  # V4.1's ratios 1 and 2 index only in the layers named
        ({"index_source_layer_ids": [], "compress_ratios": [4] * 40}, True),
    ],
)
def test_indexer_layers_follow_compress_ratios_and_index_sources(fields, indexed):
    names = [name for name, _, _ in model_plan(flash(**fields)).layers]
    assert ("indexer.wq_b" in names) == indexed


@pytest.mark.parametrize(("engram", "planned"), [([1, 14], True), ([], False), (None, False), ([40, 41], False)])
def test_engram_wkv_is_planned_where_a_decoder_layer_has_engram(engram, planned):
    # [40, 41]: past the 40 decoder layers, so no layer builds one.
    names = [name for name, _, _ in model_plan(flash(engram_layer_ids=engram)).layers]
    assert ("engram.wkv" in names) == planned


def test_shared_experts_default_to_one_and_zero_means_none():
    assert model_plan(flash(n_shared_experts=None), 8) == model_plan(flash(), 8)  # SGLang's default, 1
    assert model_plan(flash(n_shared_experts=2), 8).layers[-1] == ("shared_experts.down_proj", 5120, 576)
    assert not any("shared" in name for name, _, _ in model_plan(flash(n_shared_experts=0), 8).layers)


def test_128_blocks_keep_the_layers_and_note_the_splits_that_cut_them():
    config = load_model_config(FLASH)
    config["quantization_config"] = {"quant_method": "fp8", "weight_block_size": [128, 128]}
    plan = model_plan(config, 8)
    assert plan.block_shape == (128, 128) and plan.layers == model_plan(load_model_config(FLASH), 8).layers
    # 2304 / 8 = 288 per rank: not whole 128-wide blocks.
    cut = [note.split(": ")[0].split(", ")[1] for note in plan.notes if "refuse to load" in note]
    assert cut == ["shared_experts.gate_up_proj", "shared_experts.down_proj"]


@pytest.mark.parametrize(
    ("config", "tp", "message"),
    [
        (flash(), 16, r"--tp-size 16 must divide the model's o_groups \(8\)"),  # 4 heads each, but no group
        (flash(), 3, r"--tp-size 3 must divide the model's num_attention_heads \(64\)"),
        (flash(head_dim=None), 1, r"needs a positive int 'head_dim', but has nothing"),
        (flash(compress_ratios=[0] * 39), 1, r"'compress_ratios', a non-negative int for each of its 40 layers"),
        (flash(compress_ratios=None), 1, r"'compress_ratios'.*but has nothing"),
        (flash(index_source_layer_ids="2, 8"), 1, r"'index_source_layer_ids' must be a list of layer indices"),
        (flash(engram_n_heads=None), 1, r"'engram_n_heads'"),
        ({**flash(), "text_config": "deepseek_v41_text"}, 1, r"text_config must be a JSON object"),
    ],
)
def test_bad_v4_configs_raise_naming_the_field(config, tp, message):
    with pytest.raises(ValueError, match=message):
        model_plan(config, tp)


def test_dry_run_plans_v4_1_flash_in_32_blocks(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["--model", str(FLASH), "--tp-size", "8", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == (
        "model: deepseek_v41, tp_size=8, block_shape=[32, 32] (fp8), 7 linear layers in 6 shapes"
    )
    shapes = re.findall(r"^  N=(\d+) +K=(\d+) +\(([\w.+]+)\)", out, flags=re.MULTILINE)
    assert {(int(N), int(K)): names for N, K, names in shapes} == {s: n[8] for s, n in SHIPPED.items() if 8 in n}
    assert "note: 384 routed experts" in out
