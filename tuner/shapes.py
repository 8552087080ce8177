"""Weight shapes to tune: DeepSeek-V3's (SPEC section 3), or any model's from its config.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024, 1536, 2048, 3072, 4096)

_DEEPSEEK_V3_UNSPLIT = ((576, 7168), (24576, 7168), (32768, 512), (7168, 16384), (7168, 18432))
_DEEPSEEK_V3_N_SPLIT = ((36864, 7168), (24576, 7168), (32768, 512), (24576, 1536), (4096, 7168))
_DEEPSEEK_V3_K_SPLIT = ((7168, 18432), (7168, 16384), (7168, 2048))


def deepseek_v3_shapes(tp_size: int) -> list[tuple[int, int]]:
    """The (N, K) of DeepSeek-V3's block-quantized linear layers at tensor-parallel size tp_size."""
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
    """A Hugging Face config.json, or ValueError saying why it cannot be used."""
    path = Path(path)
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"--model {str(path)!r} does not exist.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"--model {str(path)!r} is not a JSON config file: {error}") from None
    if not isinstance(config, dict):
        raise ValueError(f"--model {str(path)!r} must hold a JSON object, but holds {type(config).__name__}.")
    return config


def _field(config: dict[str, Any], name: str, default: int | None = None) -> int:
    value = config.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        got = "nothing" if name not in config else repr(config[name])
        raise ValueError(f"the model config needs a positive int {name!r}, but has {got}.")
    return value


def _split(value: int, tp_size: int, what: str) -> int:
    if value % tp_size:
        raise ValueError(f"--tp-size {tp_size} must divide the model's {what} ({value}).")
    return value // tp_size


def model_shapes(config: dict[str, Any], tp_size: int) -> list[tuple[str, int, int]]:
    """(layer, N, K) of a model's dense linear layers at tensor-parallel size tp_size.

    Column-parallel layers (QKV, gate+up) split N; row-parallel ones (O, down) split K. KV heads
    fewer than tp_size are replicated, one per rank. DeepSeek-V3-style configs (MLA, with
    kv_lora_rank) map to SPEC section 3's list. Mixture-of-experts weights run in a fused MoE kernel,
    not this GEMM, and are left out.
    """
    if not isinstance(tp_size, int) or tp_size < 1:
        raise ValueError(f"--tp-size must be a positive int, but got {tp_size!r}.")
    if "kv_lora_rank" in config:
        return [("deepseek_v3", N, K) for N, K in deepseek_v3_shapes(tp_size)]
    hidden = _field(config, "hidden_size")
    heads = _field(config, "num_attention_heads")
    kv_heads = _field(config, "num_key_value_heads", heads)
    head_dim = _field(config, "head_dim", hidden // heads if hidden % heads == 0 else None)
    intermediate = _field(config, "intermediate_size")
    q_heads = _split(heads, tp_size, "num_attention_heads")
    kv_per_rank = max(1, kv_heads // tp_size)
    shapes = [
        ("qkv_proj", (q_heads + 2 * kv_per_rank) * head_dim, hidden),
        ("o_proj", hidden, q_heads * head_dim),
        ("gate_up_proj", 2 * _split(intermediate, tp_size, "intermediate_size"), hidden),
        ("down_proj", hidden, _split(intermediate, tp_size, "intermediate_size")),
    ]
    return shapes
