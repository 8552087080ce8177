"""DeepSeek-V4.x's linear layers (DeepSeek-V4, V4.1): which of them SGLang runs as block-quantized GEMMs.

V4 is not MLA: one shared KV head of head_dim, a low-rank query, and an output projection in o_groups
low-rank groups; beside them sparse-attention indexers, Engram n-gram memory, hyper-connections, and a
mixture of experts in every layer. Only some of these are block-quantized GEMMs; this module derives
them from the fields SGLang's DeepSeek-V4 model reads, and notes the rest with the reason.
"""

from __future__ import annotations

from typing import Any

from tuner.shapes import ModelPlan, _count, _dense_mlp, _field, _Layers, _quantization


def is_deepseek_v4(config: dict[str, Any]) -> bool:
    """Whether the config is DeepSeek-V4.x's: its grouped low-rank output projection (o_lora_rank) is V4's own."""
    return "o_lora_rank" in config


def deepseek_v4_plan(
    config: dict[str, Any], tp_size: int, *, model_type: str = "deepseek_v4", notes: tuple[str, ...] | list[str] = ()
) -> ModelPlan:
    """Every block-quantized linear layer SGLang builds for a DeepSeek-V4.x config, at tp_size.

    In a decoder layer's order: engram.wkv where Engram layers exist, wqkv_a, wq_b, indexer.wq_b
    where indexers exist, wo_b, and the shared expert's gate_up_proj and down_proj. Replicated:
    engram.wkv, wqkv_a, indexer.wq_b. Column-parallel (N split): wq_b by heads, gate_up_proj.
    Row-parallel (K split): wo_b by output groups, down_proj. All else is noted.
    """
    block_shape, input_type = _quantization(config)
    hidden = _field(config, "hidden_size")
    out = _Layers(tp_size, block_shape)
    _engram(config, hidden, out)
    _attention(config, hidden, out)
    experts_note = _experts(config, hidden, out)
    return ModelPlan(
        model=model_type,
        tp_size=tp_size,
        block_shape=block_shape,
        input_type=input_type,
        layers=tuple(out.layers),
        notes=(*notes, experts_note, *_not_planned(config), *out.notes),
    )


def _layer_ids(config: dict[str, Any], name: str) -> list[int]:
    """A list of layer indices; absent or null means none, as SGLang's V4 config classes default it."""
    ids = config.get(name)
    if ids is None:
        return []
    if not (isinstance(ids, list) and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids)):
        raise ValueError(f"the model config's {name!r} must be a list of layer indices, but is {ids!r}.")
    return ids


def _has_indexer(config: dict[str, Any]) -> bool:
    """Whether a decoder layer has an indexer: V4's layers of compress ratio 4, and V4.1's of ratio 1 or 2
    that index_source_layer_ids names. compress_ratios also covers the draft layers after the decoder's."""
    layers = _field(config, "num_hidden_layers")
    ratios = config.get("compress_ratios")
    if not (
        isinstance(ratios, list)
        and len(ratios) >= layers
        and all(isinstance(r, int) and not isinstance(r, bool) and r >= 0 for r in ratios)
    ):
        got = "nothing" if ratios is None else repr(ratios)
        raise ValueError(f"the model config needs 'compress_ratios', a non-negative int for each of its {layers} "
                         f"layers, but has {got}.")  # fmt: skip
    sources = set(_layer_ids(config, "index_source_layer_ids"))
    return any(ratio == 4 or (ratio in (1, 2) and layer in sources) for layer, ratio in enumerate(ratios[:layers]))


def _engram(config: dict[str, Any], hidden: int, out: _Layers) -> None:
    """Engram's wkv: its n-gram hash embeddings ((max_ngram_size - 1) x n_heads x head_dim) to one value per
    hyper-connection stream and one key (hidden x (hc_mult + 1)); replicated, in the Engram layers only."""
    layers = _field(config, "num_hidden_layers")
    if not any(layer < layers for layer in _layer_ids(config, "engram_layer_ids")):
        return
    columns = (_field(config, "engram_max_ngram_size") - 1) * _field(config, "engram_n_heads")
    out.add("engram.wkv", hidden * (_field(config, "hc_mult") + 1), columns * _field(config, "engram_head_dim"))


