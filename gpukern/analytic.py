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
Coinciding inputs (identical rows) get c = q exactly at every layer, so det = q q' - c^2
is exactly 0 there, never a rounding residue. Which executor computes a request, the
tiling and the mirroring are :mod:`gpukern.planner`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._backend import BACKEND
from .architecture import Architecture
from .functions import ScalarFunction
from .gaussian import expect_pair
from .registry import EXACT_DET_MAX_FEATURES

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


def layer1_det(arch: Architecture, xa: Array, xb: Array) -> Array | None:
    """det_1 = q q' - c^2 of the first layer without cancellation, for few features.

    Lagrange's identity: |x|^2 |y|^2 - <x, y>^2 = sum_{i<j} (x_i y_j - x_j y_i)^2, so

        det_1 = (sw^2/n0)^2 sum_{i<j} (x_i y_j - x_j y_i)^2 + (sw^2 sb^2 / n0) |x - y|^2

    is accurate to rounding of itself, also for (nearly) collinear inputs, where
    q q' - c^2 would leave a residue of order 1e-16 q q' (and arcsin turn it into 1e-8).
    Returns None for wider inputs (cost n0^2 per entry), which use q q' - c^2.
    """
    n0 = xa.shape[1]
    if n0 > EXACT_DET_MAX_FEATURES:
        return None
    xp = BACKEND.xp
    sw2, sb2 = arch.weight_std**2, arch.bias_std**2
    wedge = xp.zeros((xa.shape[0], xb.shape[0]))
    for i in range(n0):
        for j in range(i + 1, n0):
            cross = xa[:, i, None] * xb[None, :, j] - xa[:, j, None] * xb[None, :, i]
            wedge += cross * cross
    diff = xp.zeros_like(wedge)
    if sb2 > 0:
        for i in range(n0):
            d = xa[:, i, None] - xb[None, :, i]
            diff += d * d
    return (sw2 / n0) ** 2 * wedge + (sw2 * sb2 / n0) * diff


def tile(arch: Architecture, pairs: list[Pair], xa: Array, xb: Array, gram: Array,
         q1: list[Array], q2: list[Array], ida: Array, idb: Array) -> tuple[Array, list[Array]]:
    """Walk all layers for one tile with array operations. Returns (NNGP, [K per pair])."""
    xp = BACKEND.xp
    same = ida[:, None] == idb[None, :]
    det1 = layer1_det(arch, xa, xb)
    sw2, sb2 = arch.weight_std**2, arch.bias_std**2
    sig = sw2 * gram + sb2
    ks = [sig for _ in pairs]
    for l in range(arch.depth):
        q = q1[l][:, None]
        qp = q2[l][None, :]
        c = xp.where(same, q, sig)
        det = det1 if (l == 0 and det1 is not None) else xp.maximum(q * qp - c * c, 0.0)
        det = xp.where(same, 0.0, det)
        q, qp = xp.broadcast_to(q, c.shape), xp.broadcast_to(qp, c.shape)
        sig = sw2 * expect_pair(arch.sigma, arch.sigma, q, qp, c, det, arch.order) + sb2
        ks = [
            sig + sw2 * _mul0(expect_pair(p.left, p.right, q, qp, c, det, arch.order), k)
            for p, k in zip(pairs, ks)
        ]
    return sig, ks
