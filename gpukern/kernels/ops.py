"""The one place that picks an implementation for the backend chosen at import.

Executors: ``compiled`` (the compiled CPU kernels, :mod:`.cpu_fused`, NumPy backend),
``cupy`` (the fused CUDA kernel, :mod:`.cupy_fused`, and the Numba CUDA kernels,
:mod:`.numba_cuda`, CuPy backend) and ``array`` (array expressions of NumPy or CuPy,
always there). Each operation below runs on the first executor that takes it;
:func:`use_executor` ("array") turns the compiled ones off within a block, which is how
the tests run every path on one machine. GEMMs are not here: they stay ``@`` (BLAS /
cuBLAS), except the SGL update on the host (:func:`gemm_update`).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from .._backend import BACKEND
from ..functions import ScalarFunction

Array = Any

_ARRAY_ONLY = [os.environ.get("GPUKERN_EXECUTOR", "").strip().lower() == "array"]
"""GPUKERN_EXECUTOR=array starts a process with the compiled executors off."""


def available_executors() -> tuple[str, ...]:
    """The executors of this machine and backend, the preferred first ("array" always)."""
    if BACKEND.name == "cupy":
        return ("cupy", "array")
    from . import cpu_fused

    return ("compiled", "array") if cpu_fused.available() else ("array",)


@contextlib.contextmanager
def use_executor(name: str) -> Iterator[None]:
    """Within the block, compute on executor ``name``: "array" (array expressions only) or
    the backend's compiled one (the default: compiled where it applies)."""
    if name not in available_executors():
        raise ValueError(f"executor {name!r} is not available here; choose from "
                         f"{', '.join(available_executors())}")
    old = _ARRAY_ONLY[0]
    _ARRAY_ONLY[0] = name == "array"
    try:
        yield
    finally:
        _ARRAY_ONLY[0] = old


def on_host() -> bool:
    """True on the NumPy backend: ensembles are worked network by network on the host
    (in cache), not batched on a device."""
    return BACKEND.name == "numpy"


def compiled_cpu() -> bool:
    """True when operations run on the compiled CPU kernels now."""
    if BACKEND.name != "numpy" or _ARRAY_ONLY[0]:
        return False
    from . import cpu_fused

    return cpu_fused.available()


_NUMBA_FAILED: list[BaseException] = []


def _use_numba() -> bool:
    return BACKEND.name == "cupy" and not _ARRAY_ONLY[0] and not _NUMBA_FAILED


def _numba(kernel: str, *args: Any) -> bool:
    """Run a Numba CUDA kernel; False where Numba CUDA cannot run here (no NVVM, say): then
    the caller computes the same with CuPy array expressions, after one warning."""
    from . import numba_cuda

    try:
        getattr(numba_cuda, kernel)(*args)
        return True
    except Exception as exc:  # a broken or missing CUDA toolchain for Numba
        _NUMBA_FAILED.append(exc)
        warnings.warn(f"gpukern: the Numba CUDA kernels cannot run here ({type(exc).__name__}: "
                      f"{exc}); using CuPy array expressions instead (install numba-cuda[cu12] "
                      "for the kernels)", RuntimeWarning, stacklevel=3)
        return False


def analytic_executor(sigma: ScalarFunction, sides: list[tuple[ScalarFunction, ScalarFunction]]
                      ) -> str:
    """The executor of an analytic recursion with activation ``sigma`` and kernels
    ``sides`` ((left, right) derivative pairs)."""
    if BACKEND.name == "cupy" and not _ARRAY_ONLY[0]:
        from . import cupy_fused

        if cupy_fused.supports(sigma, sides):
            return "cupy"
    if compiled_cpu():
        from . import cpu_fused

        if cpu_fused.supports(sigma, sides):
            return "compiled"
    return "array"


