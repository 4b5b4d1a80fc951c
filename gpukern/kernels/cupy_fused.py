"""The fused analytic recursion on the GPU: ``cuda/analytic.cu`` as a CuPy RawModule.

One thread per output entry walks all layers in registers (``recursion.cuh``); the tile's
Gram matrix comes from cuBLAS, the per-layer diagonals are computed once per call. The
module is compiled once per device (float and double instantiations by name) and
memoized. Built with ``--fmad=false`` so that it rounds like the NumPy backend; the
float64 instantiation is the one used (the recursion runs in float64, then is cast).

Closed-form pairs have a device version, and pairs of analytic functions (sigmoid, atan,
custom functions without kinks; a custom activation's own pair included) are Mehler
series on the device from per-point coefficient rows computed on the host
(:func:`series_rows`, :mod:`gpukern.hermite`). Any pair without a closed form is read
from its table in the correlation (:mod:`gpukern.correlation`) at the layers where the
tile's variances are each one value. A tile with a (pair, layer) that none of these
serves (a point whose series is not served; fast_sigmoid, or a quadrature function
facing a Gaussian bump, at a layer of many variances) runs through the same array code
as on NumPy, with CuPy arrays: correct, slower.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from .. import hermite
from ..functions import ScalarFunction
from ..gaussian import DEFAULT_ORDER, has_closed_pair
from ..registry import MAX_PAIRS

Array = Any
THREADS = 256
SERIES_BUDGET = 1 << 25
"""Doubles of series coefficient rows one tile may take on the device (256 MB); beyond it
the tile runs on the array path."""


def cuda_dir() -> Path:
    """The folder holding ``analytic.cu`` and ``gpukern/*.cuh`` (installed or in a checkout)."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "_cuda", here.parent / "cuda"):
        if (candidate / "analytic.cu").exists():
            return candidate
    raise FileNotFoundError("gpukern's CUDA sources (analytic.cu) were not found")


def supports(sigma: ScalarFunction, pairs: list[tuple[ScalarFunction, ScalarFunction]]) -> bool:
    """True when the fused kernel may compute these kernels (at most MAX_PAIRS pairs):
    closed forms everywhere; Mehler series and correlation tables where a tile's points
    allow (:func:`tile` returns None for a tile they do not serve)."""
    return len(pairs) <= MAX_PAIRS


def _closed(f: ScalarFunction, g: ScalarFunction) -> bool:
    return f.descriptor() is not None and g.descriptor() is not None and has_closed_pair(f, g)


def series_pair(f: ScalarFunction, g: ScalarFunction) -> bool:
    """The fused kernel sums E[f(u) g(v)] by Mehler's series: no closed form, both sides
    analytic (:func:`gpukern.hermite.serves`)."""
    return not _closed(f, g) and hermite.serves(f) and hermite.serves(g)


def _without_closed_form(sigma: ScalarFunction, pairs) -> list[bool]:
    """Per pair, then sigma's own pair: no closed form on the device (a series or a
    table in the correlation, else the array path)."""
    return [not _closed(a, b) for a, b in pairs] + [not _closed(sigma, sigma)]


def descriptors(sigma: ScalarFunction, pairs) -> np.ndarray:
    """sigma, then (left, right) per pair: each function's descriptor ({n, then kind, a,
    b, c, shift per term}), one after the other; a side of a pair without a closed form
    (sigma's too: summed by its series or read from a table) as a descriptor without
    terms."""
    on = _without_closed_form(sigma, pairs)
    rows = [0.0] if on[-1] else list(sigma.descriptor())
    for (a, b), other in zip(pairs, on):
        rows += [0.0, 0.0] if other else [*a.descriptor(), *b.descriptor()]
    return np.asarray(rows, dtype=np.float64)


def routes(sigma: ScalarFunction, pairs, q1: np.ndarray, q2: np.ndarray, order: int
           ) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, np.ndarray]] | None:
    """The SeriesTile arrays (:func:`series_rows`) and the CorrelationTile's (off, data)
    of a tile (host), or None where a (pair, layer) without a closed form has neither a
    table (its variances are not each one value) nor a served series."""
    from ..gaussian import correlation_layers

    sides = list(pairs) + [(sigma, sigma)]
    wanted = _without_closed_form(sigma, pairs)
    found = correlation_layers(sides, wanted, q1, q2, order)
    off, data = found if found is not None else (
        np.full((len(sides), q1.shape[0]), -1, np.int64), np.zeros(1))
    tabled = off >= 0
    if any(wanted[p] and not tabled[p].all() and not series_pair(*sides[p])
           for p in range(len(sides))):
        return None
    series = series_rows(sigma, pairs, q1, q2, skip=tabled)
    return None if series is None else (series, (off, data))


def series_rows(sigma: ScalarFunction, pairs, q1: np.ndarray, q2: np.ndarray,
                skip: np.ndarray | None = None) -> tuple[np.ndarray, ...] | None:
    """The SeriesTile arrays of a tile (host): on (npairs + 1: sigma's own pair last), the
    coefficient rows (per pair and layer, x1's term-major (terms, n1), then x2's), their
    offsets base1, base2 (npairs + 1, depth), the series lengths len1 (npairs + 1, depth,
    n1), len2. q1 (depth, n1), q2 (depth, n2): the layer diagonals. ``skip`` (npairs + 1,
    depth): (pair, layer)s read from a correlation table, without rows. None where a
    point is not served or the rows exceed SERIES_BUDGET."""
    all_pairs = list(pairs) + [(sigma, sigma)]
    on = np.array([series_pair(f, g) for f, g in all_pairs], dtype=np.int32)
    if not on.any():  # closed forms only: nothing the kernel reads
        return on, np.zeros(1), *(np.zeros(1, np.int64) for _ in range(4))
    depth, n1, n2 = q1.shape[0], q1.shape[1], q2.shape[1]
    shape = (len(all_pairs), depth)
    base1, base2 = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    len1 = np.full(shape + (n1,), -1, np.int64)
    len2 = np.full(shape + (n2,), -1, np.int64)
    chunks: list[np.ndarray] = []
    used = 0
    for p, (f, g) in enumerate(all_pairs):
        if not on[p]:
            continue
        for layer in range(depth):
            if skip is not None and skip[p, layer]:
                continue
            pts = hermite.layer_points(f, g, q1[layer], q2[layer])
            if pts is None:
                return None
            terms = pts.terms
            if used + terms * (n1 + n2) > SERIES_BUDGET:
                return None
            for fn, u, inv, lengths, base, ln, n in (
                    (f, pts.u1, pts.i1, pts.n_f, base1, len1, n1),
                    (g, pts.u2, pts.i2, pts.n_g, base2, len2, n2)):
                rows, _ = hermite.coefficients(fn, u, np.full(u.size, terms - 1))
                chunks.append(np.ascontiguousarray(rows[inv].T).reshape(-1))
                base[p, layer], ln[p, layer] = used, lengths[inv]
                used += terms * n
    coef = np.concatenate(chunks) if chunks else np.zeros(1)
    return on, coef, base1, base2, len1, len2


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
         status: Array | None = None, order: int = DEFAULT_ORDER
         ) -> tuple[Array, list[Array]] | None:
    """NNGP and kernels of one tile on the GPU. ``own``: each layer's own kernel term
    (alpha_l, beta_l), l = 0..depth. q1 (depth, n1), q2 (depth, n2). Inputs are
    made float64 (int64 ids) and contiguous. With ``status`` (:func:`new_status`) the
    caller checks it once for many tiles; without, it is checked here (a synchronization).
    None where a pair without a closed form has a layer that neither a table nor a served
    series covers (or rows over budget): the caller computes it on the array path."""
    import cupy

    n1, n2 = gram.shape
    found = routes(sigma, pairs, cupy.asnumpy(q1), cupy.asnumpy(q2), order)
    if found is None:
        return None
    series, corr = found
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
            *(cupy.asarray(a) for a in series), *(cupy.asarray(a) for a in corr), nngp, kout,
            status)
    kern((blocks,), (THREADS,), args)
    if check_here:
        check_status(status)
    return nngp, [kout[p] for p in range(len(pairs))]
