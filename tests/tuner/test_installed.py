"""The tuner as `pip install .` puts it: built into a wheel and run from outside the source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from tests.tuner.synthetic import write_landscape

REPO = Path(__file__).resolve().parents[2]
PRIOR_FILE = "tuner/samplers/landscapes/h100_fp8_7168x18432.csv.gz"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, list[str]]:
    """The wheel's files unpacked into a folder (what an installer does), and the wheel's names."""
    tmp = tmp_path_factory.mktemp("installed")
    source = tmp / "source"  # a copy, so the build leaves nothing in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "w8a8_block_tuner.py"):
        shutil.copy(REPO / name, source / name)
    for package in ("kernels", "tuner"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp / "wheel"), str(source)], capture_output=True, text=True)  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp / "wheel").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp / "site")
        return tmp / "site", archive.namelist()


def _run_installed(site: Path, cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}  # the installed copy, ahead of any checkout
    return subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_wheel_ships_the_priors_landscapes_and_the_prior_reads_them(installed, tmp_path):
    site, names = installed
    assert PRIOR_FILE in names
    assert not [name for name in names if "partial" in name]  # an incomplete sweep stays out of the prior
    assert not [name for name in names if "hopper" in name and name.endswith(".gz")]  # so does the Hopper grid
    done = _run_installed(site, tmp_path, "-c", "import tuner; from tuner.samplers import Prior; "
                          "print(tuner.__file__); print(Prior.shipped().shapes)")  # fmt: skip
    assert done.returncode == 0, done.stderr
    where, shapes = done.stdout.split()
    shipped = [name for name in names if name.startswith("tuner/samplers/landscapes/") and name.endswith(".csv.gz")]
    assert Path(where).is_relative_to(site) and int(shapes) == len(shipped) == 4  # one shape per recorded file


def test_the_wheel_installs_the_commands_under_a_name_of_their_own(installed, tmp_path):
    site, names = installed
    assert "w8a8_block_tuner.py" in names
    (entry_points,) = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
    assert "w8a8-block-tuner = w8a8_block_tuner:main" in (site / entry_points).read_text().splitlines()
    # Another project's `kernels` ahead of the installed tuner: python -m tuner.report names it; the
    # command of the tuner's own name imports the installed kernels anyway.
    other = tmp_path / "other" / "kernels"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text("")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(other.parent), str(site)])}
    for module, status in (("tuner.report", 2), ("w8a8_block_tuner", 0)):
        argv = [sys.executable, "-m", module, *(["report"] if module == "w8a8_block_tuner" else []), "--help"]
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == status, done.stderr
        assert "Traceback" not in done.stderr


def test_a_run_that_finds_no_prior_says_so(installed, tmp_path):
    site, _ = installed
    bare = tmp_path / "site"
    shutil.copytree(site, bare)
    shutil.rmtree(bare / "tuner" / "samplers" / "landscapes")
    landscape = write_landscape(tmp_path / "l.csv", [(256, 512)], [16])
    for run, installed_at, warned in (("bare", bare, True), ("whole", site, False)):
        run = tmp_path / run
        argv = ["-m", "tuner.run", "--N", "256", "--K", "512", "--batch-sizes", "16", "--trials", "2",
                "--replay", str(landscape), "--storage", f"sqlite:///{run}.db", "--save-path", str(run)]  # fmt: skip
        done = _run_installed(installed_at, tmp_path, *argv)
        assert done.returncode == 0, done.stderr
        assert ("warning: the installed tuner holds no recorded landscapes" in done.stderr) is warned, done.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message a machine without a GPU prints")
def test_without_a_gpu_an_installed_tuner_offers_its_own_landscape(installed, tmp_path):
    site, _ = installed  # no studies/landscapes/ beside it: only the package data
    done = _run_installed(site, tmp_path, "-m", "tuner.run", "--N", "7168", "--K", "18432", "--out-dtype", "bfloat16")
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith("No CUDA GPU is visible; the same run works in replay"), line
    assert line.endswith(f"--replay {site / PRIOR_FILE}"), line
