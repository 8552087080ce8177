"""The config files a user already has: an installed SGLang's and vLLM's, or a folder they name.

A tuned file is worth dropping in only where it is faster than the file the user's engine already
loads. So a run finds those files, times their entries beside its own search, and exports nothing
slower (tuner.study); and `--missing` tunes only the shapes for which an engine has no file and
falls back to its default config. The folders are found from where the packages are installed,
without importing them: importing SGLang or vLLM takes seconds and can fail on a machine set up
for tuning alone.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tuner.export import config_file_name, nearest_entry, read_config_file
from tuner.space import INPUT_TYPES, Config, Problem, search_space

# Where each engine's loader reads its files, inside the package (from the released wheels' loaders):
# SGLang 0.5.23 beside sglang/kernels/ops/gemm/fp8_kernel.py, older releases beside
# sglang/srt/layers/quantization/fp8_kernel.py (an installation has one of them; int8 files lie beside fp8's);
# vLLM 0.34.0 beside vllm/model_executor/layers/quantization/utils/fp8_utils.py.
SGLANG_CONFIG_FOLDERS = ("kernels/ops/gemm/configs", "srt/layers/quantization/configs")
VLLM_CONFIG_FOLDER = "model_executor/layers/quantization/utils/configs"
# vLLM 0.34.0 loads block-scaled config files for fp8 alone (it ships int8 files that its code never loads).
VLLM_INPUT_TYPES = ("fp8",)
# What SGLang 0.5.23 logs when the file its loader looks for does not exist (os.path.exists is False):
# the shapes `--missing` tunes. vLLM 0.34.0 logs the same words for fp8.
DEFAULT_CONFIG_WARNING = "Using default W8A8 Block {} kernel config. Performance might be sub-optimal!"
# Study user attribute: each baseline file's name -> its entry at the study's M (the report reads it).
BASELINES = "baselines"


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


def _package_folder(name: str) -> Path | None:
    """Where the top-level package name would be imported from, found without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):  # a broken installation, or a module in sys.modules without a spec
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def installed_folders() -> list[ConfigFolder]:
    """The config folders of the SGLang and vLLM this Python would import, SGLang's first.

    An SGLang whose layout is neither known one gets the newest layout's folder, which then holds
    no file: its shapes count as missing rather than as covered.
    """
    folders = []
    sglang = _package_folder("sglang")
    if sglang is not None:
        candidates = [sglang / folder for folder in SGLANG_CONFIG_FOLDERS]
        path = next((c for c in candidates if c.is_dir()), candidates[0])
        folders.append(ConfigFolder(label="SGLang", path=path, namings=("sglang",)))
    vllm = _package_folder("vllm")
    if vllm is not None:
        path = vllm / VLLM_CONFIG_FOLDER
        folders.append(ConfigFolder(label="vLLM", path=path, namings=("vllm",), input_types=VLLM_INPUT_TYPES))
    return folders


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
        folders = [ConfigFolder(label="--baseline", path=Path(choice), namings=("sglang", "vllm"))]
    else:
        raise ValueError(f"--baseline must be auto, none or a folder of config files, but got {choice!r}.")
    if missing and not folders:
        raise ValueError(_MISSING_NEEDS_A_FOLDER)
    return folders


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
    """The shapes (each its problems) that an engine of folders has no file for, and lines that say
    which shapes are tuned and which skipped, and why (for --missing).

    A shape is skipped only when every folder holds its file: where one engine lacks it, that
    engine runs the default config, and the run tunes it against the other engine's file.
    """
    if not folders:  # every shape would pass for covered
        raise ValueError(_MISSING_NEEDS_A_FOLDER)
    missing, lines = [], []
    for problems in shapes:
        lacking = [folder.label for folder in folders if folder.file_for(problems[0], device_name) is None]
        if lacking:
            missing.append(problems)
            warning = DEFAULT_CONFIG_WARNING.format(problems[0].input_type.upper())
            lines.append(f"  tuning {_shape(problems[0])}: no file in {' or '.join(lacking)}'s folder "
                         f"(it logs \"{warning}\")")  # fmt: skip
        else:
            lines.append(f"  skipping {_shape(problems[0])}: every folder holds its file")
    engines = " and ".join(f"{folder.label}'s {folder.path}" for folder in folders)
    head = f"--missing: {len(missing)} of {len(shapes)} shapes have no file for {device_name} in {engines}"
    return missing, [head, *lines]
