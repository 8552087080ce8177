"""Shapes derived from published models' config.json fields (under models/), and the --dry-run plan."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from tuner.cli.run import main
from tuner.shapes import ModelPlan, deepseek_v3_shapes, load_model_config, model_plan

MODELS = Path(__file__).parent / "models"

FP8_BLOCKS = {"quant_method": "fp8", "weight_block_size": [128, 128]}
# A Qwen3-32B-like dense model: hidden 5120, intermediate 25600, 64 heads, 8 KV heads, head_dim 128, FP8 blocks.
DENSE = {"hidden_size": 5120, "intermediate_size": 25600, "num_attention_heads": 64,
         "num_key_value_heads": 8, "head_dim": 128, "quantization_config": FP8_BLOCKS}  # fmt: skip


def config(name: str) -> dict:
    return load_model_config(MODELS / f"{name}.json")


def blocked(model: dict) -> dict:
    """A published model as a block-quantized checkpoint of it would be: an unquantized one gets FP8 blocks.

    Its layers are the same (quantization changes no shape); unquantized, the block kernel never runs it.
    """
    return {"quantization_config": FP8_BLOCKS, **model}


# (model file, tp, expected (layer, N, K)), worked out by hand from each model's published config.json.
# Column-parallel layers split N by tp, row-parallel ones split K, replicated ones (the MLA A projections) neither.
@pytest.mark.parametrize(
    ("model", "tp", "expected"),
    [
        # deepseek-ai/DeepSeek-V3: A = q_lora 1536 + kv_lora 512 + rope 64; q_b 128 heads x (128 + 64);
        # kv_b 128 x (128 + 128); o 128 x v 128; dense MLP 18432 (first 3 layers); 1 shared expert of 2048.
        ("deepseek_v3", 1, [("fused_qkv_a_proj_with_mqa", 2112, 7168), ("q_b_proj", 24576, 1536),
                            ("kv_b_proj", 32768, 512), ("o_proj", 7168, 16384),
                            ("gate_up_proj", 36864, 7168), ("down_proj", 7168, 18432),
                            ("shared_experts.gate_up_proj", 4096, 7168), ("shared_experts.down_proj", 7168, 2048)]),
        # The same at TP 8: 16 heads per rank; the fused A projection is replicated.
        ("deepseek_v3", 8, [("fused_qkv_a_proj_with_mqa", 2112, 7168), ("q_b_proj", 3072, 1536),
                            ("kv_b_proj", 4096, 512), ("o_proj", 7168, 2048),
                            ("gate_up_proj", 4608, 7168), ("down_proj", 7168, 2304),
                            ("shared_experts.gate_up_proj", 512, 7168), ("shared_experts.down_proj", 7168, 256)]),
        # deepseek-ai/DeepSeek-V2-Lite: q_lora_rank null, so a plain q_proj 16 x 192 and kv_a alone (512 + 64);
        # kv_b 16 x 256; o 16 x 128; dense MLP 10944 (first layer); 2 shared experts of 1408 = 2816.
        ("deepseek_v2_lite", 1, [("q_proj", 3072, 2048), ("kv_a_proj_with_mqa", 576, 2048),
                                 ("kv_b_proj", 4096, 512), ("o_proj", 2048, 2048),
                                 ("gate_up_proj", 21888, 2048), ("down_proj", 2048, 10944),
                                 ("shared_experts.gate_up_proj", 5632, 2048),
                                 ("shared_experts.down_proj", 2048, 2816)]),
        # The same at TP 4: 4 heads per rank, 10944 / 4 = 2736, 2816 / 4 = 704; kv_a is replicated.
        ("deepseek_v2_lite", 4, [("q_proj", 768, 2048), ("kv_a_proj_with_mqa", 576, 2048),
                                 ("kv_b_proj", 1024, 512), ("o_proj", 2048, 512),
                                 ("gate_up_proj", 5472, 2048), ("down_proj", 2048, 2736),
                                 ("shared_experts.gate_up_proj", 1408, 2048),
                                 ("shared_experts.down_proj", 2048, 704)]),
        # moonshotai/Kimi-K2-Instruct: DeepSeek-V3's layout with 64 heads: q_b 64 x 192, kv_b 64 x 256, o 64 x 128.
        ("kimi_k2", 1, [("fused_qkv_a_proj_with_mqa", 2112, 7168), ("q_b_proj", 12288, 1536),
                        ("kv_b_proj", 16384, 512), ("o_proj", 7168, 8192),
                        ("gate_up_proj", 36864, 7168), ("down_proj", 7168, 18432),
                        ("shared_experts.gate_up_proj", 4096, 7168), ("shared_experts.down_proj", 7168, 2048)]),
        # The same at TP 8: 8 heads per rank.
        ("kimi_k2", 8, [("fused_qkv_a_proj_with_mqa", 2112, 7168), ("q_b_proj", 1536, 1536),
                        ("kv_b_proj", 2048, 512), ("o_proj", 7168, 1024),
                        ("gate_up_proj", 4608, 7168), ("down_proj", 7168, 2304),
                        ("shared_experts.gate_up_proj", 512, 7168), ("shared_experts.down_proj", 7168, 256)]),
        # Qwen/Qwen3-235B-A22B-FP8: QKV (64 + 2 x 4) x 128, O 64 x 128; every layer is sparse and there is no shared
        # expert, so intermediate_size 12288 belongs to no layer.
        ("qwen3_235b_a22b_fp8", 1, [("qkv_proj", 9216, 4096), ("o_proj", 4096, 8192)]),
        # At TP 8 the 4 KV heads are replicated, one per rank: QKV (8 + 2) x 128.
        ("qwen3_235b_a22b_fp8", 8, [("qkv_proj", 1280, 4096), ("o_proj", 4096, 1024)]),
        # Qwen/Qwen3-32B-FP8: QKV (64 + 2 x 8) x 128, O 64 x 128, gate_up 2 x 25600.
        ("qwen3_32b_fp8", 1, [("qkv_proj", 10240, 5120), ("o_proj", 5120, 8192),
                              ("gate_up_proj", 51200, 5120), ("down_proj", 5120, 25600)]),
        # At TP 8: one KV head per rank, QKV (8 + 2) x 128; 25600 / 8 = 3200.
        ("qwen3_32b_fp8", 8, [("qkv_proj", 1280, 5120), ("o_proj", 5120, 1024),
                              ("gate_up_proj", 6400, 5120), ("down_proj", 5120, 3200)]),
        # Qwen/Qwen1.5-MoE-A2.7B: no head_dim, so 2048 / 16 = 128; a shared expert of 5632 and no dense layer.
        ("qwen1_5_moe_a2_7b", 1, [("qkv_proj", 6144, 2048), ("o_proj", 2048, 2048),
                                  ("shared_expert.gate_up_proj", 11264, 2048),
                                  ("shared_expert.down_proj", 2048, 5632)]),
        # At TP 4: 4 heads and 4 KV heads per rank, 5632 / 4 = 1408.
        ("qwen1_5_moe_a2_7b", 4, [("qkv_proj", 1536, 2048), ("o_proj", 2048, 512),
                                  ("shared_expert.gate_up_proj", 2816, 2048),
                                  ("shared_expert.down_proj", 2048, 1408)]),
        # meta-llama/Llama-3.1-8B: no head_dim, so 4096 / 32 = 128; QKV (32 + 2 x 8) x 128, gate_up 2 x 14336.
        ("llama_3_1_8b", 1, [("qkv_proj", 6144, 4096), ("o_proj", 4096, 4096),
                             ("gate_up_proj", 28672, 4096), ("down_proj", 4096, 14336)]),
        # At TP 8: 4 heads and 1 KV head per rank, 14336 / 8 = 1792.
        ("llama_3_1_8b", 8, [("qkv_proj", 768, 4096), ("o_proj", 4096, 512),
                             ("gate_up_proj", 3584, 4096), ("down_proj", 4096, 1792)]),
    ],
)  # fmt: skip
def test_published_models_layers(model, tp, expected):
    plan = model_plan(blocked(config(model)), tp)
    assert list(plan.layers) == expected
    assert plan.tp_size == tp


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
    assert list(model_plan(DENSE, tp).layers) == expected


def test_head_dim_and_kv_heads_default_like_hugging_face():
    config = {
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_attention_heads": 32,
        "quantization_config": FP8_BLOCKS,
    }
    assert list(model_plan(config, 1).layers)[0] == ("qkv_proj", 3 * 4096, 4096)
    # null means the same as absent, as in Hugging Face's config classes
    assert list(model_plan({**config, "head_dim": None, "num_key_value_heads": None}, 1).layers)[0] == (
        "qkv_proj",
        3 * 4096,
        4096,
    )


def test_a_model_without_tp_size_is_tp_1():
    assert model_plan(config("deepseek_v3")) == model_plan(config("deepseek_v3"), 1)
    assert model_plan(config("deepseek_v3")).tp_size == 1


@pytest.mark.parametrize("tp", [1, 8, 16])
def test_deepseek_v3_config_agrees_with_the_fixed_list_but_for_the_fused_a_projection(tp):
    derived = model_plan(config("deepseek_v3"), tp).shapes()
    fixed = deepseek_v3_shapes(tp)
    assert derived.pop((2112, 7168)) == "fused_qkv_a_proj_with_mqa"  # the fixed list predates this fusion
    assert set(derived) <= set(fixed)
    # What the list has beyond the config: kv_a alone and a plain q_proj (pre-fusion), unsplit copies.
    assert set(fixed) - set(derived) >= {(576, 7168), (24576, 7168), (24576 // tp, 7168)}


@pytest.mark.parametrize("args", [["--tp-size", "8"], []])
def test_tp_size_alone_still_plans_deepseek_v3s_fixed_list(capsys, args):
    assert main([*args, "--trials", "1", "--dry-run"]) == 0
    shapes = re.findall(r"^  N=(\d+) +K=(\d+) +\((\w+)\)", capsys.readouterr().out, flags=re.MULTILINE)
    assert [(int(N), int(K)) for N, K, _ in shapes] == deepseek_v3_shapes(8)
    assert {name for *_, name in shapes} == {"deepseek_v3"}


@pytest.mark.parametrize(
    ("model", "block_shape", "input_type"),
    [
        ("deepseek_v3", (128, 128), "fp8"),  # quantization_config.weight_block_size [128, 128]
        ("qwen3_32b_fp8", (128, 128), "fp8"),
    ],
)
def test_block_shape_comes_from_the_quantization_config(model, block_shape, input_type):
    plan = model_plan(config(model))
    assert (plan.block_shape, plan.input_type) == (block_shape, input_type)


def test_weight_block_size_64_is_read_and_stated_in_the_headline():
    qwen = config("qwen3_32b_fp8")
    plan = model_plan({**qwen, "quantization_config": {"quant_method": "fp8", "weight_block_size": [64, 64]}}, 8)
    assert plan.block_shape == (64, 64) and plan.input_type == "fp8"
    assert plan.layers == model_plan(qwen, 8).layers  # the block changes nothing about the shapes
    assert "block_shape=[64, 64]" in plan.headline() and "tp_size=8" in plan.headline()


def test_headline_states_model_tp_and_block_shape():
    assert model_plan(config("deepseek_v3"), 8).headline() == (
        "model: deepseek_v3, tp_size=8, block_shape=[128, 128] (fp8), 8 linear layers in 8 shapes"
    )
    assert model_plan({**config("llama_3_1_8b"), "quantization_config": {**FP8_BLOCKS, "weight_block_size": [64, 64]}},
                      2).headline() == (
        "model: llama, tp_size=2, block_shape=[64, 64] (fp8), 4 linear layers in 4 shapes"
    )  # fmt: skip


# (quantization_config, what the refusal says): what vLLM and SGLang run on other GEMMs than the block kernel.
@pytest.mark.parametrize(
    ("quantization", "says"),
    [
        (None, "has no quantization_config: the model is not quantized"),  # Llama-3.1-8B as published
        ({"quant_method": "fp8"}, "quant_method 'fp8' without weight_block_size, i.e. one scale per tensor or channel"),
        ({"quant_method": "awq", "weight_block_size": [128, 128]}, "quant_method 'awq', not block quantization"),
        ({"quant_method": "gptq", "bits": 4, "group_size": 128}, "quant_method 'gptq', not block quantization"),
        ({"quant_method": "compressed-tensors", "config_groups": {}}, "compressed-tensors quantization_config has no "
                                                                      "config_groups"),
        # per-channel FP8 in compressed-tensors' format
        ({"quant_method": "compressed-tensors", "config_groups": {"group_0": {
            "weights": {"num_bits": 8, "type": "float", "strategy": "channel"},
            "input_activations": {"num_bits": 8, "type": "float", "strategy": "token", "dynamic": True}}}},
         "group 'group_0' quantizes weights with strategy 'channel', 8-bit float, not 8-bit float blocks"),
        # FP8 weight blocks alone (W8A16): vLLM runs them on another kernel
        ({"quant_method": "compressed-tensors", "config_groups": {"group_0": {
            "weights": {"num_bits": 8, "type": "float", "strategy": "block", "block_structure": [128, 128]}}}},
         "group 'group_0' leaves input activations unquantized"),
    ],
    ids=["unquantized", "per-tensor-fp8", "awq", "gptq", "compressed-tensors-empty", "compressed-tensors-channel",
         "compressed-tensors-w8a16"],
)  # fmt: skip
def test_models_the_block_kernel_never_runs_are_refused_in_one_line(tmp_path, capsys, quantization, says):
    model = {k: v for k, v in config("llama_3_1_8b").items() if k != "quantization_config"}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(model if quantization is None else {**model, "quantization_config": quantization}))
    with pytest.raises(ValueError, match="the block-scaled W8A8 kernel never runs its linear layers|config_groups"):
        model_plan(load_model_config(path))
    for dry in ([], ["--dry-run"]):  # refused before a GPU is asked for, as in its dry run
        assert main(["--model", str(path), "--tp-size", "8", *dry]) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith("error: the model config") and says in err[0], err


def _compressed_tensors(*blocks: list[int]) -> dict:
    """compressed-tensors' FP8 block format, as vLLM reads it: one config group per block structure."""
    groups = {
        f"group_{i}": {
            "targets": ["Linear"],
            "weights": {"num_bits": 8, "type": "float", "strategy": "block", "block_structure": block,
                        "symmetric": True, "dynamic": False},
            "input_activations": {"num_bits": 8, "type": "float", "strategy": "group", "group_size": 128,
                                  "symmetric": True, "dynamic": True},
        }
        for i, block in enumerate(blocks)
    }  # fmt: skip
    return {"quant_method": "compressed-tensors", "format": "float-quantized", "config_groups": groups,
            "ignore": ["lm_head"]}  # fmt: skip