def reduced_pair(f: ScalarFunction, q: Array, slope: Array, s2: Array, feat_c: Array,
                 feat_s: Array, order: int, rule: tuple, table: Any, amp: float, rate: float,
                 geometry: tuple) -> Array | None:
    """The reduced pair's outer rule on the compiled CPU path (NaN for entries that need
    the array path), or None where it does not take it (no compiled kernels, or f without
    a value kind)."""
    desc = f.descriptor()
    if desc is None or not compiled_cpu():
        return None
    from ..gaussian import _legendre
    from . import cpu_fused

    xi, wi = _legendre(order)
    return cpu_fused.reduced_pair(desc, q, slope, s2, feat_c, feat_s, xi, wi, rule, table,
                                  amp, rate, geometry)


def variance_block(table: np.ndarray, q1: np.ndarray, q2: np.ndarray, c: np.ndarray,
                   det: np.ndarray) -> np.ndarray | None:
    """F(q1_i, q2_j, c_ij, det_ij) from a table over variances (host arrays) on the
    compiled CPU path, or None without compiled kernels."""
    if not compiled_cpu():
        return None
    from . import cpu_fused

    return cpu_fused.variance_block(table, q1, q2, c, det)


def hermite_coefficients(w: np.ndarray, h: np.ndarray) -> np.ndarray:
    """w (P, K) @ h (K, T) with each row computed on its own (host arrays): the compiled
    CPU loop, else one matrix-vector product per row, so that a row's numbers never depend
    on the other rows (a matrix product's blocking could)."""
    if compiled_cpu():
        from . import cpu_fused

        return cpu_fused.hermite_coefficients(w, h)
    return np.stack([row @ h for row in w]) if len(w) else np.zeros((0, h.shape[1]))


