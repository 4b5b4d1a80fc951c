"""The compiled CPU kernels: ``cpu_kernels.cpp`` beside this module (fused analytic
recursion, elementwise f(h), Hadamard accumulation, the whole SGL step) built for the host.

The same per-entry math as the GPU kernel (the ``cuda/gpukern/*.cuh`` headers), compiled
once per machine with the host C++ compiler (OpenMP over rows, loops vectorised with
glibc's libmvec where it links) into a cache folder and loaded with ctypes. Memoized: the
first call compiles (a few seconds), later calls and later processes load the cached
library (its name is a hash of the sources, flags and compiler).

Without a C++ compiler, or with ``GPUKERN_CPU_FUSED=0``, ``library()`` is None and the
NumPy array path computes the same kernels. Like the GPU kernel it covers closed-form
pairs only (:func:`supports`).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import hermite
from ..functions import Constant, GaussianBump, ScalarFunction
from ..gaussian import DEFAULT_ORDER, has_closed_pair, has_closed_shifted_pair
from ..registry import MAX_PAIRS, TABLE_PANEL, Kind, closed_avg
from ..tables import table_panels
from .cupy_fused import cuda_dir

Array = Any

# -fno-math-errno, -fno-trapping-math: no errno or FP traps, so selects and vector calls
# may be used; they change no value (unlike -ffast-math). -ffp-contract=off: no FMA, so
# the loops round like the NumPy code.
_BASE_FLAGS = ("-O3", "-std=c++17", "-march=native", "-mprefer-vector-width=512", "-fopenmp",
               "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off", "-shared", "-fPIC")
_PORTABLE_FLAGS = tuple(f for f in _BASE_FLAGS if f not in ("-march=native",
                                                             "-mprefer-vector-width=512"))
TABLE_DECADES = 16
"""Tables span s^2 from max(q) down to 1e-16 max(q); entries below (near-coinciding inputs)
come back NaN and are recomputed on the NumPy path."""
_LIBMVEC = ("-DGK_LIBMVEC",), ("-lmvec",)  # defines, libraries
CPU_SOURCE = Path(__file__).resolve().parent / "cpu_kernels.cpp"
_D = ctypes.POINTER(ctypes.c_double)
_F = ctypes.POINTER(ctypes.c_float)
_I64 = ctypes.POINTER(ctypes.c_int64)


def cache_dir() -> Path:
    """Where built libraries are kept: $GPUKERN_CACHE_DIR, else ~/.cache/gpukern."""
    env = os.environ.get("GPUKERN_CACHE_DIR")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base if env else base / "gpukern"


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")


def _build(cxx: str, flags: tuple[str, ...], libs: tuple[str, ...] = ()) -> Path | None:
    """Compile (or find in the cache) the library for these flags; None if it fails."""
    src = cuda_dir()
    sources = [CPU_SOURCE] + sorted((src / "gpukern").glob("*.cuh"))
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256("\0".join([version, *flags, *libs] + [p.read_text() for p in sources])
                         .encode()).hexdigest()[:16]
    target = cache_dir() / f"libgk_cpu_{key}.so"
    if target.exists():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            out = Path(tmp) / target.name
            cmd = [cxx, *flags, f"-I{src}", str(CPU_SOURCE), "-o", str(out), *libs]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                return None
            os.replace(out, target)  # atomic: a concurrent process sees all or nothing
    except OSError:  # an unwritable cache folder: the NumPy path
        return None
    return target


@functools.cache
def library() -> ctypes.CDLL | None:
    """The loaded library, or None (no compiler, build failed, or GPUKERN_CPU_FUSED=0)."""
    if os.environ.get("GPUKERN_CPU_FUSED", "1") == "0":
        return None
    cxx = _compiler()
    if cxx is None:
        return None
    # OpenMP threads that spin after a loop compete with BLAS's threads for the cores
    # (a GEMM right after a loop ran ~2x slower): they sleep instead, unless told otherwise
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    path = (_build(cxx, _BASE_FLAGS + _LIBMVEC[0], _LIBMVEC[1])  # x86-64, glibc >= 2.35
            or _build(cxx, _BASE_FLAGS)  # no libmvec: scalar libm in the loops
            or _build(cxx, _PORTABLE_FLAGS))  # another architecture
    if path is None:
        warnings.warn(f"gpukern: the CPU kernels did not build in {cache_dir()} with {cxx}; "
                      "using the NumPy path (GPUKERN_CPU_FUSED=0 silences this)",
                      RuntimeWarning, stacklevel=2)
        return None
    lib = ctypes.CDLL(str(path))
    head = [ctypes.c_int, ctypes.c_int, ctypes.c_int, _D, _D, _D, _D, _I64, _I64, ctypes.c_int,
            ctypes.c_double, ctypes.c_double, _D, _D, _D, _I64, ctypes.c_int, ctypes.c_int]
    # ..., depth, sw2, sb2, own, fns, tables, offsets, npairs, upper
    # ..., series_on, series_coef, series_off1, series_len1, series_off2, series_width2,
    # series_len2, series_order, series_uniform2
    series = [ctypes.POINTER(ctypes.c_int), _D, _I64, _I64, _I64, _I64, _I64, _I64, _I64]
    corr = [_I64, _D]  # tables (in the correlation, then over variances): offsets, data
    lib.gk_cpu_recursion_f64.argtypes = head + series + corr + corr + [_D, _D]
    lib.gk_cpu_recursion_f32.argtypes = head + series + corr + corr + [_F, _F]
    lib.gk_cpu_recursion_f64.restype = lib.gk_cpu_recursion_f32.restype = ctypes.c_int
    for suffix, ptr in (("f64", _D), ("f32", _F)):
        fn = getattr(lib, f"gk_cpu_map_{suffix}")
        fn.argtypes = [_D, ctypes.c_int64, ptr, ptr, ctypes.c_double, ptr]
        fn.restype = ctypes.c_int
    for suffix, ptr in (("f64", _D), ("f32", _F)):
        fn = getattr(lib, f"gk_cpu_sgl_step_{suffix}")
        fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int),
                       ctypes.c_void_p, ctypes.c_void_p, ptr, ptr, ctypes.c_double,
                       _D, ctypes.c_double, _D, _D, ctypes.c_void_p, ptr]
        fn.restype = ctypes.c_int
    for suffix, ptr in (("f64", _D), ("f32", _F)):
        fn = getattr(lib, f"gk_cpu_hadamard_{suffix}")
        fn.argtypes = [ctypes.c_int64, ctypes.c_int64, ptr, ptr, ptr, ctypes.c_double,
                       ctypes.c_double, ctypes.c_int]
        fn.restype = None
    lib.gk_cpu_cheb2d.argtypes = [_D, ctypes.c_int, _I64, _D, _D, ctypes.c_int64, _D]
    lib.gk_cpu_cheb2d.restype = None
    c_int, c_dbl = ctypes.c_int, ctypes.c_double
    lib.gk_cpu_reduced_pair.argtypes = (
        [ctypes.c_int64, _D, _D, _D, _D, c_int, _D, _D, _D, _D, c_int, c_dbl, c_int, c_int,
         c_dbl, _D, ctypes.POINTER(ctypes.c_ubyte)] + [c_int] * 5 + [c_dbl] * 6 + [_D])
    lib.gk_cpu_reduced_pair.restype = ctypes.c_int
    lib.gk_cpu_mehler_series.argtypes = [ctypes.c_int64, _D, _D, ctypes.c_int64, _I64, _I64,
                                         _I64, _D, _D]
    lib.gk_cpu_mehler_series.restype = None
    lib.gk_cpu_hermite_coefficients.argtypes = [ctypes.c_int64] * 3 + [_D, _D, _D]
    lib.gk_cpu_hermite_coefficients.restype = None
    lib.gk_cpu_variance_block.argtypes = [ctypes.c_int64, ctypes.c_int64] + [_D] * 6
    lib.gk_cpu_variance_block.restype = None
    lib.gk_cpu_threads.restype = ctypes.c_int
    return lib


def cheb2d(coef: np.ndarray, cell: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """out[i] = sum_ab coef[cell[i], a, b] T_a(x[i]) T_b(y[i]) (tables.cuh's cheb2d)."""
    coef = np.ascontiguousarray(coef, dtype=np.float64)
    cell, x, y = (np.ascontiguousarray(a, dtype=t) for a, t in
                  ((cell, np.int64), (x, np.float64), (y, np.float64)))
    out = np.empty(x.shape, dtype=np.float64)
    library().gk_cpu_cheb2d(coef.ctypes.data_as(_D), coef.shape[-1], cell.ctypes.data_as(_I64),
                            x.ctypes.data_as(_D), y.ctypes.data_as(_D), x.size,
                            out.ctypes.data_as(_D))
    return out


def reduced_pair(f_desc, q: np.ndarray, slope: np.ndarray, s2: np.ndarray,
                 feat_c: np.ndarray, feat_s: np.ndarray, xi: np.ndarray, wi: np.ndarray,
                 rule: tuple[float, int, int, float], table, amp: float, rate: float,
                 geometry: tuple[float, float, float, float]) -> np.ndarray:
    """The reduced pair's outer rule in the compiled kernels (gk_cpu_reduced_pair): NaN
    for the entries a node of which is off ``table``'s lattice or in an unfilled cell.
    ``rule``: (step, kmin, kmax, half_range) of the panels; ``geometry``: (lam0, cell, z0,
    zeta_max) of the table; feat_c, feat_s (n_feat, m) the features per entry."""
    c64 = functools.partial(np.ascontiguousarray, dtype=np.float64)
    q, slope, s2, feat_c, feat_s, xi, wi = map(c64, (q, slope, s2, feat_c, feat_s, xi, wi))
    desc = c64(f_desc)
    filled = table.filled.view(np.uint8)  # bool: one byte each
    coef = c64(table.coef)
    out = np.empty(q.shape, dtype=np.float64)
    step, kmin, kmax, half_range = rule
    lam0, cell, z0, zeta_max = geometry
    library().gk_cpu_reduced_pair(
        q.size, _ptr(q, _D), _ptr(slope, _D), _ptr(s2, _D), _ptr(desc, _D), feat_c.shape[0],
        _ptr(feat_c, _D), _ptr(feat_s, _D), _ptr(xi, _D), _ptr(wi, _D), xi.size, step, kmin,
        kmax, half_range, _ptr(coef, _D), filled.ctypes.data_as(ctypes.POINTER(ctypes.c_ubyte)),
        table.n_lam, table.n_cols, table.offset, int(table.unit.even), int(table.unit.positive),
        lam0, cell, z0, zeta_max, amp, rate, _ptr(out, _D))
    return out


def mehler_series(a: np.ndarray, b: np.ndarray, ia: np.ndarray, ib: np.ndarray,
                  terms: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """gk_cpu_mehler_series: sum_{n <= terms_e} a[ia_e, n] b[ib_e, n] rho_e^n (Horner)."""
    c64 = functools.partial(np.ascontiguousarray, dtype=np.float64)
    i64 = functools.partial(np.ascontiguousarray, dtype=np.int64)
    a, b, rho = c64(a), c64(b), c64(rho)
    ia, ib, terms = i64(ia), i64(ib), i64(terms)
    out = np.empty(rho.shape, dtype=np.float64)
    library().gk_cpu_mehler_series(rho.size, _ptr(a, _D), _ptr(b, _D), a.shape[1],
                                   _ptr(ia, _I64), _ptr(ib, _I64), _ptr(terms, _I64),
                                   _ptr(rho, _D), _ptr(out, _D))
    return out


def variance_block(table: np.ndarray, q1: np.ndarray, q2: np.ndarray, c: np.ndarray,
                   det: np.ndarray) -> np.ndarray:
    """gk_cpu_variance_block: F(q1_i, q2_j, c_ij, det_ij) (n1, n2) from a table over
    variances (:meth:`gpukern.variance.VarianceTable.data`)."""
    table, q1, q2, c, det = (np.ascontiguousarray(a, dtype=np.float64)
                             for a in (table, q1, q2, c, det))
    out = np.empty((q1.size, q2.size), dtype=np.float64)
    library().gk_cpu_variance_block(q1.size, q2.size, _ptr(table, _D), _ptr(q1, _D),
                                    _ptr(q2, _D), _ptr(c, _D), _ptr(det, _D), _ptr(out, _D))
    return out


def hermite_coefficients(w: np.ndarray, h: np.ndarray) -> np.ndarray:
    """gk_cpu_hermite_coefficients: w (P, K) @ h (K, T), each entry summed over k in order."""
    w, h = (np.ascontiguousarray(a, dtype=np.float64) for a in (w, h))
    out = np.empty((w.shape[0], h.shape[1]), dtype=np.float64)
    library().gk_cpu_hermite_coefficients(w.shape[0], w.shape[1], h.shape[1], _ptr(w, _D),
                                          _ptr(h, _D), _ptr(out, _D))
    return out


def available() -> bool:
    return library() is not None


def threads() -> int:
    """OpenMP threads the library uses (OMP_NUM_THREADS, else all cores)."""
    lib = library()
    return int(lib.gk_cpu_threads()) if lib is not None else 1


def _ptr(a: np.ndarray, kind):
    return a.ctypes.data_as(kind)


def _plain(*arrays) -> bool:
    """float32 or float64 C-contiguous NumPy arrays of one dtype, and the library built:
    what every compiled entry point takes."""
    dt = arrays[0].dtype
    return (dt in (np.float32, np.float64)
            and all(isinstance(a, np.ndarray) and a.dtype == dt and a.flags.c_contiguous
                    for a in arrays)
            and available())


def can_map(fn: ScalarFunction, *arrays: np.ndarray) -> bool:
    """True when :func:`map_values` takes these: a function with a descriptor, and
    plain arrays (:func:`_plain`)."""
    return fn.descriptor() is not None and _plain(*arrays)


def map_values(fn: ScalarFunction, h: np.ndarray, pre: np.ndarray | None = None,
               scale: float = 1.0) -> np.ndarray:
    """fn(h), or (pre * scale) * fn(h), in h's dtype (fn evaluated in float64): the
    activations and surrogate-backprop steps of finite networks in one compiled pass."""
    lib = library()
    out = np.empty_like(h)
    kind, fn_c = (_F, lib.gk_cpu_map_f32) if h.dtype == np.float32 else (_D, lib.gk_cpu_map_f64)
    desc = np.asarray(fn.descriptor(), dtype=np.float64)
    ok = fn_c(_ptr(desc, _D), h.size, _ptr(h, kind), None if pre is None else _ptr(pre, kind),
              scale, _ptr(out, kind))
    if not ok:
        raise RuntimeError(f"the CPU kernels have no value for {fn!r}")
    return out


@functools.cache
def _blas_gemm(name: str) -> int:
    """Address of scipy's Fortran-interface ?gemm (scipy.linalg.cython_blas, the stable
    C ABI it exports for compiled code)."""
    from scipy.linalg import cython_blas

    capsule = cython_blas.__pyx_capi__[name]
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_ptr = ctypes.pythonapi.PyCapsule_GetPointer
    get_ptr.restype, get_ptr.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    return int(get_ptr(capsule, get_name(capsule)))


def can_step(sigma: ScalarFunction, derivative: ScalarFunction, weights, biases, x, y) -> bool:
    """True when :func:`sgl_step` takes this ensemble (value kinds for sigma and the
    derivative; plain arrays, :func:`_plain`)."""
    return (sigma.descriptor() is not None and derivative.descriptor() is not None
            and _plain(*weights, *biases, x, y))


def sgl_step(sigma: ScalarFunction, derivative: ScalarFunction, scales: list[float],
             bias_scale: float, weights, biases, x: np.ndarray, y: np.ndarray, lr: float
             ) -> np.ndarray:
    """One SGL step of every network in place (weights (E, n_out, n_in), biases
    (E, n_out); layer l's effective weights scales[l] W, biases bias_scale b); returns
    the outputs f before it, y's shape with the ensemble in front ((E, N) or (E, N, C)).
    Networks run in parallel, each whole (forward, backward, update) with
    single-threaded BLAS."""
    lib = library()
    dt = x.dtype
    e, n = weights[0].shape[0], x.shape[0]
    sizes = np.asarray([x.shape[1]] + [w.shape[1] for w in weights], dtype=np.intc)
    ws = np.asarray([w.ctypes.data for w in weights], dtype=np.uintp)
    bs = np.asarray([b.ctypes.data for b in biases], dtype=np.uintp)
    f = np.empty((e,) + tuple(y.shape), dtype=dt)
    kind, fn, gemm = ((_F, lib.gk_cpu_sgl_step_f32, "sgemm") if dt == np.float32
                      else (_D, lib.gk_cpu_sgl_step_f64, "dgemm"))
    sig = np.asarray(sigma.descriptor(), dtype=np.float64)
    der = np.asarray(derivative.descriptor(), dtype=np.float64)
    layer_scales = np.asarray(scales, dtype=np.float64)
    ok = fn(e, n, len(weights) - 1, sizes.ctypes.data_as(ctypes.POINTER(ctypes.c_int)),
            ws.ctypes.data, bs.ctypes.data, _ptr(x, kind), _ptr(y, kind), lr, _ptr(layer_scales, _D),
            bias_scale, _ptr(sig, _D), _ptr(der, _D), _blas_gemm(gemm), _ptr(f, kind))
    if not ok:
        raise RuntimeError("the CPU SGL step met a function without a value kind")
    return f


def can_hadamard(out: np.ndarray | None, dd: np.ndarray, zz: np.ndarray) -> bool:
    """True when :func:`hadamard` takes these (plain arrays, :func:`_plain`; zz the
    trailing block of dd's shape)."""
    return ((out is None or out.shape == dd.shape)
            and dd.shape[dd.ndim - zz.ndim:] == zz.shape
            and _plain(dd, zz, *([] if out is None else [out])))


def hadamard(out: np.ndarray | None, dd: np.ndarray, zz: np.ndarray, c: float,
             b: float) -> np.ndarray:
    """out + dd * (c * zz + b), in place in ``out`` (a new array if None), in NumPy's
    operation order (so the same numbers), in one pass on all cores."""
    lib = library()
    accumulate = out is not None
    if out is None:
        out = np.empty_like(dd)
    kind, fn = ((_F, lib.gk_cpu_hadamard_f32) if dd.dtype == np.float32
                else (_D, lib.gk_cpu_hadamard_f64))
    fn(dd.size, zz.size, _ptr(out, kind), _ptr(dd, kind), _ptr(zz, kind), c, b,
       int(accumulate))
    return out


def _tabled(f: ScalarFunction, partner: ScalarFunction) -> bool:
    """f needs a table of its Gaussian average: no closed form, averaged against a
    Gaussian bump (the tilt) or a constant."""
    return isinstance(partner, GaussianBump | Constant) and not closed_avg(f.kind)


def _term_pair_ok(a: ScalarFunction, sa: float, b: ScalarFunction, sb: float) -> bool:
    """One pair of terms has a CPU form: closed, tabled, or closed at its thresholds."""
    if a.kind is None or b.kind is None:
        return False
    if sa != 0.0 or sb != 0.0:
        return has_closed_shifted_pair(a, b)
    return has_closed_pair(a, b) or _tabled(a, b) or _tabled(b, a)


def supports(sigma: ScalarFunction, pairs) -> bool:
    """True when the CPU loop may compute these kernels: closed forms (as on the GPU), a
    quadrature function facing a bump or constant through a table of its average (term by
    term for sums and thresholds), pairs of analytic functions (built-in or custom) by
    Mehler's series (:func:`series_pair`), and any other pair where its layers' variances
    are each one value, from its table in the correlation; sigma's own pair included.
    Which of these serve a request is decided on its variances (:func:`routes`): a block
    with an entry that none serves goes to the array path."""
    return len(pairs) <= MAX_PAIRS


def _closed_sigma(sigma: ScalarFunction) -> bool:
    """sigma's own pair is a closed form the loop evaluates (else it is a series)."""
    return has_closed_pair(sigma, sigma) and sigma.descriptor() is not None


def _formula_pair(f: ScalarFunction, g: ScalarFunction) -> bool:
    """Every pair of terms of f and g has a CPU form (:func:`_term_pair_ok`)."""
    return all(_term_pair_ok(a, sa, b, sb) for a, sa in f.terms() for b, sb in g.terms())


def series_pair(f: ScalarFunction, g: ScalarFunction) -> bool:
    """The CPU loop sums E[f(u) g(v)] by Mehler's series: every term of both sides an
    analytic built-in kind or a custom function without kinks (:func:`hermite.serves`,
    thresholds included), where the pair has no closed form or table."""
    return hermite.serves(f) and hermite.serves(g) and not _formula_pair(f, g)


def table_pair(f: ScalarFunction, g: ScalarFunction) -> bool:
    """E[f(u) g(v)] may be read from a table in the correlation (:mod:`gpukern.correlation`)
    at layers whose q and q' are each one value: a pair without a CPU formula."""
    return not _formula_pair(f, g)


def _without_formula(sigma: ScalarFunction, pairs) -> list[bool]:
    """Per pair, then sigma's own pair: no CPU formula (summed by its series or read from
    correlation tables; its functions are sent as descriptors without terms)."""
    return [table_pair(f, g) for f, g in pairs] + [not _closed_sigma(sigma)]


@dataclass
class TableRows:
    """A gk::CorrelationTile of a compiled call (tables.cuh): per (pair, layer) (the
    kernels' pairs, then sigma's own pair) the offset of its table (in the correlation, or
    over variances) in ``data``, or -1."""

    off: np.ndarray  # (npairs + 1, depth) int64
    data: np.ndarray  # flat float64

    @property
    def tabled(self) -> np.ndarray:
        return self.off >= 0

    def pointers(self) -> list:
        return [_ptr(self.off, _I64), _ptr(self.data, _D)]


def table_rows(sigma: ScalarFunction, pairs, q1: np.ndarray, q2: np.ndarray, order: int,
               over_variances: bool = False, skip: np.ndarray | None = None
               ) -> TableRows | None:
    """Tables for the pairs without a CPU formula (sigma's own pair last, unless closed):
    in the correlation at the layers where q1[layer] and q2[layer] each have one value, or
    with ``over_variances`` over the variances at the layers not in ``skip``
    (:func:`gpukern.gaussian.correlation_layers`); None where no (pair, layer) is tabled."""
    from ..gaussian import correlation_layers

    sides = list(pairs) + [(sigma, sigma)]
    found = correlation_layers(sides, _without_formula(sigma, pairs), q1, q2, order,
                               over_variances, skip)
    return None if found is None else TableRows(*found)


def routes(sigma: ScalarFunction, pairs, q1: np.ndarray, q2: np.ndarray, order: int
           ) -> tuple[SeriesRows | None, TableRows | None, TableRows | None] | None:
    """The series rows, correlation tables and tables over variances of a compiled call,
    or None where some (pair, layer) without a formula has none of them (a point whose
    series is not served, variances outside a table's cells or in a block too small for
    one, or rows over SERIES_BUDGET)."""
    corr = table_rows(sigma, pairs, q1, q2, order)
    tabled = corr.tabled if corr is not None else np.zeros((len(pairs) + 1, q1.shape[0]), bool)
    var = table_rows(sigma, pairs, q1, q2, order, over_variances=True, skip=tabled)
    if var is not None:
        tabled = tabled | var.tabled
    sides = list(pairs) + [(sigma, sigma)]
    rest = [p for p, other in enumerate(_without_formula(sigma, pairs))
            if other and not tabled[p].all()]
    series = None
    if rest:
        if not all(series_pair(*sides[p]) for p in rest):
            return None
        series = series_rows(sigma, pairs, q1, q2, skip=tabled)
        if series is None:
            return None
    return series, corr, var


def _needs_table(term: ScalarFunction, shift: float, partner: ScalarFunction) -> bool:
    return shift == 0.0 and any(sp == 0.0 and _tabled(term, p) for p, sp in partner.terms())


def _plan(sigma, pairs, q_max: float, order: int):
    """The descriptors one after the other, the tables buffer and each term's offset in it
    (a term averaged by a table is sent as a kTable term; the functions of a pair without
    a formula, summed by its series or read from correlation tables, as descriptors
    without terms)."""
    on = _without_formula(sigma, pairs)
    rows: list[float] = [0.0] if on[-1] else list(sigma.descriptor())
    offsets = [0] * (0 if on[-1] else len(sigma.terms()))
    tables: list[np.ndarray] = []
    used = 0
    kmax = int(np.floor(0.5 * np.log(max(q_max, 1e-300)) / TABLE_PANEL))
    kmin = kmax - int(np.ceil(0.5 * TABLE_DECADES * np.log(10.0) / TABLE_PANEL))
    for p, (a, b) in enumerate(pairs):
        if on[p]:
            rows += [0.0, 0.0]
            continue
        for f, partner in ((a, b), (b, a)):
            rows.append(float(len(f.terms())))
            for term, shift in f.terms():
                if _needs_table(term, shift, partner):
                    coef = table_panels(term, kmin, kmax, order)
                    g0 = float(np.asarray(term(np.zeros(1)))[0])
                    rows += [float(Kind.TABLE), float(kmin), float(coef.shape[0]), g0, 0.0]
                    offsets.append(used)
                    tables.append(coef.reshape(-1))
                    used += coef.size
                else:
                    rows += [float(term.kind), *term.params(), float(shift)]
                    offsets.append(0)
    buf = np.concatenate(tables) if tables else np.zeros(1)
    return (np.asarray(rows, dtype=np.float64), buf, np.asarray(offsets, dtype=np.int64),
            bool(tables))


SERIES_BUDGET = 1 << 25
"""Doubles of series coefficient rows one compiled call may hold (256 MB); beyond it a
whole request goes tile by tile (planner), and a tile beyond it to the array path, which
expands its points a group at a time."""


SERIES_LANES = 32
"""Columns the compiled loop sums a series for at once (kSeriesLanes in cpu_kernels.cpp)."""


@dataclass
class SeriesRows:
    """The SeriesPairs of cpu_kernels.cpp: per pair whether it is a series (the kernels'
    pairs, then sigma's own pair), one buffer of coefficient rows, and per (pair, layer,
    point) the series length. x1's rows are one per
    distinct q, shared by the points that have it (offsets ``off1`` per point); x2's are
    stored per (pair, layer) in blocks of SERIES_LANES points, term-major inside a block
    (``width2`` terms per point, from ``off2``; then again with each point's terms beyond
    its own length zeroed), so that the loop streams a group of columns' terms; where every
    point of x2 has the same q (``uniform2``: a sign network's deeper layers), its one row
    at ``off2``. The loop
    visits x2's points (and x1's, when symmetric) in ``order``, by increasing first-layer
    q: series lengths grow with q, so a group's lengths are alike; x2's lengths and blocks
    are in that order."""

    on: np.ndarray  # (npairs + 1,) int32
    coef: np.ndarray  # flat float64
    off1: np.ndarray  # (npairs + 1, depth, n1) int64
    len1: np.ndarray
    off2: np.ndarray  # (npairs + 1, depth) int64
    width2: np.ndarray  # (npairs + 1, depth) int64
    len2: np.ndarray  # (npairs + 1, depth, n2) int64, in ``order``
    order: np.ndarray  # (n2,) int64
    uniform2: np.ndarray  # (npairs + 1, depth) int64

    def pointers(self) -> list:
        return [self.on.ctypes.data_as(ctypes.POINTER(ctypes.c_int)), _ptr(self.coef, _D),
                _ptr(self.off1, _I64), _ptr(self.len1, _I64), _ptr(self.off2, _I64),
                _ptr(self.width2, _I64), _ptr(self.len2, _I64), _ptr(self.order, _I64),
                _ptr(self.uniform2, _I64)]


def series_rows(sigma: ScalarFunction, pairs, q1: np.ndarray, q2: np.ndarray,
                skip: np.ndarray | None = None) -> SeriesRows | None:
    """Coefficient rows for the pairs that :func:`series_pair` sums (the kernels' pairs,
    then sigma's own pair unless it has a closed form), at every layer's diagonals q1
    (depth, n1), q2 (depth, n2): each point's row long enough for every partner (max of
    both series lengths). None where no pair is a series, where a point's series is not
    served (too many terms: those entries take the reduced pair, on the array path) or
    where the rows would exceed SERIES_BUDGET (the planner then goes tile by tile).
    ``skip`` (npairs + 1, depth): (pair, layer)s read from another route (a correlation
    table), which get no rows."""
    pairs = list(pairs) + [(sigma, sigma)]
    on = np.array([series_pair(f, g) for f, g in pairs[:-1]] + [not _closed_sigma(sigma)],
                  dtype=np.int32)
    if not on.any():
        return None
    depth, n1, n2 = q1.shape[0], q1.shape[1], q2.shape[1]
    order = np.argsort(q2[0], kind="stable")
    q2 = q2[:, order]
    shape = (len(pairs), depth)
    off1, len1 = np.zeros(shape + (n1,), np.int64), np.full(shape + (n1,), -1, np.int64)
    off2, width2 = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    uniform2 = np.zeros(shape, np.int64)
    len2 = np.full(shape + (n2,), -1, np.int64)
    groups = -(-n2 // SERIES_LANES)
    todo = []  # the layout first (sizes, budget), then the rows written in place
    used = 0
    for p, (f, g) in enumerate(pairs):
        if not on[p]:
            continue
        for layer in range(depth):
            if skip is not None and skip[p, layer]:
                continue
            pts = hermite.layer_points(f, g, q1[layer], q2[layer])
            if pts is None:
                return None  # mixed routes: the array path takes them entry by entry
            terms, one_row = pts.terms, pts.u2.size == 1
            off1[p, layer], len1[p, layer] = used + pts.i1 * terms, pts.n_f[pts.i1]
            off2[p, layer], width2[p, layer] = used + pts.u1.size * terms, terms
            len2[p, layer], uniform2[p, layer] = pts.n_g[pts.i2], one_row
            todo.append((f, g, pts, used))
            used += (pts.u1.size + (1 if one_row else 2 * groups * SERIES_LANES)) * terms
            if used > SERIES_BUDGET:
                return None
    coef = np.empty(max(used, 1))
    for f, g, pts, start in todo:
        _write_rows(coef, start, f, g, pts, n2, groups)
    return SeriesRows(on, coef, off1, len1, off2, width2, len2, order, uniform2)


def _write_rows(coef: np.ndarray, start: int, f: ScalarFunction, g: ScalarFunction,
                pts: hermite.LayerPoints, n2: int, groups: int) -> None:
    """One (pair, layer) of :class:`SeriesRows` into coef from ``start``: x1's rows, then
    x2's one row (a single q) or its blocks, full then zeroed beyond each point's length."""
    terms = pts.terms
    rows, _ = hermite.coefficients(f, pts.u1, np.full(pts.u1.size, terms - 1))  # all served
    coef[start:start + rows.size] = rows.reshape(-1)
    if not (f == g and np.array_equal(pts.u1, pts.u2)):  # else the same rows both sides
        rows, _ = hermite.coefficients(g, pts.u2, np.full(pts.u2.size, terms - 1))
    at = start + pts.u1.size * terms  # x2's rows follow x1's
    if pts.u2.size == 1:
        coef[at:at + terms] = rows[0]
        return
    by_point = np.zeros((groups * SERIES_LANES, terms))  # zeros: the last group's padding
    by_point[:n2] = rows[pts.i2]
    for copy in range(2):  # full, then zeroed
        if copy:
            by_point[:n2][np.arange(terms) > pts.n_g[pts.i2][:, None]] = 0.0
        blocks = coef[at:at + by_point.size].reshape(groups, terms, SERIES_LANES)
        blocks[...] = by_point.reshape(groups, SERIES_LANES, terms).transpose(0, 2, 1)
        at += by_point.size


def recursion(depth: int, sw2: float, sb2: float, own, sigma, pairs, x1: np.ndarray,
              x2: np.ndarray, q1: np.ndarray, q2: np.ndarray, id1: np.ndarray, id2: np.ndarray,
              upper: bool, dtype: Any, want_nngp: bool = True, order: int = DEFAULT_ORDER,
              series: SeriesRows | None = None, corr: TableRows | None = None,
              var: TableRows | None = None) -> tuple[np.ndarray | None, list[np.ndarray], bool]:
    """NNGP and kernels of x1 (n1, n0) against x2 (n2, n0) in one call.

    ``own``: each layer's own term of the kernels, (alpha_l, beta_l) for l = 0..depth
    (:meth:`gpukern.architecture.Architecture.own_terms`).
    q1 (depth, n1), q2 (depth, n2): the layer diagonals; id1, id2: row ids. ``upper``
    (x2 is x1, every kernel symmetric): the upper triangle is computed and mirrored.
    ``series``: the coefficient rows of the pairs summed by Mehler's series
    (:func:`series_rows`); ``corr`` the pairs' correlation tables
    (:func:`table_rows`), read first where a (pair, layer) has one, and ``var`` its
    tables over variances (:func:`table_rows`), read next. Outputs are
    written in ``dtype`` (float32 or float64), computed in float64. The last value is
    True when tables or series were used: entries off a table's range or with a point
    whose series is not served are NaN then.
    """
    lib = library()
    if lib is None or len(pairs) > MAX_PAIRS:
        raise RuntimeError("the CPU recursion is not available here")
    dt = np.dtype(dtype)
    n1, n2 = x1.shape[0], x2.shape[0]
    nngp = np.empty((n1, n2), dtype=dt) if want_nngp else None
    kout = np.empty((len(pairs), n1, n2), dtype=dt)
    c64 = functools.partial(np.ascontiguousarray, dtype=np.float64)
    x1, x2, q1, q2 = c64(x1), c64(x2), c64(q1), c64(q2)
    fns, tables, offsets, tabled = _plan(sigma, pairs, float(max(q1.max(), q2.max())), order)
    id1 = np.ascontiguousarray(id1, dtype=np.int64)
    id2 = np.ascontiguousarray(id2, dtype=np.int64)
    own = c64(own).reshape(depth + 1, 2)
    kind = _F if dt == np.float32 else _D
    fn = lib.gk_cpu_recursion_f32 if dt == np.float32 else lib.gk_cpu_recursion_f64
    ok = fn(n1, n2, x1.shape[1], _ptr(x1, _D), _ptr(x2, _D), _ptr(q1, _D), _ptr(q2, _D),
            _ptr(id1, _I64), _ptr(id2, _I64), depth, sw2, sb2, _ptr(own, _D), _ptr(fns, _D),
            _ptr(tables, _D),
            _ptr(offsets, _I64), len(pairs), int(upper),
            *(series.pointers() if series is not None else [None] * 9),
            *(corr.pointers() if corr is not None else [None] * 2),
            *(var.pointers() if var is not None else [None] * 2),
            _ptr(nngp, kind) if want_nngp else None, _ptr(kout, kind))
    if not ok:
        raise RuntimeError("the CPU recursion met a pair without a closed form "
                           "(routes() said yes)")
    return nngp, [kout[p] for p in range(len(pairs))], tabled or series is not None
