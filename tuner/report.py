"""`python -m tuner.report`: see tuner.cli.report."""

from __future__ import annotations

import sys

from tuner.cli.report import main

if __name__ == "__main__":
    sys.exit(main())
