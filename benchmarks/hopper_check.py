"""Check SGLang's Hopper path (SPLIT_K, SWAP_AB) on a GPU and time it against the base kernel at small M.

    PYTHONPATH=. python benchmarks/hopper_check.py --out hopper_check.csv     # needs a CUDA GPU

Shapes (N, K) (576, 7168), (512, 7168), (3072, 7168), (4608, 7168), (7168, 18432) at M 1, 16 and 64,
fp8 inputs, bf16 output, block [128, 128], unless --shapes, --batch-sizes, --out-dtype and --block-n/--block-k say
otherwise.
Every config of the grid is checked against the float32
reference (kernels.RELATIVE_TOLERANCE) on its first launch and then timed with kernels.timing
(CUDA-graph replays over rotating operand sets). Printed per (shape, M): the best base config
(SPLIT_K 1, no swap), the best Hopper config and their ratio, and the launch floor (an empty Triton
kernel per launch in a graph). The CSV has a landscape's columns plus SPLIT_K and SWAP_AB.

Grid: BLOCK_SIZE_M {16, 32, 64} x BLOCK_SIZE_N {32, 64, 128} x BLOCK_SIZE_K (the largest of the block's, 128 for
[128, 128] and 32 for [32, 32]) x GROUP_SIZE_M 1 x
4 warps x stages {3, 4} = 18 tiles, times SPLIT_K {1, 2, 4, 8, 16, 32} x SWAP_AB = 216 configs, 18 of
them base. Triton compiles each config once per specialisation, and here there are four: M = 1 or
not (Triton specialises an integer 1) times K = 7168 or 18432 (the scale strides 56 and 144 differ in
divisibility by 16). The 864 binaries are compiled first by compile_w8a8_block_matmul in a pool of
processes into a fresh Triton cache, which also checks that it specialises like a launch: the
timing loop must then compile nothing. Estimated, not yet measured: about 1 s a binary on one core
(60 s with 15 processes) and 25 ms to check and time each of the 3240 points, so 3 to 4 minutes in
all. Each phase prints its wall time; if it runs long, cut the stages to {3} (halves the compiles).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import multiprocessing
import os
import platform
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
import triton
from triton.compiler.errors import CompilationError
from triton.runtime.errors import OutOfResources, PTXASError

from kernels import (
    CONFIG_KEYS,
    HOPPER_KEYS,
    OUTPUT_DTYPES,
    RELATIVE_TOLERANCE,
    compile_w8a8_block_matmul,
    uses_hopper_path,
    w8a8_block_matmul,
    w8a8_block_matmul_reference,
)
from kernels.timing import make_operand_sets, make_weight_sets, rotation_sets_needed, time_launches
from tuner.space import block_sizes_k

SHAPES = [(576, 7168), (512, 7168), (3072, 7168), (4608, 7168), (7168, 18432)]
BATCH_SIZES = [1, 16, 64]
INPUT_DTYPE = torch.float8_e4m3fn
CSV_HEADER = ["device", "input_type", "out_dtype", "N", "K", "M", "block_n", "block_k", *CONFIG_KEYS, "status", "us",
              *HOPPER_KEYS]  # fmt: skip


def hopper_grid(block_k: int) -> list[dict]:
    """The timed configs: each tile with every SPLIT_K and SWAP_AB, as SGLang's files would carry them."""
    configs = []
    for block_m, block_n, num_stages in itertools.product((16, 32, 64), (32, 64, 128), (3, 4)):
        base = {"BLOCK_SIZE_M": block_m, "BLOCK_SIZE_N": block_n, "BLOCK_SIZE_K": max(block_sizes_k(block_k)),
                "GROUP_SIZE_M": 1, "num_warps": 4, "num_stages": num_stages}  # fmt: skip
        for split_k, swap_ab in itertools.product((1, 2, 4, 8, 16, 32), (False, True)):
            entry = {**base, "SPLIT_K": split_k, "SWAP_AB": swap_ab}
            # An entry off the Hopper path carries the six base keys alone.
            configs.append(entry if uses_hopper_path(entry) else base)
    return configs


def label(config: dict) -> str:
    """A config in one short word, e.g. 16x64x128/s3 K8 swap."""
    text = f"{config['BLOCK_SIZE_M']}x{config['BLOCK_SIZE_N']}x{config['BLOCK_SIZE_K']}/s{config['num_stages']}"
    if uses_hopper_path(config):
        text += f" K{config['SPLIT_K']}" + (" swap" if config["SWAP_AB"] else "")
    return text


