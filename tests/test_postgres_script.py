""".ci/postgres.sh, the test command's PostgreSQL server: it must be gone once the command it wraps ends."""

from __future__ import annotations

import glob
import socket
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "postgres.sh"

# Prints the URL the script hands over and the server's data folder, then exits with the given status.
_REPORT = """
import os, sys, psycopg
url = os.environ["TUNER_TEST_POSTGRES"]
with psycopg.connect(url) as connection:
    print(url, connection.execute("SHOW data_directory").fetchone()[0])
sys.exit(int(sys.argv[1]))
"""


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.skipif(not glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reason="needs PostgreSQL installed")
@pytest.mark.parametrize(
    "status",
    [
        0,  # the tests pass
        1,  # the tests fail: the server goes all the same, and the failure is what the command returns
    ],
)
def test_the_server_stops_when_the_wrapped_command_ends(status):
    pytest.importorskip("psycopg")
    done = subprocess.run(["bash", str(SCRIPT), sys.executable, "-c", _REPORT, str(status)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == status, done.stderr
    url, data = done.stdout.split()
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    assert not _accepts(port)  # nothing listens where the server was
    assert not Path(data).exists()  # and its files are gone
