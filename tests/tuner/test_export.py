"""SGLang/vLLM config files: byte-exact names and content, merging, corrupt files, nearest entry, concurrency."""

from __future__ import annotations

import json
import multiprocessing as mp
from dataclasses import replace
from pathlib import Path

import pytest

from tuner.export import (
    OUT_DTYPE,
    ExportError,
    config_file_name,
    is_vllm_name,
    nearest_entry,
    other_out_dtype,
    provenance_path,
    read_config_file,
    render,
    write_configs,
)
from tuner.space import Config

FAST = Config(block_m=16, block_n=64, block_k=128, group_m=1, num_warps=4, num_stages=4)
WIDE = Config(block_m=16, block_n=128, block_k=128, group_m=16, num_warps=8, num_stages=5)
DEFAULT = Config(block_m=64, block_n=128, block_k=128, group_m=32, num_warps=4, num_stages=3)


@pytest.mark.parametrize(
    ("args", "vllm", "expected"),
    [
        # SGLang's name: a space after the comma inside block_shape
        (
            (7168, 18432, "NVIDIA_H100_80GB_HBM3", "fp8", 128, 128),
            False,
            "N=7168,K=18432,device_name=NVIDIA_H100_80GB_HBM3,dtype=fp8_w8a8,block_shape=[128, 128].json",
        ),
        # vLLM reads the same content under a name without that space
        (
            (7168, 18432, "NVIDIA_H100_80GB_HBM3", "fp8", 128, 128),
            True,
            "N=7168,K=18432,device_name=NVIDIA_H100_80GB_HBM3,dtype=fp8_w8a8,block_shape=[128,128].json",
        ),
        # int8 and a non-square block
        (
            (576, 7168, "NVIDIA_H200", "int8", 64, 128),
            False,
            "N=576,K=7168,device_name=NVIDIA_H200,dtype=int8_w8a8,block_shape=[64, 128].json",
        ),
        (
            (576, 7168, "NVIDIA_H200", "int8", 64, 128),
            True,
            "N=576,K=7168,device_name=NVIDIA_H200,dtype=int8_w8a8,block_shape=[64,128].json",
        ),
    ],
)
def test_file_name_is_byte_exact(args, vllm, expected):
    assert config_file_name(*args, vllm=vllm) == expected


SGLANG_NAME = "N=7168,K=18432,device_name=NVIDIA_H100_80GB_HBM3,dtype=fp8_w8a8,block_shape=[128, 128].json"
VLLM_NAME = "N=7168,K=18432,device_name=NVIDIA_H100_80GB_HBM3,dtype=fp8_w8a8,block_shape=[128,128].json"


# Keys ascend numerically (2 < 16 < 128, not "128" < "16" < "2"), indent=4, trailing newline.
GOLDEN = """{
    "2": {
        "BLOCK_SIZE_M": 16,
        "BLOCK_SIZE_N": 64,
        "BLOCK_SIZE_K": 128,
        "GROUP_SIZE_M": 1,
        "num_warps": 4,
        "num_stages": 4
    },
    "16": {
        "BLOCK_SIZE_M": 16,
        "BLOCK_SIZE_N": 128,
        "BLOCK_SIZE_K": 128,
        "GROUP_SIZE_M": 16,
        "num_warps": 8,
        "num_stages": 5
    },
    "128": {
        "BLOCK_SIZE_M": 64,
        "BLOCK_SIZE_N": 128,
        "BLOCK_SIZE_K": 128,
        "GROUP_SIZE_M": 32,
        "num_warps": 4,
        "num_stages": 3
    }
}
"""


def test_content_is_byte_exact(tmp_path):
    path = tmp_path / "cfg.json"
    write_configs(path, {128: DEFAULT, 2: FAST, 16: WIDE})  # given out of order on purpose
    assert path.read_bytes() == GOLDEN.encode()
    assert read_config_file(path) == {2: FAST, 16: WIDE, 128: DEFAULT}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.json"]  # no temp file left behind


# SGLang's file rule for its Hopper kernel: an entry carries SPLIT_K and SWAP_AB (a JSON bool, after
# the six keys) exactly when it runs on that path, a split or a swap; every other entry keeps the six
# keys alone, since SGLang passes them all to a base kernel that takes no others.
HOPPER = replace(FAST, split_k=16, swap_ab=True)
SPLIT_ONLY = replace(DEFAULT, split_k=2)
SWAP_ONLY = replace(WIDE, swap_ab=True)
HOPPER_GOLDEN = """{
    "1": {
        "BLOCK_SIZE_M": 16,
        "BLOCK_SIZE_N": 64,
        "BLOCK_SIZE_K": 128,
        "GROUP_SIZE_M": 1,
        "num_warps": 4,
        "num_stages": 4,
        "SPLIT_K": 16,
        "SWAP_AB": true
    },
    "16": {
        "BLOCK_SIZE_M": 16,
        "BLOCK_SIZE_N": 128,
        "BLOCK_SIZE_K": 128,
        "GROUP_SIZE_M": 16,
        "num_warps": 8,
        "num_stages": 5,
        "SPLIT_K": 1,
        "SWAP_AB": true
    },
    "64": {
        "BLOCK_SIZE_M": 64,
        "BLOCK_SIZE_N": 128,
        "BLOCK_SIZE_K": 128,
        "GROUP_SIZE_M": 32,
        "num_warps": 4,
        "num_stages": 3,
        "SPLIT_K": 2,
        "SWAP_AB": false
    },
    "256": {
        "BLOCK_SIZE_M": 16,
        "BLOCK_SIZE_N": 64,
        "BLOCK_SIZE_K": 128,
        "GROUP_SIZE_M": 1,
        "num_warps": 4,
        "num_stages": 4
    }
}
"""


