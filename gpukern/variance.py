"""A pair over varying variances as a table: E[f(u) g(v)] = F(q, q', rho).

Where the points of a layer have many variances (the first layer of inputs with
different norms), a pair without a closed form depends on an entry through (q, q', rho).
Over one cell of variances, q in [2^lo, 2^(lo + SPAN)] on the left and q' in a cell on
the right, F is tabled once per (f, g, cells) and then read per entry.

The coordinates are x = 2 (log2 q - lo) / SPAN - 1 on each side and, as in
:mod:`gpukern.correlation`, t = sqrt(1 - |rho|) on two halves (rho >= 0, rho < 0). F is
analytic in log q (the average of f over N(0, q) is analytic for Re q > 0; measured: 32
Chebyshev nodes over 8 octaves leave a tail ~1e-15 of max |F| for the built-in
surrogates) and, at fixed (q, q'), analytic in t on each half with features on a scale
t ~ width / sqrt(q) that the t panels resolve. The values at NODES x NODES Chebyshev nodes
in (x, x') times the Chebyshev nodes of dyadic t panels (one layout for the whole cell,
split until every node pair's tail is below TOL of the cell's largest |F|) come from the
pair's own route (Mehler's series or the reduced pair), as for the correlation tables.

F is of low rank in (q, q') (measured: ranks 12 for fast_sigmoid(2), 14 for atan(2) and
sigmoid(3) x sigmoid(2) at RANK_TOL over a cell of 8 octaves),
so the table keeps it in Tucker form: F = sum_{r, s} phi_r(x) psi_s(x') G_{r s}(t), with
phi_r = sum_a T_a(x) U[a, r] from the SVD of the coefficients (rank cut where the
discarded singular values are below RANK_TOL of max |F|), and per half and t panel the
core G (r1, r2, DEGREE + 1) of Chebyshev coefficients in the panel's own coordinate. An
entry costs r1 r2 (DEGREE + 1) multiply-adds, or r2 (DEGREE + 1) where a row's phi is
contracted into the cores once (the compiled CPU loop, ``VarianceRow`` in
kernels/cpu_kernels.cpp).

Tables are data: the compiled CPU loop reads :meth:`VarianceTable.data` with the
functions of cuda/gpukern/tables.cuh (``variance_basis``, ``variance_panel``; the
per-entry ``variance_entry`` is a GPU thread's read, tested on the host), the array path
(NumPy or CuPy) with :meth:`VarianceTable.__call__`. The fused CUDA kernel does not read
them yet.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ._backend import BACKEND
from .correlation import (
    DEGREE,
    MAX_LEVEL,
    TOL,
    cheb_coefficients,
    cheb_nodes,
    clenshaw,
    covariance_at,
    dyadic_halves,
    panel_cells,
    panel_x,
    t_cells,
)
from .registry import VARIANCE_NODES

Array = Any

SPAN = 8
"""Octaves of q a cell spans; cells start at whole octaves (lo = floor(log2 min q))."""
NODES = VARIANCE_NODES
"""Chebyshev nodes in log2 q per side of a cell."""
MAX_PANELS = 64
"""t panels a half may have (the built-in surrogates need 8-10): a table that needs more
is not made, so no pair can make the builder evaluate without bound."""
RANK_TOL = 1e-12
"""The Tucker rank: discarded singular values (root sum of squares) below this times the
cell's largest |F|."""
HEADER = 11
"""Doubles before the bases in :meth:`VarianceTable.data`: MAX_LEVEL, DEGREE, NODES, r1,
r2, lo1, lo2, SPAN, the offsets of the two halves, and the number of panels."""
_GATHER = 1 << 22  # doubles of cores gathered at once on the array path (32 MB)


def cell_of(q_min: float, q_max: float) -> int | None:
    """The cell's lo for variances in [q_min, q_max]: floor(log2 q_min), None where they
    are not positive and finite or span more than SPAN octaves from it."""
    if not (0.0 < q_min <= q_max < math.inf):
        return None
    lo = math.floor(math.log2(q_min))
    return lo if math.log2(q_max) <= lo + SPAN else None


def _cheb_matrix(x: Array, n: int) -> Array:
    """T_a(x) for a < n: (len(x), n)."""
    xp = BACKEND.xp
    out = xp.empty((x.shape[0], n))
    out[:, 0] = 1.0
    if n > 1:
        out[:, 1] = x
    for a in range(2, n):
        out[:, a] = 2.0 * x * out[:, a - 1] - out[:, a - 2]
    return out


