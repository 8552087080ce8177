""".ci/mariadb.sh, the test command's MariaDB server: it must be gone once the command it wraps ends."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "mariadb.sh"

# Prints the URL the script hands over and the server's data folder, then exits with the given status.
_REPORT = """
import os, sys, sqlalchemy
url = os.environ["TUNER_TEST_MYSQL"]
with sqlalchemy.create_engine(url).connect() as connection:
    print(url, connection.exec_driver_sql("SELECT @@datadir").scalar())
sys.exit(int(sys.argv[1]))
"""


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.skipif(shutil.which("mariadbd") is None, reason="needs MariaDB installed")
@pytest.mark.parametrize("status", [0, 1])  # the wrapped command's status is the script's
def test_the_server_stops_when_the_wrapped_command_ends(status):
    pytest.importorskip("pymysql")
    done = subprocess.run(["bash", str(SCRIPT), sys.executable, "-c", _REPORT, str(status)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == status, done.stderr
    url, data = done.stdout.split()
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    assert not _accepts(port)  # nothing listens where the server was
    assert not Path(data).exists()  # and its files are gone
