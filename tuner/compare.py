"""`python -m tuner.compare`: see tuner.cli.compare."""

from __future__ import annotations

import sys

from tuner.cli.compare import main

if __name__ == "__main__":
    sys.exit(main())
