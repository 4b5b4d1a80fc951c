"""Fixed-seed shared data for the benchmarks (append only: never change what exists)."""

import numpy as np


def inputs(n: int, n0: int = 16, seed: int = 0) -> np.ndarray:
    """n points in R^n0, iid standard normal, fixed seed."""
    return np.random.default_rng(seed).normal(size=(n, n0))


def sync(result=None):
    """Wait for the GPU (CuPy backend) so that a timing covers the work, not its launch."""
    from gpukern._backend import BACKEND

    if BACKEND.name == "cupy":
        import cupy

        cupy.cuda.get_current_stream().synchronize()
    return result


def gpu_pool_bytes() -> int:
    """Bytes held by CuPy's default memory pool; NotImplementedError (asv: skip) off GPU."""
    from gpukern._backend import BACKEND

    if BACKEND.name != "cupy":
        raise NotImplementedError("GPU memory is tracked on the cupy backend only")
    import cupy

    return int(cupy.get_default_memory_pool().total_bytes())
