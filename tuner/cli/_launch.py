"""How every command starts and ends: with this project's `kernels`, and without a traceback for a late Ctrl-C.

`kernels` and `tuner` are names other packages take too (Hugging Face's `kernels`, which
transformers uses, among them). Installed into the same Python, such a package can be the one
`import kernels` finds, and every command would fail with an ImportError deep in the tuner; so a
command first checks that the `kernels` Python would import is the one beside this `tuner`, and
says in one line what to do if not. `w8a8-block-tuner` (w8a8_block_tuner.py) runs the commands
under a name no other package takes, with this project's folder first on the search path.

Ctrl-C while a command loads its dependencies is a stop like any other; once its work is over, a
Ctrl-C or SIGTERM could only interrupt the interpreter's own clean-up, where Python prints a
traceback and still exits 0, so from then on they are ignored.
"""

from __future__ import annotations

import importlib
import importlib.util
import signal
import sys
from pathlib import Path
from typing import NoReturn

# Where this tuner's own kernels are: beside the tuner package, wherever the two were installed.
OWN_KERNELS = Path(__file__).resolve().parents[2] / "kernels"
# A line of kernels/__init__.py that no other package's `kernels` has: which project it is.
MARK = 'PROJECT = "w8a8-block-tuner"'
ENTRY_POINT = "w8a8-block-tuner"


def foreign_kernels() -> str | None:
    """What is wrong, in one line, when `import kernels` would not load this project's kernels; None if it would.

    Found without importing anything: another `kernels` may fail to import, or take seconds to.
    """
    try:
        spec = importlib.util.find_spec("kernels")
    except (ImportError, ValueError):  # a broken installation of another package of that name
        spec = None
    found = Path(spec.origin).resolve().parent if spec is not None and spec.origin else None
    try:
        ours = found == OWN_KERNELS and MARK in (found / "__init__.py").read_text()
    except OSError:
        ours = False
    if ours:
        return None
    what = f"finds {found}" if found is not None else "finds nothing"
    return (
        f"`import kernels` {what}, not this tuner's {OWN_KERNELS}: another package named kernels (e.g. Hugging "
        f"Face's) is installed in this Python; run the tuner as `{ENTRY_POINT} run ...` (the same commands under "
        "a name of their own, importing this project's kernels first), or uninstall the other package, or install "
        "the tuner into a Python of its own."
    )


def launch(module: str) -> NoReturn:
    """Run the command module's main (the command line in sys.argv) and exit with its status."""
    problem = foreign_kernels()
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    try:  # a Ctrl-C while the tuner's dependencies load (most of a second) is a stop like any other
        main = importlib.import_module(module).main
    except KeyboardInterrupt:
        print("interrupted before any work.", file=sys.stderr)
        sys.exit(130)
    status = main()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    sys.exit(status)
