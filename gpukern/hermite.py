"""Pairs of analytic functions by Mehler's formula: a series instead of a 1-D rule.

For (u, v) ~ N(0, [[q, c], [c, q']]) and rho = c / sqrt(q q'),

    E[f(u) g(v)] = sum_n a_n(q) b_n(q') rho^n,   a_n(q) = E[f(sqrt(q) X) He_n(X)] / sqrt(n!),

X ~ N(0, 1), He_n the probabilists' Hermite polynomials (Mehler's formula: the normalised
He_n of two standard normals with correlation rho are orthogonal with E = rho^n). The
coefficients depend on one point's q only, so a kernel computes them once per distinct q
and each entry is a dot product of two coefficient rows with the powers of its rho: no
quadrature per entry.

Coefficients: the trapezoidal rule on |x| <= 13 (the integrand carries exp(-x^2/2) times
a bounded Hermite function: beyond 13 it is below 1e-18 of f), step 1/64, spectrally
accurate for analytic f; every coefficient up to ``MAX_TERMS`` from the same rule at step
1/32 (every other node) must agree to ``COEF_TOL`` of sqrt(E f^2), else the point is not
served.

Truncation, with a bound: by Parseval sum_n a_n^2 = E[f(sqrt(q) X)^2], so the tail
beyond N is T_f(N) = E f^2 - sum_{n<=N} a_n^2, and by Cauchy–Schwarz an entry summed to
N = max(N_f, N_g), where T(N_f) <= TAIL_TOL E f^2 (and so for g), is off by at most
TAIL_TOL sqrt(E f^2 E g^2) (|rho| <= 1). A point whose tail does not fall that low within
``MAX_TERMS`` (a kink: coefficients decay algebraically; a function narrow against
sqrt(q): ~q / width^2 terms) is not served: its entries take the reduced pair
(:func:`gpukern.gaussian.reduced_pair`). Which route an entry takes depends only on its
two points' q, so a value never depends on the batch it came in.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from ._backend import BACKEND
from .functions import Custom, ScalarFunction
from .kernels import ops
from .registry import analytic

Array = Any

MAX_TERMS = 4096
"""Largest series length: an entry costs ~1 ns per term, a point's coefficients ~5000
flops per term (the 2-D-table reduced pair it replaces costs ~20 us per entry)."""
TAIL_TOL = 1e-12
"""Relative Parseval tail at which a point's series is cut (the bound on an entry's error)."""
COEF_TOL = 1e-13
"""Agreement of the coefficients from the rules at steps 1/64 and 1/32, relative to sqrt(E f^2)."""
_STEP = 1.0 / 64.0
_REACH = 13.0
_POINTS = 256  # points whose coefficients are computed at once
_BLOCK = 128  # coefficients are computed in fixed blocks of terms
_CACHE_LIMIT = 1 << 23  # doubles of coefficient rows kept between calls (64 MB)
_GROUP = 1024  # distinct q (and q') expanded at once: <= 2 x 1024 rows of <= 4097 terms


def serves(f: ScalarFunction) -> bool:
    """True when f may be expanded: every term an analytic kind or a custom function
    without kinks, at any shift (whether its series converges is checked per q)."""
    return all(not base.kinks if isinstance(base, Custom) else analytic(base.kind)
               for base, _ in f.terms())


def _nodes() -> np.ndarray:
    half = int(round(_REACH / _STEP))
    return np.arange(-half, half + 1) * _STEP


@lru_cache(maxsize=1)
def _seeds() -> np.ndarray:
    """h_{n0 - 1}, h_{n0} at every block start n0 (h_{-1} = 0), where h_n(x_k) =
    He_n(x_k) / sqrt(n!) exp(-x_k^2 / 4) at the nodes x_k (|x| <= 13, step 1/64): bounded
    by ~1.1, so the recurrence runs on these scaled values. A block's rows are rebuilt
    from its seeds by the same recurrence: the same numbers as one pass through them all."""
    x = _nodes()
    seeds = np.empty((MAX_TERMS // _BLOCK + 1, 2, x.size))
    prev, cur = np.zeros_like(x), np.exp(-0.25 * x * x)
    for n in range(MAX_TERMS + 1):
        if n % _BLOCK == 0:
            seeds[n // _BLOCK] = prev, cur
        prev, cur = cur, (x * cur - math.sqrt(n) * prev) / math.sqrt(n + 1)
    seeds.setflags(write=False)
    return seeds


@lru_cache(maxsize=8)
def _hermite_block(b: int) -> tuple[np.ndarray, np.ndarray]:
    """h[k, n] for the terms n of block b at every node (the step-1/64 rule) and at every
    other node (the step-1/32 rule), each C-contiguous."""
    x = _nodes()
    n0, n1 = b * _BLOCK, min((b + 1) * _BLOCK, MAX_TERMS + 1)
    rows = np.empty((n1 - n0, x.size))
    prev, cur = _seeds()[b]
    for n in range(n0, n1):
        rows[n - n0] = cur
        prev, cur = cur, (x * cur - math.sqrt(n) * prev) / math.sqrt(n + 1)
    fine = np.ascontiguousarray(rows.T)
    coarse = np.ascontiguousarray(fine[::2])
    for a in (fine, coarse):
        a.setflags(write=False)
    return fine, coarse


@dataclass
class _Point:
    """One point's series: coefficients computed so far (whole blocks), the sum of their
    squares, and its length N (-1: not served; None: its tail not yet reached)."""

    coef: np.ndarray
    sumsq: float
    length: int | None


_CACHE: OrderedDict[tuple[ScalarFunction, float, bool], _Point] = OrderedDict()
_CACHE_DOUBLES = [0]


def clear_cache() -> None:
    """Forget every kept series (they are recomputed, to the same numbers, on demand)."""
    _CACHE.clear()
    _CACHE_DOUBLES[0] = 0


def _keys(f: ScalarFunction, q: np.ndarray) -> list[tuple[ScalarFunction, float, bool]]:
    """The cache keys of f at the points q (the compiled loop and the array code round
    differently: each keeps its own rows; which one runs is looked up once per call)."""
    compiled = ops.compiled_cpu()
    return [(f, float(v), compiled) for v in q]


def _weighted(f: ScalarFunction, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trapezoid weights times f(sqrt(q) x_k) exp(-x_k^2 / 4) / sqrt(2 pi), E[f(sqrt(q) X)^2]
    and whether f was finite at every node, per point."""
    x = _nodes()
    with np.errstate(all="ignore"):
        vals = np.asarray(BACKEND.to_host(f(BACKEND.xp.asarray(np.sqrt(q)[:, None] * x))),
                          dtype=np.float64)
    finite = np.all(np.isfinite(vals), axis=1)
    vals = np.where(finite[:, None], vals, 0.0)
    gauss = np.exp(-0.25 * x * x)
    weighted = vals * (gauss * (_STEP / math.sqrt(2.0 * math.pi)))
    return weighted, np.sum(weighted * vals * gauss, axis=1), finite


