"""Fixed-seed shared data for the benchmarks (append only: never change what exists)."""

import numpy as np


def inputs(n: int, n0: int = 16, seed: int = 0) -> np.ndarray:
    """n points in R^n0, iid standard normal, fixed seed."""
    return np.random.default_rng(seed).normal(size=(n, n0))