@pytest.mark.parametrize("block", [[128, 128], [64, 128]])
def test_compressed_tensors_fp8_blocks_are_tuned_in_their_blocks(tmp_path, capsys, block):
    model = {**config("qwen3_32b_fp8"), "quantization_config": _compressed_tensors(block)}
    plan = model_plan(model, 8)
    assert (plan.input_type, plan.block_shape) == ("fp8", tuple(block))
    assert plan.layers == model_plan(config("qwen3_32b_fp8"), 8).layers
    path = tmp_path / "config.json"
    path.write_text(json.dumps(model))
    assert main(["--model", str(path), "--dry-run"]) == 0
    assert f"block_shape=[{block[0]}, {block[1]}] (fp8)" in capsys.readouterr().out.splitlines()[0]


def test_compressed_tensors_groups_of_two_block_structures_are_refused():
    model = {**config("qwen3_32b_fp8"), "quantization_config": _compressed_tensors([128, 128], [64, 64])}
    with pytest.raises(ValueError, match=r"use 2 block structures \(\[64, 64\], \[128, 128\]\); tune each block shape"):
        model_plan(model)


@pytest.mark.parametrize("nested_quantization", [False, True], ids=["top-level", "nested"])
def test_a_multimodal_config_plans_its_language_model(nested_quantization):
    # Llama 4, Gemma 3, Mistral 3: the language model under text_config, quantization_config usually on top.
    text = config("qwen3_32b_fp8")
    quantization = text.pop("quantization_config")
    outer = {"model_type": "qwen3_vl", "vision_config": {"hidden_size": 1152}, "text_config": text}
    if nested_quantization:
        text["quantization_config"] = {**quantization, "weight_block_size": [64, 64]}
        outer["quantization_config"] = quantization
    else:
        outer["quantization_config"] = quantization
    plan = model_plan(outer, 8)
    assert plan.layers == model_plan(config("qwen3_32b_fp8"), 8).layers
    assert plan.block_shape == ((64, 64) if nested_quantization else (128, 128))
    assert plan.model == "qwen3_vl"
    (note,) = [note for note in plan.notes if "text_config" in note]
    assert note.startswith("the config nests its language model under text_config: its layers are the ones planned")
    assert ("with the top-level quantization_config" in note) is not nested_quantization