def _block(weighted: np.ndarray, b: int, coarse: bool = False) -> np.ndarray:
    """Coefficients n in block b of every row of ``weighted`` (the step-1/32 rule from every
    other node if ``coarse``). Blocks are fixed, so a coefficient's value never depends on
    how far a point's series was taken."""
    fine, coarse_rows = _hermite_block(b)
    if coarse:
        return ops.hermite_coefficients(2.0 * weighted[:, ::2], coarse_rows)
    return ops.hermite_coefficients(weighted, fine)


def _points(f: ScalarFunction, q: np.ndarray) -> list[_Point]:
    """Each point's series taken block by block until its Parseval tail is met (its length)
    or a block fails the coarse-rule check or MAX_TERMS is passed (not served)."""
    keys = _keys(f, q)
    found: list[_Point | None] = [_CACHE.get(key) for key in keys]
    todo = np.array([i for i, pt in enumerate(found) if pt is None], dtype=np.int64)
    for i0 in range(0, todo.size, _POINTS):
        rows = todo[i0:i0 + _POINTS]
        weighted, energy, finite = _weighted(f, q[rows])
        pts = [_Point(np.zeros(0), 0.0, None if ok and e > 0 else -1)
               for ok, e in zip(finite, energy)]
        live = np.array([k for k, pt in enumerate(pts) if pt.length is None], dtype=np.int64)
        b = 0
        while live.size:
            block = _block(weighted[live], b)
            accurate = (np.max(np.abs(block - _block(weighted[live], b, coarse=True)), axis=1)
                        <= COEF_TOL * np.sqrt(energy[live]))
            keep = []
            for j, k in enumerate(live):
                pt = pts[k]
                sums = pt.sumsq + np.cumsum(block[j] * block[j])
                pt.coef = np.concatenate([pt.coef, block[j]])
                pt.sumsq = float(sums[-1])
                met = np.nonzero(energy[k] - sums <= TAIL_TOL * energy[k])[0]
                if not accurate[j]:
                    pt.length = -1
                elif met.size:
                    pt.length = b * _BLOCK + int(met[0])
                elif (b + 1) * _BLOCK > MAX_TERMS:
                    pt.length = -1
                else:
                    keep.append(k)
            live = np.array(keep, dtype=np.int64)
            b += 1
        for k, pt in zip(rows, pts):
            found[k] = pt
            _remember(keys[k], pt)
    return found  # type: ignore[return-value]