def _rank(s: np.ndarray, bound: float) -> int:
    """The fewest leading singular values whose discarded tail (root sum of squares) is
    at most ``bound``."""
    tail = np.sqrt(np.cumsum((s * s)[::-1]))[::-1]  # tail[r] = |s[r:]|
    keep = np.nonzero(tail > bound)[0]
    return int(keep[-1]) + 1 if keep.size else 1


class VarianceTable:
    """F(q, q', rho) over one cell pair in Tucker form: bases u1 (NODES, r1), u2 (NODES, r2)
    of Chebyshev coefficients in x, x', and per half (0: rho >= 0, 1: rho < 0) its t panels
    (``lo``, ``width``, dyadic, covering [0, 1]), the index of 2^MAX_LEVEL t cells, and the
    cores (n_panels, r1, r2, DEGREE + 1)."""

    def __init__(self, lo1: int, lo2: int, u1: np.ndarray, u2: np.ndarray,
                 halves: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
        self.lo1, self.lo2, self.u1, self.u2, self.halves = lo1, lo2, u1, u2, halves
        self.cells = panel_cells(halves)
        self._device: tuple | None = None
        self._data: np.ndarray | None = None

    @property
    def ranks(self) -> tuple[int, int]:
        return self.u1.shape[1], self.u2.shape[1]

    def covers(self, q_min: float, q_max: float, qp_min: float, qp_max: float) -> bool:
        return (2.0 ** self.lo1 <= q_min and q_max <= 2.0 ** (self.lo1 + SPAN)
                and 2.0 ** self.lo2 <= qp_min and qp_max <= 2.0 ** (self.lo2 + SPAN))

    def data(self) -> np.ndarray:
        """The layout gk::variance_basis / gk::variance_panel read: HEADER doubles, u1 and
        u2 (row-major), then per half its cell index (2^MAX_LEVEL panel numbers) and per
        panel (lo, 2 / width, the core r1 x r2 x (DEGREE + 1), row-major)."""
        if self._data is not None:
            return self._data
        r1, r2 = self.ranks
        parts = [self.u1.reshape(-1), self.u2.reshape(-1)]
        at = HEADER + self.u1.size + self.u2.size
        offsets = []
        for (lo, width, core), cells in zip(self.halves, self.cells):
            offsets.append(at)
            rows = np.concatenate([lo[:, None], (2.0 / width)[:, None],
                                   core.reshape(core.shape[0], -1)], axis=1)
            parts += [cells.astype(np.float64), rows.reshape(-1)]
            at += cells.size + rows.size
        head = np.array([MAX_LEVEL, DEGREE, NODES, r1, r2, self.lo1, self.lo2, SPAN,
                         offsets[0], offsets[1], sum(h[0].size for h in self.halves)],
                        dtype=np.float64)
        self._data = np.concatenate([head] + parts)
        return self._data

    def basis(self, q: Array, side: int) -> Array:
        """phi (side 0) or psi (side 1) at each q: (len(q), r)."""
        xp = BACKEND.xp
        lo = self.lo1 if side == 0 else self.lo2
        u = self._arrays()[side]
        x = (xp.log2(q) - lo) * (2.0 / SPAN) - 1.0
        x = xp.where(x > 1.0, 1.0, xp.where(x < -1.0, -1.0, x))
        return _cheb_matrix(x, NODES) @ u

    def _arrays(self) -> tuple:
        if self._device is None:
            xp = BACKEND.xp
            halves = [tuple(xp.asarray(a) for a in (lo, 2.0 / width, core, cells))
                      for (lo, width, core), cells in zip(self.halves, self.cells)]
            self._device = (xp.asarray(self.u1), xp.asarray(self.u2), halves)
        return self._device

    def __call__(self, q: Array, qp: Array, c: Array, det: Array) -> Array:
        """F at each entry (flat arrays, q and q' inside the cells): sum over r, s of
        phi_r psi_s times the core's Clenshaw sum in the entry's t panel."""
        xp = BACKEND.xp
        _, _, halves = self._arrays()
        rho, t, cell = t_cells(q, qp, c, det)
        out = xp.full(t.shape, xp.nan, dtype=xp.float64)  # NaN where rho is
        step = max(1, _GATHER // (self.u1.shape[1] * self.u2.shape[1] * (DEGREE + 1)))
        for half, (lo, scale, core, cells) in enumerate(halves):
            idx = xp.nonzero(rho >= 0.0 if half == 0 else rho < 0.0)[0]
            for start in range(0, int(idx.size), step):
                e = idx[start:start + step]
                p = cells[cell[e]]
                d = xp.einsum("er,es,erst->et", self.basis(q[e], 0), self.basis(qp[e], 1),
                              core[p])
                out[e] = clenshaw(lambda k, d=d: d[:, k], panel_x(t[e], lo[p], scale[p]))
        return out


def _nodes_q(lo: int) -> np.ndarray:
    """The NODES variances of a cell (at the Chebyshev nodes in x)."""
    return 2.0 ** (lo + 0.5 * SPAN * (cheb_nodes(NODES) + 1.0))


def build(pair: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray],
          lo1: int, lo2: int, symmetric: bool = False) -> VarianceTable | None:
    """The table of F over the cells starting at 2^lo1 (q) and 2^lo2 (q'), or None where
    a t panel at MAX_LEVEL is not converged, a half needs more than MAX_PANELS panels, F
    is not finite, its Chebyshev tail in x or x' is above TOL, or the Tucker form misses
    the node values by more than TOL (all relative to the cell's largest |F|).
    ``pair(q, qp, c, det)`` evaluates F (flat float64 host arrays); ``symmetric``:
    F(q, q') = F(q', q) and lo1 = lo2 (f = g), so only the node pairs a <= b are
    evaluated."""
    q1, q2 = _nodes_q(lo1), _nodes_q(lo2)
    if symmetric and lo1 != lo2:
        raise ValueError(f"symmetric: expected lo1 == lo2, got {lo1} and {lo2}")
    ia, ib = np.triu_indices(NODES) if symmetric else np.indices((NODES, NODES)).reshape(2, -1)
    qa, qb = q1[ia][:, None, None], q2[ib][:, None, None]  # (node pair, panel, node)

    def values_at(sign: float, t: np.ndarray) -> np.ndarray:
        c, det = covariance_at(sign, t[None], qa, qb)
        shape = np.broadcast_shapes(qa.shape, c.shape)
        args = [np.broadcast_to(a, shape).reshape(-1) for a in (qa, qb, c, det)]
        got = np.asarray(pair(*args), dtype=np.float64).reshape(shape)
        values = np.empty((NODES, NODES) + got.shape[1:])
        values[ib, ia] = got  # the mirror first: a = b is its own
        values[ia, ib] = got
        return values  # (a, b, panel, node)

    found = dyadic_halves(values_at, shared_scale=True, max_panels=MAX_PANELS)
    return None if found is None else _tucker(lo1, lo2, *found)


def _tucker(lo1: int, lo2: int, halves: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
            scale: float) -> VarianceTable | None:
    """The Tucker form of the halves' coefficients (a, b, panel, k), or None where the
    Chebyshev tail in x or x' or the truncation's error at the nodes is above TOL * scale."""
    # Chebyshev coefficients in x and x' (node a is cheb_nodes(NODES)[a])
    cheb = [cheb_coefficients(cheb_coefficients(coef, 0), 1) for _, _, coef in halves]
    for c in cheb:
        q_tail = max(np.max(np.abs(c[-2:])), np.max(np.abs(c[:, -2:])))
        if q_tail > TOL * scale:
            return None
    u1, s1, _ = np.linalg.svd(np.concatenate([c.reshape(NODES, -1) for c in cheb], axis=1),
                              full_matrices=False)
    u2, s2, _ = np.linalg.svd(np.concatenate([np.swapaxes(c, 0, 1).reshape(NODES, -1)
                                              for c in cheb], axis=1), full_matrices=False)
    u1 = u1[:, :_rank(s1, RANK_TOL * scale)]
    u2 = u2[:, :_rank(s2, RANK_TOL * scale)]
    out = []
    for (lo, width, _), c in zip(halves, cheb):
        core = np.einsum("ar,bs,abpk->prsk", u1, u2, c)
        back = np.einsum("ar,bs,prsk->abpk", u1, u2, core)
        if np.max(np.abs(back - c)) > TOL * scale:
            return None
        out.append((lo, width, np.ascontiguousarray(core)))
    return VarianceTable(lo1, lo2, np.ascontiguousarray(u1), np.ascontiguousarray(u2), out)
