"""Numba CUDA kernels (numba.cuda.jit) for the elementwise parts of the finite-width hot paths.

They take any array with ``__cuda_array_interface__`` (CuPy arrays), and run in the
Numba CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) on machines without a GPU, which is
how CI tests them. Each kernel is a flat 1-D grid with an explicit bounds check.

* ``scaled_derivative``:  out = pre * scale * d(h)   (surrogate backprop:
  delta_l = (delta_{l+1} W) . d(h_l) sw/sqrt(n))
* ``hadamard_accumulate``: k += dd * (c * zz + b)    (K += (D D^T) . (sw^2/n Z Z^T + sb^2);
  zz may be shared by the ensemble)
* ``axpy``:               w += alpha * g             (the SGL parameter update)

``d`` is a function descriptor (cuda/gpukern/functions.cuh): (kind, a, b, c).
"""

from __future__ import annotations

import math

from numba import cuda

THREADS = 256


@cuda.jit(device=True)
def _sign(v):
    return 1.0 if v > 0.0 else (-1.0 if v < 0.0 else 0.0)


@cuda.jit(device=True)
def value(kind, a, b, c, v):
    """The scalar function of descriptor (kind, a, b, c) at v (functions.cuh, same cases)."""
    if kind == 0:  # offset + amp erf(v / sqrt t); t = 0: sign
        return c + b * (_sign(v) if a == 0.0 else math.erf(v / math.sqrt(a)))
    if kind == 1:  # weight / sqrt(pi t) exp(-v^2 / t); a delta is 0 almost everywhere
        return 0.0 if a == 0.0 else (b / math.sqrt(math.pi * a)) * math.exp(-v * v / a)
    if kind == 2:
        return b * 0.5 * (1.0 + _sign(v))
    if kind == 3:
        return v if v > 0.0 else 0.0
    if kind == 4:
        return v
    if kind == 5:
        return b
    if kind == 6:
        e = math.exp(-a * abs(v))
        return (b * 2.0 * a) * e / ((1.0 + e) * (1.0 + e))
    if kind == 7:
        d = 1.0 + a * abs(v)
        return (b * a) / (d * d)
    if kind == 8:
        x = math.pi * a / 2.0 * v
        return (b * a) / (1.0 + x * x)
    if kind == 9:
        return b / a if abs(v) < a else 0.0
    if kind == 10:
        r = 1.0 - abs(v) / a
        return (b * 2.0 / a) * (r if r > 0.0 else 0.0)
    return math.nan


@cuda.jit
def _scaled_derivative(pre, h, out, scale, kind, a, b, c):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = pre[i] * scale * value(kind, a, b, c, h[i])


@cuda.jit
def _hadamard_accumulate(k, dd, zz, c, b):
    i = cuda.grid(1)
    if i < k.size:
        k[i] += dd[i] * (c * zz[i % zz.size] + b)


@cuda.jit
def _axpy(w, g, alpha):
    i = cuda.grid(1)
    if i < w.size:
        w[i] += alpha * g[i]


def _blocks(n: int) -> int:
    return max(1, (n + THREADS - 1) // THREADS)


def scaled_derivative(pre, h, out, scale: float, descriptor) -> None:
    """out = pre * scale * d(h), elementwise over flat contiguous arrays."""
    kind, a, b, c = descriptor
    _scaled_derivative[_blocks(out.size), THREADS](pre, h, out, float(scale), int(kind),
                                                   float(a), float(b), float(c))


def hadamard_accumulate(k, dd, zz, c: float, b: float) -> None:
    """k += dd * (c * zz + b), elementwise over flat contiguous arrays; zz may be shorter
    (shared by all networks: its size divides k's) and is then repeated."""
    _hadamard_accumulate[_blocks(k.size), THREADS](k, dd, zz, float(c), float(b))


def axpy(w, g, alpha: float) -> None:
    """w += alpha * g, elementwise over flat contiguous arrays."""
    _axpy[_blocks(w.size), THREADS](w, g, float(alpha))
