"""Check the kernel on real shapes and time it against SGLang's own kernel's published latencies.

    python -m kernels.bench            # needs a CUDA GPU

The SGLang latencies are CUDA-graph medians on an H100 80GB HBM3 for N=7168, K=18432, fp8 inputs,
bf16 output, as SGLang's kernel benchmarks report them; ours are timed the same way (kernels.timing)
and printed as ratios.
"""

from __future__ import annotations

import argparse
import platform

import torch
import triton

from kernels import RELATIVE_TOLERANCE, default_config, w8a8_block_matmul, w8a8_block_matmul_reference
from kernels.timing import make_operand_sets, make_weight_sets, rotation_sets_needed, time_launches

SGLANG_DEFAULT_US = {1: 137.5, 16: 93.0, 64: 94.8, 256: 113.1, 1024: 447.3, 4096: 1666.6}
SMALL_TILE = {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 128,
              "GROUP_SIZE_M": 1, "num_warps": 8, "num_stages": 5}  # fmt: skip
SGLANG_SMALL_TILE_US = {1: 62.1}
# (N, K) of DeepSeek-V3 at TP 8 and odd shapes, checked for correctness at odd M.
CHECK_SHAPES = [(7168, 18432), (24576, 1536), (4096, 7168), (576, 7168), (1000, 300)]


def check_correctness() -> None:
    """Every input and output dtype on real and odd shapes, at M = 1, 13 and 333."""
    for N, K in CHECK_SHAPES:
        for dtype in (torch.float8_e4m3fn, torch.int8):
            weights = make_weight_sets(N, K, [128, 128], dtype, 1)
            for M in (1, 13, 333):
                a, b, a_s, b_s = make_operand_sets(M, weights, [128, 128], 1, seed=M)[0]
                for out_dtype in RELATIVE_TOLERANCE:
                    out = w8a8_block_matmul(a, b, a_s, b_s, [128, 128], out_dtype)
                    ref = w8a8_block_matmul_reference(a, b, a_s, b_s, [128, 128], torch.float32)
                    err = ((out.float() - ref).norm() / ref.norm()).item()
                    status = "ok" if err < RELATIVE_TOLERANCE[out_dtype] else "FAIL"
                    print(f"check N={N} K={K} M={M} {dtype} -> {out_dtype}: rel err {err:.2e} {status}")
                    if status != "ok":
                        raise SystemExit(f"wrong result at N={N} K={K} M={M} {dtype} {out_dtype}")


def time_config(M: int, N: int, K: int, config: dict, weights, l2: int) -> float:
    sets = make_operand_sets(M, weights, [128, 128], rotation_sets_needed(M, N, K, l2_bytes=l2))

    def launch(i: int) -> torch.Tensor:
        return w8a8_block_matmul(*sets[i], [128, 128], torch.bfloat16, config)

    launch(0)
    torch.cuda.synchronize()
    return time_launches(launch, len(sets), target_replay_us=2000.0, replays=20).median_us


def build_parser() -> argparse.ArgumentParser:
    """The command's flags, under the name it is run by (argparse would say `bench.py`), spelled out in full."""
    parser = argparse.ArgumentParser(
        prog="python -m kernels.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--skip-check", action="store_true", help="only time")
    parser.add_argument("--repeats", type=int, default=3, help="independent timings per point (median shown)")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("kernels.bench needs a CUDA GPU.")
    print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}, "
          f"python {platform.python_version()}")  # fmt: skip
    if not args.skip_check:
        check_correctness()
    N, K = 7168, 18432
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    weights = make_weight_sets(N, K, [128, 128], torch.float8_e4m3fn, rotation_sets_needed(1, N, K, l2_bytes=l2))
    rows = [(M, "default", default_config(128, 128), us) for M, us in SGLANG_DEFAULT_US.items()]
    rows += [(M, "16/64/128 G1 w8 s5", SMALL_TILE, us) for M, us in SGLANG_SMALL_TILE_US.items()]
    print(f"\nN={N} K={K} fp8 -> bf16, CUDA-graph median us (median of {args.repeats} timings)")
    print(f"{'M':>5} {'config':>20} {'ours':>9} {'sglang':>9} {'ours/sglang':>12}")
    for M, label, config, sglang_us in rows:
        timings = sorted(time_config(M, N, K, config, weights, l2) for _ in range(args.repeats))
        ours = timings[len(timings) // 2]
        print(f"{M:>5} {label:>20} {ours:>9.1f} {sglang_us:>9.1f} {ours / sglang_us:>12.3f}")


if __name__ == "__main__":
    main()
