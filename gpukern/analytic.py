"""Infinite-width kernels: the layerwise Gram recursion on arrays (the "array" executor).

For a pair (x, x') and layer l, with q = Sigma_l(x, x), q' = Sigma_l(x', x'),
c = Sigma_l(x, x') and (u, v) ~ N(0, [[q, c], [c, q']]):

    Sigma_1 = sw^2 <x, x'>/n0 + sb^2        Sigma_{l+1} = sw^2 E[sigma(u) sigma(v)] + sb^2
    K_1     = Sigma_1                       K_{l+1}     = Sigma_{l+1} + sw^2 E[a(u) b(v)] K_l

where (a, b) are the left/right "derivatives" (true sigma' or surrogate). The output
kernels are Sigma_{L+1} (NNGP) and K_{L+1}. A delta derivative meeting q = 0 (x = 0 with
bias_std = 0) is infinite where K_l = 0: the product is defined as 0.

The per-layer diagonals q_l(i) depend on one point only and are computed once
(:func:`layer_diagonals`); each tile (:func:`tile`) then walks all layers on its own.
Coinciding inputs (identical rows: equal row ids, decided once by the planner) get
c = q and det = 0 exactly at every layer, never a rounding residue. For every other pair
the determinant det = q q' - c^2 is carried from layer to layer without cancellation:
layer 1 from the inputs (:func:`layer1_det`), each next layer from the
activation's gaps (:func:`next_det`), so that 1 - rho stays accurate to rounding for
nearly collinear or antipodal inputs, where arcsin/arccos forms would turn an absolute
error eps of rho into sqrt(eps). Which executor computes a request, the
tiling and the mirroring are :mod:`gpukern.planner`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._backend import BACKEND
from .architecture import Architecture
from .functions import ScalarFunction
from .gaussian import expect_pair
from .registry import EXACT_DET_MAX_FEATURES, WIDE_DET_RECHECK, det_gaps

Array = Any


@dataclass(frozen=True)
class Pair:
    """A kernel's (left, right) derivatives and whether the kernel is symmetric."""

    left: ScalarFunction
    right: ScalarFunction

    @property
    def symmetric(self) -> bool:
        return self.left == self.right


def _mul0(d: Array, k: Array) -> Array:
    """d * k with 0 * inf = 0 (a delta's infinite factor meeting a vanishing kernel)."""
    xp = BACKEND.xp
    with BACKEND.ignore_fp_errors():
        return xp.where((k == 0) | (d == 0), 0.0, d * k)


def layer_diagonals(arch: Architecture, sq_norms: Array, n0: int) -> list[Array]:
    """q_l(i) = Sigma_l(x_i, x_i) for l = 1..depth (the inputs of each activation)."""
    xp = BACKEND.xp
    sw2, sb2 = arch.weight_std**2, arch.bias_std**2
    q = sw2 * sq_norms / n0 + sb2
    out = [q]
    zero = xp.zeros_like(q)
    for _ in range(arch.depth - 1):
        q = sw2 * expect_pair(arch.sigma, arch.sigma, q, q, q, zero, arch.order) + sb2
        out.append(q)
    return out


def _two_product(a: Array, b: Array) -> tuple[Array, Array]:
    """(p, e) with p = fl(a b) and p + e = a b exactly (Dekker's product with Veltkamp's
    split; the C++ headers get e from one fma, the same number)."""
    def split(v):
        t = 134217729.0 * v  # 2**27 + 1
        hi = t - (t - v)
        return hi, v - hi

    p = a * b
    ah, al = split(a)
    bh, bl = split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def layer1_det(arch: Architecture, xa: Array, xb: Array, q: Array, qp: Array, c: Array
               ) -> Array:
    """det_1 = q q' - c^2 of the first layer without cancellation.

    Lagrange's identity: |x|^2 |y|^2 - <x, y>^2 = sum_{i<j} (x_i y_j - x_j y_i)^2, so

        det_1 = (sw^2/n0)^2 sum_{i<j} (x_i y_j - x_j y_i)^2 + (sw^2 sb^2 / n0) |x - y|^2

    with each cross term from exact products (x_i y_j - x_j y_i = (p1 - p2) + (e1 - e2)):
    accurate to a few roundings of itself also for (nearly) collinear inputs, where
    q q' - c^2 would leave a residue of order 1e-16 q q' (and arcsin turn it into 1e-8).
    That costs n0^2 per entry; wider inputs take q q' - c^2 and recompute the entries
    where it is below WIDE_DET_RECHECK * q q' (:func:`_residual_det`, n0 per entry).
    """
    n0 = xa.shape[1]
    xp = BACKEND.xp
    sw2, sb2 = arch.weight_std**2, arch.bias_std**2
    if n0 > EXACT_DET_MAX_FEATURES:
        det = xp.maximum(q * qp - c * c, 0.0)
        rows, cols = xp.nonzero(det < WIDE_DET_RECHECK * (q * qp))
        for start in range(0, int(rows.shape[0]), _RECHECK_CHUNK):
            i, j = rows[start:start + _RECHECK_CHUNK], cols[start:start + _RECHECK_CHUNK]
            det[i, j] = _residual_det(xa[i], xb[j], sw2, sb2)
        return det
    wedge = xp.zeros((xa.shape[0], xb.shape[0]))
    for i in range(n0):
        for j in range(i + 1, n0):
            p1, e1 = _two_product(xa[:, i, None], xb[None, :, j])
            p2, e2 = _two_product(xa[:, j, None], xb[None, :, i])
            cross = (p1 - p2) + (e1 - e2)
            wedge += cross * cross
    diff = xp.zeros_like(wedge)
    if sb2 > 0:
        for i in range(n0):
            d = xa[:, i, None] - xb[None, :, i]
            diff += d * d
    return (sw2 / n0) ** 2 * wedge + (sw2 * sb2 / n0) * diff


