"""The landscape CSV (docs/contracts.md): one timed (shape, M, config) per row, written as it is measured."""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tuner.benchmarkers._base import FAILURES, Measurement
from tuner.space import SGLANG_KEYS, Config, Problem

HEADER = (
    "device,input_type,out_dtype,N,K,M,block_n,block_k,"
    "BLOCK_SIZE_M,BLOCK_SIZE_N,BLOCK_SIZE_K,GROUP_SIZE_M,num_warps,num_stages,status,us"
).split(",")
# Landscapes of SGLang's Hopper space add two trailing columns; a file without them means 1, false.
HOPPER_HEADER = [*HEADER, "SPLIT_K", "SWAP_AB"]
_STATUSES = ("ok", *FAILURES)  # what a sweep records: it never prunes, and retries a lost compile


@dataclass(frozen=True)
class Row:
    device: str
    problem: Problem
    config: Config
    status: str
    us: float | None

    def as_csv(self, *, hopper: bool = False) -> list[str]:
        """The row's fields; with hopper, the two trailing columns of a Hopper-space landscape too."""
        p, c = self.problem, self.config
        us = "" if self.us is None else f"{self.us:.3f}"
        fields = [self.device, p.input_type, p.out_dtype, *map(str, (p.N, p.K, p.M, p.block_n, p.block_k)),
                  *map(str, c.params(SGLANG_KEYS).values()), self.status, us]  # fmt: skip
        if not hopper and c.hopper:
            raise ValueError(f"{c.short()} needs a landscape with the SPLIT_K and SWAP_AB columns.")
        return fields + ([str(c.split_k), "true" if c.swap_ab else "false"] if hopper else [])


def _open_text(path: Path, mode: str) -> io.TextIOBase:
    if path.suffix == ".gz":
        return gzip.open(path, mode + "t", newline="")
    return open(path, mode, newline="")


def _gzip_text(path: Path) -> tuple[str, bool]:
    """The complete lines of every gzip member in path, and whether the last member was cut short.

    A writer killed mid-sweep leaves a member with no end marker, where gzip's own reader raises
    EOFError. Each row was sync-flushed (LandscapeWriter), so all of them but the one in flight
    decompress: keep those, and drop a last line that has no newline.
    """
    data = path.read_bytes()
    text, cut = [], False
    while data:
        member = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # one gzip member
        try:
            text.append(member.decompress(data))
        except zlib.error as error:
            raise ValueError(f"{path} is not a valid gzip file: {error}.") from None
        if not member.eof:
            cut = True
            break
        data = member.unused_data
    raw = b"".join(text)
    if cut:
        raw = raw[: raw.rfind(b"\n") + 1]
    return raw.decode(), cut


