"""`python -m tuner.evaluate`: see tuner.cli.evaluate."""

from __future__ import annotations

import sys

from tuner.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
