"""The fused analytic recursion on the GPU: ``cuda/analytic.cu`` as a CuPy RawModule.

One thread per output entry walks all layers in registers (``recursion.cuh``); the tile's
Gram matrix comes from cuBLAS, the per-layer diagonals are computed once per call. The
module is compiled once per device (float and double instantiations by name) and
memoized. Built with ``--fmad=false`` so that it rounds like the NumPy backend; the
float64 instantiation is the one used (the recursion runs in float64, then is cast).

Only closed-form pairs have a device version (``supports``); pairs that need quadrature
(sigmoid, fast_sigmoid or custom functions without a Gaussian-bump partner, the 2-D
cases) run through the same array code as on NumPy, with CuPy arrays: correct, slower.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from ..functions import ScalarFunction
from ..gaussian import has_closed_pair
from ..registry import MAX_PAIRS

Array = Any
THREADS = 256


def cuda_dir() -> Path:
    """The folder holding ``analytic.cu`` and ``gpukern/*.cuh`` (installed or in a checkout)."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "_cuda", here.parent / "cuda"):
        if (candidate / "analytic.cu").exists():
            return candidate
    raise FileNotFoundError("gpukern's CUDA sources (analytic.cu) were not found")


def supports(sigma: ScalarFunction, pairs: list[tuple[ScalarFunction, ScalarFunction]]) -> bool:
    """True when the fused kernel can compute these kernels (all closed forms, at most
    MAX_PAIRS pairs)."""
    fns = [sigma] + [f for p in pairs for f in p]
    return (len(pairs) <= MAX_PAIRS and all(f.descriptor() is not None for f in fns)
            and has_closed_pair(sigma, sigma) and all(has_closed_pair(a, b) for a, b in pairs))


def descriptors(sigma: ScalarFunction, pairs) -> np.ndarray:
    """sigma, then (left, right) per pair: each function's descriptor ({n, then kind, a,
    b, c, shift per term}), one after the other."""
    rows = [v for f in [sigma] + [f for p in pairs for f in p] for v in f.descriptor()]
    return np.asarray(rows, dtype=np.float64)


KERNEL = "fused_recursion<double>"


def options(d: Path | None = None) -> tuple[str, ...]:
    """The NVRTC options of the RawModule (CuPy adds its own include paths and arch)."""
    return ("-std=c++17", f"-I{d or cuda_dir()}", "--fmad=false")


def source() -> str:
    """analytic.cu with a digest of the headers it includes: CuPy's kernel cache keys on the
    source and options only, so a header change must change the source it sees."""
    d = cuda_dir()
    digest = hashlib.sha256(b"".join(p.read_bytes()
                                     for p in sorted((d / "gpukern").glob("*.cuh")))).hexdigest()
    return (d / "analytic.cu").read_text() + f"\n// gpukern headers sha256 {digest}\n"


@functools.cache
def _module(device_id: int):
    import cupy

    with cupy.cuda.Device(device_id):
        return cupy.RawModule(code=source(), options=options(), name_expressions=(KERNEL,))


def new_status() -> Array:
    """A device flag the kernel sets where a pair has no closed form (checked once)."""
    import cupy

    return cupy.zeros(1, dtype=cupy.int32)


def check_status(status: Array) -> None:
    if int(status.get()[0]):
        raise RuntimeError("fused_recursion met a pair without a closed form (supports() said yes)")


def tile(depth: int, sw2: float, sb2: float, own, sigma: ScalarFunction, pairs, xa: Array,
         xb: Array, gram: Array, q1: Array, q2: Array, ida: Array, idb: Array,
         status: Array | None = None) -> tuple[Array, list[Array]]:
    """NNGP and kernels of one tile on the GPU. ``own``: each layer's own kernel term
    (alpha_l, beta_l), l = 0..depth. q1 (depth, n1), q2 (depth, n2). Inputs are
    made float64 (int64 ids) and contiguous. With ``status`` (:func:`new_status`) the
    caller checks it once for many tiles; without, it is checked here (a synchronization)."""
    import cupy

    n1, n2 = gram.shape
    nngp = cupy.empty((n1, n2), dtype=cupy.float64)
    kout = cupy.empty((max(1, len(pairs)), n1, n2), dtype=cupy.float64)
    if n1 * n2 == 0:
        return nngp, [kout[p] for p in range(len(pairs))]
    kern = _module(cupy.cuda.Device().id).get_function(KERNEL)
    check_here = status is None
    status = new_status() if check_here else status
    f64 = functools.partial(cupy.ascontiguousarray, dtype=cupy.float64)
    i64 = functools.partial(cupy.ascontiguousarray, dtype=cupy.int64)
    blocks = (n1 * n2 + THREADS - 1) // THREADS
    args = (np.int32(n1), np.int32(n2), np.int32(xa.shape[1]), f64(gram), f64(q1), f64(q2),
            i64(ida), i64(idb), f64(xa), f64(xb), np.int32(depth), np.float64(sw2),
            np.float64(sb2), cupy.asarray(np.asarray(own, dtype=np.float64).reshape(-1)),
            cupy.asarray(descriptors(sigma, pairs)), np.int32(len(pairs)),
            nngp, kout, status)
    kern((blocks,), (THREADS,), args)
    if check_here:
        check_status(status)
    return nngp, [kout[p] for p in range(len(pairs))]
