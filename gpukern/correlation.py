"""A pair at fixed variances as a table in the correlation: E[f(u) g(v)] = F(rho).

Where every point of a layer has one variance q on the left and one q' on the right (a
sign or step network's layers after the first, sigma^2 = 1; inputs of one norm: every
layer), a pair without a closed form depends on an entry only through
rho = c / sqrt(q q'). It is tabled once per (f, g, q, q') and then costs a table read per
entry, instead of a 1-D rule (the reduced pair) or a long series.

The coordinate is t = sqrt(1 - |rho|) on two halves, rho >= 0 and rho < 0, each t in
[0, 1]. F is analytic in t on each closed half: its non-analytic terms at rho = +-1 are
powers (1 -+ rho)^(k/2) (a kink of f or g gives k = 3), polynomials in t, and a narrow
f or g makes F peak on a scale t ~ width / sqrt(q), which the panels resolve. Each half
is piecewise Chebyshev of degree DEGREE on dyadic panels of [0, 1]: a panel is split
until its two last coefficients are below TOL times the half's largest value (at most
MAX_LEVEL halvings, where FLOOR, the node values' own noise, suffices; a table that needs
more is not made and the entries keep their route). The values at the nodes come from
the pair's own route (Mehler's series or the reduced pair, ``gaussian.series_or_reduced``),
so the table is as accurate as they are, to TOL. An entry's t is computed from the
determinant where |rho| > 1/2, 1 - |rho| = det / (q q' (1 + |rho|)), so that
near-coinciding inputs keep their digits.

Tables are data: the compiled CPU loop and the CUDA kernel read the same layout with
``gk::correlation_entry`` (cuda/gpukern/tables.cuh), the array path with
:meth:`CorrelationTable.__call__` (the same expression).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._backend import BACKEND
from .registry import CORRELATION_DEGREE

Array = Any

DEGREE = CORRELATION_DEGREE
"""Chebyshev degree of a panel (DEGREE + 1 coefficients)."""
MAX_LEVEL = 12
"""Finest panel: 2^-MAX_LEVEL of [0, 1] in t (1 - |rho| down to ~6e-8 within one panel)."""
START_LEVEL = 3
"""Panels a half starts with: 2^START_LEVEL."""
TOL = 1e-12
"""A panel is kept when |c_{DEGREE-1}| + |c_DEGREE| <= TOL * (the half's largest |F|): above
the noise of the node values (the reduced pair's ~1e-13 relative, which halving a panel
does not lower), three orders below the pairs' 1e-9 accuracy target."""
FLOOR = 1e-11
"""A panel of the finest width is kept when its tail is below FLOOR times the half's
largest |F| (the node values' own noise near rho = +-1, where the reduced pair meets
det -> 0, ~1e-12 relative, does not shrink with the panel); above it the table is refused."""
HEADER = 3
"""Doubles before the halves in :meth:`CorrelationTable.data`: MAX_LEVEL, DEGREE, and the
offset of the negative half."""


def cheb_nodes(n: int = DEGREE + 1) -> np.ndarray:
    """The n Chebyshev points cos(pi (k + 1/2) / n), k < n (decreasing)."""
    k = np.arange(n)
    return np.cos(np.pi * (k + 0.5) / n)


def cheb_coefficients(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Chebyshev coefficients along ``axis`` from values at :func:`cheb_nodes` (as many as
    the axis is long)."""
    v = np.moveaxis(values, axis, -1)
    n = v.shape[-1]
    k = np.arange(n)
    theta = np.pi * (k + 0.5) / n
    basis = np.cos(np.outer(k, theta))  # (coefficient, node)
    coef = (2.0 / n) * v @ basis.T
    coef[..., 0] *= 0.5
    return np.moveaxis(coef, -1, axis)


def one_minus_abs_rho(q: Array, qp: Array, c: Array, det: Array) -> tuple[Array, Array]:
    """(rho, 1 - |rho|), rho = c / sqrt(q q') clipped to [-1, 1]; 1 - |rho| from det where
    |rho| > 1/2 (gk::correlation_entry)."""
    xp = BACKEND.xp
    r = c / xp.sqrt(q * qp)
    rho = xp.where(r > 1.0, 1.0, xp.where(r < -1.0, -1.0, r))
    a = xp.abs(rho)
    near = det / ((q * qp) * (1.0 + a))
    return rho, xp.where(a > 0.5, near, 1.0 - a)


def t_cells(q: Array, qp: Array, c: Array, det: Array) -> tuple[Array, Array, Array]:
    """Per entry (rho, t, cell): t = sqrt(1 - |rho|), 0 where rho is NaN (as
    gk::correlation_panel), and its cell among the 2^MAX_LEVEL cells of [0, 1]."""
    xp = BACKEND.xp
    rho, om = one_minus_abs_rho(q, qp, c, det)
    t = xp.sqrt(xp.where(om > 0.0, om, 0.0))
    n_cells = 1 << MAX_LEVEL
    return rho, t, xp.minimum((t * n_cells).astype(xp.int64), n_cells - 1)


def covariance_at(sign: float, t: np.ndarray, q: np.ndarray | float, qp: np.ndarray | float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(c, det) at t = sqrt(1 - |rho|) on the half of ``sign`` (t_cells' inverse):
    c = sign (1 - t^2) sqrt(q q'), det = q q' (1 - rho^2) = q q' t^2 (2 - t^2), exact in t."""
    om = t * t  # 1 - |rho|
    return sign * (1.0 - om) * np.sqrt(q * qp), (q * qp) * om * (2.0 - om)


def panel_x(t: Array, lo: Array, scale: Array) -> Array:
    """x = (t - lo) 2 / width - 1 of t in its panel (scale = 2 / width), clipped to [-1, 1]."""
    xp = BACKEND.xp
    x = (t - lo) * scale - 1.0
    return xp.where(x > 1.0, 1.0, xp.where(x < -1.0, -1.0, x))


def clenshaw(coefficient: Callable[[int], Array], x: Array) -> Array:
    """sum_{k <= DEGREE} a_k T_k(x) by Clenshaw's recurrence, per entry; ``coefficient(k)``
    gives a_k per entry (a column at a time: no (entries, DEGREE + 1) gather)."""
    xp = BACKEND.xp
    b1 = xp.zeros(x.shape)
    b2 = xp.zeros(x.shape)
    for k in range(DEGREE, 0, -1):
        b1, b2 = coefficient(k) + 2.0 * x * b1 - b2, b1
    return coefficient(0) + x * b1 - b2


def panel_cells(halves: list[tuple[np.ndarray, ...]]) -> list[np.ndarray]:
    """Per half (lo, width, ...) its cell index: for each of the 2^MAX_LEVEL cells of t
    the panel holding it. Raises where the dyadic panels do not cover [0, 1] in order."""
    cells = []
    n_cells = 1 << MAX_LEVEL
    for lo, width, *_ in halves:
        count = np.rint(width * n_cells).astype(np.int64)
        cells.append(np.repeat(np.arange(lo.size), count))
        if lo[0] != 0.0 or cells[-1].size != n_cells:
            raise ValueError("the panels of a half must cover [0, 1] in order")
    return cells


class CorrelationTable:
    """F(rho) of one pair at fixed (q, q'): per half (0: rho >= 0, 1: rho < 0) its panels'
    left edges ``lo`` and widths (dyadic, together covering [0, 1] in t), a cell index
    (2^MAX_LEVEL cells of t, each the panel holding it) and (n_panels, DEGREE + 1)
    Chebyshev coefficients."""

    def __init__(self, halves: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
        self.halves = halves  # (lo, width, coef) per half, panels by increasing lo
        self.cells = panel_cells(halves)
        self._device: list | None = None

    @property
    def panels(self) -> int:
        return sum(h[0].size for h in self.halves)

    def data(self) -> np.ndarray:
        """The layout gk::correlation_entry reads: HEADER doubles, then per half its cell
        index (2^MAX_LEVEL panel numbers) and per panel (lo, 2 / width, DEGREE + 1
        coefficients)."""
        parts, at = [], HEADER
        offsets = []
        for (lo, width, coef), cells in zip(self.halves, self.cells):
            offsets.append(at)
            rows = np.concatenate([lo[:, None], (2.0 / width)[:, None], coef], axis=1)
            parts += [cells.astype(np.float64), rows.reshape(-1)]
            at += cells.size + rows.size
        head = np.array([MAX_LEVEL, DEGREE, offsets[1]], dtype=np.float64)
        return np.concatenate([head] + parts)

    def __call__(self, q: Array, qp: Array, c: Array, det: Array) -> Array:
        """F at each entry (flat arrays): the half by rho's sign, the panel by the cell of t,
        Clenshaw's recurrence in the panel's x = (t - lo) 2 / width - 1."""
        xp = BACKEND.xp
        if self._device is None:
            self._device = [tuple(xp.asarray(a) for a in (lo, 2.0 / width, coef, cells))
                            for (lo, width, coef), cells in zip(self.halves, self.cells)]
        rho, t, cell = t_cells(q, qp, c, det)
        out = xp.full(t.shape, xp.nan, dtype=xp.float64)  # NaN where rho is
        for half, (lo, scale, coef, cells) in enumerate(self._device):
            idx = xp.nonzero(rho >= 0.0 if half == 0 else rho < 0.0)[0]
            if idx.size == 0:
                continue
            p = cells[cell[idx]]
            out[idx] = clenshaw(lambda k, a=coef, p=p: a[p, k], panel_x(t[idx], lo[p], scale[p]))
        return out


def dyadic_halves(values_at: Callable[[float, np.ndarray], np.ndarray],
                  shared_scale: bool = False, max_panels: int | None = None
                  ) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray]], float] | None:
    """The two halves (sign +1: rho >= 0, -1: rho < 0) as piecewise Chebyshev on dyadic
    panels of [0, 1] in t: ``values_at(sign, t)`` gives F at t (panels, DEGREE + 1) as an
    array (..., panels, DEGREE + 1) (leading axes: tabled together, one panel layout); a
    panel is split until its tail (the two last coefficients, the largest over the leading
    axes) is below TOL times the largest |F| so far (per half, or over both with
    ``shared_scale``), FLOOR at MAX_LEVEL. Returns per half (lo, width, coefficients
    (..., panels, DEGREE + 1)) and the scale, or None where a finest panel is not
    converged, F is not finite, or a half passes ``max_panels``."""
    x = cheb_nodes()
    halves = []
    scale = 0.0
    for sign in (1.0, -1.0):
        n0 = 1 << START_LEVEL
        todo = [(k / n0, 1.0 / n0) for k in range(n0)]
        done: list[tuple[float, float, np.ndarray]] = []
        if not shared_scale:
            scale = 0.0
        while todo:
            lo = np.array([a for a, _ in todo])
            width = np.array([w for _, w in todo])
            t = lo[:, None] + 0.5 * width[:, None] * (x[None, :] + 1.0)  # (panels, nodes)
            values = np.asarray(values_at(sign, t), dtype=np.float64)
            if not np.all(np.isfinite(values)):
                return None
            scale = max(scale, float(np.max(np.abs(values))))
            coef = cheb_coefficients(values)
            tail = np.abs(coef[..., -1]) + np.abs(coef[..., -2])
            tail = tail.reshape(-1, lo.size).max(axis=0)
            todo = []
            for k in range(lo.size):
                finest = width[k] <= 2.0 ** -MAX_LEVEL
                if tail[k] <= (FLOOR if finest else TOL) * scale:
                    done.append((lo[k], width[k], coef[..., k, :]))
                elif finest:
                    return None
                else:
                    todo += [(lo[k], 0.5 * width[k]), (lo[k] + 0.5 * width[k], 0.5 * width[k])]
            if max_panels is not None and len(done) + len(todo) > max_panels:
                return None
        done.sort(key=lambda d: d[0])
        halves.append((np.array([d[0] for d in done]), np.array([d[1] for d in done]),
                       np.stack([d[2] for d in done], axis=-2)))
    return halves, scale


def build(pair: Callable[[np.ndarray, np.ndarray], np.ndarray], q: float, qp: float
          ) -> CorrelationTable | None:
    """The table of F, or None where a panel at MAX_LEVEL is still not converged (or F is
    not finite). ``pair(c, det)`` evaluates F at covariances c with determinants det
    (flat float64 host arrays)."""

    def values_at(sign: float, t: np.ndarray) -> np.ndarray:
        c, det = covariance_at(sign, t, q, qp)
        return np.asarray(pair(c.reshape(-1), det.reshape(-1)),
                          dtype=np.float64).reshape(t.shape)

    found = dyadic_halves(values_at)
    return None if found is None else CorrelationTable(found[0])
