"""`python -m tuner.evaluate`: see tuner.cli.evaluate."""

from __future__ import annotations

from tuner.cli._launch import launch

if __name__ == "__main__":
    launch("tuner.cli.evaluate")
