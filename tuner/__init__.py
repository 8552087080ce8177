"""Optuna-driven tuning of the block-scaled W8A8 GEMM's launch configs, exported for SGLang."""