def test_hopper_and_base_entries_are_byte_exact_in_one_file(tmp_path):
    path = tmp_path / "cfg.json"
    # A base entry written first and merged with Hopper ones, as a --space base run then a hopper one.
    write_configs(path, {256: FAST})
    write_configs(path, {64: SPLIT_ONLY, 1: HOPPER, 16: SWAP_ONLY})
    assert path.read_bytes() == HOPPER_GOLDEN.encode()
    assert read_config_file(path) == {1: HOPPER, 16: SWAP_ONLY, 64: SPLIT_ONLY, 256: FAST}
    # A tuned config that stays off the path (SPLIT_K 1, no swap) is written with the six keys alone.
    write_configs(path, {1: replace(HOPPER, split_k=1, swap_ab=False)})
    assert json.loads(path.read_text())["1"] == FAST.as_sglang() and len(json.loads(path.read_text())["1"]) == 6


def test_merge_replaces_tuned_entries_and_keeps_the_others(tmp_path):
    path = tmp_path / "cfg.json"
    write_configs(path, {1: DEFAULT, 8: DEFAULT, 64: DEFAULT})
    merged = write_configs(path, {8: FAST, 16: WIDE})
    expected = {1: DEFAULT, 8: FAST, 16: WIDE, 64: DEFAULT}
    assert merged == expected
    assert read_config_file(path) == expected
    assert path.read_text() == render(expected)


@pytest.mark.parametrize(("name", "vllm"), [(SGLANG_NAME, False), (VLLM_NAME, True), ("cfg.json", False)])
def test_vllm_names_are_told_apart(name, vllm):
    assert is_vllm_name(name) is vllm


# vLLM 0.34.0's Triton kernel takes the six base keys alone: a Hopper entry under vLLM's name crashes
# vLLM at its first GEMM of that shape. Triton's interpreter drops unknown keywords silently, so no
# CPU launch could catch this: the rule itself is tested, up front (tests/tuner/test_engines.py) and
# at the write.
@pytest.mark.parametrize("entry", [HOPPER, SPLIT_ONLY, SWAP_ONLY], ids=["split-and-swap", "split", "swap"])
def test_a_hopper_entry_is_never_written_under_vllms_name(tmp_path, entry):
    path = tmp_path / VLLM_NAME
    write_configs(path, {256: FAST})
    before = path.read_bytes()
    with pytest.raises(ExportError, match="SPLIT_K or SWAP_AB"):
        write_configs(path, {1: entry})
    assert path.read_bytes() == before
    write_configs(tmp_path / SGLANG_NAME, {1: entry})  # SGLang's name takes it
    assert read_config_file(tmp_path / SGLANG_NAME) == {1: entry}


def test_an_unwritable_folder_is_one_export_error(tmp_path):
    # /proc takes no new folder, even for root, whom permission bits do not stop.
    with pytest.raises(ExportError, match=r"^cannot write /proc/tuner-test/cfg\.json: "):
        write_configs("/proc/tuner-test/cfg.json", {1: FAST})


MADE_BY = {"command": "python -m tuner.run --N 7168 --K 18432", "device": "NVIDIA_H100_80GB_HBM3", "date": "d1"}


def _records(path: Path) -> dict[str, dict]:
    return json.loads(provenance_path(path).read_text())["entries"]


def test_provenance_sits_beside_the_file_and_is_not_taken_for_a_config(tmp_path):
    path = tmp_path / SGLANG_NAME
    write_configs(path, {1: FAST, 16: WIDE}, MADE_BY)
    assert sorted(p.name for p in tmp_path.iterdir()) == [SGLANG_NAME, SGLANG_NAME + ".provenance"]
    assert [p.name for p in tmp_path.glob("*.json")] == [SGLANG_NAME]  # `cp *.json` leaves the record out
    assert _records(path) == {"1": {**MADE_BY, "entry": FAST.as_sglang()}, "16": {**MADE_BY, "entry": WIDE.as_sglang()}}
    assert path.read_bytes() == render({1: FAST, 16: WIDE}).encode()  # the loaders' file stays clean JSON


def test_provenance_follows_the_merge(tmp_path):
    path = tmp_path / SGLANG_NAME
    write_configs(path, {1: FAST, 16: WIDE}, MADE_BY)
    later = {**MADE_BY, "date": "d2"}
    write_configs(path, {16: DEFAULT})  # another tool (or a run killed between the two writes) replaced M=16
    write_configs(path, {64: DEFAULT}, later)  # the next run's record drops the stale one of M=16
    records = _records(path)
    assert records == {"1": {**MADE_BY, "entry": FAST.as_sglang()}, "64": {**later, "entry": DEFAULT.as_sglang()}}


