"""Elementwise hot-path operations, each in one place for both backends.

On the CuPy backend they run as Numba CUDA kernels (:mod:`.numba_cuda`, on the CuPy
arrays through ``__cuda_array_interface__``); on NumPy in the compiled CPU kernels
(:mod:`.cpu_fused`) where they are built, else as array expressions. GEMMs are
not here: they stay ``@`` (BLAS / cuBLAS).
"""

from __future__ import annotations

from typing import Any

from .._backend import BACKEND
from ..functions import ScalarFunction

Array = Any


def _use_numba() -> bool:
    return BACKEND.name == "cupy"


CPU_MIN_SIZE = 1 << 15
"""Smaller arrays (SGL's per-network steps) stay NumPy expressions: a ctypes call costs
more than it saves there."""


def _use_cpu(fn: ScalarFunction, *arrays: Array) -> bool:
    if BACKEND.name != "numpy" or arrays[-1].size < CPU_MIN_SIZE:
        return False
    from . import cpu_fused

    return cpu_fused.can_map(fn, *arrays)


def activate(fn: ScalarFunction, h: Array) -> Array:
    """fn(h): an activation of a finite network (on NumPy, one compiled vectorised pass)."""
    if _use_cpu(fn, h):
        from . import cpu_fused

        return cpu_fused.map_values(fn, h)
    return fn(h)


def scaled_derivative(pre: Array, h: Array, fn: ScalarFunction, scale: float) -> Array:
    """pre * scale * fn(h): one step of (surrogate) backprop after the GEMM delta W."""
    if _use_cpu(fn, pre, h):
        from . import cpu_fused

        return cpu_fused.map_values(fn, h, pre, scale)
    desc = fn.cuda_descriptor()
    if _use_numba() and desc is not None:
        from . import numba_cuda

        pre = BACKEND.xp.ascontiguousarray(pre)
        out = BACKEND.xp.empty_like(pre)
        numba_cuda.scaled_derivative(pre.reshape(-1), BACKEND.xp.ascontiguousarray(h).reshape(-1),
                                     out.reshape(-1), scale, desc)
        return out
    return pre * scale * fn(h).astype(h.dtype, copy=False)


def hadamard_accumulate(out: Array | None, dd: Array, zz: Array, c: float, b: float) -> Array:
    """out + dd * (c * zz + b) (in place where out exists): one layer of the empirical kernel."""
    if BACKEND.name == "numpy" and dd.size >= CPU_MIN_SIZE:
        from . import cpu_fused

        if cpu_fused.can_hadamard(out, dd, zz):
            return cpu_fused.hadamard(out, dd, zz, c, b)
    if out is None:
        return dd * (c * zz + b)
    if _use_numba():
        from . import numba_cuda

        xp = BACKEND.xp  # zz of the inputs' layer is (N1, N2), shared by every network
        numba_cuda.hadamard_accumulate(out.reshape(-1), xp.ascontiguousarray(dd).reshape(-1),
                                       xp.ascontiguousarray(zz).reshape(-1), c, b)
        return out
    out += dd * (c * zz + b)
    return out


def axpy(w: Array, g: Array, alpha: float) -> None:
    """w += alpha * g in place (the SGL update of one layer)."""
    if _use_numba():
        from . import numba_cuda

        numba_cuda.axpy(w.reshape(-1), BACKEND.xp.ascontiguousarray(g).reshape(-1), alpha)
        return
    w += alpha * g
