"""`python -m tuner.run`: see tuner.cli.run."""

from __future__ import annotations

import sys

from tuner.cli.run import main

if __name__ == "__main__":
    sys.exit(main())
