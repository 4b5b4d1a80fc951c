"""The executor planner of analytic kernels: which executor computes a request, and the
bookkeeping every executor shares (row ids, layer diagonals, tiles, mirroring).

* :func:`plan` picks the executor once per request (``gpukern.kernels.ops``):
  ``compiled`` (the compiled CPU recursion: one call for the whole matrix, its own row
  chunks on all cores, mirrored inside), ``cupy`` (the fused CUDA kernel, tile by tile) or
  ``array`` (:func:`gpukern.analytic.tile` on NumPy or CuPy arrays, tile by tile).
* :func:`prepare` computes what every tile needs once: the per-layer diagonals q_l(i) and
  integer row ids (equal ids: identical inputs, which get c = q exactly).
* :func:`compute` fills the whole matrices; :func:`compute_tile` computes one block, the
  unit of work of ``compute`` and of :mod:`gpukern.distributed`. An entry's value depends
  only on its two points, never on the tile it is computed in.

Where x2 is not given and every kernel is symmetric, only tiles on or above the
diagonal are computed and mirrored (:attr:`Plan.mirrored`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import analytic
from ._backend import BACKEND
from .analytic import Pair
from .architecture import Architecture
from .gaussian import expect_pair
from .kernels import ops

Array = Any

DEFAULT_TILE = 1024


@dataclass(frozen=True)
class Inputs:
    """Validated float64 inputs and what every tile needs (host or backend arrays).

    ``x2`` is ``x1`` itself when no second input was given (``same``); ``q1``, ``q2``:
    the layer diagonals (depth arrays of N); ``ids1``, ``ids2``: the row ids.
    """

    x1: Array
    x2: Array
    q1: tuple[Array, ...]
    q2: tuple[Array, ...]
    ids1: Array
    ids2: Array
    same: bool

    @property
    def shape(self) -> tuple[int, int]:
        return self.x1.shape[0], self.x2.shape[0]

    def on_host(self) -> Inputs:
        """The same inputs as NumPy arrays (to ship to other processes)."""
        host = BACKEND.to_host
        return replace(self, x1=host(self.x1), x2=host(self.x2),
                       q1=tuple(host(q) for q in self.q1), q2=tuple(host(q) for q in self.q2),
                       ids1=host(self.ids1), ids2=host(self.ids2))


def row_ids(x1: np.ndarray, x2: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Integer ids such that id1[i] == id2[j] exactly when rows x1[i], x2[j] are identical."""
    both = x1 if x2 is None else np.concatenate([x1, x2])
    # +0.0 maps -0.0 to 0.0: those rows give bitwise identical Grams
    _, inverse = np.unique(both + 0.0, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    n1 = x1.shape[0]
    return inverse[:n1], (inverse if x2 is None else inverse[n1:])


def prepare(arch: Architecture, x1: Array, x2: Array | None) -> Inputs:
    """Inputs of a request: x1 (N1, n0), x2 (N2, n0) or None (x1 against itself), both
    validated float64 arrays on the backend."""
    xp = BACKEND.xp
    ids1, ids2 = row_ids(BACKEND.to_host(x1), None if x2 is None else BACKEND.to_host(x2))
    xb = x1 if x2 is None else x2
    q1 = _diagonals(arch, x1, "x1")
    q2 = q1 if x2 is None else _diagonals(arch, xb, "x2")
    return Inputs(x1, xb, tuple(q1), tuple(q2), xp.asarray(ids1), xp.asarray(ids2), x2 is None)


@dataclass(frozen=True)
class Plan:
    """A request: the NNGP (``want_nngp``) and the kernels of ``pairs``, on ``executor``."""

    arch: Architecture
    pairs: tuple[Pair, ...]
    want_nngp: bool
    executor: str

    @property
    def sides(self) -> list[tuple[Any, Any]]:
        return [(p.left, p.right) for p in self.pairs]

    def mirrored(self, inputs: Inputs) -> bool:
        """True when only the upper triangle is computed: x1 against itself, and every
        kernel symmetric."""
        return inputs.same and all(p.symmetric for p in self.pairs)


def plan(arch: Architecture, pairs: list[Pair], want_nngp: bool = True) -> Plan:
    """The plan of a request: its executor, picked once."""
    sides = [(p.left, p.right) for p in pairs]
    return Plan(arch, tuple(pairs), want_nngp, ops.analytic_executor(arch.sigma, sides))


def compute(plan: Plan, inputs: Inputs, dtype: Any = np.float64, tile: int = DEFAULT_TILE
            ) -> tuple[Array | None, list[Array]]:
    """NNGP (None unless wanted) and the kernels of the plan, as (N1, N2) arrays in dtype."""
    mirror = plan.mirrored(inputs)
    if plan.executor == "compiled":  # one call: its own row blocks, all cores
        everything = (slice(None), slice(None))
        nngp, outs = _compiled(plan, inputs, everything, mirror, dtype, plan.want_nngp)
    else:
        nngp, outs = _tiled(plan, inputs, dtype, tile, mirror)
    if any(f.is_delta for p in plan.pairs for f in (p.left, p.right)):  # else all finite
        _warn_inf(outs)
    return nngp, outs


def _tiled(plan: Plan, inputs: Inputs, dtype: Any, tile: int, mirror: bool
           ) -> tuple[Array | None, list[Array]]:
    xp = BACKEND.xp
    n1, n2 = inputs.shape
    nngp = xp.empty((n1, n2), dtype=dtype) if plan.want_nngp else None
    outs = [xp.empty((n1, n2), dtype=dtype) for _ in plan.pairs]
    status = None
    if plan.executor == "cupy":  # one flag for the whole request, checked once at the end
        from .kernels import cupy_fused

        status = cupy_fused.new_status()
    for i0 in range(0, n1, tile):
        rows = slice(i0, min(i0 + tile, n1))
        for j0 in range(i0 if mirror else 0, n2, tile):
            cols = slice(j0, min(j0 + tile, n2))
            sig, ks = compute_tile(plan, inputs, rows, cols, status)
            blocks = ([(nngp, sig)] if plan.want_nngp else []) + list(zip(outs, ks))
            for out, block in blocks:
                if mirror and j0 == i0:  # exact symmetry: rounding may differ across it
                    block = xp.triu(block) + xp.triu(block, 1).T
                out[rows, cols] = block
                if mirror and j0 != i0:
                    out[cols, rows] = block.T
    if status is not None:
        cupy_fused.check_status(status)
    return nngp, outs


def compute_tile(plan: Plan, inputs: Inputs, rows: slice, cols: slice, status: Any = None
                 ) -> tuple[Array, list[Array]]:
    """NNGP and kernels (float64) of the block ``rows`` x ``cols`` of the request
    (``status``: the CUDA executor's flag of a whole request, checked by the caller)."""
    if plan.executor == "compiled":
        return _compiled(plan, inputs, (rows, cols), False, np.float64, True)
    to = BACKEND.asarray
    xa, xb = to(inputs.x1[rows]), to(inputs.x2[cols])
    args = (xa, xb, ops.input_gram(xa, xb), [to(q[rows]) for q in inputs.q1],
            [to(q[cols]) for q in inputs.q2], to(inputs.ids1[rows]), to(inputs.ids2[cols]))
    if plan.executor == "cupy":
        done = _cupy_tile(plan, *args, status=status)
        if done is not None:  # else a series point not served: the array path
            return done
    return analytic.tile(plan.arch, list(plan.pairs), *args)


def _compiled(plan: Plan, inputs: Inputs, block: tuple[slice, slice], mirror: bool,
              dtype: Any, want_nngp: bool) -> tuple[Array | None, list[Array]]:
    """The compiled CPU recursion of a block (``mirror``: the whole matrix, symmetric);
    entries off a quadrature table come back NaN and are recomputed on the array path.
    A whole matrix whose series coefficient rows exceed their budget goes tile by tile."""
    from .kernels import cpu_fused

    rows, cols = block
    arch = plan.arch
    xa, xb = inputs.x1[rows], inputs.x2[cols]
    q1 = [q[rows] for q in inputs.q1]
    q2 = [q[cols] for q in inputs.q2]
    ida, idb = inputs.ids1[rows], inputs.ids2[cols]
    q1s, q2s = np.stack(q1), np.stack(q2)
    found = cpu_fused.routes(arch.sigma, plan.sides, q1s, q2s, arch.order)
    if found is None:
        whole = block == (slice(None), slice(None))
        if whole and max(inputs.shape) > DEFAULT_TILE:
            # rows over budget, a point not served, or variances not one value: tile by
            # tile, each tile on the compiled loop where its routes serve it
            return _tiled(plan, inputs, dtype, DEFAULT_TILE, mirror)
        return _array_block(plan, inputs, block, mirror, dtype)
    series, corr, var = found
    nngp, outs, tabled = cpu_fused.recursion(
        arch.depth, arch.sw2, arch.sb2, arch.own_terms(xa.shape[1]), arch.sigma, plan.sides,
        xa, xb, q1s, q2s, ida, idb, mirror, dtype, want_nngp, arch.order, series, corr, var)
    if tabled:
        _redo_off_table(plan, (xa, xb, q1, q2, ida, idb), mirror, nngp, outs)
    return nngp, outs


def _array_block(plan: Plan, inputs: Inputs, block: tuple[slice, slice], mirror: bool,
                 dtype: Any) -> tuple[Array | None, list[Array]]:
    """A block of a compiled plan computed on the array path instead (tile by tile)."""
    array = replace(plan, executor="array")
    rows, cols = block
    if rows == slice(None) and cols == slice(None):
        return _tiled(array, inputs, dtype, DEFAULT_TILE, mirror)
    return compute_tile(array, inputs, rows, cols)


def _redo_off_table(plan: Plan, tile_args: tuple, mirror: bool, nngp, outs) -> None:
    """Rows where the compiled loop left NaN (an average off its table's range: inputs
    closer than ~1e-8 relative) are recomputed on the array path, in place (and their
    mirror)."""
    xa, xb, q1, q2, ida, idb = tile_args
    bad = np.zeros(xa.shape[0], dtype=bool)
    for out in ([] if nngp is None else [nngp]) + list(outs):
        bad |= np.isnan(out).any(axis=1)
    for i in np.flatnonzero(bad):
        row = slice(i, i + 1)
        sig, ks = analytic.tile(plan.arch, list(plan.pairs), xa[row], xb,
                                ops.input_gram(xa[row], xb), [q[row] for q in q1], q2,
                                ida[row], idb)
        for out, values in ([] if nngp is None else [(nngp, sig)]) + list(zip(outs, ks)):
            out[i] = values[0]
            if mirror:
                out[:, i] = values[0]


def _cupy_tile(plan: Plan, xa, xb, gram, q1, q2, ida, idb, status=None
               ) -> tuple[Array, list[Array]] | None:
    from .kernels import cupy_fused

    xp = BACKEND.xp
    arch = plan.arch
    return cupy_fused.tile(arch.depth, arch.sw2, arch.sb2, arch.own_terms(xa.shape[1]),
                           arch.sigma, plan.sides, xa, xb, gram, xp.stack(q1), xp.stack(q2),
                           ida, idb, status, arch.order)


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


MAX_VARIANCE = 1e150
"""Largest layer variance q_l(x) the recursion takes: it multiplies two of them (q q',
c^2), which must stay finite doubles."""


def _diagonals(arch: Architecture, x: Array, name: str) -> list[Array]:
    """The layer diagonals of inputs ``x`` (named ``name`` in errors), refused up front where
    they would overflow the recursion (NaN table indices, inf kernels, wrong values)."""
    xp = BACKEND.xp
    with BACKEND.ignore_fp_errors():
        qs = analytic.layer_diagonals(arch, xp.sum(x * x, axis=1), x.shape[1])
        worst = max(float(xp.max(q)) for q in qs)
    if not worst <= MAX_VARIANCE:
        raise ValueError(
            f"{name} is too large for the kernel recursion: a layer variance q_l(x) reaches "
            f"{worst:.3g} (weight_std^2 |x|^2 / n0 + bias_std^2 at layer 1), above "
            f"{MAX_VARIANCE:g}; rescale the inputs (without bias, relu/linear kernels scale "
            "with |x|^2 per layer, sign/step ones are scale-free)")
    return qs


def nngp_diagonal(arch: Architecture, x: Array) -> Array:
    """Sigma_{L+1}(x_i, x_i) for each row of x (validated, on the backend): the layer
    diagonals one layer further (what the recursion gives identical rows: c = q, det = 0)."""
    xp = BACKEND.xp
    q = _diagonals(arch, x, "x")[-1]
    zero = xp.zeros_like(q)
    return arch.sw2 * expect_pair(arch.sigma, arch.sigma, q, q, q, zero,
                                           arch.order) + arch.sb2


def output_bytes(n1: int, n2: int, n_outputs: int, dtype: Any, tile: int) -> int:
    """Peak memory estimate: the outputs plus ~24 float64 tile temporaries."""
    itemsize = np.dtype(dtype).itemsize
    tile_entries = min(n1, tile) * min(n2, tile)
    return n1 * n2 * itemsize * n_outputs + 24 * 8 * tile_entries