def test_a_model_folder_is_read_as_its_config_json(tmp_path, capsys):
    # A downloaded snapshot: config.json beside the weights.
    (tmp_path / "snapshot").mkdir()
    (tmp_path / "snapshot" / "config.json").write_text((MODELS / "qwen3_32b_fp8.json").read_text())
    assert load_model_config(tmp_path / "snapshot") == config("qwen3_32b_fp8")
    assert main(["--model", str(tmp_path / "snapshot"), "--dry-run"]) == 0
    capsys.readouterr()
    (tmp_path / "empty").mkdir()
    assert main(["--model", str(tmp_path / "empty"), "--dry-run"]) == 2
    assert capsys.readouterr().err == (
        f"error: --model '{tmp_path / 'empty'}' is a folder without a config.json; give the model's config.json.\n"
    )


def test_blockwise_int8_is_block_quantized_with_int8_inputs():
    int8 = {"quant_method": "blockwise_int8", "weight_block_size": [128, 64]}
    plan = model_plan({**DENSE, "quantization_config": int8})
    assert (plan.block_shape, plan.input_type, plan.notes) == ((128, 64), "int8", ())


@pytest.mark.parametrize(
    ("model", "tp", "experts"),
    [
        ("deepseek_v3", 1, "256 routed experts (moe_intermediate_size 2048: gate_up N=4096 and down K=2048"),
        ("kimi_k2", 8, "384 routed experts (moe_intermediate_size 2048"),
        ("qwen3_235b_a22b_fp8", 1, "128 routed experts (moe_intermediate_size 1536: gate_up N=3072"),
        ("qwen1_5_moe_a2_7b", 4, "60 routed experts (moe_intermediate_size 1408"),
        ("deepseek_v2_lite", 1, "64 routed experts"),
    ],
)
def test_routed_experts_are_noted_not_tuned(model, tp, experts):
    plan = model_plan(blocked(config(model)), tp)
    [note] = [note for note in plan.notes if "routed experts" in note]
    assert note.startswith(experts) and "fused-MoE kernel" in note and "not tuned here" in note
    assert not any("expert" in name and "shared" not in name for name, _, _ in plan.layers)


