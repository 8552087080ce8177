"""The real optuna-dashboard server reads a storage the tuner filled: study names and trials' user attrs."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pytest

from tests.tuner.synthetic import DEVICE, STORED_BATCH_SIZES, STORED_SHAPE, shared_replay_storage, stored_rows
from tuner.benchmarkers import ReplayBenchmarker
from tuner.space import STATUS, US, Problem
from tuner.study import study_name

HOST = "127.0.0.1"  # loopback only
START_TIMEOUT_S = 30
# Direct connections only: a proxy from the environment must never see (or break) loopback requests.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _free_port() -> int:
    """A port that was free a moment ago (the server binds it right after; a clash fails loudly)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _dashboard_command() -> list[str]:
    """The optuna-dashboard console script of this interpreter's environment, as a user runs it."""
    script = Path(sysconfig.get_path("scripts")) / "optuna-dashboard"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from optuna_dashboard._cli import main; sys.exit(main())"]


def _get(url: str) -> dict:
    with _OPENER.open(url, timeout=10) as response:
        assert response.status == 200
        return json.load(response)


@pytest.fixture
def dashboard(tmp_path_factory, tmp_path):
    """The server on a free loopback port, answering; stopped (terminate, then wait) afterwards."""
    url, _ = shared_replay_storage(tmp_path_factory)
    port = _free_port()
    command = [*_dashboard_command(), url, "--host", HOST, "--port", str(port), "--server", "wsgiref"]
    with open(tmp_path / "dashboard.log", "w") as log:  # a file, not a pipe that could fill and block it
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert server.poll() is None, f"optuna-dashboard exited: {(tmp_path / 'dashboard.log').read_text()}"
            try:
                _get(f"{base}/api/meta")
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, f"optuna-dashboard did not answer within {START_TIMEOUT_S} s"
                time.sleep(0.2)
        yield base, url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert server.returncode is not None


def test_dashboard_lists_the_studies_and_their_trials_user_attrs(dashboard):
    base, url = dashboard
    summaries = _get(f"{base}/api/studies")["study_summaries"]
    N, K = STORED_SHAPE
    software = ReplayBenchmarker(stored_rows()).software
    expected = {study_name(Problem(N=N, K=K, M=M), DEVICE, "replay", software) for M in STORED_BATCH_SIZES}
    assert {s["study_name"] for s in summaries} == expected
    for summary in summaries:
        attrs = {a["key"]: a["value"] for a in summary["user_attrs"]}
        assert attrs["device"] == DEVICE and attrs["timing"] == "replay"
        assert summary["study_name"].startswith(f"fp8_w8a8_N{N}_K{K}_M{attrs['M']}_")

    summary = next(s for s in summaries if "_M16_" in s["study_name"])
    detail = _get(f"{base}/api/studies/{summary['study_id']}?after=0")
    study = optuna.load_study(study_name=summary["study_name"], storage=url)
    assert detail["name"] == study.study_name
    assert [t["number"] for t in detail["trials"]] == [t.number for t in study.trials]
    for served, stored in zip(detail["trials"], study.trials):
        attrs = {a["key"]: a["value"] for a in served["user_attrs"]}
        assert served["state"] == stored.state.name.capitalize()
        assert attrs["status"] == stored.user_attrs[STATUS]
        if "us" in stored.user_attrs:  # measured: ok or pruned
            assert float(attrs["us"]) == stored.user_attrs[US]
        params = {p["name"]: int(p["param_external_value"]) for p in served["params"]}
        assert params == stored.params
    measured = [t for t in detail["trials"] if {"us", "status"} <= {a["key"] for a in t["user_attrs"]}]
    assert measured, "no trial carries the user attrs 'us' and 'status'"
    (best,) = detail["best_trials"]
    assert best["number"] == study.best_trial.number
