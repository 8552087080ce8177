"""`python -m tuner.sweep`: see tuner.cli.sweep."""

from __future__ import annotations

from tuner.cli._launch import launch

if __name__ == "__main__":
    launch("tuner.cli.sweep")