@dataclass(frozen=True)
class Point:
    """One (shape, M, config) and what became of it; us is the median latency when status is ok."""

    N: int
    K: int
    M: int
    block_size: tuple[int, int]
    config: dict
    status: str
    us: float | None = None

    def csv_row(self, device: str, out_dtype: str) -> list[str]:
        hopper = [str(self.config.get("SPLIT_K", 1)), str(self.config.get("SWAP_AB", False)).lower()]
        us = "" if self.us is None else f"{self.us:.3f}"
        return [device, "fp8", out_dtype, *map(str, (self.N, self.K, self.M, *self.block_size)),
                *(str(self.config[key]) for key in CONFIG_KEYS), self.status, us, *hopper]  # fmt: skip


def summary(points: list[Point], floor_us: float) -> list[str]:
    """Per (shape, M): the best base and best Hopper config, and how much faster the Hopper one is."""
    lines = [f"launch floor (an empty Triton kernel in a CUDA graph): {floor_us:.2f} us per launch",
             f"{'N':>5} {'K':>6} {'M':>3} {'base us':>8} {'best base':<16} {'hopper us':>9} {'best hopper':<24} "
             f"{'base/hopper':>11}"]  # fmt: skip
    for (N, K, M), group in itertools.groupby(points, key=lambda p: (p.N, p.K, p.M)):
        timed = [p for p in group if p.status == "ok"]
        base = min((p for p in timed if not uses_hopper_path(p.config)), key=lambda p: p.us, default=None)
        hopper = min((p for p in timed if uses_hopper_path(p.config)), key=lambda p: p.us, default=None)
        if base is None or hopper is None:
            lines.append(f"{N:>5} {K:>6} {M:>3} no timed {'base' if base is None else 'Hopper'} config")
            continue
        lines.append(f"{N:>5} {K:>6} {M:>3} {base.us:>8.1f} {label(base.config):<16} {hopper.us:>9.1f} "
                     f"{label(hopper.config):<24} {base.us / hopper.us:>11.2f}")  # fmt: skip
    return lines


def _failure(error: Exception) -> str:
    """The landscape status of an error Triton raises for a config it cannot build or load."""
    return "out_of_resources" if isinstance(error, OutOfResources) else "compile_error"


def _compile(M: int, N: int, K: int, block_size: list[int], config: dict, out_dtype: torch.dtype) -> str | None:
    """Compile one config in a pool process; the failure's status, or None."""
    try:
        compile_w8a8_block_matmul(M, N, K, block_size, INPUT_DTYPE, out_dtype, config)
    except (CompilationError, OutOfResources, PTXASError) as error:
        return _failure(error)
    return None


def _binaries(cache_dir: Path) -> set[Path]:
    return {path.parent for path in cache_dir.rglob("*.cubin")}


@triton.jit
def _empty_kernel():
    pass


def launch_floor_us() -> float:
    """Per-launch time of a kernel that does nothing, timed like the GEMMs: the floor under any of them."""
    _empty_kernel[(1,)]()
    torch.cuda.synchronize()
    return time_launches(lambda i: _empty_kernel[(1,)](), 1).median_us


def compile_all(
    configs: list[dict],
    shapes: list[tuple[int, int]],
    batch_sizes: list[int],
    block_size: list[int],
    out_dtype: torch.dtype,
    workers: int,
) -> dict[tuple, str]:
    """Compile every (shape, M, config) in a process pool; the failures' statuses by (N, K, M, index)."""
    jobs = {}
    # Spawned processes: a forked child would inherit this process's CUDA context.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        # Shape and M outermost, so that the same binary is rarely compiled twice at once.
        for (N, K), M in itertools.product(shapes, batch_sizes):
            for index, config in enumerate(configs):
                jobs[N, K, M, index] = pool.submit(_compile, M, N, K, block_size, config, out_dtype)
        return {key: status for key, job in jobs.items() if (status := job.result()) is not None}


def _launcher(sets: list, block_size: list[int], config: dict, out_dtype: torch.dtype):
    def launch(i: int) -> torch.Tensor:
        return w8a8_block_matmul(*sets[i], block_size, out_dtype, config)

    return launch


