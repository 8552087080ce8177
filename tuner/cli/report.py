"""One offline HTML page that shows what a tuning storage found: python -m tuner.report --storage URL --out FILE.

    python -m tuner.report --storage sqlite:///studies/tuner.sqlite3 --out report.html --csv table.csv \\
        --config-file "benchmarks/sglang_shipped/N=7168,K=18432,...,block_shape=[128, 128].json"

For every shape in the storage: latency and TFLOP/s against M for the tuned best, SGLang's default
config and (with --config-file) the entry an existing file gives SGLang; each study's optimization
history; parameter importances; and which configs failed and why (see tuner.analysis).
Exit status: 0 on success, 2 on a usage error (one line says why; an --out that cannot be written is one,
found before any work), 1 on any other failure.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import optuna

from tuner.analysis import load_studies, open_storage, render_html, summary_table
from tuner.cli._common import OneLineParser, check_writable
from tuner.study import masked_url


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m tuner.report", description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True, help="Optuna storage URL the tuner wrote")
    parser.add_argument("--out", required=True, help="the HTML file to write")
    parser.add_argument("--csv", default=None, help="also write the summary table here")
    parser.add_argument(
        "--config-file",
        nargs="+",
        action="extend",
        default=[],
        help="existing SGLang config files to compare with (matched to shapes by file name)",
    )
    parser.add_argument("--title", default="", help="the page's heading")
    return parser


def _try_creating_beside(path: Path, option: str) -> None:
    """Create and remove a file where path will go (its deepest existing folder), before any work.

    Permissions alone do not say it (root may write anywhere, yet not under /proc): only a file made
    there does.
    """
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise ValueError(
            f"{option} {str(path)!r} is not writable: no file can be made in {str(folder)!r} ({reason})."
        ) from None


def main(argv: Sequence[str] | None = None) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        args = build_parser().parse_args(argv)
        out = Path(args.out)
        outputs = {"--out": out, **({"--csv": Path(args.csv)} if args.csv else {})}
        for option, path in outputs.items():
            check_writable(path, option, folder=False)
            _try_creating_beside(path, option)
        records = load_studies(open_storage(args.storage))
        table = summary_table(records, args.config_file)
        for path in table.attrs["unmatched_files"]:
            print(f"warning: --config-file {path!r} serves no shape in the storage; not shown.", file=sys.stderr)
        page = render_html(records, table, title=args.title or f"Tuning report: {masked_url(args.storage)}")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        for path in outputs.values():
            path.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
        if args.csv:
            table.to_csv(args.csv, index=False)
    except OSError as error:  # a full disk, or a folder gone since the check
        print(f"failed: writing the report: {error}", file=sys.stderr)
        return 1
    print(f"wrote {out} ({len(records)} studies)" + (f" and {args.csv}" if args.csv else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