def test_an_unreadable_provenance_record_is_replaced(tmp_path):
    path = tmp_path / SGLANG_NAME
    write_configs(path, {1: FAST})
    provenance_path(path).write_text("{not json")
    write_configs(path, {1: FAST}, MADE_BY)
    assert _records(path) == {"1": {**MADE_BY, "entry": FAST.as_sglang()}}


@pytest.mark.parametrize(
    ("recorded", "warned"),
    [
        ({1: "bfloat16", 16: "bfloat16", 64: "float16"}, "for bfloat16 output at M = 1 16"),
        ({1: "float32", 16: "bfloat16"}, "for float32 output at M = 1; for bfloat16 output at M = 16"),
        ({1: "float16", 16: "float16"}, None),  # the same dtype: an ordinary rerun
        ({}, None),  # records of before the dtype was recorded judge nothing
    ],
)
def test_a_run_for_another_out_dtype_is_told_which_entries_it_replaces(tmp_path, recorded, warned):
    path = tmp_path / SGLANG_NAME
    write_configs(path, {1: FAST, 16: WIDE, 64: DEFAULT, 256: DEFAULT}, MADE_BY)
    for M, dtype in recorded.items():
        write_configs(path, {M: read_config_file(path)[M]}, {**MADE_BY, OUT_DTYPE: dtype})
    line = other_out_dtype(path, [1, 16, 64], "float16")  # 256 stays: this run does not tune it
    if warned is None:
        assert line is None
    else:
        assert line == (
            f"{path} holds entries made {warned} (so its provenance says), which this float16 run replaces: the file "
            "name carries no output dtype; give another --save-path to keep both."
        )
    assert other_out_dtype(tmp_path / "absent.json", [1], "float16") is None


_FULL_ENTRY = DEFAULT.as_sglang()
_MISSING_KEY = {k: v for k, v in _FULL_ENTRY.items() if k != "num_stages"}


@pytest.mark.parametrize(
    "text",
    [
        "{not json",  # not JSON at all
        '{"1": {"BLOCK_SIZE_M": 64,',  # a truncated file, as a non-atomic writer could leave
        "[1, 2, 3]\n",  # valid JSON, but a list
        json.dumps({"1": _MISSING_KEY}),  # an entry missing a key
        json.dumps({"1": {**_FULL_ENTRY, "kpack": 2}}),  # an entry with an unknown key
        json.dumps({"one": _FULL_ENTRY}),  # a key that is not a batch size
        json.dumps({"1": {**_FULL_ENTRY, "num_warps": "4"}}),  # a value that is not an int
    ],
    ids=["not-json", "truncated", "json-list", "missing-key", "extra-key", "bad-batch-size", "string-value"],
)
def test_corrupt_existing_file_raises_and_is_left_untouched(tmp_path, text):
    path = tmp_path / "cfg.json"
    path.write_text(text)
    with pytest.raises(ValueError, match="cfg.json"):
        write_configs(path, {16: FAST})
    assert path.read_bytes() == text.encode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.json"]


@pytest.mark.parametrize(
    ("M", "expected"),
    [
        (12, 8),  # a tie between 8 and 16: the first in file order
        (13, 16),  # nearer to 16
        (1, 8),  # below every key
        (4096, 16),  # above every key
        (16, 16),  # an exact key
    ],
)
def test_nearest_entry_follows_sglang(M, expected):
    entries = {8: FAST, 16: WIDE}
    assert nearest_entry(entries, M) == entries[expected]


def test_nearest_entry_tie_uses_file_order_of_an_unsorted_file(tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"16": WIDE.as_sglang(), "8": FAST.as_sglang()}))
    entries = read_config_file(path)
    sglang_pick = entries[min(entries, key=lambda key: abs(key - 12))]  # SGLang's own expression
    assert sglang_pick == WIDE
    assert nearest_entry(entries, 12) == sglang_pick


def _write_keys(path: str, keys: list[int], barrier) -> None:
    """One writer process: one write per key, so the writers interleave as much as possible."""
    barrier.wait()
    for M in keys:
        write_configs(
            path, {M: Config(block_m=16, block_n=32, block_k=128, group_m=1, num_warps=4, num_stages=2 + M % 4)}
        )


def test_concurrent_writers_lose_no_entry(tmp_path):
    path = tmp_path / "cfg.json"
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(4)
    keys = [[1 + worker + 4 * i for i in range(6)] for worker in range(4)]  # disjoint M per writer
    processes = [ctx.Process(target=_write_keys, args=(str(path), ks, barrier)) for ks in keys]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    assert [process.exitcode for process in processes] == [0, 0, 0, 0]
    entries = read_config_file(path)
    assert sorted(entries) == sorted(M for ks in keys for M in ks)
    assert path.read_text() == render(entries)
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["cfg.json"]
