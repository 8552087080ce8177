"""The GPU benchmarker's processes: a compile that hangs or kills its process, closing twice, a killed run.

Runs in a fresh interpreter, so that the processes it counts are its own; and under Python 3.10
too where one is installed, whose concurrent.futures.TimeoutError is not the builtin TimeoutError.
The GPU side is the fake one, injected.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

_SCRIPT = """
import json, multiprocessing as mp, sys
from tests.tuner.fake_compiler import unreliable_compile
from tests.tuner.fake_gpu import FakeSession
from tuner.benchmarkers import GpuBenchmarker
from tuner.space import Config, Problem

def config(stages, warps=4):
    return Config(block_m=64, block_n=128, block_k=128, group_m=1, num_warps=warps, num_stages=stages)

def children():
    return {p.pid for p in mp.active_children()}

problem = Problem(N=512, K=256, M=16)
bench = GpuBenchmarker(compile_workers=1, timeout_s=4, session_factory=FakeSession, compile_fn=unreliable_compile)
out = {"first": bench.measure(problem, config(3)).status}  # the compile process is up
before = children()
out["hung"] = bench.measure(problem, config(5)).status
out["ended_by_hang"] = len(before - children())
after_hang = bench.measure(problem, config(2))
out["after_hang"] = [after_hang.status, after_hang.compile_s is not None]
before = children()
out["died"] = bench.measure(problem, config(4)).status
out["ended_by_death"] = len(before - children())
after_death = bench.measure(problem, config(3, warps=8))
out["after_death"] = [after_death.status, after_death.compile_s is not None]
try:
    bench.close()
    bench.close()
    out["closed_twice"] = "ok"
except Exception as error:
    out["closed_twice"] = type(error).__name__
out["left"] = len(children())
print(json.dumps(out))
"""


@functools.cache
def _python310() -> str | None:
    """A Python 3.10 interpreter with torch, if one is installed (the oldest requires-python allows); pyenv's count.

    torch, since the fake GPU runs the real timing session (tuner.benchmarkers._cuda), as a run does.
    """
    if sys.version_info[:2] == (3, 10):
        return None  # the interpreter under test already is one
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    for path in [shutil.which("python3.10"), *map(str, sorted(pyenv.glob("versions/3.10*/bin/python3.10")))]:
        if path is None:
            continue
        probe = subprocess.run([path, "-c", "import sys, torch; print(sys.version_info[:2] == (3, 10))"],
                               capture_output=True, text=True)  # fmt: skip
        if probe.stdout.strip() == "True":  # a pyenv shim of a version not selected answers otherwise
            return path
    return None


@pytest.mark.parametrize(
    "python",
    [sys.executable,
     pytest.param(_python310(), marks=pytest.mark.skipif(_python310() is None, reason="no Python 3.10 with torch"))],
    ids=["this-python", "python3.10"],
)  # fmt: skip
def test_a_hung_or_dead_compile_costs_one_measurement_and_its_processes(python):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([python, "-c", _SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["first"] == "ok"
    assert out["hung"] == "compile_timeout"  # was compile_error on 3.10: another TimeoutError class
    assert out["ended_by_hang"] == 1  # the hung process is killed, not left to sleep
    assert out["after_hang"] == ["ok", True]  # compiled in a fresh process
    assert out["died"] == "compile_crash"
    assert out["ended_by_death"] == 1
    assert out["after_death"] == ["ok", True]
    assert out["closed_twice"] == "ok"
    assert out["left"] == 0  # closing ends every process it started


# A run that owns a benchmarker whose compile process hangs in the compiler and whose timing process
# hangs in a timing, when it is killed outright.
_BUSY = """
import json, multiprocessing as mp
from tests.tuner.fake_compiler import logged_compile
from tests.tuner.fake_gpu import FakeSession
from tuner.benchmarkers import GpuBenchmarker
from tuner.space import Config, Problem

problem = Problem(N=512, K=256, M=16)
bench = GpuBenchmarker(compile_workers=2, timeout_s=600, session_factory=FakeSession, compile_fn=logged_compile)
bench.prepare(problem, [Config(block_m=64, block_n=128, block_k=128, group_m=64, num_warps=4, num_stages=3)])
assert bench.measure(problem, Config(block_m=64, block_n=128, block_k=128, group_m=1, num_warps=4,
                                     num_stages=3)).status == "ok"
print(json.dumps(sorted(p.pid for p in mp.active_children())), flush=True)
bench.measure(problem, Config(block_m=128, block_n=64, block_k=128, group_m=1, num_warps=8, num_stages=5))
"""


def _alive(pid: int) -> bool:
    """Whether pid runs (a zombie has ended: only its parent's wait is missing)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from Linux's /proc")
def test_the_compile_and_timing_processes_die_with_a_killed_run():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.Popen([sys.executable, "-c", _BUSY], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    children: list[int] = []
    try:
        children = json.loads(run.stdout.readline())
        assert len(children) == 3  # two compile processes (one hung) and the timing process
        time.sleep(1.0)  # the timing request lands: now every child is busy
        run.kill()
        run.wait()
        deadline = time.monotonic() + 10
        while any(map(_alive, children)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [pid for pid in children if _alive(pid)] == []
    finally:
        run.kill()
        for pid in children:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