@pytest.mark.parametrize("model", ["qwen3_32b_fp8", "llama_3_1_8b"])
def test_dense_models_have_no_routed_experts_note(model):
    assert not any("routed experts" in note for note in model_plan(blocked(config(model)), 8).notes)


def test_mixtral_experts_are_intermediate_size_wide_and_every_layer_is_sparse():
    mixtral = {"hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336,
               "num_local_experts": 8, "quantization_config": FP8_BLOCKS}  # fmt: skip
    plan = model_plan(mixtral)
    assert plan.layers == (("qkv_proj", 6144, 4096), ("o_proj", 4096, 4096))
    assert any(note.startswith("8 routed experts (intermediate_size 14336") for note in plan.notes)


@pytest.mark.parametrize(
    "dense",
    [
        {"mlp_only_layers": [0, 93]},  # these layers have a dense MLP of intermediate_size
        {"decoder_sparse_step": 2},  # every other layer is dense
    ],
)
def test_qwen_moe_dense_layers_use_intermediate_size(dense):
    plan = model_plan({**config("qwen3_235b_a22b_fp8"), **dense}, 4)
    assert plan.layers[2:] == (("gate_up_proj", 6144, 4096), ("down_proj", 4096, 3072))  # 12288 / 4 = 3072


def test_deepseek_moe_without_leading_dense_layers_has_no_dense_mlp():
    plan = model_plan({**config("kimi_k2"), "first_k_dense_replace": 0})
    assert [name for name, _, _ in plan.layers][-2:] == ["shared_experts.gate_up_proj", "shared_experts.down_proj"]
    assert "gate_up_proj" not in [name for name, _, _ in plan.layers]


