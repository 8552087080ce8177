"""Input and config validation shared by the Triton launcher and the torch reference.

Every check runs before anything is launched, and each error says what was expected and what came,
so a bad call never reaches the GPU.
"""

from __future__ import annotations

import os

import torch

from kernels._config import (
    CONFIG_KEYS,
    HOPPER_KEYS,
    INPUT_TYPES,
    MAX_SPLIT_K,
    OUT_DTYPES,
    default_config,
    uses_hopper_path,
)

INPUT_DTYPES = dict(zip(INPUT_TYPES, (torch.float8_e4m3fn, torch.int8), strict=True))
OUTPUT_DTYPES = {name: getattr(torch, name) for name in OUT_DTYPES}  # torch names them alike


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def is_power_of_two(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x > 0 and x & (x - 1) == 0


def check_block_size(block_size: object) -> tuple[int, int]:
    if not isinstance(block_size, (list, tuple)) or len(block_size) != 2:
        raise ValueError(f"block_size must be [block_n, block_k], but got {block_size!r}.")
    for name, value in zip(("block_n", "block_k"), block_size):
        if not is_power_of_two(value):
            raise ValueError(f"{name} must be a power of two, but got {value!r}.")
    return block_size[0], block_size[1]


def check_inputs(
    A: torch.Tensor,
    B: torch.Tensor,
    As: torch.Tensor,
    Bs: torch.Tensor,
    block_size: object,
    output_dtype: torch.dtype,
    *,
    need_kernel_device: bool = True,
) -> tuple[int, int]:
    """Validate operands against the kernel's contract and return (block_n, block_k)."""
    block_n, block_k = check_block_size(block_size)
    for name, t in (("A", A), ("B", B), ("As", As), ("Bs", Bs)):
        if not isinstance(t, torch.Tensor) or t.dim() != 2:
            got = f"{t.dim()}-D tensor" if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a 2-D tensor, but got a {got}.")
    if A.dtype not in INPUT_DTYPES.values():
        raise ValueError(f"A must be float8_e4m3fn or int8, but got {A.dtype}.")
    if B.dtype != A.dtype:
        raise ValueError(f"B must have A's dtype {A.dtype}, but got {B.dtype}.")
    if output_dtype not in OUTPUT_DTYPES.values():
        raise ValueError(f"output_dtype must be bfloat16, float16 or float32, but got {output_dtype}.")
    M, K = A.shape
    N = B.shape[0]
    if M == 0 or N == 0 or K == 0:
        raise ValueError(f"M, N and K must be positive, but got M={M}, N={N}, K={K}.")
    if B.shape[1] != K:
        raise ValueError(f"B must be (N, K) with K={K} as in A, but got shape {tuple(B.shape)}.")
    for name, t in (("A", A), ("B", B)):
        if t.stride(1) != 1:
            raise ValueError(f"{name} must have a contiguous last dim, but got strides {t.stride()}.")
    expected_scales = (("As", As, (M, cdiv(K, block_k))), ("Bs", Bs, (cdiv(N, block_n), cdiv(K, block_k))))
    for name, t, shape in expected_scales:
        if t.dtype != torch.float32:
            raise ValueError(f"{name} must be float32, but got {t.dtype}.")
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must have shape {shape}, but got {tuple(t.shape)}.")
    devices = {t.device for t in (A, B, As, Bs)}
    if len(devices) != 1:
        raise ValueError(f"A, B, As and Bs must be on one device, but got {sorted(map(str, devices))}.")
    device = A.device
    if need_kernel_device and device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError(f"the kernel runs on CUDA tensors, or on CPU under TRITON_INTERPRET=1, but got {device}.")
    return block_n, block_k


def resolve_config(config: dict[str, int] | None, block_n: int, block_k: int) -> dict[str, int]:
    """Return the config to launch: the default when None, else a validated copy."""
    if config is None:
        return default_config(block_n, block_k)
    expected = f"the keys {list(CONFIG_KEYS)}, and both {list(HOPPER_KEYS)} on the Hopper path"
    if not isinstance(config, dict):
        raise ValueError(f"config must be a dict with {expected}, but got {type(config).__name__}.")
    missing = [k for k in CONFIG_KEYS if k not in config]
    unknown = [k for k in config if k not in CONFIG_KEYS + HOPPER_KEYS]
    if missing or unknown:
        raise ValueError(f"config must have exactly {expected}, but misses {missing} and has unknown {unknown}.")
    for key in CONFIG_KEYS:
        value = config[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"config[{key!r}] must be a positive int, but got {value!r}.")
    for key in ("BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K", "num_warps"):
        if not is_power_of_two(config[key]):
            raise ValueError(f"config[{key!r}] must be a power of two, but got {config[key]}.")
    for key in ("BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K"):
        if config[key] < 16:
            raise ValueError(f"config[{key!r}] must be at least 16 (the smallest tl.dot tile), but got {config[key]}.")
    if block_k % config["BLOCK_SIZE_K"] != 0:
        raise ValueError(f"config['BLOCK_SIZE_K'] must divide block_k={block_k}, but got {config['BLOCK_SIZE_K']}.")
    hopper_keys = [k for k in HOPPER_KEYS if k in config]
    if hopper_keys:
        _check_hopper_keys(config, hopper_keys)
    return {key: config[key] for key in CONFIG_KEYS + tuple(hopper_keys)}


def _check_hopper_keys(config: dict[str, int], present: list[str]) -> None:
    if len(present) != len(HOPPER_KEYS):
        raise ValueError(
            f"config must have both {list(HOPPER_KEYS)} (the Hopper path) or neither, but got only {present[0]!r}."
        )
    split_k, swap_ab = config["SPLIT_K"], config["SWAP_AB"]
    if not is_power_of_two(split_k) or split_k > MAX_SPLIT_K:
        raise ValueError(f"config['SPLIT_K'] must be a power of two from 1 to {MAX_SPLIT_K}, but got {split_k!r}.")
    if not isinstance(swap_ab, bool):
        raise ValueError(f"config['SWAP_AB'] must be a bool, but got {swap_ab!r}.")
    if not uses_hopper_path(config):
        # SGLang would launch the base kernel with both keys, which it does not take.
        raise ValueError(
            "config with SPLIT_K and SWAP_AB must take the Hopper path (SPLIT_K > 1 or SWAP_AB True), but got "
            "SPLIT_K=1 and SWAP_AB=False; a base-kernel config has neither key."
        )
