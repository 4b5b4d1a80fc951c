"""Numba CUDA kernels (numba.cuda.jit) for the elementwise parts of the finite-width hot paths.

They take any array with ``__cuda_array_interface__`` (CuPy arrays), and run in the
Numba CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) on machines without a GPU, which is
how CI tests them. Each kernel is a flat 1-D grid with an explicit bounds check.

* ``scaled_derivative``:  out = pre * scale * d(h)   (surrogate backprop:
  delta_l = (delta_{l+1} W) . d(h_l) sw/sqrt(n))
* ``hadamard_accumulate``: k += dd * (c * zz + b)    (K += (D D^T) . (sw^2/n Z Z^T + sb^2);
  zz may be shared by the ensemble)
* ``axpy``:               w += alpha * g             (the SGL parameter update)

``d`` is a function descriptor (kind, a, b, c) (:mod:`gpukern.registry`).
"""

from __future__ import annotations

import functools
import math

from numba import cuda

from ..functions import classes_by_kind

THREADS = 256


@functools.cache
def _kernels() -> dict:
    """The kernels, built once: ``value(kind, a, b, c, v)`` dispatches on the kind to each
    registry class's ``scalar`` formula (compiled as a device function), so a new kind
    needs no edit here."""
    ns: dict = {"cuda": cuda, "math": math}
    cases = []
    for kind, cls in classes_by_kind().items():
        ns[f"value_{int(kind)}"] = cuda.jit(device=True)(cls.scalar)
        cases.append(f"    if kind == {int(kind)}:\n        return value_{int(kind)}(v, a, b, c)")
    source = "\n".join(["def value(kind, a, b, c, v):", *cases, "    return math.nan"])
    exec(source, ns)  # noqa: S102  (source built above from the registry's kind numbers)
    value = cuda.jit(device=True)(ns["value"])

    @cuda.jit
    def scaled_derivative(pre, h, out, scale, kind, a, b, c):
        i = cuda.grid(1)
        if i < out.size:
            out[i] = pre[i] * scale * value(kind, a, b, c, h[i])

    @cuda.jit
    def hadamard_accumulate(k, dd, zz, c, b):
        i = cuda.grid(1)
        if i < k.size:
            k[i] += dd[i] * (c * zz[i % zz.size] + b)

    @cuda.jit
    def axpy(w, g, alpha):
        i = cuda.grid(1)
        if i < w.size:
            w[i] += alpha * g[i]

    return {"scaled_derivative": scaled_derivative, "hadamard_accumulate": hadamard_accumulate,
            "axpy": axpy}


def _blocks(n: int) -> int:
    return max(1, (n + THREADS - 1) // THREADS)


def scaled_derivative(pre, h, out, scale: float, descriptor) -> None:
    """out = pre * scale * d(h), elementwise over flat contiguous arrays."""
    kind, a, b, c = descriptor
    _kernels()["scaled_derivative"][_blocks(out.size), THREADS](
        pre, h, out, float(scale), int(kind), float(a), float(b), float(c))


def hadamard_accumulate(k, dd, zz, c: float, b: float) -> None:
    """k += dd * (c * zz + b), elementwise over flat contiguous arrays; zz may be shorter
    (shared by all networks: its size divides k's) and is then repeated."""
    _kernels()["hadamard_accumulate"][_blocks(k.size), THREADS](k, dd, zz, float(c), float(b))


def axpy(w, g, alpha: float) -> None:
    """w += alpha * g, elementwise over flat contiguous arrays."""
    _kernels()["axpy"][_blocks(w.size), THREADS](w, g, float(alpha))
