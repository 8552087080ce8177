"""The config files a user already has: an installed SGLang's and vLLM's, or a folder they name.

A tuned file is worth dropping in only where it is faster than the file the user's engine already
loads. So a run finds those files, times their entries beside its own search, and exports nothing
slower (tuner.study); and `--missing` tunes only the shapes for which an engine has no file and
falls back to its default config. The folders are found from where the packages are installed,
without importing them: importing SGLang or vLLM takes seconds and can fail on a machine set up
for tuning alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tuner.engines import SGLANG, VLLM, Engine, package_folder
from tuner.export import config_file_name, nearest_entry, read_config_file
from tuner.space import INPUT_TYPES, Config, Problem, search_space

# Where each engine's loader reads its files, inside the package (from the released wheels' loaders):
# SGLang 0.5.23 beside sglang/kernels/ops/gemm/fp8_kernel.py, older releases beside
# sglang/srt/layers/quantization/fp8_kernel.py (an installation has one of them; int8 files lie beside fp8's);
# vLLM 0.34.0 beside vllm/model_executor/layers/quantization/utils/fp8_utils.py.
SGLANG_CONFIG_FOLDERS = ("kernels/ops/gemm/configs", "srt/layers/quantization/configs")
VLLM_CONFIG_FOLDER = "model_executor/layers/quantization/utils/configs"
# What SGLang 0.5.23 logs when the file its loader looks for does not exist (os.path.exists is False):
# the shapes `--missing` tunes. vLLM 0.34.0 logs the same words for fp8.
DEFAULT_CONFIG_WARNING = "Using default W8A8 Block {} kernel config. Performance might be sub-optimal!"
# Study user attribute: each baseline file's name -> its entry at the study's M (the report reads it).
BASELINES = "baselines"
# The label of the folder --baseline DIR names: its files serve whichever engine's file is tuned.
USER_FOLDER = "--baseline"


@dataclass(frozen=True, kw_only=True)
class ConfigFolder:
    """A folder of config files, and which file names its reader loads (SGLang's, vLLM's or either)."""

    label: str  # who reads it: SGLang, vLLM, or the user's --baseline folder
    path: Path
    namings: tuple[str, ...]  # "sglang": block_shape=[128, 128]; "vllm": block_shape=[128,128]
    input_types: tuple[str, ...] = INPUT_TYPES

    def file_for(self, problem: Problem, device_name: str) -> Path | None:
        """The file the folder's reader loads for problem's shape on device_name, if it exists."""
        if problem.input_type not in self.input_types:
            return None
        p = problem
        for naming in self.namings:
            name = config_file_name(p.N, p.K, device_name, p.input_type, p.block_n, p.block_k, vllm=naming == "vllm")
            if (self.path / name).is_file():
                return self.path / name
        return None


@dataclass(frozen=True, kw_only=True)
class Baseline:
    """One config file a user already has for a shape, and the entries its reader picks from."""

    folder: ConfigFolder
    path: Path
    entries: Mapping[int, Config]

    @property
    def name(self) -> str:
        return f"{self.path.name} ({self.folder.label})"

    def pick(self, M: int) -> Config:
        """The entry the engine runs at batch size M: the nearest key, as both loaders choose."""
        return nearest_entry(self.entries, M)


def installed_folders() -> list[ConfigFolder]:
    """The config folders of the SGLang and vLLM this Python would import, SGLang's first.

    An SGLang whose layout is neither known one gets the newest layout's folder, which then holds
    no file: its shapes count as missing rather than as covered.
    """
    folders = []
    sglang = package_folder("sglang")
    if sglang is not None:
        candidates = [sglang / folder for folder in SGLANG_CONFIG_FOLDERS]
        path = next((c for c in candidates if c.is_dir()), candidates[0])
        folders.append(ConfigFolder(label=SGLANG.name, path=path, namings=("sglang",)))
    vllm = package_folder("vllm")
    if vllm is not None:
        path = vllm / VLLM_CONFIG_FOLDER
        folders.append(ConfigFolder(label=VLLM.name, path=path, namings=("vllm",), input_types=VLLM.input_types))
    return folders


def folders_for(folders: Iterable[ConfigFolder], engines: Iterable[Engine]) -> list[ConfigFolder]:
    """The folders whose files these engines read: their installed folders, and any folder the user named."""
    names = {engine.name for engine in engines} | {USER_FOLDER}
    return [folder for folder in folders if folder.label in names]


# --missing looks for each shape's file in the folders of --baseline: without one it could tell nothing.
_MISSING_NEEDS_A_FOLDER = (
    "--missing needs the installed SGLang or vLLM (none is installed for this Python, or --baseline none was "
    "given); --baseline DIR names a folder of config files."
)


def baseline_folders(choice: str, *, missing: bool = False) -> list[ConfigFolder]:
    """The folders --baseline names: auto (the installed SGLang's and vLLM's), none, or a folder.

    A folder the user names may hold files under either engine's naming; SGLang's is read first.
    missing: for --missing, which looks in them; then no folder at all is a usage error, found
    from the flags alone (a dry run and a machine without a GPU find it too).
    """
    if choice == "none":
        folders = []
    elif choice == "auto":
        folders = installed_folders()
    elif Path(choice).is_dir():
        folders = [ConfigFolder(label=USER_FOLDER, path=Path(choice), namings=("sglang", "vllm"))]
    else:
        raise ValueError(f"--baseline must be auto, none or a folder of config files, but got {choice!r}.")
    if missing and not folders:
        raise ValueError(_MISSING_NEEDS_A_FOLDER)
    return folders


def shipped_shapes(
    folders: Iterable[ConfigFolder], device_name: str, input_type: str, block_n: int, block_k: int
) -> list[tuple[int, int]]:
    """The (N, K) the folders hold files for on device_name at this input type and block shape (for --shipped)."""
    shapes: dict[tuple[int, int], None] = {}
    for folder in folders:
        names = sorted(path.name for path in folder.path.glob("N=*.json")) if folder.path.is_dir() else []
        for name in names:
            match = _FILE_NAME.fullmatch(name)
            if match is None or input_type not in folder.input_types:
                continue
            N, K, device, dtype, bn, bk = match.groups()
            if (device, dtype, int(bn), int(bk)) == (device_name, input_type, block_n, block_k):
                shapes[int(N), int(K)] = None
    return sorted(shapes)


# A config file's name under either engine's naming (tuner.export.config_file_name).
_FILE_NAME = re.compile(r"N=(\d+),K=(\d+),device_name=(.+),dtype=(\w+)_w8a8,block_shape=\[(\d+), ?(\d+)\]\.json")


def find_baselines(
    folders: Iterable[ConfigFolder], problem: Problem, device_name: str
) -> tuple[list[Baseline], list[str]]:
    """The files of folders for problem's shape on device_name, and why any found file is not one.

    A file this tuner cannot read (e.g. an AMD file with extra keys) or that holds no entry is no
    baseline; the run goes on without it and says so.
    """
    baselines, skipped = [], []
    seen: set[Path] = set()
    for folder in folders:
        path = folder.file_for(problem, device_name)
        if path is None or path.resolve() in seen:
            continue
        seen.add(path.resolve())
        try:
            entries = read_config_file(path)
        except ValueError as error:
            skipped.append(f"{error}; not compared")
            continue
        if not entries:
            skipped.append(f"{path} holds no entry; not compared")
            continue
        baselines.append(Baseline(folder=folder, path=path, entries=entries))
    return baselines, skipped


def _shape(problem: Problem) -> str:
    return f"N={problem.N} K={problem.K}"


def baseline_lines(
    choice: str, folders: Sequence[ConfigFolder], problems: Sequence[Problem], device_name: str, space: str
) -> list[str]:
    """What serves as the baseline of each shape (one problem per shape), for the start of a run."""
    if not folders:
        why = "--baseline none" if choice == "none" else "no SGLang or vLLM is installed for this Python"
        return [f"baseline: none ({why}; --baseline DIR compares with a folder of config files)"]
    where = " and ".join(f"{folder.label}'s {folder.path}" for folder in folders)
    lines = [f"baseline: the files for {device_name} in {where}:"]
    for problem in problems:
        baselines, skipped = find_baselines(folders, problem, device_name)
        members = set(search_space(problem.block_k, space))
        found = []
        for baseline in baselines:
            outside = sum(1 for config in baseline.entries.values() if config not in members)
            note = f" ({outside} of its {len(baseline.entries)} entries lie outside --space {space}: not compared)"
            found.append(f"{baseline.path.name} ({baseline.folder.label})" + (note if outside else ""))
        line = f"  {_shape(problem)}: {', '.join(found) if found else 'none, the default config is what runs now'}"
        lines += [line, *(f"  {_shape(problem)}: {why}" for why in skipped)]
    return lines


def split_missing(
    folders: Sequence[ConfigFolder], shapes: Sequence[Sequence[Problem]], device_name: str
) -> tuple[list[Sequence[Problem]], list[str]]:
    """The problems an engine of folders has no entry for, per shape, and lines that say which shapes
    are tuned at which batch sizes, which skipped, and why (for --missing).

    A batch size counts as covered only where every folder whose engine loads the input type holds
    the shape's file with an entry at that very batch size: where one engine lacks the file, it runs
    its default config; where the file lacks the key, it runs the entry of the nearest key (a file
    keyed 2048 to 4096 serves decode at M = 1 with its M = 2048 entry). Those problems are tuned,
    against the files that exist.
    """
    if not folders:  # every shape would pass for covered
        raise ValueError(_MISSING_NEEDS_A_FOLDER)
    input_type = shapes[0][0].input_type
    readers = [folder for folder in folders if input_type in folder.input_types]
    if not readers:
        names = " and ".join(folder.label for folder in folders)
        raise ValueError(f"--missing: {names} load no {input_type} config files (vLLM 0.34.0 loads fp8 alone), so no "
                         "shape can be missing from them.")  # fmt: skip
    missing, lines = [], []
    for problems in shapes:
        lacking: dict[int, list[str]] = {}
        why = []
        for folder in readers:
            path = folder.file_for(problems[0], device_name)
            try:
                keys = read_config_file(path) if path is not None else {}
            except ValueError:  # a file the engine reads and this tuner cannot (other keys): counts as covering
                keys = {p.M: None for p in problems}
            absent = [p.M for p in problems if p.M not in keys]
            if path is None:
                warning = DEFAULT_CONFIG_WARNING.format(input_type.upper())
                why.append(f'no file in {folder.label}\'s folder (it logs "{warning}")')
            elif absent:
                why.append(f"{folder.label}'s file has no entry at M {' '.join(map(str, absent))} (its keys: "
                           f"{' '.join(map(str, sorted(keys)))}; the nearest key's entry runs there)")  # fmt: skip
            for M in absent:
                lacking.setdefault(M, []).append(folder.label)
        todo = [p for p in problems if p.M in lacking]
        if todo:
            missing.append(todo)
            lines.append(f"  tuning {_shape(problems[0])}: {'; '.join(why)}")
        else:
            lines.append(f"  skipping {_shape(problems[0])}: every folder holds its file, with an entry at every M")
    engines = " and ".join(f"{folder.label}'s {folder.path}" for folder in readers)
    head = f"--missing: {len(missing)} of {len(shapes)} shapes lack a file or entries for {device_name} in {engines}"
    return missing, [head, *lines]
