"""Infinite-width kernels: the layerwise Gram recursion, computed in tiles.

For a pair (x, x') and layer l, with q = Sigma_l(x, x), q' = Sigma_l(x', x'),
c = Sigma_l(x, x') and (u, v) ~ N(0, [[q, c], [c, q']]):

    Sigma_1 = sw^2 <x, x'>/n0 + sb^2        Sigma_{l+1} = sw^2 E[sigma(u) sigma(v)] + sb^2
    K_1     = Sigma_1                       K_{l+1}     = Sigma_{l+1} + sw^2 E[a(u) b(v)] K_l

where (a, b) are the left/right "derivatives" (true sigma' or surrogate). The output
kernels are Sigma_{L+1} (NNGP) and K_{L+1}. A delta derivative meeting q = 0 (x = 0 with
bias_std = 0) is infinite where K_l = 0: the product is defined as 0.

The per-layer diagonals q_l(i) depend on one point only and are computed once; each
(row-block, column-block) tile then walks all layers on its own, so peak memory is the
output plus a few tiles. Coinciding inputs (identical rows) get c = q exactly at every
layer, so det = q q' - c^2 is exactly 0 there, never a rounding residue.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._backend import BACKEND
from .functions import ScalarFunction
from .gaussian import DEFAULT_ORDER, expect_pair

Array = Any

DEFAULT_TILE = 1024


@dataclass(frozen=True)
class Recursion:
    """What the recursion needs: activation, its true derivative, the surrogate, stds."""

    depth: int
    sigma: ScalarFunction
    weight_std: float
    bias_std: float
    order: int = DEFAULT_ORDER


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
    with xp.errstate(invalid="ignore"):
        return xp.where((k == 0) | (d == 0), 0.0, d * k)


def layer_diagonals(rec: Recursion, sq_norms: Array, n0: int) -> list[Array]:
    """q_l(i) = Sigma_l(x_i, x_i) for l = 1..depth (the inputs of each activation)."""
    xp = BACKEND.xp
    sw2, sb2 = rec.weight_std**2, rec.bias_std**2
    q = sw2 * sq_norms / n0 + sb2
    out = [q]
    zero = xp.zeros_like(q)
    for _ in range(rec.depth - 1):
        q = sw2 * expect_pair(rec.sigma, rec.sigma, q, q, q, zero, rec.order) + sb2
        out.append(q)
    return out


EXACT_DET_MAX_FEATURES = 8


def layer1_det(rec: Recursion, xa: Array, xb: Array) -> Array | None:
    """det_1 = q q' - c^2 of the first layer without cancellation, for n0 <= 8 features.

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
    sw2, sb2 = rec.weight_std**2, rec.bias_std**2
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


def _tile(rec: Recursion, pairs: list[Pair], xa: Array, xb: Array, gram: Array,
          q1: list[Array], q2: list[Array], ida: Array, idb: Array) -> tuple[Array, list[Array]]:
    """Walk all layers for one tile with array operations. Returns (NNGP, [K per pair])."""
    xp = BACKEND.xp
    same = ida[:, None] == idb[None, :]
    det1 = layer1_det(rec, xa, xb)
    sw2, sb2 = rec.weight_std**2, rec.bias_std**2
    sig = sw2 * gram + sb2
    ks = [sig for _ in pairs]
    for l in range(rec.depth):
        q = q1[l][:, None]
        qp = q2[l][None, :]
        c = xp.where(same, q, sig)
        det = det1 if (l == 0 and det1 is not None) else xp.maximum(q * qp - c * c, 0.0)
        det = xp.where(same, 0.0, det)
        q, qp = xp.broadcast_to(q, c.shape), xp.broadcast_to(qp, c.shape)
        sig = sw2 * expect_pair(rec.sigma, rec.sigma, q, qp, c, det, rec.order) + sb2
        ks = [
            sig + sw2 * _mul0(expect_pair(p.left, p.right, q, qp, c, det, rec.order), k)
            for p, k in zip(pairs, ks)
        ]
    return sig, ks


