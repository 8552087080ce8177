"""The launch config as a value type, and SGLang's search space of them (SPEC section 3)."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, fields

import kernels

BLOCK_SIZE_M = (16, 32, 64, 128, 256)
BLOCK_SIZE_N = (32, 64, 128, 256)
BLOCK_SIZE_K = (64, 128)
GROUP_SIZE_M = (1, 16, 32, 64)
NUM_WARPS = (4, 8)
NUM_STAGES = (2, 3, 4, 5)

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


@dataclass(frozen=True, order=True)
class Config:
    """One launch config of the block-scaled GEMM."""

    block_m: int
    block_n: int
    block_k: int
    group_m: int
    num_warps: int
    num_stages: int

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{_SGLANG_KEYS[field.name]} must be a positive int, but got {value!r}.")

    def as_sglang(self) -> dict[str, int]:
        """The six keys SGLang's kernel and config files use."""
        return {_SGLANG_KEYS[name]: value for name, value in asdict(self).items()}

    @classmethod
    def from_sglang(cls, entry: dict[str, int]) -> Config:
        keys = set(entry)
        if keys != set(SGLANG_KEYS):
            raise ValueError(f"a config needs exactly the keys {list(SGLANG_KEYS)}, but got {sorted(keys)}.")
        return cls(**{name: entry[key] for name, key in _SGLANG_KEYS.items()})

    def short(self) -> str:
        """Compact label for tables: BM/BN/BK G w s."""
        return f"{self.block_m}/{self.block_n}/{self.block_k} G{self.group_m} w{self.num_warps} s{self.num_stages}"

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
        return Config(**{**asdict(self), "group_m": 1}) if M <= self.block_m else self


def default_config(block_n: int, block_k: int) -> Config:
    """SGLang's fallback when no tuned file exists."""
    return Config.from_sglang(kernels.default_config(block_n, block_k))


def search_space(block_k: int) -> list[Config]:
    """SGLang's 1280 configs (fewer when block_k < 128: BLOCK_SIZE_K must divide block_k)."""
    block_ks = [bk for bk in BLOCK_SIZE_K if block_k % bk == 0]
    if not block_ks:
        raise ValueError(f"block_k must be a multiple of one of {BLOCK_SIZE_K}, but got {block_k}.")
    return [
        Config(*values)
        for values in itertools.product(BLOCK_SIZE_M, BLOCK_SIZE_N, block_ks, GROUP_SIZE_M, NUM_WARPS, NUM_STAGES)
    ]
