"""Memoized tables of Gaussian averages for functions without closed forms.

Two tables, both Chebyshev interpolants of direct quadrature (:func:`gpukern.gaussian.
quad_avg`), filled on first use and kept for the process:

* ``table_avg``: G(s) = E[g(s Z)] (zero mean) on panels of u = log s (``TABLE_PANEL``,
  ``TABLE_CHEB`` points each), for any g; the compiled CPU path reads its coefficients.
* ``table_mean_avg``: G(m, s) = E[g(m + s Z)] for the functions of a unit form
  g(v) = amp * h(rate * v): the surrogates without a closed average with a mean (registry
  capability ``mean_table``: sigmoid, fast_sigmoid, atan; one table per kind, since their
  shape parameter is the rate) and custom functions without kinks away from 0 (one table
  per function and width). In the unit's coordinates (mu, sigma) = rate * (m, s) the table
  is a tensor Chebyshev interpolant of G / P(sigma) on cells of

      lambda = log sigma  and  zeta = Z0 asinh(mu / (Z0 sigma)),

  P = 1/sqrt(1 + sigma^2) for a decaying h (the surrogates: G's peak scale, from h(0) at
  small sigma to area/sigma at large sigma), P = 1 otherwise. zeta is mu/sigma up to ~Z0
  (G's Gaussian part exp(-z^2/2) and a kink of h at 0 both live on the scale sigma there)
  and logarithmic beyond (h's own features at |mu| ~ 1 and its algebraic tails). The
  accuracy is relative to P(sigma): G is tabulated, not log G, because at large sigma a
  heavy-tailed h turns G from a Gaussian into h's tail within a fraction of a cell. Outside
  LAMBDA_RANGE x [-ZETA_MAX, ZETA_MAX] (sigma below e^-8 or above e^12 unit widths, |mu| /
  sigma beyond ~1.2e4) the value is the direct quadrature itself: the documented fallback,
  as accurate, ~100x slower.

Both tables index fixed lattices, so a value depends on its (m, s) only, never on the
batch it is computed in, and the number of cells is bounded by the lattice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from ._backend import BACKEND
from .functions import Custom, ScalarFunction
from .kernels import ops
from .registry import MEAN_CHEB, TABLE_CHEB, TABLE_PANEL, mean_table

Array = Any

MAX_TABLE_PANELS = 4096
"""Panels one 1-D table evaluation may span (variances over ~900 decades): memory is bounded."""
TABLE_ORDER = 12
"""Gauss–Legendre order of the quadrature that fills the 2-D tables."""
LAMBDA_RANGE = (-8.0, 12.0)
"""log(sigma) covered by the 2-D tables (sigma in units of the function's width)."""
Z0 = 8.0
"""Where the 2-D tables' coordinate zeta turns from mu/sigma to logarithmic."""
ZETA_MAX = 64.0
"""|zeta| covered by the 2-D tables (|mu|/sigma up to Z0 sinh(ZETA_MAX/Z0) ~ 1.2e4)."""
CELL = 0.25
"""Cell width of the 2-D tables in lambda and in zeta."""
MAX_MEAN_TABLES = 8
"""2-D tables kept at once (one per unit function): the oldest goes when a new one comes,
so custom functions made in a loop cannot grow memory without bound."""
MAX_ZERO_MEAN_TABLES = 64
"""1-D tables kept at once (one per function and order; each at most MAX_TABLE_PANELS rows)."""
MAX_CORRELATION_TABLES = 64
"""Tables of a pair in the correlation kept at once (:mod:`gpukern.correlation`; one per
pair, variances and order)."""
MAX_VARIANCE_TABLES = 8
"""Tables of a pair over variances kept at once (:mod:`gpukern.variance`; one per pair,
cell pair and order, each ~1-2 MB)."""
_CHUNK = 1 << 14  # points evaluated at once (a (chunk, MEAN_CHEB, MEAN_CHEB) gather)

_TABLES: dict = {}


def _cheb_nodes(n: int) -> np.ndarray:
    """Chebyshev points of the first kind on [-1, 1]."""
    k = np.arange(n)
    return np.cos(np.pi * (k + 0.5) / n)


# ------------------------------------------------------------- 1-D, zero mean: G(s)
def table_avg(g: ScalarFunction, s2: Array, order: int | None = None) -> Array:
    """E[g(v)], v ~ N(0, s2), from a memoized table of G(s) = E_{N(0, s^2)}[g].

    G is smooth in u = log s for s > 0, so it is tabulated on panels [k, k+1] * TABLE_PANEL
    of a fixed lattice in u, as a Chebyshev interpolant per panel (values at TABLE_CHEB
    Chebyshev points computed by quadrature), evaluated by Clenshaw's recurrence; the
    interpolation error (~1e-14) is far below the quadrature's (~1e-10). g(0) at s = 0.
    """
    xp = BACKEND.xp
    s2 = xp.asarray(s2, dtype=xp.float64)
    shape = s2.shape
    s2 = s2.reshape(-1)
    out = xp.asarray(g(xp.zeros_like(s2)), dtype=xp.float64).copy()
    out[~xp.isfinite(s2)] = xp.nan  # no table panel for them: NaN, never an index
    live = xp.nonzero((s2 > 0) & xp.isfinite(s2))[0]
    if live.size == 0:
        return out.reshape(shape)
    u = 0.5 * xp.log(s2[live])
    panel = xp.floor(u / TABLE_PANEL).astype(xp.int64)
    kmin, kmax = int(panel.min()), int(panel.max())
    coef = xp.asarray(table_panels(g, kmin, kmax, order))  # (K, TABLE_CHEB)
    row = panel - kmin
    x = xp.clip(2.0 * (u / TABLE_PANEL - panel) - 1.0, -1.0, 1.0)
    b1 = xp.zeros_like(x)
    b2 = xp.zeros_like(x)
    for j in range(TABLE_CHEB - 1, 0, -1):  # Clenshaw
        b1, b2 = 2.0 * x * b1 - b2 + coef[row, j], b1
    out[live] = x * b1 - b2 + coef[row, 0]
    return out.reshape(shape)


def table_panels(g: ScalarFunction, kmin: int, kmax: int, order: int | None = None
                 ) -> np.ndarray:
    """Chebyshev coefficients (kmax - kmin + 1, TABLE_CHEB) of G on panels kmin..kmax (host).

    Panel k covers log s in [k, k+1] * TABLE_PANEL; missing panels are computed (TABLE_CHEB
    quadrature values each) and kept for the process, per (function, order).
    """
    from .gaussian import DEFAULT_ORDER, quad_avg

    order = DEFAULT_ORDER if order is None else order
    if kmax - kmin > MAX_TABLE_PANELS:
        raise ValueError(f"a Gaussian-average table of {kmax - kmin + 1} panels was asked for "
                         f"(at most {MAX_TABLE_PANELS}): variances over more than "
                         f"{MAX_TABLE_PANELS * TABLE_PANEL * 2 / 2.303:.0f} decades")
    table = kept(("zero-mean", g, order), dict)
    needed = [k for k in range(kmin, kmax + 1) if k not in table]
    if needed:
        xp = BACKEND.xp
        t = _cheb_nodes(TABLE_CHEB)
        centres = (np.asarray(needed, dtype=float)[:, None] + 0.5 + 0.5 * t[None, :]) * TABLE_PANEL
        vals = BACKEND.to_host(quad_avg(g, xp.asarray(np.exp(2.0 * centres)).reshape(-1), order))
        for k, row in zip(needed, vals.reshape(len(needed), TABLE_CHEB)):
            table[k] = np.polynomial.chebyshev.chebfit(t, row, TABLE_CHEB - 1)
    return np.stack([table[k] for k in range(kmin, kmax + 1)])


# ----------------------------------------------------------- 2-D, with a mean: G(m, s)
@dataclass(frozen=True)
class Unit:
    """h(x) = base(width * x): a function at unit width and amplitude (the table's key)."""

    base: ScalarFunction
    width: float = 1.0
    even: bool = False
    positive: bool = False

    def __call__(self, x: Array) -> Array:
        return self.base(self.width * x)

    def features(self) -> list[tuple[float, float]]:
        return [(c / self.width, w / self.width) for c, w in self.base.features()]


def unit_form(g: ScalarFunction) -> tuple[Unit, float, float] | None:
    """(h, amp, rate) with g(v) = amp * h(rate * v), or None when g has no 2-D table.

    A surrogate of a ``mean_table`` kind: h is the kind at shape parameter 1 and scale 1,
    rate its shape parameter, amp = scale * rate (sigmoid, fast_sigmoid, atan are
    rate * h1(rate v)). A custom function without kinks away from 0: h(x) = fn(width x).
    """
    if mean_table(g.kind):
        shape = fields(g)[0].name
        rate = float(getattr(g, shape))
        unit = replace(g, **{shape: 1.0, "scale": 1.0})
        return Unit(unit, even=True, positive=True), g.scale * rate, rate
    if isinstance(g, Custom) and all(k == 0.0 for k in g.kinks):
        return Unit(replace(g, scale=1.0), width=g.width), g.scale, 1.0 / g.width
    return None


def mean_table_of(g: ScalarFunction) -> tuple[MeanTable, float, float] | None:
    """(g's 2-D table, amp, rate), g(v) = amp h(rate v), or None without one."""
    form = unit_form(g)
    if form is None:
        return None
    unit, amp, rate = form
    return _mean_table(unit), amp, rate


GEOMETRY = (LAMBDA_RANGE[0], CELL, Z0, ZETA_MAX)
"""(lambda_0, cell, Z0, zeta_max) of every 2-D table's lattice, for the compiled kernels."""


def has_mean_table(g: ScalarFunction) -> bool:
    """True when E[g(m + s Z)] is read from a 2-D table (:func:`unit_form`)."""
    return unit_form(g) is not None


class MeanTable:
    """The cells of one unit function h: Chebyshev coefficients (MEAN_CHEB, MEAN_CHEB) in
    (lambda, zeta) of G / P(sigma) per cell of the fixed lattice, filled on first use.

    The lattice is one zero-initialised array (untouched pages cost no memory), so a cell
    is found by its index and the memory is bounded by the lattice."""

    def __init__(self, unit: Unit) -> None:
        self.unit = unit
        self.n_lam = math.ceil((LAMBDA_RANGE[1] - LAMBDA_RANGE[0]) / CELL)
        self.n_zeta = math.ceil(ZETA_MAX / CELL)  # cells with zeta >= 0; as many below
        self.offset = 0 if unit.even else self.n_zeta  # zeta cells j >= -offset
        self.n_cols = self.n_zeta + self.offset
        self.coef = np.zeros((self.n_lam * self.n_cols, MEAN_CHEB, MEAN_CHEB))
        self.filled = np.zeros(self.n_lam * self.n_cols, dtype=bool)
        self._device: Array | None = None  # the backend's copy of coef, while current
        t = _cheb_nodes(MEAN_CHEB)
        self._nodes = t
        self._inv_vander = np.linalg.inv(np.polynomial.chebyshev.chebvander(t, MEAN_CHEB - 1))

    def index(self, i: Array, j: Array) -> Array:
        """Flat cell index of lambda cell i and zeta cell j (j < 0 below zeta = 0)."""
        return i * self.n_cols + (j + self.offset)

    def coefficients(self, flat: Array) -> Array:
        """The backend's coefficient array, after filling the cells ``flat`` that are
        missing (MEAN_CHEB^2 quadrature values each, in one batch)."""
        host = BACKEND.to_host(flat)
        missing = np.unique(host[~self.filled[host]])
        if missing.size:
            self._fill(missing)
            self._device = None
        if self._device is None:
            self._device = BACKEND.xp.asarray(self.coef)
        return self._device

    def _fill(self, flat: np.ndarray) -> None:
        from .gaussian import quad_avg

        xp = BACKEND.xp
        i, j = np.divmod(flat, self.n_cols)
        j = j - self.offset
        t = 0.5 * (self._nodes + 1.0)  # in [0, 1]
        lam = LAMBDA_RANGE[0] + (i[:, None, None] + t[None, :, None]) * CELL
        zeta = (j[:, None, None] + t[None, None, :]) * CELL
        lam, zeta = np.broadcast_arrays(lam, zeta)
        sigma = np.exp(lam)
        mu = sigma * Z0 * np.sinh(zeta / Z0)
        vals = BACKEND.to_host(quad_avg(self.unit, xp.asarray((sigma * sigma).reshape(-1)),
                                        TABLE_ORDER, mean=xp.asarray(mu.reshape(-1))))
        vals = vals.reshape(len(flat), MEAN_CHEB, MEAN_CHEB) / _peak(self.unit, sigma)
        self.coef[flat] = self._inv_vander @ vals @ self._inv_vander.T  # A^-1 V A^-T
        self.filled[flat] = True


def kept(key: tuple, make: Any) -> Any:
    """The table under ``key`` (made by ``make()`` if absent; it may be None); of each sort
    (key[0]: "with-mean", "zero-mean", "correlation", "variance") at most its limit
    (MAX_MEAN_TABLES, MAX_ZERO_MEAN_TABLES, MAX_CORRELATION_TABLES, MAX_VARIANCE_TABLES) are
    kept, the oldest made going first."""
    if key not in _TABLES:
        limit = {"with-mean": MAX_MEAN_TABLES, "zero-mean": MAX_ZERO_MEAN_TABLES,
                 "correlation": MAX_CORRELATION_TABLES,
                 "variance": MAX_VARIANCE_TABLES}[key[0]]
        same_sort = [k for k in _TABLES if k[0] == key[0]]
        for old in same_sort[:max(0, len(same_sort) - limit + 1)]:
            del _TABLES[old]
        _TABLES[key] = make()
    return _TABLES[key]


def _mean_table(unit: Unit) -> MeanTable:
    return kept(("with-mean", unit), lambda: MeanTable(unit))


def _peak(unit: Unit, sigma: Array) -> Array:
    """P(sigma): the scale the 2-D table of ``unit`` is relative to."""
    return 1.0 / (1.0 + sigma * sigma) ** 0.5 if unit.positive else 1.0


def _cheb_basis(x: Array) -> Array:
    """T_0..T_{MEAN_CHEB-1} at x, shape (P, MEAN_CHEB)."""
    xp = BACKEND.xp
    cols = [xp.ones_like(x), x]
    for _ in range(2, MEAN_CHEB):
        cols.append(2.0 * x * cols[-1] - cols[-2])
    return xp.stack(cols, axis=1)


def table_mean_avg(g: ScalarFunction, m: Array, s2: Array) -> Array:
    """E[g(m + s Z)], s^2 = s2, from g's 2-D table (g with a :func:`unit_form`); g(m) at
    s = 0; direct quadrature outside the table's range; NaN for non-finite arguments."""
    from .gaussian import quad_avg

    form = unit_form(g)
    if form is None:
        raise ValueError(f"{g!r} has no table of its Gaussian average with a mean")
    unit, amp, rate = form
    table = _mean_table(unit)
    xp = BACKEND.xp
    m, s2 = xp.broadcast_arrays(xp.asarray(m, dtype=xp.float64), xp.asarray(s2, dtype=xp.float64))
    shape = m.shape
    mu = rate * m.reshape(-1)
    sigma = rate * xp.sqrt(s2.reshape(-1))
    finite = xp.isfinite(mu) & xp.isfinite(sigma)
    out = xp.where(finite, 0.0, xp.nan)
    exact = xp.nonzero(finite & (sigma == 0))[0]  # s = 0: g(m) itself
    if exact.size:
        out[exact] = unit(mu[exact])
    with BACKEND.ignore_fp_errors():
        lam = xp.log(sigma)
        zeta = Z0 * xp.arcsinh(mu / (Z0 * sigma))
    if unit.even:
        zeta = xp.abs(zeta)
    live = finite & (sigma > 0)
    inside = (live & (lam >= LAMBDA_RANGE[0]) & (lam < LAMBDA_RANGE[1])
              & (xp.abs(zeta) < ZETA_MAX))
    idx = xp.nonzero(inside)[0]
    for start in range(0, int(idx.size), _CHUNK):
        rows = idx[start:start + _CHUNK]
        a = (lam[rows] - LAMBDA_RANGE[0]) / CELL
        b = zeta[rows] / CELL
        i, j = xp.floor(a), xp.floor(b)
        flat = table.index(i.astype(xp.int64), j.astype(xp.int64))
        coef = table.coefficients(flat)
        x = xp.clip(2.0 * (a - i) - 1.0, -1.0, 1.0)
        y = xp.clip(2.0 * (b - j) - 1.0, -1.0, 1.0)
        val = ops.cheb2d(coef, flat, x, y)
        if val is None:  # array expressions: T_a(x) coef T_b(y) per point
            val = xp.sum(xp.matmul(coef[flat], _cheb_basis(y)[:, :, None])[:, :, 0]
                         * _cheb_basis(x), axis=1)
        out[rows] = val * _peak(unit, sigma[rows])
    outside = xp.nonzero(live & ~inside)[0]
    if outside.size:
        out[outside] = quad_avg(unit, sigma[outside] ** 2, TABLE_ORDER, mean=mu[outside])
    return (amp * out).reshape(shape)


def cell_count() -> int:
    """Cells of 2-D tables filled so far in this process (all functions)."""
    return sum(int(t.filled.sum()) for t in _TABLES.values() if isinstance(t, MeanTable))