def _row_ids(x1: np.ndarray, x2: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Integer ids such that id1[i] == id2[j] exactly when rows x1[i], x2[j] are identical."""
    both = x1 if x2 is None else np.concatenate([x1, x2])
    # +0.0 maps -0.0 to 0.0: those rows give bitwise identical Grams
    _, inverse = np.unique(both + 0.0, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    n1 = x1.shape[0]
    return inverse[:n1], (inverse if x2 is None else inverse[n1:])


def compute(rec: Recursion, pairs: list[Pair], x1: Array, x2: Array | None,
            dtype: Any = np.float64, tile: int = DEFAULT_TILE,
            want_nngp: bool = True) -> tuple[Array | None, list[Array]]:
    """NNGP and the kernels of ``pairs`` between x1 (N1, n0) and x2 (N2, n0) (None: x1).

    Inputs must already be validated, float64 arrays on the backend. Where x2 is None
    and every requested kernel is symmetric, only tiles on or above the diagonal are
    computed and mirrored.
    """
    xp = BACKEND.xp
    n0 = x1.shape[1]
    host1 = BACKEND.to_host(x1)
    ids1, ids2 = _row_ids(host1, None if x2 is None else BACKEND.to_host(x2))
    ids1, ids2 = xp.asarray(ids1), xp.asarray(ids2)
    xb = x1 if x2 is None else x2
    q1 = layer_diagonals(rec, xp.sum(x1 * x1, axis=1), n0)
    q2 = q1 if x2 is None else layer_diagonals(rec, xp.sum(xb * xb, axis=1), n0)
    n1, n2 = x1.shape[0], xb.shape[0]
    mirror = x2 is None and all(p.symmetric for p in pairs)
    if _use_cpu_fused(rec, pairs):  # one call: its own row blocks, both cores
        nngp, outs = _cpu_recursion(rec, pairs, x1, xb, q1, q2, ids1, ids2, mirror, dtype,
                                    want_nngp)
        if any(f.is_delta for p in pairs for f in (p.left, p.right)):  # else all finite
            _warn_inf(outs)
        return nngp, outs
    nngp = xp.empty((n1, n2), dtype=dtype) if want_nngp else None
    outs = [xp.empty((n1, n2), dtype=dtype) for _ in pairs]
    for i0 in range(0, n1, tile):
        i1 = min(i0 + tile, n1)
        for j0 in range(i0 if mirror else 0, n2, tile):
            j1 = min(j0 + tile, n2)
            sig, ks = compute_tile(rec, pairs, x1[i0:i1], xb[j0:j1], [q[i0:i1] for q in q1],
                                   [q[j0:j1] for q in q2], ids1[i0:i1], ids2[j0:j1])
            blocks = ([(nngp, sig)] if want_nngp else []) + list(zip(outs, ks))
            for out, block in blocks:
                if mirror and j0 == i0:  # exact symmetry: rounding may differ across it
                    block = xp.triu(block) + xp.triu(block, 1).T
                out[i0:i1, j0:j1] = block
                if mirror and j0 != i0:
                    out[j0:j1, i0:i1] = block.T
    _warn_inf(outs)
    return nngp, outs


def _warn_inf(outs: list[Array]) -> None:
    xp = BACKEND.xp
    n_inf = sum(int(xp.isinf(o).sum()) for o in outs)
    if n_inf:
        warnings.warn(
            f"{n_inf} kernel entries are +inf: the naive NTK of a jump activation "
            "(a delta derivative on both sides) diverges at coinciding inputs. "
            "The SG-NTK (net.sgntk) stays finite.",
            RuntimeWarning,
            stacklevel=4,
        )


DETERMINISTIC_GRAM_MAX_FEATURES = 64


def input_gram(xa: Array, xb: Array) -> Array:
    """<x, x'>/n0 for a tile. For n0 <= 64 on NumPy it is summed feature by feature in a
    fixed order, so an entry is bitwise the same in any tile shape (BLAS picks different
    kernels, and so different rounding, for different tile shapes); above that, BLAS."""
    n0 = xa.shape[1]
    if BACKEND.name == "numpy" and n0 <= DETERMINISTIC_GRAM_MAX_FEATURES:
        g = xa[:, 0, None] * xb[None, :, 0]
        for k in range(1, n0):
            g += xa[:, k, None] * xb[None, :, k]
        return g * (1.0 / n0)
    return (xa @ xb.T) * (1.0 / n0)


def compute_tile(rec: Recursion, pairs: list[Pair], xa: Array, xb: Array, q1: list[Array],
                 q2: list[Array], ida: Array, idb: Array) -> tuple[Array, list[Array]]:
    """NNGP and kernels of one tile (rows xa, columns xb; q and ids sliced to the tile).

    The unit of work of ``compute`` and of ``gpukern.distributed``: an entry's value
    depends only on its two points, never on the tile it is computed in.
    """
    if _use_cpu_fused(rec, pairs):
        return _cpu_recursion(rec, pairs, xa, xb, q1, q2, ida, idb, False, np.float64, True)
    gram = input_gram(xa, xb)
    tile_fn = _fused_tile if _use_fused(rec, pairs) else _tile
    return tile_fn(rec, pairs, xa, xb, gram, q1, q2, ida, idb)


def _cpu_recursion(rec: Recursion, pairs: list[Pair], xa, xb, q1, q2, ida, idb, mirror: bool,
                   dtype: Any, want_nngp: bool) -> tuple[Array | None, list[Array]]:
    """NNGP and kernels from the compiled CPU loop (``mirror``: x2 is x1 and every kernel
    symmetric), entries off a quadrature table recomputed on the NumPy path."""
    from .kernels import cpu_fused

    nngp, outs, tabled = cpu_fused.recursion(
        rec.depth, rec.weight_std**2, rec.bias_std**2, rec.sigma, _sides(pairs), xa, xb,
        np.stack(q1), np.stack(q2), ida, idb, mirror, dtype, want_nngp, rec.order)
    if tabled:
        _redo_off_table(rec, pairs, xa, xb, q1, q2, ida, idb, mirror, nngp, outs)
    return nngp, outs


def _redo_off_table(rec: Recursion, pairs: list[Pair], xa, xb, q1, q2, ida, idb, mirror: bool,
                    nngp, outs) -> None:
    """Rows where the CPU loop left NaN (an average off its table's range: inputs closer
    than ~1e-8 relative) are recomputed on the NumPy path, in place (and their mirror)."""
    bad = np.zeros(xa.shape[0], dtype=bool)
    for out in ([] if nngp is None else [nngp]) + list(outs):
        bad |= np.isnan(out).any(axis=1)
    for i in np.flatnonzero(bad):
        sig, ks = _tile(rec, pairs, xa[i:i + 1], xb, input_gram(xa[i:i + 1], xb),
                        [q[i:i + 1] for q in q1], q2, ida[i:i + 1], idb)
        for out, row in ([] if nngp is None else [(nngp, sig)]) + list(zip(outs, ks)):
            out[i] = row[0]
            if mirror:
                out[:, i] = row[0]


def _sides(pairs: list[Pair]) -> list[tuple[ScalarFunction, ScalarFunction]]:
    return [(p.left, p.right) for p in pairs]


def _use_cpu_fused(rec: Recursion, pairs: list[Pair]) -> bool:
    """The NumPy backend runs closed-form recursions in the compiled CPU loop, if it built."""
    if BACKEND.name != "numpy":
        return False
    from .kernels import cpu_fused

    return cpu_fused.supports(rec.sigma, _sides(pairs)) and cpu_fused.available()


def _use_fused(rec: Recursion, pairs: list[Pair]) -> bool:
    """The CuPy backend runs closed-form recursions in the fused CUDA kernel."""
    if BACKEND.name != "cupy":
        return False
    from .kernels import cupy_fused

    return cupy_fused.supports(rec.sigma, _sides(pairs))


def _fused_tile(rec: Recursion, pairs: list[Pair], xa, xb, gram, q1, q2, ida, idb):
    from .kernels import cupy_fused

    xp = BACKEND.xp
    return cupy_fused.tile(rec.depth, rec.weight_std**2, rec.bias_std**2, rec.sigma,
                           _sides(pairs), xa, xb, gram, xp.stack(q1),
                           xp.stack(q2), ida, idb)


def output_bytes(n1: int, n2: int, n_outputs: int, dtype: Any, tile: int) -> int:
    """Peak memory estimate: the outputs plus ~24 float64 tile temporaries."""
    itemsize = np.dtype(dtype).itemsize
    tile_entries = min(n1, tile) * min(n2, tile)
    return n1 * n2 * itemsize * n_outputs + 24 * 8 * tile_entries
