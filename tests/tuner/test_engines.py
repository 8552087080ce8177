"""Which engine reads which file, and which search fills it: --format, --space auto and each engine's default.

The installed SGLang is a real package folder on sys.path, laid out as SGLang 0.5.23's wheel lays
it out, whose kernel source defines the Hopper kernel or not; it is read, never imported.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from tests.tuner.test_baselines import install
from tuner.engines import (
    SGLANG,
    SGLANG_HOPPER_KERNEL,
    VLLM,
    engines_of,
    plan_targets,
    sglang_hopper_kernel,
)
from tuner.space import default_config

H100, L40S, B200 = "NVIDIA_H100_80GB_HBM3", "NVIDIA_L40S", "NVIDIA_B200"


@pytest.fixture
def site(tmp_path, monkeypatch) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.setattr(sys, "path", [str(site), *(p for p in sys.path if "-packages" not in p and p)])
    importlib.invalidate_caches()
    return site


def install_sglang(site: Path, *, hopper: bool) -> Path:
    """SGLang 0.5.23's layout, its fp8_kernel.py defining the Hopper kernel or not."""
    install(site, "sglang")
    source = site / "sglang" / "kernels" / "ops" / "gemm" / "fp8_kernel.py"
    kernel = f"def {SGLANG_HOPPER_KERNEL}(\n    a_ptr,\n):\n    pass\n" if hopper else ""
    source.write_text(f"import triton\n\n\ndef _w8a8_block_fp8_matmul(\n    a_ptr,\n):\n    pass\n\n\n{kernel}")
    return source


@pytest.mark.parametrize(("file_format", "names"), [("sglang", ["SGLang"]), ("vllm", ["vLLM"]),
                                                    ("both", ["SGLang", "vLLM"])])  # fmt: skip
def test_each_format_names_its_engines_sglangs_first(file_format, names):
    assert [engine.name for engine in engines_of(file_format)] == names


def test_an_unknown_format_names_the_flag():
    with pytest.raises(ValueError, match=r"^--format must be one of sglang, vllm, both, but got 'triton'\.$"):
        engines_of("triton")


@pytest.mark.parametrize("block", [(128, 128), (32, 32)])
def test_each_engine_runs_its_own_default(block):
    # Read from the released wheels: vLLM 0.34.0's default config has num_stages 2, SGLang 0.5.23's 3.
    assert SGLANG.default(*block) == default_config(*block)
    assert VLLM.default(*block).as_sglang() == {**default_config(*block).as_sglang(), "num_stages": 2}


def test_vllms_file_name_has_no_space_and_vllm_loads_fp8_alone():
    args = (7168, 18432, H100, "fp8", 128, 128)
    assert SGLANG.file_name(*args).endswith("block_shape=[128, 128].json")
    assert VLLM.file_name(*args).endswith("block_shape=[128,128].json")
    assert VLLM.input_types == ("fp8",) and "int8" in SGLANG.input_types


def test_the_hopper_kernel_is_found_in_the_installed_source_without_importing_sglang(site):
    assert sglang_hopper_kernel() is None  # no SGLang at all
    source = install_sglang(site, hopper=False)
    assert sglang_hopper_kernel() is None
    install_sglang(site, hopper=True)
    assert sglang_hopper_kernel() == source
    assert "sglang" not in sys.modules


def _plan(space, file_format, device, input_type="fp8"):
    return [(t.space, [e.name for e in t.engines]) for t in plan_targets(space, file_format, input_type, device)]


# (installed SGLang has the Hopper kernel, device, format): the spaces auto gives each file.
@pytest.mark.parametrize(
    ("hopper_kernel", "device", "file_format", "expected"),
    [
        (True, H100, "sglang", [("hopper", ["SGLang"])]),  # SM90 and an SGLang that runs its Hopper kernel
        (True, H100, "both", [("hopper", ["SGLang"]), ("base", ["vLLM"])]),  # vLLM's file stays base
        (True, H100, "vllm", [("base", ["vLLM"])]),
        (False, H100, "sglang", [("base", ["SGLang"])]),  # an SGLang without the kernel would fail on the entries
        (None, H100, "sglang", [("base", ["SGLang"])]),  # no SGLang to ask
        (True, L40S, "sglang", [("base", ["SGLang"])]),  # Ada: SGLang's Hopper kernel is SM90's alone
        (True, B200, "both", [("base", ["SGLang", "vLLM"])]),  # Blackwell likewise; one search fills both files
        (True, None, "sglang", [("base", ["SGLang"])]),  # a dry run without a GPU cannot tell
    ],
)
def test_auto_gives_sglangs_file_hopper_entries_only_where_sglang_runs_them(
    site, hopper_kernel, device, file_format, expected
):
    if hopper_kernel is not None:
        install_sglang(site, hopper=hopper_kernel)
    assert _plan("auto", file_format, device) == expected
    assert all(target.why for target in plan_targets("auto", file_format, "fp8", device))  # each says why


@pytest.mark.parametrize(
    ("space", "file_format", "expected"),
    [
        ("base", "both", [("base", ["SGLang", "vLLM"])]),
        ("hopper", "sglang", [("hopper", ["SGLang"])]),  # asked for: no installed SGLang needed
        ("hopper", "both", [("hopper", ["SGLang"]), ("base", ["vLLM"])]),
    ],
)
def test_base_and_hopper_as_asked(site, space, file_format, expected):
    assert _plan(space, file_format, H100) == expected


@pytest.mark.parametrize(
    ("space", "file_format", "device", "input_type", "message"),
    [
        ("hopper", "vllm", H100, "fp8", r"^--space hopper writes SPLIT_K/SWAP_AB entries, which only SGLang's file"),
        ("hopper", "sglang", L40S, "fp8", r"^--space hopper tunes SGLang's Hopper kernel, which runs on SM90 GPUs"),
        ("base", "vllm", H100, "int8", r"^--format vllm writes files that no engine reads: vLLM 0.34.0 loads"),
    ],
)
def test_files_no_engine_would_read_are_refused(space, file_format, device, input_type, message):
    with pytest.raises(ValueError, match=message):
        plan_targets(space, file_format, input_type, device)


def test_int8_with_both_formats_writes_sglangs_file_alone(site):
    assert _plan("base", "both", H100, "int8") == [("base", ["SGLang"])]
