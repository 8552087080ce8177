"""Weight shapes to tune: DeepSeek-V3's fixed list, or any model's, derived from its config.json."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEEPSEEK_V3_TP_SIZE = 8  # the TP of DeepSeek-V3's list when neither --model nor --tp-size is given
MODEL_TP_SIZE = 1  # a model's TP when --tp-size is not given
DEFAULT_BLOCK_SHAPE = (128, 128)  # [block_n, block_k] when the config names none

_DEEPSEEK_V3_UNSPLIT = ((576, 7168), (24576, 7168), (32768, 512), (7168, 16384), (7168, 18432))
_DEEPSEEK_V3_N_SPLIT = ((36864, 7168), (24576, 7168), (32768, 512), (24576, 1536), (4096, 7168))
_DEEPSEEK_V3_K_SPLIT = ((7168, 18432), (7168, 16384), (7168, 2048))

# quant_method -> the kernel's input type, for the methods whose weights come in [block_n, block_k] blocks
# given as weight_block_size; compressed-tensors gives its blocks per config group (see _compressed_tensors).
_BLOCK_METHODS = {"fp8": "fp8", "blockwise_int8": "int8"}
COMPRESSED_TENSORS = "compressed-tensors"


def deepseek_v3_shapes(tp_size: int) -> list[tuple[int, int]]:
    """The (N, K) of DeepSeek-V3's block-quantized linear layers at tensor-parallel size tp_size.

    This is the fixed list SGLang's tuning script has always used; model_plan on DeepSeek-V3's own
    config.json derives a slightly different set (its _mla_attention docstring says how and why).
    """
    if not isinstance(tp_size, int) or tp_size < 1:
        raise ValueError(f"--tp-size must be a positive int, but got {tp_size!r}.")
    shapes = list(_DEEPSEEK_V3_UNSPLIT)
    for what, split in (("N", _DEEPSEEK_V3_N_SPLIT), ("K", _DEEPSEEK_V3_K_SPLIT)):
        for N, K in split:
            size = N if what == "N" else K
            if size % tp_size:
                raise ValueError(f"--tp-size {tp_size} must divide {what}={size} of DeepSeek-V3's ({N}, {K}).")
            shapes.append((N // tp_size, K) if what == "N" else (N, K // tp_size))
    return list(dict.fromkeys(shapes))  # duplicates are tuned once, first occurrence kept


def load_model_config(path: str | Path) -> dict[str, Any]:
    """A Hugging Face config.json (of a model's folder, e.g. a downloaded snapshot, where a folder is given),
    or ValueError saying why it cannot be used."""
    path = Path(path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"--model {str(path)!r} is a folder without a config.json; give the model's config.json.")
        path = path / "config.json"
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"--model {str(path)!r} does not exist.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"--model {str(path)!r} is not a JSON config file: {error}") from None
    if not isinstance(config, dict):
        raise ValueError(f"--model {str(path)!r} must hold a JSON object, but holds {type(config).__name__}.")
    return config


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_tp_size(tp_size: Any) -> None:
    if not _positive_int(tp_size):
        raise ValueError(f"--tp-size must be a positive int, but got {tp_size!r}.")


@dataclass(frozen=True, kw_only=True)
class ModelPlan:
    """A model's block-quantized linear layers at one TP size, and notes on what is not tuned here.

    layers holds (name, N, K) per linear layer, in the model's order; two layers may share a shape.
    input_type is the kernel input the quantization config implies ("fp8" or "int8").
    """

    model: str
    tp_size: int
    block_shape: tuple[int, int]
    input_type: str
    layers: tuple[tuple[str, int, int], ...]
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Sequences become tuples, so that a plan stays immutable and hashable whatever it was given.
        object.__setattr__(self, "block_shape", tuple(self.block_shape))
        object.__setattr__(self, "layers", tuple(tuple(layer) for layer in self.layers))
        object.__setattr__(self, "notes", tuple(self.notes))
        _check_tp_size(self.tp_size)
        if len(self.block_shape) != 2 or not all(_positive_int(b) for b in self.block_shape):
            raise ValueError(f"block_shape must be two positive ints, but got {self.block_shape!r}.")
        if self.input_type not in _BLOCK_METHODS.values():
            raise ValueError(f"input_type must be 'fp8' or 'int8', but got {self.input_type!r}.")
        if not self.layers:
            raise ValueError("a model plan needs at least one layer, but got none.")
        for name, N, K in self.layers:
            if not (_positive_int(N) and _positive_int(K)):
                raise ValueError(f"layer {name!r} needs positive int N and K, but got ({N!r}, {K!r}).")

    def shapes(self) -> dict[tuple[int, int], str]:
        """(N, K) -> the names of the layers with that shape joined by '+': each shape is tuned once."""
        names: dict[tuple[int, int], list[str]] = {}
        for name, N, K in self.layers:
            names.setdefault((N, K), []).append(name)
        return {shape: "+".join(layers) for shape, layers in names.items()}

    def headline(self) -> str:
        """The plan's first line: the model, its TP size and block shape, and how much there is to tune."""
        bn, bk = self.block_shape
        return (f"model: {self.model}, tp_size={self.tp_size}, block_shape=[{bn}, {bk}] ({self.input_type}), "
                f"{len(self.layers)} linear layers in {len(self.shapes())} shapes")  # fmt: skip


def model_plan(config: dict[str, Any], tp_size: int | None = None) -> ModelPlan:
    """Every block-quantized linear layer's (N, K) at tp_size, derived from the config's own fields.

    tp_size None means MODEL_TP_SIZE (1). Attention is MLA where kv_lora_rank is set, else
    grouped-query attention; MLPs are the dense ones (all layers of a dense model, the leading dense
    layers of a mixture of experts) and the shared experts. Column-parallel layers split N over the
    ranks, row-parallel ones split K, replicated ones split nothing. Routed experts run in the
    fused-MoE kernel and are only noted; embeddings, lm_head and the router are not block-quantized.
    A multimodal config's language model is read from its text_config (see _language_model). A model
    whose linear layers the block kernel never runs (not quantized, or not in blocks) raises ValueError:
    a plan of it would tune configs that no engine loads for it. DeepSeek-V4.x (o_lora_rank set) has
    layers of its own, derived in tuner/_deepseek_v4.py.
    """
    tp_size = MODEL_TP_SIZE if tp_size is None else tp_size
    _check_tp_size(tp_size)
    model_type = str(config.get("model_type", "model"))
    config, notes = _language_model(config)
    from tuner import _deepseek_v4  # here, not at the top: it builds on this module's helpers

    if _deepseek_v4.is_deepseek_v4(config):
        return _deepseek_v4.deepseek_v4_plan(config, tp_size, model_type=model_type, notes=notes)
    block_shape, input_type = _quantization(config)
    hidden = _field(config, "hidden_size")
    out = _Layers(tp_size, block_shape)
    if config.get("kv_lora_rank") is not None:
        _mla_attention(config, hidden, out)
    else:
        _gqa_attention(config, hidden, out)
    moe_notes = _mlps(config, hidden, out)
    return ModelPlan(
        model=model_type,
        tp_size=tp_size,
        block_shape=block_shape,
        input_type=input_type,
        layers=tuple(out.layers),
        notes=(*notes, *moe_notes, *out.notes),
    )


def _field(config: dict[str, Any], name: str, default: int | None = None) -> int:
    """A positive int field; null or absent means default, as in Hugging Face's config classes."""
    value = config.get(name)
    if value is None:
        value = default
    if not _positive_int(value):
        got = "nothing" if name not in config else repr(config[name])
        raise ValueError(f"the model config needs a positive int {name!r}, but has {got}.")
    return value


def _count(config: dict[str, Any], name: str) -> int:
    """A field that may be absent, null or 0, all meaning none."""
    value = config.get(name)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"the model config's {name!r} must be a non-negative int or null, but is {value!r}.")
    return value


