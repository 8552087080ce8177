"""`python -m tuner.compare`: see tuner.cli.compare."""

from __future__ import annotations

from tuner.cli._launch import launch

if __name__ == "__main__":
    launch("tuner.cli.compare")
