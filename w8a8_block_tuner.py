"""`w8a8-block-tuner COMMAND ...`: the tuner's commands under a name that no other package takes.

`tuner` and `kernels` are names other packages take too (Hugging Face's `kernels`, which
transformers uses, among them); where one is installed in the same Python, `python -m tuner.run`
may import it instead of this project's. This module, installed beside this project's `tuner` and
`kernels`, puts that folder first on the search path before it imports them, so each command runs
this project's code whatever else is installed:

    w8a8-block-tuner run --N 576 --K 7168 --dry-run     # as python -m tuner.run --N 576 --K 7168 --dry-run
    python -m w8a8_block_tuner report --storage URL --out FILE
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

COMMANDS = ("run", "sweep", "report", "evaluate", "compare")
USAGE = f"usage: w8a8-block-tuner {{{','.join(COMMANDS)}}} [--help] ...: the commands of python -m tuner.COMMAND"


def main() -> NoReturn:
    """Run the command named first on the command line with the rest of it, as `python -m tuner.COMMAND` would."""
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        asked = len(sys.argv) == 2 and sys.argv[1] in ("-h", "--help")
        print(USAGE, file=sys.stdout if asked else sys.stderr)
        sys.exit(0 if asked else 2)
    command = sys.argv.pop(1)
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # this project's tuner and kernels, before any other
    from tuner.cli._launch import launch

    launch(f"tuner.cli.{command}")


if __name__ == "__main__":
    main()