def _attention(config: dict[str, Any], hidden: int, out: _Layers) -> None:
    """V4's attention: wqkv_a projects the hidden state to the query's rank and the KV head at once
    (replicated); wq_b lifts the rank to the local heads; the indexer's wq_b lifts it to all index heads
    (replicated); wo_b maps the local output groups back to the hidden size. wo_a, between them, is noted."""
    heads = _field(config, "num_attention_heads")
    head_dim = _field(config, "head_dim")
    q_lora_rank = _field(config, "q_lora_rank")
    out.add("wqkv_a", q_lora_rank + head_dim, hidden)
    q_local = out.split(heads, "num_attention_heads") * head_dim
    out.add("wq_b", q_local, q_lora_rank, n_parts=(q_local,))
    if _has_indexer(config):
        out.add("indexer.wq_b", _field(config, "index_n_heads") * _field(config, "index_head_dim"), q_lora_rank)
    o_local = out.split(_field(config, "o_groups"), "o_groups") * _field(config, "o_lora_rank")
    out.add("wo_b", hidden, o_local, k_part=o_local)


def _experts(config: dict[str, Any], hidden: int, out: _Layers) -> str:
    """The shared expert as two GEMMs (every V4 layer is a mixture of experts: there is no dense MLP);
    the routed experts as a note, since they run in the MoE kernels."""
    size = _field(config, "moe_intermediate_size")
    # SGLang's V4 config classes inherit n_shared_experts=1 from DeepSeek-V3's when the file has none.
    shared = 1 if config.get("n_shared_experts") is None else _count(config, "n_shared_experts")
    if shared:
        _dense_mlp(out, "shared_experts.", shared * size, "n_shared_experts * moe_intermediate_size", hidden)
    quantization = config.get("quantization_config") or {}
    dtype = quantization.get("expert_dtype")
    weights = f", {dtype} weights (quantization_config.expert_dtype)" if isinstance(dtype, str) else ""
    return (
        f"{_field(config, 'n_routed_experts')} routed experts (moe_intermediate_size {size}: gate_up N={2 * size} "
        f"and down K={size} each, before any split{weights}) run in the MoE kernels, which have their own configs; "
        "they are not tuned here."
    )


def _not_planned(config: dict[str, Any]) -> list[str]:
    """Why the other linear layers are left out, and which server settings change the planned shapes."""
    heads, head_dim = _field(config, "num_attention_heads"), _field(config, "head_dim")
    groups, o_lora_rank = _field(config, "o_groups"), _field(config, "o_lora_rank")
    q_lora_rank, hidden = _field(config, "q_lora_rank"), _field(config, "hidden_size")
    notes = [
        f"wo_a ({groups} output groups, each ({o_lora_rank}, {heads * head_dim // groups}), split by groups) runs "
        "as a batched einsum, never the block GEMM: in bf16 unless the blocks are [128, 128] (SGLang dequantizes "
        "it at load), else in DeepGEMM's fp8_einsum; it is not tuned here.",
        "the compressors, the indexers' weights_proj and wk, the router, the hyper-connection mixers, the "
        "embeddings, lm_head and the vision tower are bf16 or fp32 in SGLang: not block-quantized.",
        f"wqkv_a is wq_a and wkv fused (SGLang's SGLANG_OPT_FUSE_WQA_WKV, on by default); with it off they run "
        f"apart, as ({q_lora_rank}, {hidden}) and ({head_dim}, {hidden}).",
        "wq_b and wo_b split over the attention TP group, the shared expert over the TP group: with DP attention, "
        "plan the attention at --tp-size tp/dp; with an all-to-all MoE backend (DeepEP and others) or "
        "SGLANG_SHARED_EXPERT_TP1=1, the shared expert is replicated, as at --tp-size 1.",
    ]
    if drafts := _count(config, "num_nextn_predict_layers"):
        notes.append(f"the {drafts} draft layers (num_nextn_predict_layers) run only with speculative decoding "
                     "and are not planned.")  # fmt: skip
    return notes
