"""`python -m tuner.run`: see tuner.cli.run."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    try:  # a Ctrl-C while the tuner's dependencies load (most of a second) is a stop like any other
        from tuner.cli.run import main
    except KeyboardInterrupt:
        print("interrupted before any work.", file=sys.stderr)
        sys.exit(130)
    sys.exit(main())
