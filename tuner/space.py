"""The tuner's value types: a launch config, a GEMM problem, SGLang's search space, trial attributes.

The bottom layer: every other part of the tuner imports these names and retypes none of them.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

import kernels
from kernels import INPUT_TYPES, OUT_DTYPES  # the kernel's types, by name; the tuner's commands offer these

# SGLang's default batch sizes: what a tuned file covers unless told otherwise.
DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024, 1536, 2048, 3072, 4096)
# The output dtype every command tunes for unless told otherwise: SGLang's Triton path serves
# float16 (and float32) wherever DeepGEMM takes bf16.
DEFAULT_OUT_DTYPE = "float16"

# Trial user attributes: what optuna-dashboard, the report and resumed runs read back.
TIMED = "timed"  # the trial spent a measurement of the study's budget
STATUS = "status"  # ok, pruned, a failure (FAILURES) or why nothing was timed
REASON = "reason"
US = "us"
COMPILE_S = "compile_s"
# Study user attribute: the sampler that chose the study's configs ("local+tpe" if resumed with another).
SAMPLER = "sampler"

BLOCK_SIZE_M = (16, 32, 64, 128, 256)
BLOCK_SIZE_N = (32, 64, 128, 256)
BLOCK_SIZE_K = (64, 128)
MIN_BLOCK_K = 16  # the smallest tl.dot tile: no block_k below it has a BLOCK_SIZE_K
GROUP_SIZE_M = (1, 16, 32, 64)
NUM_WARPS = (4, 8)
NUM_STAGES = (2, 3, 4, 5)
# SGLang's Hopper kernel adds these (docs/contracts.md, "Hopper path"): K split over programs whose
# fp32 partials a second kernel sums, and A and B swapped so a small M fills the MMA's wide side.
SPLIT_K = (1, 2, 4, 8, 16, 32)
SWAP_AB = (False, True)
SPACES = ("base", "hopper")

# Field name -> SGLang's key, in SGLang's order.
_SGLANG_KEYS = {
    "block_m": "BLOCK_SIZE_M",
    "block_n": "BLOCK_SIZE_N",
    "block_k": "BLOCK_SIZE_K",
    "group_m": "GROUP_SIZE_M",
    "num_warps": "num_warps",
    "num_stages": "num_stages",
}
SGLANG_KEYS = kernels.CONFIG_KEYS
assert SGLANG_KEYS == tuple(_SGLANG_KEYS.values())
HOPPER_KEYS = kernels.HOPPER_KEYS
# A trial's parameter (SGLang's key) -> Config's field.
_FIELDS = {**{key: name for name, key in _SGLANG_KEYS.items()}, "SPLIT_K": "split_k", "SWAP_AB": "swap_ab"}


@dataclass(frozen=True, order=True, kw_only=True)
class Config:
    """One launch config of the block-scaled GEMM."""

    block_m: int
    block_n: int
    block_k: int
    group_m: int
    num_warps: int
    num_stages: int
    split_k: int = 1
    swap_ab: bool = False

    def __post_init__(self) -> None:
        for name, key in _SGLANG_KEYS.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{key} must be a positive int, but got {value!r}.")
        split_ks = [2**i for i in range(kernels.MAX_SPLIT_K.bit_length())]
        if self.split_k not in split_ks or isinstance(self.split_k, bool) or not isinstance(self.swap_ab, bool):
            raise ValueError(f"SPLIT_K must be one of {split_ks} and SWAP_AB a bool, but got {self.split_k!r}, "
                             f"{self.swap_ab!r}.")  # fmt: skip

    def params(self, keys: Sequence[str]) -> dict[str, int | bool]:
        """The values of keys (SGLang's six, and SPLIT_K and SWAP_AB in a Hopper study): a trial's parameters."""
        return {key: getattr(self, _FIELDS[key]) for key in keys}

    @property
    def hopper(self) -> bool:
        """Whether SGLang runs this config on its Hopper kernel (and its file entry carries the two keys)."""
        return self.split_k > 1 or self.swap_ab

    def as_sglang(self) -> dict[str, int | bool]:
        """The entry SGLang's kernel and config files use: six keys, plus SPLIT_K and SWAP_AB on the Hopper path."""
        entry: dict[str, int | bool] = {key: getattr(self, name) for name, key in _SGLANG_KEYS.items()}
        if self.hopper:
            entry.update(SPLIT_K=self.split_k, SWAP_AB=self.swap_ab)
        return entry

    @classmethod
    def from_sglang(cls, entry: dict[str, int | bool]) -> Config:
        """The config of a file entry or of a trial's parameters (which carry SPLIT_K 1 in a Hopper study)."""
        keys = set(entry)
        if keys != set(SGLANG_KEYS) and keys != {*SGLANG_KEYS, *HOPPER_KEYS}:
            raise ValueError(
                f"a config needs exactly the keys {list(SGLANG_KEYS)} (and both of {list(HOPPER_KEYS)} or neither), "
                f"but got {sorted(keys)}."
            )
        hopper = {"split_k": entry.get("SPLIT_K", 1), "swap_ab": entry.get("SWAP_AB", False)}
        return cls(**{name: entry[key] for name, key in _SGLANG_KEYS.items()}, **hopper)

    def short(self) -> str:
        """Compact label for tables: BM/BN/BK G w s, then K<split> and swap on the Hopper path."""
        label = f"{self.block_m}/{self.block_n}/{self.block_k} G{self.group_m} w{self.num_warps} s{self.num_stages}"
        return label + (f" K{self.split_k}" if self.split_k > 1 else "") + (" swap" if self.swap_ab else "")

    def shared_memory_bytes(self, element_bytes: int = 1) -> int:
        """Shared memory the software pipeline holds: num_stages tiles of A and of B."""
        return self.num_stages * (self.block_m + self.block_n) * self.block_k * element_bytes

    def fits(self, shared_memory_limit: int | None) -> bool:
        """False when the pipeline's tiles provably exceed the device's shared memory per block.

        On the H100 (232448 bytes) exactly the 32 configs of the space this rules out ran out of
        resources in the recorded sweep, and no other config did. None (unknown device) fits all.
        """
        return shared_memory_limit is None or self.shared_memory_bytes() <= shared_memory_limit

    def schedule_key(self, M: int) -> Config:
        """A representative of the configs that launch the same schedule at batch size M.

        With a single row of tiles (M <= BLOCK_SIZE_M) the grouped order is the identity whatever
        GROUP_SIZE_M is, so those configs differ only in a constant that changes nothing.
        """
        return self._one_group if M <= self.block_m else self

    @functools.cached_property
    def _one_group(self) -> Config:
        # Made once per config: a study counts the schedules of its whole space (15,360 configs in the
        # Hopper space) at each batch size, and a new Config per question cost seconds a shape.
        return replace(self, group_m=1)


def default_config(block_n: int, block_k: int) -> Config:
    """SGLang's fallback when no tuned file exists."""
    return Config.from_sglang(kernels.default_config(block_n, block_k))


def block_sizes_k(block_k: int) -> tuple[int, ...]:
    """The BLOCK_SIZE_K a quantization block allows: SGLang's grid's sizes that divide block_k, else block_k.

    SGLang's kernels step their scale pointers once every block_k // BLOCK_SIZE_K K tiles, so a K tile
    must divide block_k; its grid offers 64 and 128. A block_k below 64 ([32, 32] blocks) leaves
    block_k itself, one scale group per K tile (the smallest tl.dot tile is 16 deep).
    """
    if not isinstance(block_k, int) or block_k < MIN_BLOCK_K or block_k & (block_k - 1):
        raise ValueError(f"block_k must be a power of two of at least {MIN_BLOCK_K}, but got {block_k!r}.")
    return tuple(bk for bk in BLOCK_SIZE_K if block_k % bk == 0) or (block_k,)


def search_space(block_k: int, space: str = "base") -> list[Config]:
    """SGLang's 1280 configs at block_k 128; fewer at smaller blocks (see block_sizes_k).

    The hopper space is each of them at every SPLIT_K and SWAP_AB: twelve times as many, the base
    space among them (SPLIT_K 1, no swap).
    """
    if space not in SPACES:
        raise ValueError(f"--space must be one of {SPACES}, but got {space!r}.")
    names = [field.name for field in fields(Config)]
    axes = {**space_choices(space), "BLOCK_SIZE_K": block_sizes_k(block_k)}
    return [Config(**dict(zip(names, values))) for values in itertools.product(*axes.values())]


def space_choices(space: str = "base") -> dict[str, tuple]:
    """Each parameter's choices in space by SGLang's key, in Config's order: what defines the space."""
    choices = dict(zip(SGLANG_KEYS, (BLOCK_SIZE_M, BLOCK_SIZE_N, BLOCK_SIZE_K, GROUP_SIZE_M, NUM_WARPS, NUM_STAGES)))
    if space == "hopper":
        choices.update(zip(HOPPER_KEYS, (SPLIT_K, SWAP_AB)))
    return choices


def config_of(trial: Any) -> Config | None:
    """The config an Optuna trial sampled, or None when it holds no complete set of parameters."""
    params = trial.params
    if set(params) != set(SGLANG_KEYS) and set(params) != {*SGLANG_KEYS, *HOPPER_KEYS}:
        return None
    return Config.from_sglang({key: value if key == "SWAP_AB" else int(value) for key, value in params.items()})


@dataclass(frozen=True, kw_only=True)
class Problem:
    """One GEMM to tune: a weight shape, a batch size, the quantization and the output dtype."""

    N: int
    K: int
    M: int
    block_n: int = 128
    block_k: int = 128
    input_type: Literal["fp8", "int8"] = "fp8"
    out_dtype: Literal["bfloat16", "float16", "float32"] = DEFAULT_OUT_DTYPE

    def __post_init__(self) -> None:
        for name in ("N", "K", "M", "block_n", "block_k"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, but got {value!r}.")
        if self.input_type not in INPUT_TYPES:
            raise ValueError(f"input type must be fp8 or int8, but got {self.input_type!r}.")
        if self.out_dtype not in OUT_DTYPES:
            raise ValueError(f"out dtype must be bfloat16, float16 or float32, but got {self.out_dtype!r}.")

    def at(self, M: int) -> Problem:
        """The same GEMM at another batch size."""
        return Problem(**{**asdict(self), "M": M})

    @property
    def flops(self) -> int:
        return 2 * self.M * self.N * self.K

    @property
    def min_bytes(self) -> int:
        """Each operand read once and C written once: the memory-bound floor's traffic."""
        out_bytes = 4 if self.out_dtype == "float32" else 2
        scale_groups = -(-self.K // self.block_k)
        scales = 4 * (self.M * scale_groups + -(-self.N // self.block_n) * scale_groups)
        return self.M * self.K + self.N * self.K + out_bytes * self.M * self.N + scales
