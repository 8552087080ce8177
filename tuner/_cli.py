"""What every command line of the tuner shares: argparse errors become one-line usage errors."""

from __future__ import annotations

import argparse


class OneLineParser(argparse.ArgumentParser):
    """Raises ValueError instead of printing usage, so each CLI reports it as one line, exit 2."""

    def error(self, message: str) -> None:
        raise ValueError(message)