def test_identical_shapes_are_tuned_once_under_both_names():
    # O is hidden x (8 heads x 128) = 1024 x 1024, and so is down with intermediate 1024.
    square = {"hidden_size": 1024, "intermediate_size": 1024, "num_attention_heads": 8, "head_dim": 128,
              "quantization_config": FP8_BLOCKS}  # fmt: skip
    plan = model_plan(square)
    assert len(plan.layers) == 4
    assert plan.shapes() == {(3072, 1024): "qkv_proj", (1024, 1024): "o_proj+down_proj", (2048, 1024): "gate_up_proj"}
    assert plan.headline().endswith("4 linear layers in 3 shapes")


@pytest.mark.parametrize(
    ("model", "tp", "block", "cut"),
    [
        # 25600 / 16 = 1600 per rank: 12.5 blocks of 128, but 25 of 64.
        ("qwen3_32b_fp8", 16, [128, 128], ["gate_up_proj", "down_proj"]),
        ("qwen3_32b_fp8", 16, [64, 64], []),
        ("qwen3_32b_fp8", 8, [128, 128], []),  # 3200 per rank = 25 x 128
        # 18432 / 32 = 576 and 2048 / 32 = 64: the dense MLP and the shared expert straddle blocks at TP 32.
        ("deepseek_v3", 32, [128, 128], ["gate_up_proj", "down_proj", "shared_experts.gate_up_proj",
                                         "shared_experts.down_proj"]),
    ],
)  # fmt: skip
def test_splits_that_cut_quantization_blocks_are_noted(model, tp, block, cut):
    plan = model_plan({**config(model), "quantization_config": {"quant_method": "fp8", "weight_block_size": block}}, tp)
    noted = [note.split(": ")[0].split(", ")[1] for note in plan.notes if "refuse to load" in note]
    assert noted == cut