def mehler_series(a: np.ndarray, b: np.ndarray, ia: np.ndarray, ib: np.ndarray,
                  terms: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """sum_{n <= terms_e} a[ia_e, n] b[ib_e, n] rho_e^n per entry e (Horner, from the
    highest term down; host arrays): the compiled CPU loop, else NumPy with the same
    order of operations (no fused multiply-adds in the compiled library): the same
    numbers."""
    if compiled_cpu():
        from . import cpu_fused

        return cpu_fused.mehler_series(a, b, ia, ib, terms, rho)
    acc = np.zeros(rho.shape)
    for n in range(int(terms.max(initial=-1)), -1, -1):
        live = terms >= n
        acc = np.where(live, acc * rho + a[ia, n] * b[ib, n], acc)
    return acc


def cheb2d(coef: Array, cell: Array, x: Array, y: Array) -> Array | None:
    """sum_ab coef[cell, a, b] T_a(x) T_b(y) per point on the compiled CPU path
    (cuda/gpukern/tables.cuh), or None: the caller evaluates it with array expressions."""
    if not compiled_cpu():
        return None
    from . import cpu_fused

    return cpu_fused.cheb2d(coef, cell, x, y)


CPU_MIN_SIZE = 1 << 15
"""Smaller arrays (SGL's per-network steps) stay NumPy expressions: a ctypes call costs
more than it saves there."""


def _use_cpu(fn: ScalarFunction, *arrays: Array) -> bool:
    if arrays[-1].size < CPU_MIN_SIZE or not compiled_cpu():
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
    desc = fn.descriptor()
    if _use_numba() and desc is not None:
        xp = BACKEND.xp
        pre = xp.ascontiguousarray(pre)
        out = xp.empty_like(pre)
        if _numba("scaled_derivative", pre.reshape(-1), xp.ascontiguousarray(h).reshape(-1),
                  out.reshape(-1), scale, xp.asarray(np.asarray(desc, dtype=np.float64))):
            return out
    return pre * scale * fn(h).astype(h.dtype, copy=False)


def hadamard_accumulate(out: Array | None, dd: Array, zz: Array, c: float, b: float) -> Array:
    """out + dd * (c * zz + b) (in place where out exists): one layer of the empirical kernel."""
    if dd.size >= CPU_MIN_SIZE and compiled_cpu():
        from . import cpu_fused

        if cpu_fused.can_hadamard(out, dd, zz):
            return cpu_fused.hadamard(out, dd, zz, c, b)
    if out is None:
        return dd * (c * zz + b)
    xp = BACKEND.xp  # zz of the inputs' layer is (N1, N2), shared by every network
    # in place through a flat view: only where reshape(-1) is a view, not a copy
    if _use_numba() and out.flags.c_contiguous and _numba(
            "hadamard_accumulate", out.reshape(-1), xp.ascontiguousarray(dd).reshape(-1),
            xp.ascontiguousarray(zz).reshape(-1), c, b):
        return out
    out += dd * (c * zz + b)
    return out


def axpy(w: Array, g: Array, alpha: float) -> None:
    """w += alpha * g in place (the SGL update of one layer)."""
    if _use_numba() and w.flags.c_contiguous and _numba(
            "axpy", w.reshape(-1), BACKEND.xp.ascontiguousarray(g).reshape(-1), alpha):
        return
    w += alpha * g


def gemm_update(w: Array, z: Array, delta: Array, alpha: float) -> None:
    """In place, for every network e: W_e += alpha * delta_e^T z_e (z may be shared, 2-D).

    On NumPy one BLAS GEMM per network with beta = 1 writes straight into W (W_e^T is
    Fortran-ordered, so nothing is copied): the gradient is never stored. Elsewhere a
    batched matmul and an in-place add.
    """
    if BACKEND.name == "numpy" and w.dtype in (np.float32, np.float64) and w.flags.c_contiguous:
        from scipy.linalg import blas

        gemm = blas.dgemm if w.dtype == np.float64 else blas.sgemm
        for e in range(w.shape[0]):
            ze = z if z.ndim == 2 else z[e]  # layer 1 sees the shared inputs x (N, n0)
            gemm(alpha, ze, delta[e], beta=1.0, c=w[e].T, trans_a=True, overwrite_c=True)
        return
    axpy(w, delta.swapaxes(-1, -2) @ z, alpha)


def compiled_sgl_step(arch, params, x: Array, y: Array, lr: float,
                      derivative: ScalarFunction) -> Array | None:
    """One SGL step of every network in the compiled CPU kernels (outputs f before it),
    or None where they do not take it (then the caller steps with array code)."""
    if not compiled_cpu():
        return None
    from .._threads import single_threaded_blas
    from . import cpu_fused

    if not cpu_fused.can_step(arch.sigma, derivative, params.weights, params.biases, x, y):
        return None
    with single_threaded_blas():
        scales = [arch.weight_scale(w.shape[2]) for w in params.weights]
        return cpu_fused.sgl_step(arch.sigma, derivative, scales, arch.bias_scale,
                                  params.weights, params.biases, x, y, lr)


DETERMINISTIC_GRAM_MAX_FEATURES = 64


def input_gram(xa: Array, xb: Array) -> Array:
    """<x, x'>/n0 for a tile. For n0 <= 64 on NumPy it is summed feature by feature in a
    fixed order, so an entry is bitwise the same in any tile shape (BLAS picks different
    kernels, and so different rounding, for different tile shapes); above that, BLAS."""
    n0 = xa.shape[1]
    if BACKEND.name == "numpy" and n0 <= DETERMINISTIC_GRAM_MAX_FEATURES:
        g = xa[:, 0, None] * xb[None, :, 0]
        for k in range(1, n0):
            g += xa[:, k, None] * xb[None, :, k]
        return g * (1.0 / n0)
    return (xa @ xb.T) * (1.0 / n0)


def expm(a: Array) -> Array:
    """The matrix exponential (SciPy's, or CuPy's on the device)."""
    if BACKEND.name == "cupy":
        import cupyx.scipy.linalg

        return cupyx.scipy.linalg.expm(a)
    import scipy.linalg

    return scipy.linalg.expm(a)