def _language_model(config: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The config of the language model whose layers are tuned, and a note where it is nested.

    A multimodal model's config (Llama 4, Gemma 3, Mistral 3, ...) holds its language model under
    text_config, as Hugging Face's get_text_config() reads it, and its quantization_config at the top
    level unless the nested one has its own.
    """
    text = config.get("text_config")
    if text is None:
        return config, []
    if not isinstance(text, dict):
        raise ValueError(f"the model config's text_config must be a JSON object, but is {text!r}.")
    note = "the config nests its language model under text_config: its layers are the ones planned"
    if "quantization_config" not in text and "quantization_config" in config:
        text = {**text, "quantization_config": config["quantization_config"]}
        note += ", with the top-level quantization_config"
    return text, [note + "; other towers (vision, audio) are not tuned here."]


def _quantization(config: dict[str, Any]) -> tuple[tuple[int, int], str]:
    """(block_shape, input_type) from quantization_config; ValueError where the block kernel never runs the model.

    vLLM and SGLang send a linear layer to the block-scaled W8A8 kernel only where its weights are
    quantized in [block_n, block_k] blocks: fp8 or blockwise_int8 with weight_block_size, or
    compressed-tensors' block strategy. Per-tensor or per-channel FP8, AWQ, GPTQ and unquantized
    weights run on other GEMMs, whose configs are not these.
    """
    quant = config.get("quantization_config")
    never = "the block-scaled W8A8 kernel never runs its linear layers, so there is nothing of it to tune"
    if quant is None:
        raise ValueError(f"the model config has no quantization_config: the model is not quantized, and {never}.")
    if not isinstance(quant, dict):
        raise ValueError(f"the model config's quantization_config must be a JSON object, but is {quant!r}.")
    method = quant.get("quant_method")
    if method == COMPRESSED_TENSORS:
        return _compressed_tensors(quant, never)
    if method not in _BLOCK_METHODS:
        raise ValueError(f"the model config's quantization_config has quant_method {method!r}, not block "
                         f"quantization: {never}.")  # fmt: skip
    block = quant.get("weight_block_size")
    if block is None:
        raise ValueError(
            f"the model config's quantization_config has quant_method {method!r} without weight_block_size, i.e. "
            f"one scale per tensor or channel, not per block: {never}."
        )
    if not (isinstance(block, list) and len(block) == 2 and all(_positive_int(b) for b in block)):
        raise ValueError(
            f"the model config's quantization_config.weight_block_size must be [block_n, block_k], two positive "
            f"ints, but is {block!r}."
        )
    return (block[0], block[1]), _BLOCK_METHODS[method]


def _compressed_tensors(quant: dict[str, Any], never: str) -> tuple[tuple[int, int], str]:
    """compressed-tensors' FP8 blocks: every config group's weights 8-bit floats in blocks of one
    block_structure [block_n, block_k], its input activations 8-bit floats too (vLLM 0.34.0 runs such
    layers, CompressedTensorsW8A8Fp8 with a block structure, on the block kernel)."""
    groups = quant.get("config_groups")
    if not isinstance(groups, dict) or not groups:
        raise ValueError(f"the model config's compressed-tensors quantization_config has no config_groups: {never}.")
    blocks = set()
    for name, group in groups.items():
        weights = group.get("weights") if isinstance(group, dict) else None
        inputs = group.get("input_activations") if isinstance(group, dict) else None
        weights = weights if isinstance(weights, dict) else {}
        if (weights.get("strategy"), weights.get("num_bits"), weights.get("type")) != ("block", 8, "float"):
            got = f"strategy {weights.get('strategy')!r}, {weights.get('num_bits')}-bit {weights.get('type')}"
            raise ValueError(f"the model config's compressed-tensors group {name!r} quantizes weights with {got}, "
                             f"not 8-bit float blocks: {never}.")  # fmt: skip
        if not isinstance(inputs, dict) or (inputs.get("num_bits"), inputs.get("type")) != (8, "float"):
            raise ValueError(f"the model config's compressed-tensors group {name!r} leaves input activations "
                             f"unquantized (weights alone in FP8): {never}.")  # fmt: skip
        block = weights.get("block_structure")
        if not (isinstance(block, list) and len(block) == 2 and all(_positive_int(b) for b in block)):
            raise ValueError(f"the model config's compressed-tensors group {name!r} needs block_structure [block_n, "
                             f"block_k], two positive ints, but has {block!r}.")  # fmt: skip
        blocks.add(tuple(block))
    if len(blocks) > 1:
        shapes = ", ".join(str(list(b)) for b in sorted(blocks))
        raise ValueError(
            f"the model config's compressed-tensors groups use {len(blocks)} block structures ({shapes}); tune each "
            "block shape with --N/--K."
        )
    (block,) = blocks
    return block, "fp8"


class _Layers:
    """Collects linear layers at one TP size, checking each split the way the serving engines do."""

    def __init__(self, tp_size: int, block_shape: tuple[int, int]) -> None:
        self.tp_size = tp_size
        self.block_shape = block_shape
        self.layers: list[tuple[str, int, int]] = []
        self.notes: list[str] = []

    def split(self, value: int, what: str) -> int:
        """value // tp_size, or ValueError naming --tp-size and the field when the ranks cannot share it."""
        if value % self.tp_size:
            raise ValueError(f"--tp-size {self.tp_size} must divide the model's {what} ({value}).")
        return value // self.tp_size

    def add(self, name: str, N: int, K: int, *, n_parts: tuple[int, ...] = (), k_part: int | None = None) -> None:
        """One layer; n_parts are the per-rank N of each weight merged into a column-parallel layer,
        k_part the per-rank K of a row-parallel one, both left out for replicated layers."""
        self.layers.append((name, N, K))
        if self.tp_size == 1:
            return
        # vLLM and SGLang refuse to load a TP split that cuts through quantization blocks.
        block_n, block_k = self.block_shape
        cut = [f"each rank holds N={n} of a weight, not a multiple of block_n={block_n}"
               for n in dict.fromkeys(n_parts) if n % block_n]  # fmt: skip
        if k_part is not None and k_part % block_k:
            cut.append(f"each rank holds K={k_part}, not a multiple of block_k={block_k}")
        if cut:
            self.notes.append(f"at tp_size={self.tp_size}, {name}: {'; '.join(cut)}; vLLM and SGLang refuse to load "
                              "block-quantized weights split this way.")  # fmt: skip


def _mla_attention(config: dict[str, Any], hidden: int, out: _Layers) -> None:
    """Multi-head latent attention (DeepSeek-V2/V3, Kimi-K2): the GEMMs SGLang and vLLM build from its fields.

    With q_lora_rank set, both engines fuse q_a_proj (N = q_lora_rank) and kv_a_proj_with_mqa
    (N = kv_lora_rank + qk_rope_head_dim) into one replicated GEMM on the hidden state; q_b_proj
    then maps q_lora_rank to the local heads. With q_lora_rank null, q_proj maps the hidden state
    to the local heads directly and kv_a_proj_with_mqa stands alone, replicated. kv_b_proj runs as a
    GEMM in prefill (decode folds it into attention); o_proj splits K by heads.

    On DeepSeek-V3's config this gives, at TP t: (2112, 7168) fused A projection, (24576/t, 1536)
    q_b_proj, (32768/t, 512) kv_b_proj, (7168, 16384/t) o_proj, then the dense MLP (36864/t, 7168)
    and (7168, 18432/t) and the shared expert (4096/t, 7168) and (7168, 2048/t). All but the first
    are in deepseek_v3_shapes(t). That fixed list was written before the A projections were fused:
    it has kv_a_proj_with_mqa alone, (576, 7168), instead of (2112, 7168); it has a plain q_proj,
    (24576, 7168) and (24576/t, 7168), which DeepSeek-V3 does not run since its q_lora_rank is set;
    and it keeps unsplit copies of kv_b_proj, o_proj and the dense down projection at every TP.
    """
    heads = _field(config, "num_attention_heads")
    kv_lora_rank = _field(config, "kv_lora_rank")
    nope = _field(config, "qk_nope_head_dim")
    rope = _field(config, "qk_rope_head_dim")
    v_head_dim = _field(config, "v_head_dim")
    if "q_lora_rank" not in config:
        raise ValueError("the model config needs 'q_lora_rank' (a positive int, or null for a plain q_proj), "
                         "but has nothing.")  # fmt: skip
    q_lora_rank = None if config["q_lora_rank"] is None else _field(config, "q_lora_rank")
    local_heads = out.split(heads, "num_attention_heads")
    q_heads = local_heads * (nope + rope)
    if q_lora_rank is None:
        out.add("q_proj", q_heads, hidden, n_parts=(q_heads,))
        out.add("kv_a_proj_with_mqa", kv_lora_rank + rope, hidden)
    else:
        out.add("fused_qkv_a_proj_with_mqa", q_lora_rank + kv_lora_rank + rope, hidden)
        out.add("q_b_proj", q_heads, q_lora_rank, n_parts=(q_heads,))
    kv_heads = local_heads * (nope + v_head_dim)
    out.add("kv_b_proj", kv_heads, kv_lora_rank, n_parts=(kv_heads,))
    out.add("o_proj", hidden, local_heads * v_head_dim, k_part=local_heads * v_head_dim)


def _gqa_attention(config: dict[str, Any], hidden: int, out: _Layers) -> None:
    """Grouped-query attention (Llama, Qwen): fused QKV splits heads over the ranks, O splits K.

    KV heads fewer than the ranks are replicated, one per rank, as vLLM and SGLang do; that needs
    the TP size to be a multiple of their number.
    """
    heads = _field(config, "num_attention_heads")
    kv_heads = _field(config, "num_key_value_heads", heads)
    head_dim = _field(config, "head_dim", hidden // heads if hidden % heads == 0 else None)
    q_local = out.split(heads, "num_attention_heads")
    if kv_heads >= out.tp_size:
        kv_local = out.split(kv_heads, "num_key_value_heads")
    elif out.tp_size % kv_heads:
        raise ValueError(f"--tp-size {out.tp_size} must divide the model's num_key_value_heads ({kv_heads}) "
                         "or be a multiple of it.")  # fmt: skip
    else:
        kv_local = 1
    q, kv = q_local * head_dim, kv_local * head_dim
    out.add("qkv_proj", q + 2 * kv, hidden, n_parts=(q, kv, kv))
    out.add("o_proj", hidden, q, k_part=q)


def _dense_mlp(out: _Layers, prefix: str, size: int, what: str, hidden: int) -> None:
    local = out.split(size, what)
    out.add(f"{prefix}gate_up_proj", 2 * local, hidden, n_parts=(local, local))
    out.add(f"{prefix}down_proj", hidden, local, k_part=local)


def _mlps(config: dict[str, Any], hidden: int, out: _Layers) -> list[str]:
    """Dense MLPs and shared experts as GEMMs; routed experts only as notes, for the fused-MoE kernel."""
    shared: tuple[str, int, str] | None = None  # (module, intermediate size, the fields it comes from)
    if config.get("n_routed_experts"):  # DeepSeek, Kimi-K2: dense layers first, or every moe_layer_freq-th
        experts = _field(config, "n_routed_experts")
        expert_size, expert_field = _field(config, "moe_intermediate_size"), "moe_intermediate_size"
        dense = _count(config, "first_k_dense_replace") > 0 or _field(config, "moe_layer_freq", 1) > 1
        if n_shared := _count(config, "n_shared_experts"):
            shared = ("shared_experts.", n_shared * expert_size, "n_shared_experts * moe_intermediate_size")
    elif config.get("num_experts"):  # Qwen2-MoE, Qwen3-MoE: dense layers listed, or off the sparse step
        experts = _field(config, "num_experts")
        expert_size, expert_field = _field(config, "moe_intermediate_size"), "moe_intermediate_size"
        dense_layers = config.get("mlp_only_layers") or []
        if not isinstance(dense_layers, list):
            raise ValueError(f"the model config's 'mlp_only_layers' must be a list, but is {dense_layers!r}.")
        dense = bool(dense_layers) or _field(config, "decoder_sparse_step", 1) > 1
        if size := _count(config, "shared_expert_intermediate_size"):
            shared = ("shared_expert.", size, "shared_expert_intermediate_size")
    elif config.get("num_local_experts"):  # Mixtral: every layer is sparse, each expert intermediate_size wide
        experts = _field(config, "num_local_experts")
        expert_size, expert_field = _field(config, "intermediate_size"), "intermediate_size"
        dense = False
    else:
        experts, dense = 0, True
    if dense:
        _dense_mlp(out, "", _field(config, "intermediate_size"), "intermediate_size", hidden)
    if shared is not None:
        _dense_mlp(out, shared[0], shared[1], shared[2], hidden)
    if not experts:
        return []
    notes = [
        f"{experts} routed experts ({expert_field} {expert_size}: gate_up N={2 * expert_size} and down "
        f"K={expert_size} each, before any split) run in the fused-MoE kernel, which has its own configs; "
        "they are not tuned here."
    ]
    if out.tp_size > 1:
        block_n, block_k = out.block_shape
        per_rank, rest = divmod(expert_size, out.tp_size)
        if rest or per_rank % block_n or per_rank % block_k:
            notes.append(
                f"at tp_size={out.tp_size}, each routed expert's {expert_field} {expert_size} is not a whole number "
                f"of [{block_n}, {block_k}] blocks per rank: vLLM and SGLang refuse to split such experts by tensor "
                "parallelism; expert parallelism keeps each expert whole."
            )
    return notes
