"""Time our kernel against SGLang's released Triton kernels, on the same operands, in one process.

    PYTHONPATH=. python benchmarks/against_sglang_kernel.py --sglang-source PATH/fp8_kernel.py   # a CUDA GPU

PATH/fp8_kernel.py is `sglang/kernels/ops/gemm/fp8_kernel.py` from a released SGLang wheel (0.5.23:
`unzip sglang-0.5.23-*.whl 'sglang/kernels/ops/gemm/fp8_kernel.py'`). The module itself imports most
of SGLang, so only its three Triton kernels (the base kernel, the Hopper kernel and the split-K
reduce) are taken from its source, written to a module of their own and launched the way SGLang's
`w8a8_block_fp8_matmul_triton` launches them on an SM90 GPU. Both kernels are checked against the
float32 reference on the first launch and timed with kernels.timing (CUDA-graph replays over
rotating operand sets), interleaved in alternating order, median of --repeats timings each; printed as ours / SGLang's.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import torch
import triton

from kernels import RELATIVE_TOLERANCE, default_config, uses_hopper_path, w8a8_block_matmul, w8a8_block_matmul_reference
from kernels.timing import make_operand_sets, make_weight_sets, rotation_sets_needed, time_launches

SGLANG_KERNELS = ("_w8a8_block_fp8_matmul", "_w8a8_block_fp8_matmul_hopper", "_reduce_block_fp8_split_k")
BLOCK_SIZE = [128, 128]
# (label, config, N, K, batch sizes): the default over every regime, a small-M tile, and Hopper entries.
SMALL_TILE = {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 128,
              "GROUP_SIZE_M": 1, "num_warps": 8, "num_stages": 5}  # fmt: skip
SPLIT_SWAP = {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 128, "GROUP_SIZE_M": 1,
              "num_warps": 4, "num_stages": 4, "SPLIT_K": 16, "SWAP_AB": True}  # fmt: skip
SPLIT = {**SPLIT_SWAP, "SPLIT_K": 4, "SWAP_AB": False}
POINTS = [
    ("default", default_config(*BLOCK_SIZE), 7168, 18432, (1, 16, 64, 256, 1024, 4096)),
    ("16/64/128 G1 w8 s5", SMALL_TILE, 7168, 18432, (1, 16)),
    ("16/64/128 s4 K16 swap", SPLIT_SWAP, 576, 7168, (1, 16)),
    ("16/64/128 s4 K4", SPLIT, 576, 7168, (64,)),
]


def load_sglang_kernels(source: Path):
    """SGLang's three Triton kernels, from the source of its fp8_kernel module, as a module of their own."""
    tree = ast.parse(source.read_text())
    wanted = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in SGLANG_KERNELS]
    missing = set(SGLANG_KERNELS) - {node.name for node in wanted}
    if missing:
        raise SystemExit(f"{source} has no {sorted(missing)}: not an SGLang with the Hopper kernel.")
    module_source = "import triton\nimport triton.language as tl\n\n\n" + "\n\n\n".join(map(ast.unparse, wanted))
    path = Path(tempfile.mkdtemp(prefix="sglang-kernels-")) / "sglang_fp8_kernels.py"
    path.write_text(module_source)  # Triton reads a kernel's source from its file
    spec = importlib.util.spec_from_file_location("sglang_fp8_kernels", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def sglang_launch(kernels, A, B, As, Bs, out_dtype: torch.dtype, config: dict) -> torch.Tensor:
    """SGLang 0.5.23's launch on an SM90 GPU: the Hopper kernel for Hopper entries, the base kernel otherwise."""
    M, K = A.shape
    N = B.shape[0]
    C = torch.empty((M, N), device=A.device, dtype=out_dtype)
    hopper = uses_hopper_path(config)
    split_k = config.get("SPLIT_K", 1) if hopper else 1
    partials = torch.empty((split_k, M, N), device=A.device, dtype=torch.float32) if split_k > 1 else C
    kernel = kernels._w8a8_block_fp8_matmul_hopper if hopper else kernels._w8a8_block_fp8_matmul
    tiles = triton.cdiv(M, config["BLOCK_SIZE_M"]) * triton.cdiv(N, config["BLOCK_SIZE_N"])
    grid = (tiles, split_k) if hopper else (tiles,)
    meta = config if hopper else {key: value for key, value in config.items() if key not in ("SPLIT_K", "SWAP_AB")}
    kernel[grid](A, B, partials, As, Bs, M, N, K, *BLOCK_SIZE, A.stride(-2), A.stride(-1), B.stride(1), B.stride(0),
                 C.stride(-2), C.stride(-1), As.stride(-2), As.stride(-1), Bs.stride(1), Bs.stride(0), **meta,
                 needs_masking=bool(K % config["BLOCK_SIZE_K"] != 0))  # fmt: skip
    if split_k > 1:
        kernels._reduce_block_fp8_split_k[(triton.cdiv(M * N, 256),)](partials, C, M * N, split_k, 256)
    return C


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sglang-source", type=Path, required=True, help="SGLang's fp8_kernel.py")
    parser.add_argument("--out-dtype", choices=["float16", "bfloat16", "float32"], default="float16")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timings of each kernel per point")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/against_sglang_kernel.py needs a CUDA GPU.")
    torch.backends.cuda.matmul.allow_tf32 = False  # the reference must be true float32
    kernels = load_sglang_kernels(args.sglang_source)
    out_dtype = getattr(torch, args.out_dtype)
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}, "
          f"python {platform.python_version()}; fp8 -> {args.out_dtype}, block {BLOCK_SIZE}; "
          f"CUDA-graph median us, median of {args.repeats} interleaved timings")  # fmt: skip
    print(f"{'N':>5} {'K':>6} {'M':>5} {'config':>22} {'ours':>9} {'sglang':>9} {'ours/sglang':>12}")
    ratios = []
    for label, config, N, K, batch_sizes in POINTS:
        weights = make_weight_sets(N, K, BLOCK_SIZE, torch.float8_e4m3fn, rotation_sets_needed(1, N, K, l2_bytes=l2))
        for M in batch_sizes:
            sets = make_operand_sets(M, weights, BLOCK_SIZE, rotation_sets_needed(M, N, K, l2_bytes=l2), seed=M)
            reference = w8a8_block_matmul_reference(*sets[0], BLOCK_SIZE, torch.float32)
            launches = {
                "ours": lambda i, sets=sets, c=config: w8a8_block_matmul(*sets[i], BLOCK_SIZE, out_dtype, c),
                "sglang": lambda i, sets=sets, c=config: sglang_launch(kernels, *sets[i], out_dtype, c),
            }
            for name, launch in launches.items():
                out = launch(0)
                torch.cuda.synchronize()
                error = ((out.float() - reference).norm() / reference.norm()).item()
                if not error < RELATIVE_TOLERANCE[out_dtype]:
                    raise SystemExit(f"{name} is wrong at N={N} K={K} M={M} {label}: relative error {error:.2e}")
            times = {name: [] for name in launches}
            for repeat in range(args.repeats):
                # Each kernel goes first in every other round, so an order effect cannot favour one.
                for name in sorted(launches, reverse=repeat % 2 == 1):
                    times[name].append(time_launches(launches[name], len(sets)).median_us)
            ours, sglang = statistics.median(times["ours"]), statistics.median(times["sglang"])
            ratios.append(ours / sglang)
            print(f"{N:>5} {K:>6} {M:>5} {label:>22} {ours:>9.1f} {sglang:>9.1f} {ours / sglang:>12.3f}", flush=True)
    print(f"ours/sglang over {len(ratios)} points: min {min(ratios):.3f}, max {max(ratios):.3f}, "
          f"geomean {statistics.geometric_mean(ratios):.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