@pytest.mark.parametrize(
    ("tp", "noted"),
    [(8, True), (4, False)],  # 1536 / 8 = 192 is 1.5 blocks of 128; 1536 / 4 = 384 is 3
)
def test_routed_experts_that_tp_cannot_split_into_blocks_are_noted(tp, noted):
    notes = model_plan(config("qwen3_235b_a22b_fp8"), tp).notes
    assert any("expert parallelism" in note for note in notes) == noted


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"intermediate_size": 1, "num_attention_heads": 1, "quantization_config": FP8_BLOCKS}, "'hidden_size'"),
        ({**DENSE, "num_attention_heads": "64"}, "'num_attention_heads'"),  # not an int
        ({**DENSE, "num_attention_heads": 60}, "--tp-size 8 must divide"),  # TP does not divide heads
    ],
)
def test_bad_model_config_raises(config, message):
    with pytest.raises(ValueError, match=message):
        list(model_plan(config, 8).layers)


def _from(name: str, **fields):
    return {**blocked(config(name)), **fields}


KV6 = {"num_attention_heads": 48, "num_key_value_heads": 6, "head_dim": 128}


# (config, tp, what the error names): each split the ranks cannot share raises, naming --tp-size and the field.
@pytest.mark.parametrize(
    ("model", "tp", "message"),
    [
        (_from("deepseek_v3"), 3, r"--tp-size 3 must divide the model's num_attention_heads \(128\)"),
        (_from("deepseek_v2_lite"), 32, r"--tp-size 32 must divide the model's num_attention_heads \(16\)"),
        (_from("kimi_k2"), 128, r"--tp-size 128 must divide the model's num_attention_heads \(64\)"),
        # 128 heads split by 8 fine, but 2052 / 8 does not.
        (_from("deepseek_v3", moe_intermediate_size=2052), 8,
         r"--tp-size 8 must divide the model's n_shared_experts \* moe_intermediate_size \(2052\)"),
        (_from("qwen1_5_moe_a2_7b", shared_expert_intermediate_size=5630), 4,
         r"must divide the model's shared_expert_intermediate_size \(5630\)"),
        (_from("qwen3_32b_fp8", intermediate_size=25601), 2, r"must divide the model's intermediate_size \(25601\)"),
        # 6 KV heads: 4 ranks cannot share them, and 16 ranks are not a multiple of them.
        (_from("llama_3_1_8b", **KV6), 4, r"--tp-size 4 must divide the model's num_key_value_heads \(6\)"),
        (_from("llama_3_1_8b", **KV6), 16, r"--tp-size 16 must divide .* \(6\) or be a multiple of it"),
    ],
)  # fmt: skip
def test_tp_that_does_not_divide_a_split_field_raises(model, tp, message):
    with pytest.raises(ValueError, match=message):
        model_plan(model, tp)


