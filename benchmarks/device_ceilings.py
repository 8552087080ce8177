"""Measure a GPU's roofline ceilings and read its properties, for the tuner's table of device facts.

    PYTHONPATH=. python benchmarks/device_ceilings.py     # needs a CUDA GPU

Prints the device's name as the tuner keys it, its SM count, shared memory per block and L2 size
(as torch reports them), then three measured ceilings: device-to-device copy bandwidth (bytes read
plus bytes written over the time of a 2 GiB copy), a dense bf16 matrix product and an fp8 one with
per-tensor scales (torch._scaled_mm), each 8192 x 8192 x 8192 on random data, median of 20
CUDA-event timings after warm-up.
"""

from __future__ import annotations

import platform
import statistics

import torch
import triton


def _median_ms(fn, repeats: int = 20) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/device_ceilings.py needs a CUDA GPU.")
    props = torch.cuda.get_device_properties(0)
    name = torch.cuda.get_device_name(0).replace(" ", "_")
    print(f"device {name}, capability {props.major}.{props.minor}, torch {torch.__version__}, "
          f"triton {triton.__version__}, python {platform.python_version()}")  # fmt: skip
    print(f"sm_count {props.multi_processor_count}, shared_memory_per_block_optin "
          f"{props.shared_memory_per_block_optin}, L2 {props.L2_cache_size} bytes, "
          f"memory {props.total_memory} bytes")  # fmt: skip
    _copy_bandwidth()
    _matmul_rates()


def _copy_bandwidth(n_bytes: int = 2 << 30) -> None:
    src = torch.randint(0, 255, (n_bytes,), dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    copy_ms = _median_ms(lambda: dst.copy_(src))
    print(f"copy: {2 * n_bytes / copy_ms / 1e9:.2f} TB/s (read + write of {n_bytes >> 30} GiB in {copy_ms:.3f} ms)")


def _matmul_rates() -> None:
    size = 8192
    a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    mm_ms = _median_ms(lambda: a @ b)
    print(f"bf16 matmul: {2 * size**3 / mm_ms / 1e9:.0f} TFLOP/s ({size}^3 in {mm_ms:.3f} ms)")
    a8 = a.to(torch.float8_e4m3fn)
    b8 = b.t().contiguous().to(torch.float8_e4m3fn).t()  # column-major, as _scaled_mm needs
    one = torch.ones((), device="cuda")
    fp8_ms = _median_ms(lambda: torch._scaled_mm(a8, b8, scale_a=one, scale_b=one, out_dtype=torch.bfloat16))
    print(f"fp8 matmul (per-tensor scales): {2 * size**3 / fp8_ms / 1e9:.0f} TFLOP/s ({size}^3 in {fp8_ms:.3f} ms)")


if __name__ == "__main__":
    main()
