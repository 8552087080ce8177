"""Run every kernel test on the CPU through Triton's interpreter unless a GPU is present."""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    # Must be set before Triton is imported anywhere, so it lives here rather than in a fixture.
    os.environ.setdefault("TRITON_INTERPRET", "1")
