"""Finite-width networks: ensembles, forward pass, surrogate backprop, empirical kernels.

E networks stacked on a leading axis; stored parameters W_l, b_l and the layer scales
a_l = a(n_{l-1}), b_s of the parameterization (:class:`~gpukern.architecture.Architecture`:
NTK a = sw/sqrt(n), b_s = sb; standard a = b_s = 1):

    z_0 = x,   h_l = a_l z_{l-1} W_l^T + b_s b_l,   z_l = sigma(h_l),   f = h_{L+1}

with C = n_{L+1} outputs (independent readout units; C = 1 gives scalar outputs, (E, N)
arrays, C > 1 a trailing output axis, (E, N, C)). Backward for output c with a
derivative d in {sigma', sigma~}:

    delta_{L+1} = e_c,   delta_l = a_{l+1} (delta_{l+1} W_{l+1}) * d(h_l)

so that df/dW_l = delta_l (a_l z_{l-1})^T and df/db_l = b_s delta_l. The empirical
kernel never forms the Jacobian:

    K(x, x') = J_a(x) J_b(x')^T
             = sum_l <delta^a_l(x), delta^b_l(x')> (a_l^2 <z_{l-1}(x), z_{l-1}(x')> + b_s^2)

A jump activation's true derivative is 0 almost everywhere: its "true" side gets
contributions from the readout layer only. That is the correct Jacobian of such a
network, not an error (its analytic counterpart is the erf_m, m -> inf limit).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _checks
from ._backend import BACKEND
from .architecture import Architecture
from .functions import ScalarFunction
from .kernels import ops

Array = Any

BLOCK_BUDGET_BYTES = 1 << 30
"""Working memory for per-point activations and deltas of one block of inputs."""


@dataclass(frozen=True)
class Params:
    """Parameters of E networks: ``weights[l]`` (E, n_{l+1}, n_l), ``biases[l]`` (E, n_{l+1}).

    Layer l = 0..depth (the last one is the readout, n_{depth+1} = n_out). Flat parameter
    order (``ravel``, ``jacobian``): for each layer, W row-major, then b.
    Index with ``params[e]`` or ``params[a:b]`` to select networks (views, not copies).
    """

    weights: tuple[Array, ...]
    biases: tuple[Array, ...]

    @property
    def ensemble(self) -> int:
        return int(self.weights[0].shape[0])

    @property
    def n_in(self) -> int:
        return int(self.weights[0].shape[2])

    @property
    def widths(self) -> tuple[int, ...]:
        """Hidden widths n_1..n_L."""
        return tuple(int(w.shape[1]) for w in self.weights[:-1])

    @property
    def depth(self) -> int:
        return len(self.weights) - 1

    @property
    def n_out(self) -> int:
        """Outputs C per network (readout units)."""
        return int(self.weights[-1].shape[1])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.weights[0].dtype)

    @property
    def size(self) -> int:
        """Parameters per network, P."""
        return sum(int(np.prod(w.shape[1:])) + int(b.shape[1])
                   for w, b in zip(self.weights, self.biases))

    def __getitem__(self, idx: int | slice | Array) -> Params:
        if isinstance(idx, int | np.integer):  # keep the ensemble axis
            idx = slice(int(idx), (int(idx) + 1) or None)
        return Params(tuple(w[idx] for w in self.weights), tuple(b[idx] for b in self.biases))

    def ravel(self) -> Array:
        """(E, P) flat parameters in the documented order."""
        xp = BACKEND.xp
        parts = []
        for w, b in zip(self.weights, self.biases):
            parts += [w.reshape(w.shape[0], -1), b]
        return xp.concatenate(parts, axis=1)

    def unravel(self, flat: Array) -> Params:
        """Params of this architecture from an (E, P) flat array (inverse of ``ravel``)."""
        flat = BACKEND.xp.asarray(flat)
        if flat.ndim != 2 or flat.shape[1] != self.size:
            raise ValueError(f"flat must have shape (E, {self.size}), got {tuple(flat.shape)}")
        ws, bs, i = [], [], 0
        for w, b in zip(self.weights, self.biases):
            n = int(np.prod(w.shape[1:]))
            ws.append(flat[:, i:i + n].reshape((flat.shape[0],) + tuple(w.shape[1:])))
            i += n
            bs.append(flat[:, i:i + b.shape[1]])
            i += b.shape[1]
        return Params(tuple(ws), tuple(bs))


INIT_DISTRIBUTIONS = ("normal", "torch")


def init_params(depth: int, n_in: int, width: int | Sequence[int], ensemble: int = 1,
                seed: int = 0, dtype: Any = np.float64, n_out: int = 1,
                stds: Callable[[int], tuple[float, float]] | None = None,
                distribution: str = "normal") -> Params:
    """E independent networks with ``n_out`` outputs, drawn on the host.

    ``"normal"``: W_l, b_l entries iid N(0, 1) times ``stds(fan_in)`` (default (1, 1));
    ``"torch"``: PyTorch's default ``nn.Linear`` initialisation, W and b iid
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (variance 1/(3 fan_in): weight_std = 1/sqrt(3) in
    the standard parameterization, and a bias variance that shrinks with the fan-in).
    Network e draws from its own stream ``SeedSequence(seed).spawn(E)[e]`` (W_1, b_1,
    W_2, ...), so it is the same for any ensemble size and on every backend.
    """
    _checks.choice("distribution", distribution, INIT_DISTRIBUTIONS)
    n_in = _checks.integer("n_in", n_in, 1)
    n_out = _checks.integer("n_out", n_out, 1)
    ensemble = _checks.integer("ensemble", ensemble, 1)
    seed = _checks.integer("seed", seed, 0)
    dt = _checks.float_dtype("dtype", dtype)
    widths = _checks.widths("width", width, depth)
    sizes = (n_in,) + widths + (n_out,)
    n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    _checks.fits_in_memory(f"{ensemble} networks of {n_params} parameters in {dt}",
                           2 * ensemble * n_params * dt.itemsize)
    ws = [np.empty((ensemble, b, a), dtype=dt) for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [np.empty((ensemble, b), dtype=dt) for b in sizes[1:]]
    for e, child in enumerate(np.random.SeedSequence(seed).spawn(ensemble)):
        rng = np.random.default_rng(child)
        for w, b in zip(ws, bs):
            fan_in = w.shape[2]
            if distribution == "torch":
                bound = 1.0 / np.sqrt(fan_in)
                w[e] = rng.uniform(-bound, bound, w.shape[1:])
                b[e] = rng.uniform(-bound, bound, b.shape[1:])
                continue
            w[e] = rng.standard_normal(w.shape[1:])
            b[e] = rng.standard_normal(b.shape[1:])
            if stds is not None:
                w_std, b_std = stds(fan_in)
                w[e] *= w_std
                b[e] *= b_std
    to = BACKEND.asarray
    return Params(tuple(to(w) for w in ws), tuple(to(b) for b in bs))


def check_params(arch: Architecture, params: Any, n_in: int | None = None) -> Params:
    """``params`` as Params matching ``arch`` (and inputs with ``n_in`` features)."""
    if not isinstance(params, Params):
        raise TypeError(f"params must come from net.init(...), got {type(params).__name__}")
    if params.depth != arch.depth:
        raise ValueError(f"params are for depth {params.depth}, but this MLP has depth {arch.depth}")
    e = params.ensemble
    prev = params.n_in
    for l, (w, b) in enumerate(zip(params.weights, params.biases)):
        if w.ndim != 3 or w.shape[0] != e or w.shape[2] != prev or b.shape != (e, w.shape[1]):
            raise ValueError(f"params layer {l + 1} has inconsistent shapes W {tuple(w.shape)}, "
                             f"b {tuple(b.shape)}")
        prev = w.shape[1]
    if n_in is not None and n_in != params.n_in:
        raise ValueError(f"x has {n_in} features but params expect n_in = {params.n_in}")
    return params


def forward(arch: Architecture, params: Params, x: Array) -> tuple[list[Array], list[Array]]:
    """Pre-activations h_1..h_{L+1} and post-activations z_0 = x, z_1..z_L, each (E, N, n)."""
    zs, hs = [x], []
    z = x
    for l, (w, b) in enumerate(zip(params.weights, params.biases)):
        h = (z @ w.swapaxes(-1, -2)) * arch.weight_scale(w.shape[2]) + arch.bias_scale * b[:, None, :]
        hs.append(h)
        if l < arch.depth:
            z = ops.activate(arch.sigma, h)
            zs.append(z)
    return hs, zs


def output_axis(h: Array) -> Array:
    """Outputs (E, N, C) as the API returns them: (E, N) for one output."""
    return h[..., 0] if h.shape[-1] == 1 else h


def backward(arch: Architecture, params: Params, hs: list[Array],
             derivative: ScalarFunction, output: int = 0) -> list[Array]:
    """delta_1..delta_{L+1} of output ``output`` for derivative ``derivative`` (sigma' or
    sigma~), each (E, N, n_l)."""
    xp = BACKEND.xp
    delta = xp.zeros_like(hs[-1])
    delta[..., output] = 1.0
    deltas = [delta]
    for l in range(arch.depth - 1, -1, -1):
        w_next = params.weights[l + 1]  # (E, n_{l+2}, n_{l+1})
        delta = ops.scaled_derivative(delta @ w_next, hs[l], derivative,
                                      arch.weight_scale(w_next.shape[2]))
        deltas.append(delta)
    return deltas[::-1]


def apply(arch: Architecture, params: Params, x: Array) -> Array:
    """Network outputs f(x): (E, N), or (E, N, C) for C > 1 outputs."""
    hs, _ = forward(arch, params, x)
    return output_axis(hs[-1])


def jacobian(arch: Architecture, params: Params, x: Array, derivative: ScalarFunction,
             output: int = 0) -> Array:
    """(E, N, P) Jacobian (sigma') or quasi-Jacobian (sigma~) of output ``output`` in the
    ``Params.ravel`` order."""
    xp = BACKEND.xp
    hs, zs = forward(arch, params, x)
    deltas = backward(arch, params, hs, derivative, output)
    e, n = hs[0].shape[:2]
    parts = []
    for delta, z in zip(deltas, zs):
        scaled = z * arch.weight_scale(z.shape[-1])
        parts.append((delta[..., :, None] * scaled[..., None, :]).reshape(e, n, -1))
        parts.append(arch.bias_scale * delta)
    return xp.concatenate(parts, axis=-1)


def _features(arch: Architecture, params: Params, x: Array,
              derivs: Sequence[tuple[ScalarFunction, int]]
              ) -> tuple[list[Array], list[list[Array]]]:
    """Post-activations and, per (derivative, output), the deltas of a block of inputs."""
    hs, zs = forward(arch, params, x)
    return zs, [backward(arch, params, hs, d, o) for d, o in derivs]


def _block_kernel(arch: Architecture, za: list[Array], da: list[Array] | None,
                  zb: list[Array], db: list[Array] | None) -> Array:
    """sum_l (D_a D_b^T) * (sw^2/n Z_a Z_b^T + sb^2); NNGP (readout term only) if da is None."""
    n = za[-1].shape[-2]
    if za is zb and da is db and n >= 2 * SYMMETRIC_SPLIT:
        return _symmetric_block_kernel(arch, za, da)
    sb2 = arch.bias_scale ** 2
    if da is None:
        z1, z2 = za[-1], zb[-1]
        return (z1 @ z2.swapaxes(-1, -2)) * arch.weight_scale2(z1.shape[-1]) + sb2
    out = None
    for z1, z2, d1, d2 in zip(za, zb, da, db):
        out = ops.hadamard_accumulate(out, d1 @ d2.swapaxes(-1, -2), z1 @ z2.swapaxes(-1, -2),
                                      arch.weight_scale2(z1.shape[-1]), sb2)
    return out


SYMMETRIC_SPLIT = 256
"""Row blocks of a block against itself: its Grams are computed for block pairs I <= J
only and mirrored."""


def _symmetric_block_kernel(arch: Architecture, z: list[Array], d: list[Array] | None) -> Array:
    """_block_kernel of a block with itself by row strips: strip I against the columns
    from I's first on (tiles (I, J), J >= I, in one GEMM per Gram), mirrored to (J, I).

    With b row blocks the Grams cost (b + 1) / (2b) of the full products (5/8 at b = 4).
    """
    n = z[-1].shape[-2]
    edges = list(range(0, n, SYMMETRIC_SPLIT))
    if n - edges[-1] < SYMMETRIC_SPLIT // 2 and len(edges) > 1:
        edges.pop()  # no sliver of a last block: it joins the previous one
    edges.append(n)
    first = z[-1] if d is None else d[0]
    out = BACKEND.xp.empty((first.shape[0], n, n), dtype=first.dtype)
    for a in range(len(edges) - 1):  # row strip a against columns edges[a]: (one GEMM each)
        rows, cols = slice(edges[a], edges[a + 1]), slice(edges[a], n)
        k = _block_kernel(arch, [zl[..., rows, :] for zl in z],
                          None if d is None else [dl[..., rows, :] for dl in d],
                          [zl[..., cols, :] for zl in z],
                          None if d is None else [dl[..., cols, :] for dl in d])
        out[:, rows, cols] = k
        width = edges[a + 1] - edges[a]  # beyond the diagonal block: mirrored
        out[:, edges[a + 1]:, rows] = k[:, :, width:].swapaxes(-1, -2)
    return out


def empirical_kernel(arch: Architecture, params: Params, x1: Array, x2: Array | None,
                     left: ScalarFunction | None, right: ScalarFunction | None,
                     budget: int = BLOCK_BUDGET_BYTES, output: int | tuple[int, int] = 0
                     ) -> Array:
    """(E, N1, N2) empirical kernel J_left(x1) J_right(x2)^T (NNGP when left is None) of
    output ``output`` (or of the output pair (c, c'): the block K_cc').

    Inputs are processed in blocks so that activations and deltas of one block of rows
    and one of columns fit in ``budget`` bytes: memory is E N1 N2 plus the blocks,
    not E N width depth.
    """
    xp = BACKEND.xp
    out_a, out_b = (output, output) if isinstance(output, int) else output
    if left is not None and (left.is_delta or right.is_delta):
        # a delta side (the true derivative of a jump) is 0 in every hidden layer: only the
        # readout layer contributes, and its term is the NNGP form (delta_{L+1} = e_c)
        left = right = None
    nngp = left is None
    xb = x1 if x2 is None else x2
    e = params.ensemble
    if nngp and out_a != out_b:  # <e_c, e_c'> = 0: the readout term of other outputs
        return xp.zeros((e, x1.shape[0], xb.shape[0]), dtype=params.dtype)
    same_side = nngp or (left == right and out_a == out_b)
    itemsize = params.dtype.itemsize
    n_arrays = 1 if nngp else (2 if same_side else 3)
    per_point = e * itemsize * (params.n_in + n_arrays * sum(params.widths) + 2 + params.n_out)
    block = max(1, budget // (2 * per_point))
    out = xp.empty((e, x1.shape[0], xb.shape[0]), dtype=params.dtype)
    derivs_a = [] if nngp else [(left, out_a)]
    derivs_b = [] if nngp else ([] if same_side else [(right, out_b)])
    mirror = x2 is None and same_side
    for i0 in range(0, x1.shape[0], block):
        i1 = min(i0 + block, x1.shape[0])
        za, dsa = _features(arch, params, x1[i0:i1], derivs_a + derivs_b)
        da = None if nngp else dsa[0]
        for j0 in range(i0 if mirror else 0, xb.shape[0], block):
            j1 = min(j0 + block, xb.shape[0])
            if x2 is None and j0 == i0:
                zb, dsb = za, dsa
            else:
                zb, dsb = _features(arch, params, xb[j0:j1], derivs_a + derivs_b)
            db = None if nngp else (dsb[0] if same_side else dsb[-1])
            k = _block_kernel(arch, za, da, zb, db)
            out[:, i0:i1, j0:j1] = k
            if mirror and j0 != i0:
                out[:, j0:j1, i0:i1] = k.swapaxes(-1, -2)
    return out


def empirical_kernel_blocks(arch: Architecture, params: Params, x1: Array, x2: Array | None,
                            left: ScalarFunction | None, right: ScalarFunction | None,
                            budget: int = BLOCK_BUDGET_BYTES) -> Array:
    """(E, N1 C, N2 C) kernel of all outputs: entry (i C + c, j C + c') is K_cc'(x_i, x'_j).

    At initialisation the hidden layers are shared, so the blocks c != c' of a finite
    network are not 0; they vanish (K ⊗ I_C) in the infinite-width limit.
    """
    xp = BACKEND.xp
    c = params.n_out
    xb = x1 if x2 is None else x2
    _checks.fits_in_memory(f"a ({x1.shape[0] * c} x {xb.shape[0] * c}) block kernel of "
                           f"{params.ensemble} networks",
                           params.ensemble * x1.shape[0] * xb.shape[0] * c * c
                           * params.dtype.itemsize)
    out = xp.empty((params.ensemble, x1.shape[0] * c, xb.shape[0] * c), dtype=params.dtype)
    for a in range(c):
        for b in range(c):
            out[:, a::c, b::c] = empirical_kernel(arch, params, x1, x2, left, right, budget,
                                                  (a, b))
    return out
