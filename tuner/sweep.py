"""`python -m tuner.sweep`: see tuner.cli.sweep."""

from __future__ import annotations

import sys

from tuner.cli.sweep import main

if __name__ == "__main__":
    sys.exit(main())
