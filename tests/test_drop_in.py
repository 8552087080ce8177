"""Files this tuner writes, read and run by SGLang 0.5.23's released loader and kernels (its wheel's source).

SGLang's fp8_kernel module imports most of SGLang, so its block-FP8 functions are taken from the
module's source as they are (the loader get_w8a8_block_fp8_configs, prepare_block_fp8_matmul_inputs,
w8a8_block_fp8_matmul_triton and its three Triton kernels) into a module of their own, beside a
configs/ folder, with the few names they import from SGLang defined here: an SM90 CUDA platform and
this test's device name. The wheel is downloaded once per session (no dependencies); without a
package index the tests skip. On the CPU the kernels run in Triton's interpreter.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import json
import logging
import os
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import pytest
import torch

from tests.tuner.synthetic import synthetic_us
from tuner.benchmarkers import HOPPER_HEADER, Row
from tuner.cli.run import main as run_main
from tuner.engines import SGLANG, SGLANG_HOPPER_KERNEL
from tuner.export import read_config_file
from tuner.space import Problem, search_space

WHEEL = "sglang==0.5.23"
KERNEL_SOURCE = "sglang/kernels/ops/gemm/fp8_kernel.py"
# What the drop-in path calls, in the module's own source.
FUNCTIONS = (
    "_w8a8_block_fp8_matmul",
    "_w8a8_block_fp8_matmul_hopper",
    "_reduce_block_fp8_split_k",
    "get_w8a8_block_fp8_configs",
    "select_w8a8_block_fp8_matmul_kernel",
    "prepare_block_fp8_matmul_inputs",
    "w8a8_block_fp8_matmul_triton",
)
H100 = "NVIDIA_H100_80GB_HBM3"


@pytest.fixture(scope="session")
def sglang_source(tmp_path_factory) -> Path:
    """SGLang 0.5.23's fp8_kernel.py, from its released wheel."""
    folder = tmp_path_factory.mktemp("sglang-wheel")
    fetched = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(folder), WHEEL],
                             capture_output=True, text=True, timeout=600)  # fmt: skip
    wheels = list(folder.glob("sglang-*.whl"))
    if fetched.returncode != 0 or not wheels:
        pytest.skip(f"cannot download {WHEEL}: {fetched.stderr.strip()[-200:]}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        wheel.extract(KERNEL_SOURCE, folder)
    return folder / KERNEL_SOURCE


def released_module(source: Path, folder: Path, device_name: str) -> types.ModuleType:
    """SGLang's drop-in path as a module of its own in folder (its configs/ beside it), on an SM90 CUDA platform."""
    tree = ast.parse(source.read_text())
    wanted = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in FUNCTIONS]
    assert sorted(n.name for n in wanted) == sorted(FUNCTIONS), "SGLang's layout changed"
    header = "import functools, json, logging, os\nfrom typing import Any, Dict, List, Optional, Tuple\n"
    header += "import torch\nimport triton\nimport triton.language as tl\n\n"
    path = folder / "sglang_fp8_drop_in.py"
    path.write_text(header + "\n\n".join(ast.unparse(node) for node in wanted))  # Triton reads kernels from files
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    # The names the functions take from SGLang: a CUDA SM90 platform and the device's name.
    module.__dict__.update(
        _is_cuda=True, _is_hip=False, _is_gfx1250=False, logger=logging.getLogger("sglang-drop-in"),
        get_device_name=lambda: device_name, log_info_on_rank0=lambda logger, message: None,
        get_platform=lambda: types.SimpleNamespace(is_sm90=True), functools=functools, json=json, os=os,
    )  # fmt: skip
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_installed_sglangs_hopper_kernel_is_the_one_auto_looks_for(sglang_source):
    assert f"def {SGLANG_HOPPER_KERNEL}(" in sglang_source.read_text()


@pytest.mark.parametrize("space", ["hopper", "base"])
def test_sglang_reads_and_runs_a_tuned_32_block_file(tmp_path, sglang_source, space):
    # A [32, 32] file tuned in replay (a synthetic landscape of an H100), then SGLang's own loader and
    # kernels at batch sizes on and between its keys, checked against the float32 reference.
    from kernels import quantize_blockwise, quantize_per_token_group, w8a8_block_matmul_reference
    from tests.kernels.operands import relative_error

    N, K, keys = 96, 160, (1, 16, 64)
    landscape = tmp_path / "l.csv"
    with open(landscape, "w") as f:
        f.write(",".join(HOPPER_HEADER) + "\n")
        for M in keys:
            problem = Problem(N=N, K=K, M=M, block_n=32, block_k=32, out_dtype="float16")
            for config in search_space(32, "hopper")[::5]:
                us = synthetic_us(problem, config)
                us = None if us is None else us / (1 + config.split_k / 8 + config.swap_ab)  # Hopper entries win
                f.write(",".join(Row(H100, problem, config, "ok" if us else "out_of_resources", us).as_csv(hopper=True))
                        + "\n")  # fmt: skip
    configs = tmp_path / "released" / "configs"
    argv = ["--N", str(N), "--K", str(K), "--block-n", "32", "--block-k", "32", "--batch-sizes", *map(str, keys),
            "--trials", "8", "--space", space, "--replay", str(landscape), "--storage", f"sqlite:///{tmp_path}/s.db",
            "--save-path", str(configs), "--no-prior", "--baseline", "none"]  # fmt: skip
    assert run_main(argv) == 0
    (written,) = configs.glob("*.json")
    assert written.name == SGLANG.file_name(N, K, H100, "fp8", 32, 32)
    entries = read_config_file(written)
    assert any(c.hopper for c in entries.values()) == (space == "hopper")
    sglang = released_module(sglang_source, configs.parent, H100)
    loaded = sglang.get_w8a8_block_fp8_configs(N, K, 32, 32)
    assert loaded == {int(k): v for k, v in json.loads(written.read_text()).items()}  # read as written, none clamped
    for M in (1, 3, 16, 37, 64, 100):
        a, a_scales = quantize_per_token_group(torch.randn(M, K), 32, torch.float8_e4m3fn)
        b, b_scales = quantize_blockwise(torch.randn(N, K), [32, 32], torch.float8_e4m3fn)
        out = sglang.w8a8_block_fp8_matmul_triton(a, b, a_scales, b_scales, [32, 32], torch.float16)
        reference = w8a8_block_matmul_reference(a, b, a_scales, b_scales, [32, 32], torch.float32)
        assert relative_error(out, reference) < 1e-2, M
