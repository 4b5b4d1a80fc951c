"""Numba CUDA kernels (numba.cuda.jit) for the elementwise parts of the finite-width hot paths.

They take CuPy arrays (through ``__cuda_array_interface__``, without synchronizing on
each argument) and launch on CuPy's current device and stream, so they are ordered with
CuPy's own work. In the Numba CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``), which is how CI
tests them, device memory is host memory: arrays are passed as NumPy views of their
buffers. Each kernel is a flat 1-D grid with an explicit bounds check.

* ``scaled_derivative``:  out = pre * scale * d(h)   (surrogate backprop:
  delta_l = (delta_{l+1} W) . d(h_l) sw/sqrt(n))
* ``hadamard_accumulate``: k += dd * (c * zz + b)    (K += (D D^T) . (sw^2/n Z Z^T + sb^2);
  zz may be shared by the ensemble)
* ``axpy``:               w += alpha * g             (the SGL parameter update)

``d`` is a function descriptor {n, then kind, a, b, c, shift per term}
(:mod:`gpukern.registry`), a device array: d(h) = sum_k f_k(h - shift_k).
"""

from __future__ import annotations

import ctypes
import functools
import math
from typing import Any

import numpy as np
from numba import config, cuda

from ..functions import classes_by_kind
from ..registry import TERM_SIZE

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

    @cuda.jit(device=True)
    def value_terms(d, v):
        acc = 0.0
        for t in range(int(d[0])):
            k = 1 + TERM_SIZE * t
            acc += value(int(d[k]), d[k + 1], d[k + 2], d[k + 3], v - d[k + 4])
        return acc

    @cuda.jit
    def scaled_derivative(pre, h, out, scale, d):
        i = cuda.grid(1)
        if i < out.size:
            out[i] = pre[i] * scale * value_terms(d, h[i])

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


def _arg(a: Any) -> Any:
    """A kernel's view of an array: Numba's view of a CuPy array without synchronizing on
    its stream (the launch is ordered on that stream), or, in the simulator, a NumPy view
    of the buffer the interface points at (NumPy arrays pass as they are)."""
    if isinstance(a, np.ndarray):
        return a
    iface = a.__cuda_array_interface__
    if not config.ENABLE_CUDASIM:
        return cuda.as_cuda_array(a, sync=False)
    if iface.get("strides") is not None:
        raise ValueError("Numba kernels take C-contiguous arrays")
    dt = np.dtype(iface["typestr"])
    n = int(np.prod(iface["shape"])) * dt.itemsize
    buf = (ctypes.c_char * n).from_address(iface["data"][0])
    return np.frombuffer(buf, dtype=dt).reshape(iface["shape"])


def _launch(name: str, n: int, *args: Any) -> None:
    """Kernel ``name`` over n entries, on CuPy's current device and stream."""
    if n == 0:
        return
    kernel = _kernels()[name]
    if config.ENABLE_CUDASIM:
        kernel[_blocks(n), THREADS](*(_arg(a) if hasattr(a, "shape") else a for a in args))
        return
    import cupy

    with cuda.gpus[cupy.cuda.Device().id]:  # the arrays' views and the launch in its context
        views = tuple(_arg(a) if hasattr(a, "shape") else a for a in args)
        stream = cuda.external_stream(cupy.cuda.get_current_stream().ptr)
        kernel[_blocks(n), THREADS, stream](*views)


def scaled_derivative(pre, h, out, scale: float, descriptor) -> None:
    """out = pre * scale * d(h), elementwise over flat contiguous arrays; ``descriptor``
    a float64 array on the device (or NumPy in the simulator)."""
    _launch("scaled_derivative", out.size, pre, h, out, float(scale), descriptor)


def hadamard_accumulate(k, dd, zz, c: float, b: float) -> None:
    """k += dd * (c * zz + b), elementwise over flat contiguous arrays; zz may be shorter
    (shared by all networks: its size divides k's) and is then repeated."""
    _launch("hadamard_accumulate", k.size, k, dd, zz, float(c), float(b))


def axpy(w, g, alpha: float) -> None:
    """w += alpha * g, elementwise over flat contiguous arrays."""
    _launch("axpy", w.size, w, g, float(alpha))
