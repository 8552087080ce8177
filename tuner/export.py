"""SGLang's (and vLLM's) config files: byte-exact names, merged and written atomically under a lock.

Beside each file a provenance record (`<file name>.provenance`, JSON) says what made each entry,
written with the file each time, so a run stopped at any point leaves no entry unaccounted for;
its name does not end in .json, so copying a folder's *.json into a loader's folder leaves it out.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tuner.space import Config
from tuner.stopping import TuningError


class ExportError(TuningError):
    """A config file (or its record) could not be written: the tuned results stay in the storage."""


def config_file_name(
    N: int, K: int, device_name: str, input_type: str, block_n: int, block_k: int, *, vllm: bool = False
) -> str:
    """SGLang's file name (vLLM's drops the space inside block_shape)."""
    block_shape = f"[{block_n},{block_k}]" if vllm else f"[{block_n}, {block_k}]"
    return f"N={N},K={K},device_name={device_name},dtype={input_type}_w8a8,block_shape={block_shape}.json"


# vLLM 0.34.0's Triton kernel (_w8a8_triton_block_scaled_mm) takes the six base keys alone: an entry
# with SPLIT_K or SWAP_AB fails there with Triton's "Keyword argument SPLIT_K was specified but unrecognised".
VLLM_TAKES_NO_HOPPER_ENTRIES = (
    "vLLM's Triton kernel takes no SPLIT_K or SWAP_AB and fails on entries that carry them (SGLang's Hopper path "
    "alone runs them)"
)


def is_vllm_name(name: str) -> bool:
    """Whether a file name is vLLM's (no space inside block_shape), whatever else it names."""
    return re.search(r"block_shape=\[\d+,\d+\]\.json$", name) is not None


def read_config_file(path: str | Path) -> dict[int, Config]:
    """The entries of an existing file; anything that is not a valid config file raises ValueError."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a readable JSON config file: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object of batch size -> config, but holds {type(data).__name__}.")
    entries = {}
    for key, value in data.items():
        if not key.isdigit() or not isinstance(value, dict):
            raise ValueError(f"{path}: entry {key!r} must map a decimal batch size to a config object.")
        try:
            entries[int(key)] = Config.from_sglang(value)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{path}: entry {key!r}: {error}") from None
    return entries


def render(entries: Mapping[int, Config]) -> str:
    """The file's exact text: keys in ascending numeric order, indent=4, trailing newline."""
    ordered = {str(M): entries[M].as_sglang() for M in sorted(entries)}
    return json.dumps(ordered, indent=4) + "\n"


def nearest_entry(entries: Mapping[int, Config], M: int) -> Config:
    """The config SGLang picks for a runtime M: nearest key, the first in file order on a tie."""
    return entries[min(entries, key=lambda key: abs(key - M))]  # min keeps the first of equals


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock across processes on this host: flock on the folder itself, so no lock
    file is left beside the configs that users copy into SGLang."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _file_mode(path: Path) -> int:
    """The existing file's permissions, else what a plain open() would give under the umask."""
    if path.exists():
        return path.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _replace_atomically(path: Path, text: str) -> None:
    """Write text to path through a temporary file in the same folder: a crash leaves the old file or the new."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        os.fchmod(fd, _file_mode(path))  # mkstemp makes 0600; a config file is for sharing
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_configs(
    path: str | Path, entries: Mapping[int, Config], made_by: Mapping[str, str] | None = None
) -> dict[int, Config]:
    """Merge entries into the file at path (replacing those batch sizes, keeping the rest), atomically,
    and record made_by for them in the provenance record beside it (see _record), under the same lock.

    A concurrent writer waits for the lock, so no entry written by another process is lost; a
    crash leaves either the old file or the new one. An existing file that is not a valid config
    file raises ValueError and is left untouched; a file that cannot be written raises ExportError.
    made_by None writes no record (a record's stale entries are dropped by the next that is written).
    Returns the merged entries.
    """
    path = Path(path)
    written = path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path.parent):
            merged = read_config_file(path) if path.exists() else {}
            merged.update(entries)
            if is_vllm_name(path.name) and any(config.hopper for config in merged.values()):
                raise ExportError(f"{path} is vLLM's file name, and {VLLM_TAKES_NO_HOPPER_ENTRIES}.")
            if made_by is not None:  # the record first: a run killed between the two leaves no entry unrecorded
                written = provenance_path(path)
                _record(path, merged, entries, made_by)
                written = path
            _replace_atomically(path, render(merged))
    except OSError as error:
        raise ExportError(f"cannot write {written}: {error.strerror or error}") from error
    return merged


# The provenance record beside each config file: what made each entry (see the module's docstring).
PROVENANCE_SUFFIX = ".provenance"
# The key of a record that names the output dtype its entry was tuned for, which no file name carries.
OUT_DTYPE = "out_dtype"


def provenance_path(path: str | Path) -> Path:
    """Where the record of the config file at path lives."""
    path = Path(path)
    return path.with_name(path.name + PROVENANCE_SUFFIX)


def _records(path: Path, held: Mapping[int, Config]) -> dict[str, dict]:
    """The provenance records of the file at path that describe the entries it holds (held), by batch size.

    Each record carries the entry it describes: one whose entry the file no longer holds (another run,
    or another tool, replaced it since) is no record of it. An unreadable record file holds none.
    """
    try:
        records = json.loads(provenance_path(path).read_text())["entries"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    if not isinstance(records, dict):
        return {}
    return {
        key: value
        for key, value in records.items()
        if key.isdigit()
        and int(key) in held
        and isinstance(value, dict)
        and value.get("entry") == held[int(key)].as_sglang()
    }


def _record(path: Path, held: Mapping[int, Config], entries: Mapping[int, Config], made_by: Mapping[str, str]) -> None:
    """Record made_by for entries, which the file at path is about to hold among held; the caller holds the lock.

    Each record names its entry, so the record never credits the wrong run, however runs interleave
    or stop: written before the file, a record of an entry the file did not get is dropped later.
    """
    kept = _records(path, held)
    kept.update({str(M): {**made_by, "entry": config.as_sglang()} for M, config in entries.items()})
    about = f"What made each entry of {path.name}; not a config file: keep it out of the loaders' folders."
    ordered = dict(sorted(kept.items(), key=lambda item: int(item[0])))
    _replace_atomically(provenance_path(path), json.dumps({"about": about, "entries": ordered}, indent=4) + "\n")


def other_out_dtype(path: str | Path, batch_sizes: Iterable[int], out_dtype: str) -> str | None:
    """A line for a run about to replace entries that its provenance records made for another output dtype.

    SGLang's and vLLM's file names carry no output dtype, so a run for another dtype into the same
    folder would replace them without a word. None where nothing would be replaced so (a file that
    does not exist, or entries without a record of their dtype).
    """
    path = Path(path)
    if not path.exists():
        return None
    records = _records(path, read_config_file(path))
    others: dict[str, list[int]] = {}
    for M in sorted(set(batch_sizes)):
        made_for = records.get(str(M), {}).get(OUT_DTYPE)
        if made_for is not None and made_for != out_dtype:
            others.setdefault(made_for, []).append(M)
    if not others:
        return None
    held = "; ".join(f"for {dtype} output at M = {' '.join(map(str, Ms))}" for dtype, Ms in others.items())
    return (
        f"{path} holds entries made {held} (so its provenance says), which this {out_dtype} run replaces: the file "
        "name carries no output dtype; give another --save-path to keep both."
    )