@pytest.mark.parametrize("tp", [0, -8, True, "8", 2.0])
def test_bad_tp_size_raises(tp):
    with pytest.raises(ValueError, match="--tp-size must be a positive int"):
        model_plan(config("qwen3_32b_fp8"), tp)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"q_lora_rank": 0}, "positive int 'q_lora_rank'"),  # null, not 0, means a plain q_proj
        ({"v_head_dim": None}, "'v_head_dim'"),
        ({"n_shared_experts": -1}, "'n_shared_experts' must be a non-negative int or null"),
        ({"quantization_config": {"quant_method": "fp8", "weight_block_size": [128]}}, "weight_block_size"),
        ({"quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 0]}}, "weight_block_size"),
        ({"quantization_config": "fp8"}, "quantization_config must be a JSON object"),
    ],
)
def test_bad_mla_config_raises_naming_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        model_plan({**config("deepseek_v3"), **fields})


def test_mla_without_q_lora_rank_says_null_means_plain_q_proj():
    deepseek = config("deepseek_v3")
    del deepseek["q_lora_rank"]
    with pytest.raises(ValueError, match=r"'q_lora_rank' \(a positive int, or null for a plain q_proj\)"):
        model_plan(deepseek)


def test_model_plan_is_a_frozen_keyword_only_value():
    plan = model_plan(config("qwen3_32b_fp8"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.tp_size = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        ModelPlan("qwen3", 1, (128, 128), "fp8", (("o_proj", 1, 1),))  # type: ignore[misc]
    for bad, message in [
        ({"tp_size": 0}, "--tp-size"),
        ({"block_shape": (128, 0)}, "block_shape"),
        ({"input_type": "fp4"}, "input_type"),
        ({"layers": ()}, "at least one layer"),
        ({"layers": (("o_proj", 0, 5120),)}, "'o_proj'"),
    ]:
        with pytest.raises(ValueError, match=message):
            dataclasses.replace(plan, **bad)
    # Lists are taken as tuples, so a plan built by hand is as immutable and hashable as model_plan's.
    by_hand = ModelPlan(model="m", tp_size=1, block_shape=[64, 64], input_type="fp8", layers=[["o_proj", 64, 64]])
    assert (by_hand.block_shape, by_hand.layers) == ((64, 64), (("o_proj", 64, 64),)) and hash(by_hand)


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


def test_a_model_file_without_tp_size_plans_tp_1_and_its_block_shape(capsys):
    assert main(["--model", str(MODELS / "deepseek_v3.json"), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("model: deepseek_v3, tp_size=1, block_shape=[128, 128] (fp8)")
    assert "N=2112   K=7168" in "\n".join(out)  # the fused q_a + kv_a projection, unsplit at TP 1


def test_a_model_quantized_in_64_blocks_is_tuned_in_64_blocks(tmp_path, capsys):
    model = tmp_path / "config.json"
    model.write_text(
        json.dumps({**DENSE, "quantization_config": {"quant_method": "fp8", "weight_block_size": [64, 64]}})
    )
    assert main(["--model", str(model), "--dry-run"]) == 0
    assert "block_shape=[64, 64] (fp8)" in capsys.readouterr().out.splitlines()[0]
    assert main(["--model", str(model), "--block-n", "128", "--dry-run"]) == 2  # contradicts the model
    err = capsys.readouterr().err
    assert (
        err.startswith("error: --block-n 128 does not match the model's quantization_config") and err.count("\n") == 1
    )