def measure_shape(
    N: int,
    K: int,
    batch_sizes: list[int],
    block_size: list[int],
    out_dtype: torch.dtype,
    configs: list[dict],
    failed: dict[tuple, str],
    l2_bytes: int,
) -> list[Point]:
    """Check and time every config at every M of one shape."""
    n_weights = rotation_sets_needed(1, N, K, l2_bytes=l2_bytes, block_size=block_size)
    weights = make_weight_sets(N, K, block_size, INPUT_DTYPE, n_weights)
    points = []
    for M in batch_sizes:
        n_sets = rotation_sets_needed(M, N, K, l2_bytes=l2_bytes, block_size=block_size)
        sets = make_operand_sets(M, weights, block_size, n_sets, seed=M)
        reference = w8a8_block_matmul_reference(*sets[0], block_size, torch.float32)
        for index, config in enumerate(configs):
            if (N, K, M, index) in failed:
                points.append(Point(N, K, M, tuple(block_size), config, failed[N, K, M, index]))
                continue
            launch = _launcher(sets, block_size, config, out_dtype)
            try:
                out = launch(0)  # loads the binary outside the graph
            except OutOfResources as error:
                points.append(Point(N, K, M, tuple(block_size), config, _failure(error)))
                continue
            error = ((out.float() - reference).norm() / reference.norm()).item()
            if not error < RELATIVE_TOLERANCE[out_dtype]:
                print(f"WRONG N={N} K={K} M={M} {label(config)}: relative error {error:.2e}")
                points.append(Point(N, K, M, tuple(block_size), config, "wrong_result"))
                continue
            points.append(Point(N, K, M, tuple(block_size), config, "ok", time_launches(launch, len(sets)).median_us))
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="CSV of every timed (shape, M, config)")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1), help="compile processes")
    parser.add_argument("--shapes", nargs="+", default=[f"{N}x{K}" for N, K in SHAPES], help="NxK ...")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=BATCH_SIZES)
    parser.add_argument("--out-dtype", choices=list(OUTPUT_DTYPES), default="bfloat16")
    parser.add_argument("--block-n", type=int, default=128, help="quantization block rows (default: 128)")
    parser.add_argument("--block-k", type=int, default=128, help="quantization block columns (default: 128)")
    args = parser.parse_args()
    shapes = [tuple(int(v) for v in shape.split("x")) for shape in args.shapes]
    out_dtype = OUTPUT_DTYPES[args.out_dtype]
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/hopper_check.py needs a CUDA GPU.")
    device = torch.cuda.get_device_name().replace(" ", "_")
    print(f"device {device}, torch {torch.__version__}, triton {triton.__version__}, "
          f"python {platform.python_version()}", flush=True)  # fmt: skip
    torch.backends.cuda.matmul.allow_tf32 = False  # the reference must be true float32
    block_size = [args.block_n, args.block_k]
    configs = hopper_grid(args.block_k)
    with tempfile.TemporaryDirectory(prefix="triton-cache-") as cache_dir:
        # A fresh cache: compile time is a cold start's, and what the timing loop adds is countable.
        os.environ["TRITON_CACHE_DIR"] = cache_dir
        start = time.perf_counter()
        floor_us = launch_floor_us()
        failed = compile_all(configs, shapes, args.batch_sizes, block_size, out_dtype, args.workers)
        compiled = _binaries(Path(cache_dir))
        points_total = len(shapes) * len(args.batch_sizes) * len(configs)
        print(f"compiled {len(compiled)} binaries in {args.workers} processes in {time.perf_counter() - start:.0f} s; "
              f"{len(failed)} of {points_total} points failed to build", flush=True)  # fmt: skip
        start = time.perf_counter()
        l2_bytes = torch.cuda.get_device_properties(0).L2_cache_size
        points = []
        for N, K in shapes:
            points += measure_shape(N, K, args.batch_sizes, block_size, out_dtype, configs, failed, l2_bytes)
            print(f"N={N} K={K}: checked and timed in {time.perf_counter() - start:.0f} s so far", flush=True)
        recompiled = len(_binaries(Path(cache_dir)) - compiled)
    with open(args.out, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(CSV_HEADER)
        writer.writerows(point.csv_row(device, args.out_dtype) for point in points)
    print("\n".join(["", *summary(points, floor_us)]))
    wrong = sum(point.status == "wrong_result" for point in points)
    print(f"\n{wrong} wrong results; {recompiled} binaries compiled while timing (0: compiles specialise like "
          f"launches); CSV in {args.out}")  # fmt: skip
    if wrong or recompiled:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
