"""SGLang's (and vLLM's) config files: byte-exact names, merged and written atomically under a lock."""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

from tuner.space import Config


def config_file_name(
    N: int, K: int, device_name: str, input_type: str, block_n: int, block_k: int, *, vllm: bool = False
) -> str:
    """SGLang's file name (vLLM's drops the space inside block_shape)."""
    block_shape = f"[{block_n},{block_k}]" if vllm else f"[{block_n}, {block_k}]"
    return f"N={N},K={K},device_name={device_name},dtype={input_type}_w8a8,block_shape={block_shape}.json"


# Which file names a run writes (docs/contracts.md, "Config file"): the content is the same.
FORMATS = ("sglang", "vllm", "both")


def config_file_names(
    N: int, K: int, device_name: str, input_type: str, block_n: int, block_k: int, *, file_format: str = "sglang"
) -> list[str]:
    """The names a run writes for --format: SGLang's, vLLM's or both, SGLang's first."""
    if file_format not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, but got {file_format!r}.")
    flavours = {"sglang": (False,), "vllm": (True,), "both": (False, True)}[file_format]
    return [config_file_name(N, K, device_name, input_type, block_n, block_k, vllm=vllm) for vllm in flavours]


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
def _locked(folder: Path):
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


def write_configs(path: str | Path, entries: Mapping[int, Config]) -> dict[int, Config]:
    """Merge entries into the file at path (replacing those batch sizes, keeping the rest), atomically.

    A concurrent writer waits for the lock, so no entry written by another process is lost; a
    crash leaves either the old file or the new one. An existing file that is not a valid config
    file raises ValueError and is left untouched. Returns the merged entries.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.parent):
        merged = read_config_file(path) if path.exists() else {}
        merged.update(entries)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            os.fchmod(fd, _file_mode(path))  # mkstemp makes 0600; a config file is for sharing
            with os.fdopen(fd, "w") as f:
                f.write(render(merged))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    return merged
