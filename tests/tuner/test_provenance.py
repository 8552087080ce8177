"""What made each entry of a run's files: recorded with every write, so a killed run leaves no file without it,
and read back to tell a run that replaces entries another output dtype made."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.tuner.stoppable import paced
from tests.tuner.synthetic import write_landscape
from tuner.export import OUT_DTYPE, provenance_path, read_config_file

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
SHAPE = ("256", "512")


def _run(tmp: Path, landscape: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tuner.run", "--N", SHAPE[0], "--K", SHAPE[1], "--replay", str(landscape),
            "--storage", f"sqlite:///{tmp}/s.db", "--save-path", str(tmp / "cfg"), "--no-prior", *extra]  # fmt: skip


def _assert_every_entry_has_its_record(folder: Path) -> int:
    """Each config file's every entry is described by the record beside it; returns how many entries."""
    entries = 0
    for path in folder.glob("*.json"):
        held = read_config_file(path)
        records = json.loads(provenance_path(path).read_text())["entries"]
        assert sorted(records, key=int) == [str(M) for M in sorted(held)], path
        assert all(records[str(M)]["entry"] == config.as_sglang() for M, config in held.items())
        entries += len(held)
    return entries


def test_a_run_killed_mid_way_leaves_a_record_beside_every_file_it_wrote(tmp_path):
    # The file is written as each study finishes; kill -9 after the first leaves the run no later moment.
    landscape = write_landscape(tmp_path / "l.csv", [(256, 512)], [1, 16, 64, 256])
    argv = _run(tmp_path, landscape, "--batch-sizes", "1", "16", "64", "256", "--trials", "12")
    run = subprocess.Popen(argv, cwd=tmp_path, env=paced(ENV), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list((tmp_path / "cfg").glob("*.json")):
            assert run.poll() is None and time.monotonic() < deadline, "the run ended, or wrote no file in 120 s"
            time.sleep(0.05)
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=60)
    finally:
        run.kill()
    assert run.returncode == -signal.SIGKILL
    assert 0 < _assert_every_entry_has_its_record(tmp_path / "cfg") < 4  # stopped mid-way, not at its end


def test_a_run_for_another_out_dtype_says_which_entries_it_replaces(tmp_path):
    # SGLang's file name carries no output dtype: a float16 run into a bfloat16 run's folder replaces its entries.
    for dtype in ("bfloat16", "float16"):
        write_landscape(tmp_path / f"{dtype}.csv", [(256, 512)], [1, 16, 64], out_dtype=dtype)
    argv = _run(tmp_path, tmp_path / "bfloat16.csv", "--out-dtype", "bfloat16", "--batch-sizes", "1", "16", "64",
                "--trials", "4")  # fmt: skip
    first = subprocess.run(argv, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "warning:" not in first.stderr
    (path,) = (tmp_path / "cfg").glob("*.json")
    argv = _run(tmp_path, tmp_path / "float16.csv", "--batch-sizes", "1", "16", "--trials", "4")
    warning = (
        f"warning: {path} holds entries made for bfloat16 output at M = 1 16 (so its provenance says), which this "
        "float16 run replaces: the file name carries no output dtype; give another --save-path to keep both."
    )
    for dry in (["--dry-run"], []):  # the dry run checks what the run does
        done = subprocess.run([*argv, *dry], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert warning in done.stderr.splitlines(), done.stderr
    records = json.loads(provenance_path(path).read_text())["entries"]
    made_for = {M: record[OUT_DTYPE] for M, record in records.items()}
    assert made_for == {"1": "float16", "16": "float16", "64": "bfloat16"}
    assert _assert_every_entry_has_its_record(tmp_path / "cfg") == 3