_RECHECK_CHUNK = 1 << 14  # entries recomputed at once (memory: this times n0 doubles)


def _residual_det(x: Array, y: Array, sw2: float, sb2: float) -> Array:
    """det_1 of row pairs (x[m], y[m]) in O(n0): |x|^2 |y|^2 - <x, y>^2 = |x|^2 |y - lam x|^2
    for lam = <x, y>/|x|^2. An error d of lam adds d^2 |x|^4, so lam is carried as
    hi + lo (hi = <x, y>/|x|^2, lo = <x, r>/|x|^2 its refinement: a float alone is off
    by half an ulp) and r = ((y - p) - e) - lo x with p + e = hi x exactly. Sums run
    feature by feature (the order of recursion.cuh's layer1_det_wide)."""
    xp = BACKEND.xp
    n0 = x.shape[1]

    def residual(k, hi, lo):
        p, e = _two_product(hi, x[:, k])
        return ((y[:, k] - p) - e) - lo * x[:, k]

    xx, xy = xp.zeros(x.shape[0]), xp.zeros(x.shape[0])
    for k in range(n0):
        xx += x[:, k] * x[:, k]
        xy += x[:, k] * y[:, k]
    live = xx > 0
    zero = xp.zeros_like(xx)
    with BACKEND.ignore_fp_errors():
        hi = xp.where(live, xy / xx, 0.0)
        xr = xp.zeros_like(xx)
        for k in range(n0):
            xr += x[:, k] * residual(k, hi, zero)
        lo = xp.where(live, xr / xx, 0.0)
    rr, diff = xp.zeros_like(xx), xp.zeros_like(xx)
    for k in range(n0):
        r = residual(k, hi, lo)
        rr += r * r
        d = x[:, k] - y[:, k]
        diff += d * d
    return (sw2 / n0) ** 2 * (xx * rr) + (sw2 * sb2 / n0) * diff


def next_det(arch: Architecture, q: Array, qp: Array, c: Array, det: Array) -> Array | None:
    """det_{l+1} = Q Q' - C^2 of the next layer without cancellation, or None when the
    activation has no gaps (registry capability ``det_gaps``).

    With Q = sw^2 (kappa + alpha) + sb^2, C = sw^2 (kappa + beta) + sb^2 (the activation's
    :class:`~gpukern.functions.Gaps`) and S = sw^2 kappa + sb^2:

        Q Q' - C^2 = sw^4 gminus gplus + sw^2 S ((sqrt(alpha) - sqrt(alphap))^2 + 2 gminus)

    a sum of non-negative terms, each accurate to rounding.
    """
    if not det_gaps(arch.sigma.kind):
        return None
    xp = BACKEND.xp
    sw2, sb2 = arch.weight_std**2, arch.bias_std**2
    g = arch.sigma.self_gaps(q, qp, c, det)
    s = sw2 * g.kappa + sb2
    d = xp.sqrt(g.alpha) - xp.sqrt(g.alphap)
    return (sw2 * sw2) * (g.gminus * g.gplus) + (sw2 * s) * (d * d + 2.0 * g.gminus)


def _own_term(coefficients: tuple[float, float], sw2: float, sb2: float, avg: Array,
              sig: Array) -> Array:
    """alpha avg + beta, a layer's own kernel term: Sigma itself (already computed, the
    same expression) when the coefficients are the NNGP's (NTK parameterization)."""
    alpha, beta = coefficients
    return sig if (alpha, beta) == (sw2, sb2) else alpha * avg + beta


def tile(arch: Architecture, pairs: list[Pair], xa: Array, xb: Array, gram: Array,
         q1: list[Array], q2: list[Array], ida: Array, idb: Array) -> tuple[Array, list[Array]]:
    """Walk all layers for one tile with array operations. Returns (NNGP, [K per pair])."""
    xp = BACKEND.xp
    same = ida[:, None] == idb[None, :]
    sw2, sb2 = arch.weight_std**2, arch.bias_std**2
    own = arch.own_terms(xa.shape[1])
    sig = sw2 * gram + sb2
    ks = [_own_term(own[0], sw2, sb2, gram, sig) for _ in pairs]
    carried = None
    for l in range(arch.depth):
        q = q1[l][:, None]
        qp = q2[l][None, :]
        c = xp.where(same, q, sig)
        if l == 0:
            det = layer1_det(arch, xa, xb, q, qp, c)
        else:
            det = carried if carried is not None else xp.maximum(q * qp - c * c, 0.0)
        det = xp.where(same, 0.0, det)
        q, qp = xp.broadcast_to(q, c.shape), xp.broadcast_to(qp, c.shape)
        avg = expect_pair(arch.sigma, arch.sigma, q, qp, c, det, arch.order)
        sig = sw2 * avg + sb2
        term = _own_term(own[l + 1], sw2, sb2, avg, sig)
        ks = [
            term + sw2 * _mul0(expect_pair(p.left, p.right, q, qp, c, det, arch.order), k)
            for p, k in zip(pairs, ks)
        ]
        if l + 1 < arch.depth:
            carried = next_det(arch, q, qp, c, det)
    return sig, ks