def read_rows(path: str | Path) -> Iterator[Row]:
    """Rows of a landscape file (plain or .gz); a wrong header, a bad row or a conflicting repeat raises ValueError.

    A gzip file cut short by a crash yields its complete rows, and a warning on stderr says how many.
    A row repeated with the same outcome is read once.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"landscape file {str(path)!r} is a folder; give a landscape CSV file (.csv or .csv.gz).")
    if not path.is_file():
        raise ValueError(f"landscape file {str(path)!r} does not exist.")
    cut = False
    if path.suffix == ".gz":
        text, cut = _gzip_text(path)
        f = io.StringIO(text, newline="")
    else:
        f = open(path, newline="")
    seen: dict[tuple, tuple[int, str, float | None]] = {}  # (problem, config) -> its first line and outcome
    with f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != HEADER and header != HOPPER_HEADER:
            raise ValueError(
                f"{path} must start with the header {','.join(HEADER)} (optionally ,SPLIT_K,SWAP_AB), but got {header}."
            )
        for line_no, fields in enumerate(reader, start=2):
            try:
                row = _parse(fields, len(header))
            except (ValueError, TypeError) as error:
                raise ValueError(f"{path}:{line_no}: {error}") from None
            key = (row.device, row.problem, row.config)
            if key in seen:
                first, status, us = seen[key]
                if (status, us) != (row.status, row.us):
                    raise ValueError(
                        f"{path}:{line_no}: the same config at the same problem as line {first} with another "
                        f"result ({row.status} {row.us} against {status} {us}); keep one of them."
                    )
                continue
            seen[key] = (line_no, row.status, row.us)
            yield row
    if cut:
        print(f"warning: {path} was cut short (a sweep that stopped mid-write?): read its {len(seen)} complete rows; "
              "the rest is lost.", file=sys.stderr)  # fmt: skip


def _parse(fields: list[str], width: int) -> Row:
    if len(fields) != width:
        raise ValueError(f"expected {width} fields, but got {len(fields)}")
    hopper = {}
    if width == len(HOPPER_HEADER):
        *fields, split_k, swap_ab = fields
        if swap_ab not in ("true", "false"):
            raise ValueError(f"SWAP_AB must be true or false, but got {swap_ab!r}")
        hopper = {"SPLIT_K": int(split_k), "SWAP_AB": swap_ab == "true"}
    device, input_type, out_dtype, *ints, status, us = fields
    N, K, M, block_n, block_k, *config = map(int, ints)
    if status not in _STATUSES:
        raise ValueError(f"status must be one of {_STATUSES}, but got {status!r}")
    if (status == "ok") != (us != ""):
        raise ValueError(f"us must be given exactly when status is ok, but got status {status!r} and us {us!r}")
    if us and not (math.isfinite(float(us)) and float(us) > 0):
        raise ValueError(f"us must be a positive latency in microseconds, but got {us}")
    problem = Problem(N=N, K=K, M=M, block_n=block_n, block_k=block_k, input_type=input_type, out_dtype=out_dtype)
    return Row(
        device,
        problem,
        Config.from_sglang({**dict(zip(SGLANG_KEYS, config)), **hopper}),
        status,
        float(us) if us else None,
    )


class LandscapeWriter:
    """Appends rows as they are measured and flushes each, so a crash loses at most one row.

    A .gz file gets one gzip member per writer, sync-flushed after each row (what GzipFile.flush
    does), so every row but the one in flight can be read back after a crash. (A member per row
    would survive a crash too, at 6 times the size: 731 kB against 116 kB for the rows of the
    shipped landscape.) Reopening a member that a crash cut short first rewrites its complete rows
    as a closed member, since a member appended after an unclosed one could not be read.
    """

    def __init__(self, path: str | Path, *, hopper: bool = False) -> None:
        self.path = Path(path)
        self.hopper = hopper  # with the SPLIT_K and SWAP_AB columns
        header = HOPPER_HEADER if hopper else HEADER
        cut = False
        if self.path.suffix == ".gz" and self.path.is_file():
            text, cut = _gzip_text(self.path)
            if cut and not text:  # cut before its header: it holds nothing
                self.path.unlink()
        if cut and text:  # what follows an unclosed gzip stream could not be read: close it first
            staged = self.path.with_name(self.path.name + ".tmp")
            with gzip.open(staged, "wt", newline="") as f:
                f.write(text)
            os.replace(staged, self.path)
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        if not fresh:
            with _open_text(self.path, "r") as f:  # appending needs the same columns
                found = next(csv.reader(f), None)
            if found != header:
                raise ValueError(f"{self.path} has the header {found}; appending here needs {','.join(header)}.")
        self._file = _open_text(self.path, "a")
        self._writer = csv.writer(self._file, lineterminator="\n")
        if fresh:
            self._writer.writerow(header)
            self._file.flush()

    def write(self, device: str, problem: Problem, config: Config, measurement: Measurement) -> None:
        if measurement.status not in _STATUSES:
            raise ValueError(
                f"a landscape records a config's own outcome {_STATUSES}, not {measurement.status!r}: a sweep "
                "never prunes, and compiles a config again when its compile process is lost."
            )
        us = measurement.us if measurement.status == "ok" else None
        self._writer.writerow(Row(device, problem, config, measurement.status, us).as_csv(hopper=self.hopper))
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> LandscapeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