def _extend(f: ScalarFunction, q: np.ndarray, pts: list[_Point], need: np.ndarray) -> None:
    """Coefficients up to need[p] for every point (a partner with a longer series reads
    this point's coefficients that far), block by block."""
    short = [k for k, pt in enumerate(pts) if pt.coef.size <= need[k]]
    for i0 in range(0, len(short), _POINTS):
        chunk = short[i0:i0 + _POINTS]
        weighted = _weighted(f, q[chunk])[0]
        while True:
            pending = [j for j, k in enumerate(chunk) if pts[k].coef.size <= need[k]]
            if not pending:
                break
            b = min(pts[chunk[j]].coef.size // _BLOCK for j in pending)
            group = [j for j in pending if pts[chunk[j]].coef.size // _BLOCK == b]
            block = _block(weighted[group], b)
            for row, j in enumerate(group):
                pts[chunk[j]].coef = np.concatenate([pts[chunk[j]].coef, block[row]])


def _remember(key: tuple[ScalarFunction, float, bool], pt: _Point) -> None:
    """Keep a point's series (values never depend on the batch, so a cached row changes no
    number); oldest first out beyond _CACHE_LIMIT doubles."""
    old = _CACHE.pop(key, None)
    if old is not None:
        _CACHE_DOUBLES[0] -= old.coef.size
    _CACHE[key] = pt
    _CACHE_DOUBLES[0] += pt.coef.size
    while _CACHE_DOUBLES[0] > _CACHE_LIMIT and len(_CACHE) > 1:
        _, gone = _CACHE.popitem(last=False)
        _CACHE_DOUBLES[0] -= gone.coef.size


def coefficients(f: ScalarFunction, q: np.ndarray, need: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Hermite coefficients a[p, n] of f(sqrt(q_p) X) for n <= need[p] (default: the
    point's own series length, at least; zeros beyond) and each point's series length N_p
    (-1: not served). A point's numbers do not depend on the other points."""
    q = np.asarray(q, dtype=np.float64).reshape(-1)
    pts = _points(f, q)
    length = np.array([pt.length for pt in pts], dtype=np.int64)
    need = length if need is None else np.maximum(np.asarray(need, np.int64), length)
    need = np.minimum(need, MAX_TERMS)
    _extend(f, q, pts, need)
    for key, pt in zip(_keys(f, q), pts):  # their rows grew: the cache's count with them
        _remember(key, pt)
    a = np.zeros((q.size, int(need.max(initial=-1)) + 1))
    for k, pt in enumerate(pts):
        if need[k] >= 0:
            a[k, :need[k] + 1] = pt.coef[:need[k] + 1]
    return a, length


def _compact(a: np.ndarray) -> np.ndarray:
    """``a`` without its broadcast copies (every axis of stride 0 cut to length 1): a
    kernel tile's q is one value per row broadcast along the columns."""
    return a[tuple(slice(0, 1) if st == 0 and n > 1 else slice(None)
                   for st, n in zip(a.strides, a.shape))]


def _index(a: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Flat positions of a's entries in the sorted ``values`` (found among the compact
    entries only, then broadcast)."""
    base = _compact(a)
    return np.broadcast_to(np.searchsorted(values, base), a.shape).reshape(-1)


def mehler_pair(f: ScalarFunction, g: ScalarFunction, q: Array, qp: Array, c: Array
                ) -> Array:
    """E[f(u) g(v)] by the series for the entries whose two points are served (q, q' > 0);
    NaN for the others; q, qp, c broadcast together, the result flat. At most
    ``_GROUP`` distinct q and q' are expanded at once (memory: their coefficient rows)."""
    qh, qph, ch = (np.asarray(BACKEND.to_host(a), dtype=np.float64) for a in (q, qp, c))
    qh, qph, ch = np.broadcast_arrays(qh, qph, ch)
    uq, uqp = np.unique(_compact(qh)), np.unique(_compact(qph))
    if max(uq.size, uqp.size) <= _GROUP:
        return BACKEND.xp.asarray(_series(f, g, qh, qph, ch, uq, uqp))
    # entries grouped by blocks of _GROUP distinct q and q' (a diagonal, a flat batch)
    iq, iqp = _index(qh, uq), _index(qph, uqp)
    block = (iq // _GROUP) * (uqp.size // _GROUP + 1) + iqp // _GROUP
    order = np.argsort(block, kind="stable")
    edges = np.flatnonzero(np.diff(block[order])) + 1
    out = np.empty(iq.size)
    flat = [v.reshape(-1) for v in (qh, qph, ch)]
    for rows in np.split(order, edges):
        sub = [v[rows] for v in flat]
        out[rows] = _series(f, g, *sub, np.unique(sub[0]), np.unique(sub[1]))
    return BACKEND.xp.asarray(out)


def _series(f: ScalarFunction, g: ScalarFunction, qh: np.ndarray, qph: np.ndarray,
            ch: np.ndarray, uq: np.ndarray, uqp: np.ndarray) -> np.ndarray:
    """mehler_pair on host arrays of equal shape with few distinct q, q' (sorted: uq, uqp),
    flat."""
    if f == g:  # one set of points for both sides
        uq = uqp = np.union1d(uq, uqp)
    iq, iqp = _index(qh, uq), _index(qph, uqp)
    na = series_lengths(f, uq)
    nb = na if f == g else series_lengths(g, uqp)
    out = np.full(iq.size, np.nan)
    rows = np.nonzero((na[iq] >= 0) & (nb[iqp] >= 0))[0]
    if rows.size:
        ia, ib = iq[rows], iqp[rows]
        terms = np.maximum(na[ia], nb[ib])
        need_a = np.full(uq.size, -1, dtype=np.int64)
        need_b = need_a if f == g else np.full(uqp.size, -1, dtype=np.int64)
        np.maximum.at(need_a, ia, terms)
        np.maximum.at(need_b, ib, terms)
        a, _ = coefficients(f, uq, need_a)
        b = a if f == g else coefficients(g, uqp, need_b)[0]
        width = max(a.shape[1], b.shape[1])  # one row stride for both
        a, b = (np.pad(r, ((0, 0), (0, width - r.shape[1]))) for r in (a, b))
        qr, qpr, cr = (v.reshape(-1)[rows] for v in (qh, qph, ch))
        rho = np.clip(cr / np.sqrt(qr * qpr), -1.0, 1.0)
        out[rows] = ops.mehler_series(a, b, ia, ib, terms, rho)
    return out


@dataclass
class LayerPoints:
    """One layer of a compiled kernel's series pair: the distinct q of each side (u1, u2,
    sorted), each point's index among them (i1, i2), their series lengths (n_f, n_g) and
    the row width every point gets, terms = the longest series + 1 (a row long enough for
    every partner)."""

    u1: np.ndarray
    i1: np.ndarray
    n_f: np.ndarray
    u2: np.ndarray
    i2: np.ndarray
    n_g: np.ndarray
    terms: int


def layer_points(f: ScalarFunction, g: ScalarFunction, q1: np.ndarray, q2: np.ndarray
                 ) -> LayerPoints | None:
    """:class:`LayerPoints` of f at the diagonals q1 against g at q2, or None where a point
    is not served (its entries take the reduced pair)."""
    u1, i1 = np.unique(q1, return_inverse=True)
    u2, i2 = np.unique(q2, return_inverse=True)
    n_f, n_g = series_lengths(f, u1), series_lengths(g, u2)
    if (n_f < 0).any() or (n_g < 0).any():
        return None
    terms = max(int(n_f.max(initial=-1)), int(n_g.max(initial=-1))) + 1
    return LayerPoints(u1, i1.reshape(-1), n_f, u2, i2.reshape(-1), n_g, terms)


def series_lengths(f: ScalarFunction, q: np.ndarray) -> np.ndarray:
    """Each point's series length; -1 where q <= 0 (u = 0: not a series) or not served."""
    out = np.full(q.size, -1, dtype=np.int64)
    pos = np.nonzero(q > 0)[0]
    out[pos] = [pt.length for pt in _points(f, q[pos])]
    return out
