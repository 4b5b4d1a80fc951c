"""The MLP: one public object for the analytic kernels and the finite networks of one
architecture."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _checks, finite, planner
from .activations import Activation
from .analytic import Pair
from .architecture import PARAMETERIZATIONS, Architecture
from .finite import Params
from .functions import ScalarFunction
from .gaussian import DEFAULT_ORDER
from .planner import DEFAULT_TILE

Array = Any
_SIDES = ("true", "surrogate")
KERNEL_SIDES = {"ntk": ("true", "true"), "sgntk": ("true", "surrogate"),
                "surrogate": ("surrogate", "surrogate")}
"""Named kernels: (derivative at x1, derivative at x2)."""


class MLP:
    """A fully connected network, by default in NTK parameterization (neural-tangents'
    ``Dense``):

        h_1 = sw/sqrt(n0) W_1 x + sb b_1,   h_{l+1} = sw/sqrt(n_l) W_{l+1} sigma(h_l) + sb b_{l+1}

    with ``depth`` hidden layers and a linear readout f = h_{depth+1} of C outputs
    (``init(..., n_out=C)``); sw = weight_std, sb = bias_std, all W, b entries iid N(0, 1).
    ``parameterization="standard"`` (PyTorch's ``nn.Linear``): h_{l+1} = W_{l+1} z_l + b_{l+1}
    with W ~ N(0, sw^2/n_l), b ~ N(0, sb^2), gradients with respect to these W, b. The same
    functions and NNGP; the NTK-type kernels then depend on the hidden ``widths``
    (n_1..n_L, needed for them): Theta_{l+1} = n_l E[z_l z_l'] + 1 + Sigma_dot_{l+1} Theta_l
    (neural-tangents' standard ``Dense`` with its widths), linear in the widths.
    The C readout units are independent, so every analytic kernel of C outputs is
    K ⊗ I_C: the kernels below are those of one output.

    Kernels (all (N1, N2), on the backend's device, float64 unless ``dtype`` says):
    ``nngp`` Sigma_{L+1}; ``ntk`` Theta (sigma' on both sides); ``sgntk`` I (sigma' at x1,
    the surrogate at x2: I(x, X) drives the function at x when training on X);
    ``kernel(left=, right=)`` any of them.
    """

    def __init__(
        self,
        depth: int,
        activation: Activation,
        surrogate: ScalarFunction | None = None,
        weight_std: float = 1.0,
        bias_std: float = 0.0,
        quad_order: int = DEFAULT_ORDER,
        tile: int = DEFAULT_TILE,
        parameterization: str = "ntk",
        widths: tuple[int, ...] | None = None,
    ) -> None:
        self.depth = _checks.integer("depth", depth, 1)
        if not isinstance(activation, Activation):
            raise TypeError(
                f"activation must be a gk.activations object (e.g. gk.activations.erf(m=5)), "
                f"got {activation!r}"
            )
        if surrogate is not None and not isinstance(surrogate, ScalarFunction):
            raise TypeError(
                f"surrogate must be a gk.surrogates object (e.g. gk.surrogates.erf(k=2)) or "
                f"None, got {surrogate!r}"
            )
        self.activation = activation
        self.surrogate = surrogate
        self.weight_std = _checks.squarable("weight_std",
                                            _checks.positive("weight_std", weight_std))
        self.bias_std = _checks.nonnegative("bias_std", bias_std)
        if self.bias_std > 0:
            _checks.squarable("bias_std", self.bias_std)
        self.quad_order = _checks.integer("quad_order", quad_order, 1)
        self.tile = _checks.integer("tile", tile, 1)
        self.parameterization = _checks.choice("parameterization", parameterization,
                                               PARAMETERIZATIONS)
        self.widths = None if widths is None else _checks.widths("widths", widths, self.depth)
        self.arch = Architecture(self.depth, activation.function, self.weight_std,
                                 self.bias_std, self.quad_order, self.parameterization,
                                 self.widths)
        """What the kernel and network math needs (depth, sigma, stds, quadrature order)."""

    def __repr__(self) -> str:
        return (f"MLP(depth={self.depth}, activation={self.activation!r}, "
                f"surrogate={self.surrogate!r}, weight_std={self.weight_std:g}, "
                f"bias_std={self.bias_std:g}"
                + ("" if self.parameterization == "ntk"
                   else f", parameterization='standard', widths={self.widths}") + ")")

    # ------------------------------------------------------------------ analytic
    def side(self, name: str, value: str) -> ScalarFunction:
        """The derivative ``value`` ('true': sigma', 'surrogate': the surrogate, centred at
        sigma's jumps and weighted by half their heights) for the argument ``name``
        (named in errors)."""
        _checks.choice(name, value, _SIDES)
        if value == "true":
            return self.activation.derivative
        if self.surrogate is None:
            raise ValueError(f"{name}='surrogate' needs an MLP built with a surrogate=...")
        return self.activation.surrogate_derivative(self.surrogate)

    def kernels(self, x1: Array, x2: Array | None = None,
                which: tuple[str, ...] = ("nngp", "ntk", "sgntk"),
                dtype: Any = np.float64) -> dict[str, Array]:
        """Several kernels in one pass over the tiles.

        ``which`` holds names from ``nngp``, ``ntk`` (true, true), ``sgntk`` (true,
        surrogate) and ``surrogate`` (surrogate, surrogate).
        """
        if isinstance(which, str):
            which = (which,)
        for w in which:
            _checks.choice("which", w, ("nngp",) + tuple(KERNEL_SIDES))
        pairs = {w: KERNEL_SIDES[w] for w in which if w != "nngp"}
        return self._compute(x1, x2, pairs, "nngp" in which, dtype)

    def kernel(self, x1: Array, x2: Array | None = None, left: str = "true",
               right: str = "surrogate", dtype: Any = np.float64) -> Array:
        """K_{L+1} with derivative ``left`` at x1 and ``right`` at x2 ('true' or 'surrogate')."""
        return self._compute(x1, x2, {"k": (left, right)}, False, dtype)["k"]

    def nngp(self, x1: Array, x2: Array | None = None, dtype: Any = np.float64) -> Array:
        """The NNGP kernel Sigma_{L+1}(x1, x2)."""
        return self._compute(x1, x2, {}, True, dtype)["nngp"]

    def nngp_diagonal(self, x: Array) -> Array:
        """Sigma_{L+1}(x_i, x_i) for each row of ``x``, shape (N,): O(N), no N x N matrix."""
        return planner.nngp_diagonal(self.arch, _checks.inputs("x", x))

    def ntk(self, x1: Array, x2: Array | None = None, dtype: Any = np.float64) -> Array:
        """The NTK Theta(x1, x2); +inf (with a RuntimeWarning) on coinciding points for jumps."""
        return self.kernel(x1, x2, "true", "true", dtype)

    def sgntk(self, x1: Array, x2: Array | None = None, dtype: Any = np.float64) -> Array:
        """The SG-NTK I(x1, x2): true derivative at x1, surrogate at x2 (not symmetric)."""
        return self.kernel(x1, x2, "true", "surrogate", dtype)

    def pair(self, left: str, right: str) -> Pair:
        """The kernel with derivative ``left`` at x1 and ``right`` at x2."""
        return Pair(self.side("left", left), self.side("right", right))

    def _compute(self, x1, x2, pairs: dict[str, tuple[str, str]], want_nngp: bool,
                 dtype) -> dict[str, Array]:
        dt = _checks.float_dtype("dtype", dtype)
        resolved = {name: self.pair(*lr) for name, lr in pairs.items()}
        if resolved and self.arch.standard and self.widths is None:
            raise ValueError("the NTK-type kernels of a standard-parameterized MLP depend on "
                             "its hidden widths: build it with widths=(n_1, ..., n_L)")
        a = _checks.inputs("x1", x1)
        b = None if x2 is None else _checks.inputs("x2", x2, n_features=a.shape[1])
        if b is not None and _checks.same_points(a, b):
            b = None  # K(x, x) is K(x): the symmetric path
        n2 = a.shape[0] if b is None else b.shape[0]
        n_out = len(resolved) + int(want_nngp)
        _checks.fits_in_memory(
            f"{n_out} kernel matrix(es) of shape ({a.shape[0]}, {n2}) in {dt}",
            planner.output_bytes(a.shape[0], n2, n_out, dt, self.tile),
        )
        request = planner.plan(self.arch, list(resolved.values()), want_nngp)
        nngp, outs = planner.compute(request, planner.prepare(self.arch, a, b), dt, self.tile)
        result = dict(zip(resolved, outs))
        if want_nngp:
            result["nngp"] = nngp
        return result

    # ------------------------------------------------------------------ finite width
    def init(self, n_in: int, width: int | tuple[int, ...] | None = None, ensemble: int = 1,
             seed: int = 0, dtype: Any = np.float64, n_out: int = 1,
             distribution: str = "normal") -> Params:
        """E independent networks with ``n_out`` outputs (``width``: one int, or one per
        hidden layer; default: the MLP's ``widths``).

        W, b entries iid N(0, 1) (standard parameterization: N(0, sw^2/fan_in) and
        N(0, sb^2), the same functions for the same seed), drawn on the host (network e
        from ``SeedSequence(seed).spawn(E)[e]``): the same seed gives the same networks
        on every backend and for any ensemble size. Stacked with the ensemble as leading
        axis. ``distribution="torch"`` (standard parameterization only): PyTorch's default
        ``nn.Linear`` initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for W and b.
        """
        if width is None:
            if self.widths is None:
                raise ValueError("width is needed (this MLP was built without widths)")
            width = self.widths
        if distribution == "torch" and not self.arch.standard:
            raise ValueError("distribution='torch' draws the weights of PyTorch's nn.Linear: "
                             "it needs an MLP with parameterization='standard'")
        return finite.init_params(self.depth, n_in, width, ensemble, seed, dtype, n_out,
                                  self.arch.init_stds, distribution)

    def validate(self, params: Params, x: Array, name: str = "x") -> tuple[Params, Array]:
        """``params`` checked against this MLP, and inputs ``x`` (named ``name`` in errors)
        as an array of params' dtype on the backend."""
        params = finite.check_params(self.arch, params)
        arr = _checks.inputs(name, x)
        if arr.shape[1] != params.n_in:
            raise ValueError(f"{name} has {arr.shape[1]} features but params expect "
                             f"n_in = {params.n_in}")
        return params, arr.astype(params.dtype, copy=False)

    def apply(self, params: Params, x: Array) -> Array:
        """Outputs f(x) of every network: (E, N), or (E, N, C) for C > 1 outputs; the
        forward pass uses sigma itself."""
        params, arr = self.validate(params, x)
        return finite.apply(self.arch, params, arr)

    def jacobian(self, params: Params, x: Array, derivative: str = "surrogate",
                 output: int = 0) -> Array:
        """(E, N, P) Jacobian (``derivative="true"``) or quasi-Jacobian (``"surrogate"``) of
        output ``output``.

        Columns in the ``Params.ravel`` order: for each layer W row-major, then b. For
        small networks and tests (it materializes E*N*P numbers); kernels should use
        ``empirical_kernel``, which never forms it.
        """
        d = self.side("derivative", derivative)
        params, arr = self.validate(params, x)
        output = _checks.integer("output", output, 0, params.n_out - 1)
        _checks.fits_in_memory(
            f"a Jacobian of shape ({params.ensemble}, {arr.shape[0]}, {params.size})",
            3 * params.ensemble * arr.shape[0] * params.size * params.dtype.itemsize,
        )
        return finite.jacobian(self.arch, params, arr, d, output)

    def empirical_kernel(self, params: Params, x1: Array, x2: Array | None = None,
                         left: str = "true", right: str = "surrogate",
                         kind: str = "ntk", output: int = 0, blocks: bool = False) -> Array:
        """(E, N1, N2) empirical kernels of the ensemble, without forming any Jacobian.

        ``kind="ntk"``: J_left(x1) J_right(x2)^T = sum_l (D_l D_l'^T) * (sw^2/n Z Z'^T + sb^2)
        (left/right: 'true' or 'surrogate'); ``kind="nngp"``: the readout-feature Gram
        sw^2/n_L <z_L(x1), z_L(x2)> + sb^2. A jump activation's true derivative is 0
        almost everywhere: its 'true' side only sees the readout layer.

        With C outputs: the kernel of output ``output``, or with ``blocks=True`` all of
        them, (E, N1 C, N2 C) with entry (i C + c, j C + c') = K_cc'(x_i, x_j) (the
        infinite-width limit of which is K ⊗ I_C).
        """
        _checks.choice("kind", kind, ("ntk", "nngp"))
        a = b = None
        if kind == "ntk":
            a, b = self.side("left", left), self.side("right", right)
        params, arr1 = self.validate(params, x1, "x1")
        arr2 = None
        if x2 is not None:
            _, arr2 = self.validate(params, x2, "x2")
            if _checks.same_points(arr1, arr2):
                arr2 = None  # K(x, x) is K(x): the symmetric path
        n2 = arr1.shape[0] if arr2 is None else arr2.shape[0]
        output = _checks.integer("output", output, 0, params.n_out - 1)
        if blocks:
            return finite.empirical_kernel_blocks(self.arch, params, arr1, arr2, a, b)
        _checks.fits_in_memory(
            f"empirical kernels of shape ({params.ensemble}, {arr1.shape[0]}, {n2})",
            2 * params.ensemble * arr1.shape[0] * n2 * params.dtype.itemsize,
        )
        return finite.empirical_kernel(self.arch, params, arr1, arr2, a, b, output=output)
