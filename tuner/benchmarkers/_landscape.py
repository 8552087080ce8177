"""The landscape CSV (docs/contracts.md): one timed (shape, M, config) per row, written as it is measured."""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tuner.benchmarkers._base import Measurement
from tuner.space import SGLANG_KEYS, Config, Problem

HEADER = (
    "device,input_type,out_dtype,N,K,M,block_n,block_k,"
    "BLOCK_SIZE_M,BLOCK_SIZE_N,BLOCK_SIZE_K,GROUP_SIZE_M,num_warps,num_stages,status,us"
).split(",")
# Landscapes of SGLang's Hopper space add two trailing columns; a file without them means 1, false.
HOPPER_HEADER = [*HEADER, "SPLIT_K", "SWAP_AB"]
STATUSES = ("ok", "out_of_resources", "compile_error", "wrong_result", "crash", "timeout")


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


def read_rows(path: str | Path) -> Iterator[Row]:
    """Rows of a landscape file (plain or .gz); a wrong header or a bad row raises ValueError."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"landscape file {str(path)!r} does not exist.")
    with _open_text(path, "r") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != HEADER and header != HOPPER_HEADER:
            raise ValueError(
                f"{path} must start with the header {','.join(HEADER)} (optionally ,SPLIT_K,SWAP_AB), but got {header}."
            )
        for line_no, fields in enumerate(reader, start=2):
            try:
                yield _parse(fields, len(header))
            except (ValueError, TypeError) as error:
                raise ValueError(f"{path}:{line_no}: {error}") from None


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
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, but got {status!r}")
    if (status == "ok") != (us != ""):
        raise ValueError(f"us must be given exactly when status is ok, but got status {status!r} and us {us!r}")
    problem = Problem(N=N, K=K, M=M, block_n=block_n, block_k=block_k, input_type=input_type, out_dtype=out_dtype)
    return Row(
        device,
        problem,
        Config.from_sglang({**dict(zip(SGLANG_KEYS, config)), **hopper}),
        status,
        float(us) if us else None,
    )


class LandscapeWriter:
    """Appends rows as they are measured and flushes each, so a crash loses at most one row."""

    def __init__(self, path: str | Path, *, hopper: bool = False) -> None:
        self.path = Path(path)
        self.hopper = hopper  # with the SPLIT_K and SWAP_AB columns
        header = HOPPER_HEADER if hopper else HEADER
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

    def write(self, device: str, problem: Problem, config: Config, measurement: Measurement) -> None:
        if measurement.status not in STATUSES:
            raise ValueError(f"a landscape records {STATUSES}, not {measurement.status!r}: sweeps never prune.")
        us = measurement.us if measurement.status == "ok" else None
        self._writer.writerow(Row(device, problem, config, measurement.status, us).as_csv(hopper=self.hopper))
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> LandscapeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
