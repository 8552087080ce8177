"""Check on a GPU that a config compiled in another process is loaded, not recompiled, at launch.

tuner.gpu relies on this: its compile pool fills Triton's disk cache ahead of the timing process.
Prints the compile time in a spawned process and the first-launch time here; the second must be
far smaller.
"""

from __future__ import annotations

import multiprocessing as mp
import time

import torch

from kernels import compile_w8a8_block_matmul, w8a8_block_matmul
from kernels.timing import make_operand_sets, make_weight_sets

CONFIG = {"BLOCK_SIZE_M": 32, "BLOCK_SIZE_N": 128, "BLOCK_SIZE_K": 128,
          "GROUP_SIZE_M": 16, "num_warps": 8, "num_stages": 3}  # fmt: skip


def _compile(M: int) -> float:
    started = time.perf_counter()
    compile_w8a8_block_matmul(M, 7168, 18432, [128, 128], torch.float8_e4m3fn, torch.bfloat16, CONFIG)
    return time.perf_counter() - started


def main() -> None:
    weights = make_weight_sets(7168, 18432, [128, 128], torch.float8_e4m3fn, 1)
    with mp.get_context("spawn").Pool(2) as pool:
        compile_s = pool.map(_compile, [48, 7])
    for M, seconds in zip((48, 7), compile_s):
        sets = make_operand_sets(M, weights, [128, 128], 1)
        started = time.perf_counter()
        w8a8_block_matmul(*sets[0], [128, 128], torch.bfloat16, CONFIG)
        torch.cuda.synchronize()
        launch_s = time.perf_counter() - started
        print(f"M={M}: compile in a spawned process {seconds:.2f} s, first launch here {launch_s:.3f} s")


if __name__ == "__main__":
    main()
