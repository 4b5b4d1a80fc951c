"""Gaussian expectations E[f(u) g(v)], (u, v) ~ N(0, [[q, c], [c, q']]).

The layer that picks, for a pair of scalar functions (:mod:`gpukern.functions`), the
first of these routes that applies (:func:`route`; the same order as ``pair_k`` in
cuda/gpukern/gaussian.cuh):

1. the Gaussian tilt when either side is a Gaussian bump (erf_m', a surrogate erf_k',
   or a delta: sign', step'):  E[a(u) g(v)] = pref * E_{v ~ N(0, s_t^2)}[g(v)], which
   turns the 2-D integral into a 1-D average (closed form or 1-D quadrature);
2. a constant side:  E[k g(v)] = k E[g(v)];
3. the closed self pair of two functions of one kind (registry capability ``self_pair``);
4. a Heaviside side (relu'): E[H(u) g(v)] = E_v[g(v) Phi(c v / sqrt(q' det))], 1-D;
5. two analytic functions (registry capability ``analytic``, or custom ones without kinks):
   Mehler's series sum_n a_n(q) b_n(q') rho^n (:mod:`gpukern.hermite`), where it converges
   within its term limit, with a bound on the truncation;
6. otherwise the pair reduced to 1-D (:func:`reduced_pair`): an outer rule over u and,
   inside it, the conditional average over v | u ~ N(c u / q, det / q) in closed form or
   from a 2-D table (:mod:`gpukern.tables`). Nested 2-D quadrature (:func:`quad_pair`)
   is the tests' reference, and what ``method="quadrature"`` computes.

A sum of terms (a quantizer, its deltas, its surrogates) is expanded pair by pair, and a
pair with a term moved to a threshold (f(u - theta), g(v - theta')) takes its own routes
(:func:`_shifted_pair`): two deltas or bumps give the bivariate normal density at
(theta, theta'); a bump facing g the tilt with a mean, E[g(m + s Z)]; a constant facing g
that average at m = -theta'; two erf/sign/step terms a bivariate normal orthant
probability (:mod:`gpukern.bivariate`); anything else the reduced pair.

Quadrature is composite Gauss–Legendre (nodes from ``numpy.polynomial.legendre``) on
panels that cover mean +- 10 sd, spaced sd/2 for the Gaussian, plus, for every feature
(centre, scale) of the integrand, a breakpoint at the centre and a geometric ladder
centre +- scale * 2**k graded towards it. Kinks and jumps are panel edges and narrow
functions get panels of their own width, so kinked or narrow surrogates (boxcar,
fast_sigmoid with beta = 50, ...) converge where plain Gauss–Hermite does not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from . import bivariate, correlation, hermite, tables, variance
from ._backend import BACKEND
from .functions import Constant, ErfStep, GaussianBump, Heaviside, ScalarFunction, _gap_to_collinear, shifted
from .kernels import ops
from .registry import closed_avg, mean_avg, self_pair
from .tables import has_mean_table, table_avg, table_mean_avg

Array = Any

DEFAULT_ORDER = 8
"""Gauss–Legendre nodes per panel (relative error below 1e-10 for the built-ins)."""

_HALF_RANGE = 10.0  # integrate over mean +- 10 sd: the tail mass beyond is 1.5e-23
_GAUSS_STEP = 0.5  # panel edges every sd/2 across the Gaussian
_KMIN = -6  # geometric ladders start at scale * 2**-6
_KMAX = 60
_CHUNK_NODES = 1 << 22  # quadrature nodes evaluated at once (memory bound)
# The outer rule of a reduced pair: its integrand is smooth between f's features (A_g is g
# smoothed), so panels every sd and ladders from scale/8 keep it at ~1e-12 relative with
# half the nodes (each costs a table look-up; tests/test_tables.py holds it to 1e-9).
_REDUCED_STEP = 1.0
_REDUCED_KMIN = -3
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@lru_cache(maxsize=32)
def _legendre(order: int) -> tuple[np.ndarray, np.ndarray]:
    if order < 1:
        raise ValueError(f"quadrature order must be >= 1, got {order}")
    return np.polynomial.legendre.leggauss(order)


# ----------------------------------------------------------------- 1-D quadrature core
def _panel_edges(
    mean: Array, sd: Array, features: Sequence[tuple[Array, Array]],
    step: float = _GAUSS_STEP, kmin: int = _KMIN,
) -> Array:
    """Sorted panel edges, shape (M, E), for M Gaussians N(mean, sd^2): every ``step`` sd,
    and ladders centre +- scale * 2**k, k >= ``kmin``, for the features."""
    xp = BACKEND.xp
    lo = mean - _HALF_RANGE * sd
    hi = mean + _HALF_RANGE * sd
    grid = xp.asarray(np.arange(-_HALF_RANGE, _HALF_RANGE + 1e-9, step))
    pts = [mean[:, None] + sd[:, None] * grid[None, :]]
    for centre, scale in features:
        centre = xp.broadcast_to(xp.asarray(centre, dtype=mean.dtype), mean.shape)
        scale = xp.broadcast_to(xp.asarray(scale, dtype=mean.dtype), mean.shape)
        # a feature mapped from beyond the float range (c ~ 0 in a pair) is no feature
        known = xp.isfinite(centre) & xp.isfinite(scale)
        centre = xp.where(known, centre, mean)
        pts.append(centre[:, None])
        positive = known & (scale > 0)
        scale = xp.where(positive, scale, 0.0)
        if not bool(positive.any()):
            continue
        reach = xp.maximum(xp.abs(lo - centre), xp.abs(hi - centre))
        ratio = float(xp.max(xp.where(positive, reach / xp.where(positive, scale, 1.0), 0.0)))
        kmax = int(min(_KMAX, max(kmin, math.ceil(math.log2(max(ratio, 1e-300))) + 1)))
        steps = xp.asarray(2.0 ** np.arange(kmin, kmax + 1))
        with BACKEND.ignore_fp_errors():  # a huge scale's rungs overflow: inf, clipped below
            ladder = scale[:, None] * steps[None, :]
        pts.append(centre[:, None] + ladder)
        pts.append(centre[:, None] - ladder)
    edges = xp.concatenate(pts, axis=1)
    edges = xp.clip(edges, lo[:, None], hi[:, None])
    return xp.sort(edges, axis=1)


def gauss_quadrature(
    integrand: Callable[[Array, slice], Array],
    mean: Array,
    sd: Array,
    features: Sequence[tuple[Array, Array]],
    order: int = DEFAULT_ORDER,
    step: float = _GAUSS_STEP,
    kmin: int = _KMIN,
) -> Array:
    """E_{v ~ N(mean, sd^2)}[F(v)] for M Gaussians at once (mean, sd of shape (M,), sd > 0).

    ``integrand(v, rows)`` evaluates F at nodes v of shape (m, P) for entries ``rows``
    (a slice into the M entries). ``features`` are (centre, scale) pairs, scalars or
    arrays of shape (M,), that the panels must resolve; ``step`` and ``kmin`` set the
    panels (:func:`_panel_edges`).
    """
    xp = BACKEND.xp
    xi, wi = (xp.asarray(a) for a in _legendre(order))
    mean = xp.asarray(mean, dtype=xp.float64).reshape(-1)
    sd = xp.asarray(sd, dtype=xp.float64).reshape(-1)
    m_total = mean.shape[0]
    out = xp.empty(m_total, dtype=xp.float64)
    # a typical panel count: the Gaussian grid plus ~20 ladder rungs per feature side
    per_entry = order * (int(2 * _HALF_RANGE / step) + 1 + 41 * len(features))
    chunk = max(1, _CHUNK_NODES // per_entry)
    for start in range(0, m_total, chunk):
        rows = slice(start, min(start + chunk, m_total))
        mu, s = mean[rows], sd[rows]
        feats = [
            (c if np.ndim(c) == 0 else c[rows], w if np.ndim(w) == 0 else w[rows])
            for c, w in features
        ]
        edges = _panel_edges(mu, s, feats, step, kmin)
        a, b = edges[:, :-1], edges[:, 1:]
        half = 0.5 * (b - a)
        nodes = (0.5 * (a + b))[..., None] + half[..., None] * xi
        weights = half[..., None] * wi
        m, n_panels = nodes.shape[:2]
        nodes = nodes.reshape(m, -1)
        weights = weights.reshape(m, -1)
        z = (nodes - mu[:, None]) / s[:, None]
        dens = xp.exp(-0.5 * z * z) * (_INV_SQRT_2PI / s[:, None])
        panels = xp.sum((integrand(nodes, rows) * dens * weights).reshape(m, n_panels, order),
                        axis=2)
        # Panels are added one by one: the zero-length panels that clipping leaves at both
        # ends (their number depends on the chunk's ladder length) then change nothing, so an
        # entry's value does not depend on which other entries share its chunk or tile.
        acc = panels[:, 0].copy()
        for p in range(1, n_panels):
            acc += panels[:, p]
        out[rows] = acc
    return out


def quad_avg(g: ScalarFunction, s2: Array, order: int = DEFAULT_ORDER,
             mean: Array | float = 0.0) -> Array:
    """E[g(v)], v ~ N(mean, s2), by quadrature; g(mean) where s2 = 0.

    The rule runs in z = (v - mean)/s (features mapped there), so a node is mean + s z
    without the cancellation of (v - mean)/s at |mean| >> s."""
    xp = BACKEND.xp
    s2 = xp.asarray(s2, dtype=xp.float64)
    shape = s2.shape
    s2 = s2.reshape(-1)
    mean = xp.broadcast_to(xp.asarray(mean, dtype=xp.float64), shape).reshape(-1)
    sd = xp.sqrt(s2)
    out = xp.asarray(g(mean), dtype=xp.float64).copy()
    live = xp.nonzero(sd > 0)[0]
    if live.size:
        m, s = mean[live], sd[live]
        feats = [((centre - m) / s, width / s) for centre, width in g.features()]
        out[live] = gauss_quadrature(lambda z, rows: g(m[rows, None] + s[rows, None] * z),
                                     xp.zeros_like(s), xp.ones_like(s), feats, order)
    return out.reshape(shape)


def gauss_avg(g: ScalarFunction, s2: Array, order: int = DEFAULT_ORDER,
              method: str = "auto") -> Array:
    """E[g(v)], v ~ N(0, s2): the closed form g knows, else a table interpolating the
    quadrature (``method="auto"``), else quadrature itself (``method="quadrature"``)."""
    if method == "auto":
        if closed_avg(g.kind):
            return g.gauss_avg(s2)
        return table_avg(g, s2, order)
    return quad_avg(g, s2, order)


# ------------------------------------------------------------------------- 2-D pairs
def _tilted(bump: GaussianBump, g: ScalarFunction, q, qp, det, order, method) -> Array:
    """E[bump(u) g(v)] = pref * E_{N(0, s_t^2)}[g]; +inf where pref is (a delta at q = 0)."""
    xp = BACKEND.xp
    pref, s2 = bump.tilt(q, qp, det)
    avg = gauss_avg(g, s2, order, method)
    with BACKEND.ignore_fp_errors():
        return xp.where(xp.isinf(pref), xp.inf, pref * avg)


def _flat_cov(q, qp, c, det) -> tuple[tuple[Array, Array, Array, Array], tuple[int, ...]]:
    """(q, q', c, det) broadcast together as flat float64 arrays, and their common shape."""
    xp = BACKEND.xp
    arrays = [xp.asarray(a, dtype=xp.float64) for a in xp.broadcast_arrays(q, qp, c, det)]
    return tuple(a.reshape(-1) for a in arrays), arrays[0].shape


def _heaviside_left(h: Heaviside, g: ScalarFunction, q, qp, c, det, order) -> Array:
    """E[s H(u) g(v)] = s E_{v ~ N(0, q')}[g(v) Phi(c v / sqrt(q' det))]: a 1-D average.

    (P(u > 0 | v) = Phi(c v / sqrt(q' det)); at det = 0 it is H(c v).) At q' = 0, v = 0
    and the value is s g(0) E[H(u)] = s g(0)/2.
    """
    xp = BACKEND.xp
    (q, qp, c, det), shape = _flat_cov(q, qp, c, det)
    out = xp.asarray(0.5 * g(xp.zeros_like(qp)), dtype=xp.float64).copy()
    idx = xp.nonzero(qp > 0)[0]
    if idx.size:
        ci = c[idx]
        width = xp.sqrt(qp[idx] * det[idx])
        with BACKEND.ignore_fp_errors():
            slope = xp.where(width > 0, ci / width, 0.0)
            feature = xp.where(ci != 0, width / xp.abs(ci), 0.0)

        def integrand(v, rows):
            w = width[rows][:, None]
            prob = xp.where(w > 0, BACKEND.special.ndtr(slope[rows][:, None] * v),
                            0.5 * (1.0 + xp.sign(ci[rows][:, None] * v)))
            return g(v) * prob

        feats = list(g.features()) + [(0.0, feature)]
        out[idx] = gauss_quadrature(integrand, xp.zeros_like(width), xp.sqrt(qp[idx]),
                                    feats, order)
    return (h.scale * out).reshape(shape)


def quad_pair(f: ScalarFunction, g: ScalarFunction, q, qp, c, det,
              order: int = DEFAULT_ORDER) -> Array:
    """E[f(u) g(v)] by nested quadrature: u ~ N(0, q) outside, v | u ~ N(c u/q, det/q) inside."""
    xp = BACKEND.xp
    (q, qp, c, det), shape = _flat_cov(q, qp, c, det)
    out = xp.empty(q.shape, dtype=xp.float64)

    degenerate = q <= 0  # u = 0 exactly
    if bool(degenerate.any()):
        idx = xp.nonzero(degenerate)[0]
        out[idx] = f(xp.zeros(idx.shape)) * quad_avg(g, qp[idx], order)
    idx = xp.nonzero(~degenerate)[0]
    if idx.size:
        qi, ci, di = q[idx], c[idx], det[idx]
        slope = ci / qi  # E[v | u] = slope * u
        sd_in = xp.sqrt(di / qi)
        with BACKEND.ignore_fp_errors():
            inv = xp.where(ci != 0, qi / xp.abs(ci), 0.0)  # v-scale -> u-scale
        feats = list(f.features())
        for centre, scale in g.features():
            # |c| -> 0 maps g's features beyond the float range: inf, which the panels
            # take as no feature (_panel_edges)
            with BACKEND.ignore_fp_errors():
                mapped = xp.where(ci != 0, centre * qi / ci, 0.0)
                feats.append((mapped, scale * inv))
                feats.append((mapped, sd_in * inv))

        def outer(u, rows):
            m, p = u.shape
            mu = (slope[rows][:, None] * u).reshape(-1)
            s2 = xp.broadcast_to((sd_in[rows] ** 2)[:, None], (m, p)).reshape(-1)
            inner = quad_avg(g, s2, order, mean=mu).reshape(m, p)
            return f(u) * inner

        out[idx] = gauss_quadrature(outer, xp.zeros_like(qi), xp.sqrt(qi), feats, order)
    return out.reshape(shape)


def route(f: ScalarFunction, g: ScalarFunction) -> str:
    """How E[f(u) g(v)] is computed: the first rule of the module docstring that applies.

    "tilt_left"/"tilt_right" (a Gaussian bump on that side), "constant_left"/
    "constant_right", "self_pair", "heaviside_left"/"heaviside_right" or "quadrature".
    """
    for side, fn in (("left", f), ("right", g)):
        if isinstance(fn, GaussianBump):
            return f"tilt_{side}"
    for side, fn in (("left", f), ("right", g)):
        if isinstance(fn, Constant):
            return f"constant_{side}"
    if f.kind is not None and f.kind == g.kind and self_pair(f.kind):
        return "self_pair"
    for side, fn in (("left", f), ("right", g)):
        if isinstance(fn, Heaviside):
            return f"heaviside_{side}"
    return "quadrature"


def has_closed_shifted_pair(f: ScalarFunction, g: ScalarFunction) -> bool:
    """True when E[f(u - s) g(v - s')] of two terms has a closed form for any shifts
    (``has_shifted_pair`` in cuda/gpukern/gaussian.cuh)."""
    if isinstance(f, GaussianBump) and isinstance(g, GaussianBump):
        return True
    if isinstance(f, GaussianBump | Constant):
        return mean_avg(g.kind)
    if isinstance(g, GaussianBump | Constant):
        return mean_avg(f.kind)
    return isinstance(f, ErfStep) and isinstance(g, ErfStep)


def has_closed_pair(f: ScalarFunction, g: ScalarFunction) -> bool:
    """True when E[f(u) g(v)] needs no quadrature: a registry lookup (the pairs that
    ``expect_pair`` and ``pair`` in cuda/gpukern/gaussian.cuh compute in closed form).
    Sums and shifted terms: every pair of terms."""
    if f.shifted or g.shifted:
        return all((has_closed_pair(bf, bg) if sf == 0.0 and sg == 0.0
                    else has_closed_shifted_pair(bf, bg))
                   for bf, sf in f.terms() for bg, sg in g.terms())
    r = route(f, g)
    if r in ("tilt_left", "constant_left"):
        return closed_avg(g.kind)
    if r in ("tilt_right", "constant_right"):
        return closed_avg(f.kind)
    return r == "self_pair"


def expect_pair(
    f: ScalarFunction,
    g: ScalarFunction,
    q: Array,
    qp: Array,
    c: Array,
    det: Array,
    order: int = DEFAULT_ORDER,
    method: str = "auto",
) -> Array:
    """E[f(u) g(v)] for (u, v) ~ N(0, [[q, c], [c, qp]]), det = q qp - c^2 >= 0 given.

    ``method="auto"`` uses the tilt, closed forms and quadrature in that order;
    ``method="quadrature"`` skips closed forms (a delta still needs the tilt), which
    is how the closed forms are tested. A delta meeting q = 0 gives +inf (the caller
    multiplies it by a kernel that is 0 there: 0 * inf = 0).
    """
    if method not in ("auto", "quadrature"):
        raise ValueError(f"method must be 'auto' or 'quadrature', got {method!r}")
    if f.shifted or g.shifted:
        total = None
        for bf, sf in f.terms():
            for bg, sg in g.terms():
                if sf == 0.0 and sg == 0.0:
                    v = expect_pair(bf, bg, q, qp, c, det, order, method)
                else:
                    v = _shifted_pair(bf, sf, bg, sg, q, qp, c, det, order, method)
                total = v if total is None else total + v
        return total
    if method == "quadrature" and not (f.is_delta or g.is_delta):
        return quad_pair(f, g, q, qp, c, det, order)
    r = route(f, g)
    if r == "tilt_left":
        return _tilted(f, g, q, qp, det, order, method)
    if r == "tilt_right":
        return _tilted(g, f, qp, q, det, order, method)
    if r == "constant_left":
        return f.value * gauss_avg(g, qp, order, method)
    if r == "constant_right":
        return g.value * gauss_avg(f, q, order, method)
    if r == "self_pair":
        return f.pair_closed_form(g, q, qp, c, det)
    if r == "heaviside_left":
        return _heaviside_left(f, g, q, qp, c, det, order)
    if r == "heaviside_right":
        return _heaviside_left(g, f, qp, q, c, det, order)
    return series_or_reduced(f, g, q, qp, c, det, order)


def series_or_reduced(f: ScalarFunction, g: ScalarFunction, q, qp, c, det,
                      order: int = DEFAULT_ORDER) -> Array:
    """E[f(u) g(v)] with no closed form: where q and q' are each one value, the pair's
    table in the correlation (:mod:`gpukern.correlation`); in large blocks of many
    variances, its table over variances (:mod:`gpukern.variance`); else Mehler's series
    where both functions are analytic and their points' series converge
    (:mod:`gpukern.hermite`), the reduced pair for the other entries."""
    table = correlation_table(f, g, q, qp, order)
    if table is not None:
        (q, qp, c, det), shape = _flat_cov(q, qp, c, det)
        return table(q, qp, c, det).reshape(shape)
    over = variance_table(f, g, q, qp, order)
    if over is not None:
        return _read_variance_table(over, q, qp, c, det)
    return _series_or_reduced(f, g, q, qp, c, det, order)


COMMON_SPREAD = 1e-13
"""Variances whose spread is at most this, relative, count as one (inputs normalised in
floating point differ in their last bits): the table at the largest serves them, off by
about the spread times |d log F / d log q|."""


def common_variance(a: Array) -> float | None:
    """The largest entry of a non-empty array whose entries agree to COMMON_SPREAD
    (relative), else None."""
    xp = BACKEND.xp
    a = xp.asarray(a)
    if a.size == 0:
        return None
    lo, hi = (float(v) for v in BACKEND.to_host(xp.stack([a.min(), a.max()])))
    return hi if hi - lo <= COMMON_SPREAD * abs(hi) else None


SHORT_SERIES = 128
"""A pair whose Mehler series at (q, q') has at most this many terms is summed, not tabled:
one variance on a side lets the compiled loop form a_k b_k once per term, and the sum then
costs about what a table read does (measured: sigmoid(2) at q = 1.04, 126 terms)."""


MIN_TABLE_ENTRIES = 4096
"""A block of fewer entries keeps the pair's route: a table costs a few hundred of its
values (it then pays for itself many times over; below, it would not)."""


def correlation_table(f: ScalarFunction, g: ScalarFunction, q, qp, order: int = DEFAULT_ORDER,
                      entries: int | None = None) -> correlation.CorrelationTable | None:
    """The memoized table of E[f(u) g(v)] at the one q and one q' of a block of
    ``entries`` entries (default: q and q' broadcast; :func:`common_variance`). None where
    the block has fewer than MIN_TABLE_ENTRIES, q or q' takes more than one value or is
    not positive, the pair's series is short there (:data:`SHORT_SERIES`), or no table
    converges."""
    if entries is None:
        entries = math.prod(np.broadcast_shapes(np.shape(q), np.shape(qp)))
    if entries < MIN_TABLE_ENTRIES:
        return None
    q0, qp0 = common_variance(q), common_variance(qp)
    if q0 is None or qp0 is None or not (q0 > 0.0 and qp0 > 0.0):
        return None
    if hermite.serves(f) and hermite.serves(g):
        n_f = hermite.series_lengths(f, np.array([q0]))[0]
        n_g = hermite.series_lengths(g, np.array([qp0]))[0]
        if min(n_f, n_g) >= 0 and max(n_f, n_g) <= SHORT_SERIES:
            return None  # summed as fast as a table is read

    def pair(c: np.ndarray, det: np.ndarray) -> np.ndarray:
        xp = BACKEND.xp
        cq, cd = xp.asarray(c), xp.asarray(det)
        return BACKEND.to_host(_series_or_reduced(f, g, xp.full(cq.shape, q0),
                                                  xp.full(cq.shape, qp0), cq, cd, order))

    return tables.kept(("correlation", f, g, q0, qp0, order),
                       lambda: correlation.build(pair, q0, qp0))


MIN_VARIANCE_ENTRIES = 1 << 18
"""A block of fewer entries keeps the pair's route: a table over variances costs about
NODES (NODES + 1) / 2 .. NODES^2 node pairs times ~300 t nodes of the route's values
(1.5e5 - 3e5), so it pays for itself within the first block of this size."""


SERIES_OVER_TABLE = 256
"""Over many variances a pair keeps Mehler's series where every point is served and the
series has at most this many terms at the block's median variance on each side: ~1 term
costs what ~1/r of a table read does (measured, N(0, I_3) inputs: sigmoid(2), 122 terms at
the median, 0.052 s by series against 0.09 s by table)."""


def _series_will_do(f: ScalarFunction, g: ScalarFunction, q: np.ndarray, qp: np.ndarray
                    ) -> bool:
    """Every point's series served (checked at the largest variance, where it is longest)
    and at most SERIES_OVER_TABLE terms at the median, both sides (q, qp: (min, median,
    max) each)."""
    if not (hermite.serves(f) and hermite.serves(g)):
        return False
    n_f, n_g = hermite.series_lengths(f, q), hermite.series_lengths(g, qp)
    return bool(min(n_f.min(), n_g.min()) >= 0 and max(n_f[1], n_g[1]) <= SERIES_OVER_TABLE)


def _spread(a: Array) -> np.ndarray:
    """(min, median, max) of an array (the median of a strided sample of <= 4096 entries)."""
    xp = BACKEND.xp
    flat = xp.ravel(xp.asarray(a))
    sample = BACKEND.to_host(flat[::max(1, flat.size // 4096)])
    ends = BACKEND.to_host(xp.stack([xp.min(flat), xp.max(flat)]))
    return np.array([ends[0], float(np.median(sample)), ends[1]])


def variance_table(f: ScalarFunction, g: ScalarFunction, q, qp, order: int = DEFAULT_ORDER,
                   entries: int | None = None) -> variance.VarianceTable | None:
    """The memoized table of E[f(u) g(v)] over the cells holding the variances of a block
    of ``entries`` entries (default: q and q' broadcast; :mod:`gpukern.variance`). None
    where the block has fewer than MIN_VARIANCE_ENTRIES, a variance is not positive and
    finite, q or q' spans more than SPAN octaves from its cell's start, the pair's series
    will do (:data:`SERIES_OVER_TABLE`), or no table converges."""
    if entries is None:
        entries = math.prod(np.broadcast_shapes(np.shape(q), np.shape(qp)))
    if entries < MIN_VARIANCE_ENTRIES:
        return None
    xp = BACKEND.xp
    s1, s2 = _spread(q), _spread(qp)
    lo1, lo2 = variance.cell_of(s1[0], s1[2]), variance.cell_of(s2[0], s2[2])
    if lo1 is None or lo2 is None or _series_will_do(f, g, s1, s2):
        return None

    def pair(qa: np.ndarray, qb: np.ndarray, c: np.ndarray, det: np.ndarray) -> np.ndarray:
        args = (xp.asarray(a) for a in (qa, qb, c, det))
        return BACKEND.to_host(_series_or_reduced(f, g, *args, order))

    symmetric = f == g and lo1 == lo2
    return tables.kept(("variance", f, g, lo1, lo2, order),
                       lambda: variance.build(pair, lo1, lo2, symmetric))


def _read_variance_table(table: variance.VarianceTable, q, qp, c, det) -> Array:
    """The table's values at a block's entries: the compiled CPU loop where the block is
    rows of one q by columns of one q' (a layer's (n1, n2) covariances), else the array
    path."""
    if BACKEND.xp is np and np.ndim(q) == 2 and np.ndim(qp) == 2:
        q, qp, c, det = np.broadcast_arrays(q, qp, c, det)
        if np.array_equal(q, np.broadcast_to(q[:, :1], q.shape)) and \
                np.array_equal(qp, np.broadcast_to(qp[:1], qp.shape)):
            out = ops.variance_block(table.data(), q[:, 0], qp[0], c, det)
            if out is not None:
                return out
    (q, qp, c, det), shape = _flat_cov(q, qp, c, det)
    return table(q, qp, c, det).reshape(shape)


def correlation_layers(sides, wanted, q1: np.ndarray, q2: np.ndarray, order: int,
                       over_variances: bool = False, skip: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray] | None:
    """The tables of a fused call (the layout of gk::CorrelationTile in
    cuda/gpukern/tables.cuh): for each pair (f, g) of ``sides`` with ``wanted`` set, at each
    layer where q1[layer] (n1 points) and q2[layer] (n2) each have one value, its table
    (:func:`correlation_table` for a block of n1 n2 entries); with ``over_variances``, at
    each layer not in ``skip`` (len(sides), depth), its table over variances
    (:func:`variance_table`). Returns (off, data): off (len(sides), depth) the offset of
    each table in data, -1 where none; None where no (pair, layer) has one."""
    depth, entries = q1.shape[0], q1.shape[1] * q2.shape[1]
    off = np.full((len(sides), depth), -1, dtype=np.int64)
    parts, used = [], 0
    make = variance_table if over_variances else correlation_table
    for p, (f, g) in enumerate(sides):
        if not wanted[p]:
            continue
        for layer in range(depth):
            if skip is not None and skip[p, layer]:
                continue
            table = make(f, g, q1[layer], q2[layer], order, entries=entries)
            if table is not None:
                data = table.data()
                off[p, layer] = used
                parts.append(data)
                used += data.size
    return (off, np.concatenate(parts)) if parts else None


def _series_or_reduced(f: ScalarFunction, g: ScalarFunction, q, qp, c, det,
                       order: int = DEFAULT_ORDER) -> Array:
    if not (hermite.serves(f) and hermite.serves(g)):
        return reduced_pair(f, g, q, qp, c, det, order)
    out = hermite.mehler_pair(f, g, q, qp, c)  # broadcast inputs: their points found cheaply
    (q, qp, c, det), shape = _flat_cov(q, qp, c, det)
    rest = BACKEND.xp.nonzero(BACKEND.xp.isnan(out))[0]
    if rest.size:
        out[rest] = reduced_pair(f, g, q[rest], qp[rest], c[rest], det[rest], order)
    return out.reshape(shape)


# ------------------------------------------------------------ terms at thresholds
def mean_gauss_avg(g: ScalarFunction, m: Array, s2: Array, order: int = DEFAULT_ORDER,
                   method: str = "auto") -> Array:
    """E[g(m + s Z)], s^2 = s2, term by term: a term's closed form (registry ``mean_avg``),
    else its 2-D table (:mod:`gpukern.tables`), else quadrature."""
    if g.shifted:
        total = None
        for base, shift in g.terms():
            v = mean_gauss_avg(base, m - shift, s2, order, method)
            total = v if total is None else total + v
        return total
    if method == "auto":
        if mean_avg(g.kind):
            return g.gauss_avg_mean(m, s2)
        if has_mean_table(g):
            return table_mean_avg(g, m, s2)
    return quad_avg(g, s2, order, mean=m)


def _averaged(g: ScalarFunction) -> int:
    """How cheaply E[g(m + s Z)] comes: 2 closed forms, 1 tables, 0 quadrature (the
    poorest term decides)."""
    rank = 2
    for base, _ in g.terms():
        rank = min(rank, 2 if mean_avg(base.kind) else 1 if has_mean_table(base) else 0)
    return rank


def _merge_feature(feats: list, centre, scale) -> list:
    """``feats`` plus (centre, scale); at a centre 0 that f's features already have, one
    ladder from the smaller positive scale serves both (its rungs 2^k cover the other's
    to a factor 2), instead of two ladders of nearly the same edges."""
    xp = BACKEND.xp
    if np.ndim(centre) == 0 and centre == 0.0:
        for k, (c0, s0) in enumerate(feats):
            if np.ndim(c0) == 0 and c0 == 0.0:
                merged = xp.where(scale > 0, xp.where(s0 > 0, xp.minimum(s0, scale), scale), s0)
                return feats[:k] + [(0.0, merged)] + feats[k + 1:]
    return feats + [(centre, scale)]


def reduced_pair(f: ScalarFunction, g: ScalarFunction, q, qp, c, det,
                 order: int = DEFAULT_ORDER) -> Array:
    """E[f(u) g(v)] = E_u[f(u) A_g(c u / q, det / q)], A_g(m, s^2) = E[g(m + s Z)] (the
    law of v given u): a 1-D rule in u, graded to f's features and to g's features mapped
    to u (centre q/c, scale sqrt(s^2 + w^2) q/|c|: A_g is g smoothed by s), with A_g from
    :func:`mean_gauss_avg`. The side whose average is cheaper goes inside."""
    if _averaged(f) > _averaged(g):
        return reduced_pair(g, f, qp, q, c, det, order)
    xp = BACKEND.xp
    (q, qp, c, det), shape = _flat_cov(q, qp, c, det)
    out = xp.empty(q.shape, dtype=xp.float64)
    degenerate = q <= 0  # u = 0 exactly
    if bool(degenerate.any()):
        idx = xp.nonzero(degenerate)[0]
        zero = xp.zeros(idx.shape)
        out[idx] = f(zero) * mean_gauss_avg(g, zero, qp[idx], order)
    idx = xp.nonzero(~degenerate)[0]
    if idx.size:
        qi, ci = q[idx], c[idx]
        slope = ci / qi
        s2 = det[idx] / qi
        feats = list(f.features())
        s = xp.sqrt(s2)
        with BACKEND.ignore_fp_errors():
            inv = xp.where(ci != 0, qi / xp.abs(ci), 0.0)
            for centre, width in g.features():
                # A_g varies on sqrt(s^2 + w^2), and g's kinks are rounded on s: the ladder
                # starts at the smaller scale (w alone where s = 0: A_g is g itself)
                scale = xp.where(s > 0, xp.minimum(s, width) if width > 0 else s, width) * inv
                feats = _merge_feature(feats, xp.where(ci != 0, centre * qi / ci, 0.0)
                                       if centre != 0.0 else 0.0, scale)

        out[idx] = _outer_rule(f, g, qi, slope, s2, feats, order)
    return out.reshape(shape)


def _outer_rule(f: ScalarFunction, g: ScalarFunction, q: Array, slope: Array, s2: Array,
                feats: list, order: int) -> Array:
    """E_u[f(u) A_g(slope u, s2)], u ~ N(0, q) (q > 0): on the compiled CPU path where f
    has a value kind and A_g a 2-D table (:func:`gpukern.kernels.ops.reduced_pair`),
    with array code otherwise and for the entries with a node off the table's lattice."""
    table = None if g.shifted else tables.mean_table_of(g)
    compiled = None if table is None else _compiled_rule(f, q, slope, s2, feats, order, table)
    if compiled is None:
        return _array_rule(f, g, q, slope, s2, feats, order)
    rows = BACKEND.xp.nonzero(BACKEND.xp.isnan(compiled))[0]
    if rows.size:
        # the array rule fills the cells these entries read; then the compiled rule takes
        # them too, so that an entry's value never depends on which cells were filled
        # before: only entries with a node off the lattice keep the array rule's value
        sub = (q[rows], slope[rows], s2[rows],
               [(c if np.ndim(c) == 0 else c[rows], w if np.ndim(w) == 0 else w[rows])
                for c, w in feats])
        values = _array_rule(f, g, *sub, order)
        again = _compiled_rule(f, *sub, order, table)
        off = BACKEND.xp.isnan(again)
        again[off] = values[off]
        compiled[rows] = again
    return compiled


def _compiled_rule(f, q, slope, s2, feats, order, table) -> Array | None:
    xp = BACKEND.xp
    n = q.shape[0]

    def per_entry(values):
        return xp.stack([xp.broadcast_to(xp.asarray(v, dtype=xp.float64), (n,)) for v in values]
                        ) if values else xp.zeros((0, n))

    return ops.reduced_pair(f, q, slope, s2, per_entry([c for c, _ in feats]),
                            per_entry([w for _, w in feats]), order,
                            (_REDUCED_STEP, _REDUCED_KMIN, _KMAX, _HALF_RANGE),
                            table[0], table[1], table[2], tables.GEOMETRY)


def _array_rule(f, g, q, slope, s2, feats, order) -> Array:
    xp = BACKEND.xp

    def outer(u, sub):
        mean = slope[sub][:, None] * u
        var = xp.broadcast_to(s2[sub][:, None], u.shape)
        inner = mean_gauss_avg(g, mean.reshape(-1), var.reshape(-1), order)
        return f(u) * inner.reshape(u.shape)

    return gauss_quadrature(outer, xp.zeros_like(q), xp.sqrt(q), feats, order,
                            _REDUCED_STEP, _REDUCED_KMIN)


def _noisy(fn: ScalarFunction, q: Array) -> Array:
    """q + t/2: the variance of u plus the N(0, t/2) noise of an erf or bump of width t."""
    return q + 0.5 * fn.t


def _noisy_cov(f, g, q: Array, qp: Array, det: Array) -> tuple[Array, Array, Array]:
    """(Q, Q', D) of u, v plus the independent N(0, t/2) noises of f and g (erf terms or
    bumps): Q = q + t_f/2, Q' = q' + t_g/2, D = Q Q' - c^2 = det + (t_f q' + t_g q)/2 +
    t_f t_g / 4 (from det: no cancellation)."""
    return _noisy(f, q), _noisy(g, qp), det + 0.5 * (f.t * qp + g.t * q) + 0.25 * f.t * g.t


def _bump_density(f: GaussianBump, sf: float, g: GaussianBump, sg: float, q, qp, c, det
                  ) -> Array:
    """E[f(u - sf) g(v - sg)] = w_f w_g phi_2(sf, sg) of (u, v) plus independent N(0, t/2)
    noises: exp(-n / (2 D)) / (2 pi sqrt D), D = Q Q' - c^2 = det + (t_f q' + t_g q)/2 +
    t_f t_g / 4, n = (sqrt(Q') sf - sqrt(Q) sg)^2 + 2 sf sg (sqrt(Q Q') - c) >= 0 (each
    part free of cancellation). At D = 0: +inf where n = 0 (the support's line), else 0."""
    xp = BACKEND.xp
    big_q, big_qp, big_d = _noisy_cov(f, g, q, qp, det)
    gap = _gap_to_collinear(big_q, big_qp, c, big_d, 1.0)
    n = (xp.sqrt(big_qp) * sf - xp.sqrt(big_q) * sg) ** 2 + 2.0 * sf * sg * gap
    n = xp.maximum(n, 0.0)
    with BACKEND.ignore_fp_errors():
        dens = (f.weight * g.weight / (2.0 * math.pi)) / xp.sqrt(big_d) * xp.exp(-n / (2.0 * big_d))
        return xp.where(big_d > 0, dens, xp.where(n == 0, xp.inf, 0.0))


def _tilt_mean(bump: GaussianBump, sb: float, g: ScalarFunction, sg: float, q, qp, c, det,
               order, method) -> Array:
    """E[bump(u - sb) g(v - sg)] = w phi(sb; Q) E[g(m + s Z)], Q = q + t/2, m = c sb / Q - sg,
    s^2 = (t q' + 2 det)/(t + 2q): v given u + noise = sb. At Q = 0 (a delta at u = 0):
    +inf if sb = 0, else 0."""
    xp = BACKEND.xp
    big_q = _noisy(bump, q)
    live = big_q > 0
    safe = xp.where(live, big_q, 1.0)
    with BACKEND.ignore_fp_errors():
        pref = bump.weight * xp.exp(-(sb * sb) / (2.0 * safe)) / xp.sqrt(2.0 * math.pi * safe)
        m = xp.where(live, c * sb / safe, 0.0) - sg
        s2 = xp.where(live, (bump.t * qp + 2.0 * det) / (2.0 * safe), qp)
    avg = mean_gauss_avg(g, m, s2, order, method)
    with BACKEND.ignore_fp_errors():
        return xp.where(live, pref * avg, xp.inf if sb == 0.0 else 0.0)


def _orthant(f: ErfStep, sf: float, g: ErfStep, sg: float, q, qp, c, det) -> Array:
    """E[f(u - sf) g(v - sg)] for erf/sign terms: erf(x/sqrt t) is the sign of x plus
    N(0, t/2) noise, so with U, V the noisy u, v (variances Q, Q'), h = sf/sqrt Q,
    k = sg/sqrt Q', E[sgn(U - sf)] = -erf(h/sqrt 2) and
    E[sgn(U - sf) sgn(V - sg)] = 4 P(U > sf, V > sg) - 2 Phi(-h) - 2 Phi(-k) + 1."""
    xp = BACKEND.xp
    big_q, big_qp, big_d = _noisy_cov(f, g, q, qp, det)
    live = (big_q > 0) & (big_qp > 0)
    sq, sqp = xp.sqrt(xp.where(live, big_q, 1.0)), xp.sqrt(xp.where(live, big_qp, 1.0))
    h, k = sf / sq, sg / sqp
    rho = xp.clip(c / (sq * sqp), -1.0, 1.0)
    orth = bivariate.upper(h, k, rho, big_d / (sq * sq * sqp * sqp))
    nd = BACKEND.special.ndtr
    both = 4.0 * orth - 2.0 * nd(-h) - 2.0 * nd(-k) + 1.0
    mf, mg = -BACKEND.special.erf(h / math.sqrt(2.0)), -BACKEND.special.erf(k / math.sqrt(2.0))
    val = (f.offset * g.offset + f.offset * g.amp * mg + f.amp * g.offset * mf
           + f.amp * g.amp * both)
    # a side without variance is a constant: its value times the other side's mean
    fixed = f.gauss_avg_mean(xp.full_like(q, -sf), q) * g.gauss_avg_mean(xp.full_like(qp, -sg), qp)
    return xp.where(live, val, fixed)


def _shifted_pair(bf: ScalarFunction, sf: float, bg: ScalarFunction, sg: float, q, qp, c,
                  det, order: int, method: str) -> Array:
    """E[bf(u - sf) bg(v - sg)] for single terms, one shift at least non-zero."""
    if isinstance(bf, GaussianBump) and isinstance(bg, GaussianBump):
        return _bump_density(bf, sf, bg, sg, q, qp, c, det)
    if isinstance(bf, GaussianBump):
        return _tilt_mean(bf, sf, bg, sg, q, qp, c, det, order, method)
    if isinstance(bg, GaussianBump):
        return _tilt_mean(bg, sg, bf, sf, qp, q, c, det, order, method)
    if isinstance(bf, Constant):
        return bf.value * mean_gauss_avg(bg, BACKEND.xp.full_like(qp, -sg), qp, order, method)
    if isinstance(bg, Constant):
        return bg.value * mean_gauss_avg(bf, BACKEND.xp.full_like(q, -sf), q, order, method)
    if method == "auto" and isinstance(bf, ErfStep) and isinstance(bg, ErfStep):
        return _orthant(bf, sf, bg, sg, q, qp, c, det)
    if method == "quadrature":
        return quad_pair(shifted(bf, sf), shifted(bg, sg), q, qp, c, det, order)
    return series_or_reduced(shifted(bf, sf), shifted(bg, sg), q, qp, c, det, order)
