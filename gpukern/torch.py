"""PyTorch and snnTorch networks as gpukern MLPs, and back (optional extra ``torch``).

``from_torch(module)`` reads an ``nn.Sequential`` of ``nn.Linear`` layers with one kind of
nonlinearity between them into ``(MLP, Params)`` in the standard parameterization (what
``nn.Linear`` computes and differentiates), so that ``net.empirical_kernel``,
``net.jacobian`` and ``gk.train`` are what torch autograd and SGD compute. Nonlinearities:

* snnTorch ``Leaky`` (any beta) on a single time step from rest (fresh state, as after
  ``snntorch.utils.reset``): the spike H(U - theta) is ``step(theta)`` (a graded spike
  factor g: the quantizer with levels 0, g), its ``spike_grad`` the surrogate;
* any module whose forward is a single jump (a step or sign, e.g. wrapping a
  ``torch.autograd.Function``): its threshold and levels are read from its forward, its
  surrogate from its backward;
* ``nn.ReLU`` and ``nn.Identity``.

Surrogates are recognised from values, not names: the backward is sampled at probe
points around the threshold and matched against the shapes of :data:`FAMILIES` (fitted
amplitude and width, then checked at every probe to 1e-10 relative). What matches none
is refused with an error naming it.

``to_torch(net, params, index)`` builds the torch module of network ``index``: forward
sigma, backward the gpukern surrogate (or sigma' without one), so that training it with
``torch.optim.SGD`` on L = 1/2 sum (f - y)^2 is ``gk.train``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

try:
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - the extra is not installed
    raise ImportError("gpukern.torch needs PyTorch: pip install 'gpukern[torch]'") from exc

from . import _checks, activations, finite, surrogates
from ._backend import BACKEND
from .activations import Activation
from .finite import Params
from .functions import ScalarFunction
from .network import MLP

__all__ = ["from_torch", "to_torch", "FAMILIES", "equivalence_table"]

PROBE_OFFSETS = np.array([0.0, 0.013, -0.013, 0.05, -0.05, 0.11, -0.11, 0.3, -0.3, 0.7, -0.7,
                          1.3, -1.3, 2.9, -2.9])
"""Where a backward is sampled, relative to the threshold (both signs: symmetry is checked)."""
MATCH_RTOL = 1e-10
"""A fitted surrogate must reproduce every probe to this relative error."""
FIT_DIGITS = 12
"""Fitted parameters are rounded to this many significant digits (25.000000000000004 is 25)
before they are checked."""


@dataclass(frozen=True)
class Family:
    """A surrogate shape s(u) = c * shape(p u) of amplitude c = s(0) and one parameter p,
    with its gpukern equivalent for a jump of height a (the surrogate derivative of a
    jump is (a/2) times the gpukern surrogate)."""

    name: str
    shape: Callable[[np.ndarray], np.ndarray]
    invert: Callable[[float], float]
    """p |u| from the ratio r = s(u)/c = shape(p |u|) (NaN where no p gives r)."""
    to_gk: Callable[[float, float, float], ScalarFunction]
    """(c, p, a) -> the gpukern surrogate."""


def _ratio_root(f: Callable[[float], float]) -> Callable[[float], float]:
    return lambda r: f(r) if 0.0 < r < 1.0 else math.nan


FAMILIES: tuple[Family, ...] = (
    Family("fast_sigmoid", lambda pu: 1.0 / (1.0 + np.abs(pu)) ** 2,
           _ratio_root(lambda r: 1.0 / math.sqrt(r) - 1.0),
           lambda c, p, a: surrogates.fast_sigmoid(beta=p, scale=2.0 * c / (a * p))),
    Family("atan", lambda pu: 1.0 / (1.0 + (0.5 * math.pi * pu) ** 2),
           _ratio_root(lambda r: 2.0 / math.pi * math.sqrt(1.0 / r - 1.0)),
           lambda c, p, a: surrogates.atan(alpha=p, scale=2.0 * c / (a * p))),
    Family("sigmoid", lambda pu: 1.0 / np.cosh(0.5 * pu) ** 2,
           _ratio_root(lambda r: 2.0 * math.acosh(1.0 / math.sqrt(r))),
           lambda c, p, a: surrogates.sigmoid(beta=p, scale=4.0 * c / (a * p))),
    Family("erf", lambda pu: np.exp(-pu * pu),
           _ratio_root(lambda r: math.sqrt(-math.log(r))),
           lambda c, p, a: surrogates.erf(k=p, scale=math.sqrt(math.pi) * c / (a * p))),
    Family("straight_through", lambda pu: np.ones_like(pu),
           lambda r: 1.0 if r == 1.0 else math.nan,
           lambda c, p, a: surrogates.straight_through(scale=2.0 * c / a)),
)
"""The surrogate shapes :func:`from_torch` recognises: snnTorch's fast_sigmoid (1/(1 +
k|u|)^2), atan ((a/2)/(1 + (pi a u/2)^2)), sigmoid (k e^{-ku}/(1 + e^{-ku})^2) and
straight-through estimator (1), an erf bump (SpikingJelly's Erf), each at any amplitude;
besides them snnTorch's ``triangular``, whose backward is +t below the threshold and -t
from it on."""


# ------------------------------------------------------------------------ probing
def _round(p: float) -> float:
    return float(f"{p:.{FIT_DIGITS}g}")


def _match_surrogate(values: np.ndarray, height: float, what: str) -> ScalarFunction:
    """The gpukern surrogate (for a jump of ``height``) whose (height/2)-weighted shape
    reproduces the backward ``values`` sampled at PROBE_OFFSETS from the threshold."""
    u = PROBE_OFFSETS
    c = float(values[0])
    t = float(values[u < 0][0])
    if t != 0.0 and np.all(values[u < 0] == t) and np.all(values[u >= 0] == -t):
        # snnTorch's triangular(threshold=t): +t below the threshold, -t from it on
        return surrogates.custom(lambda v: 2.0 * t / height * BACKEND.xp.where(v < 0, 1.0, -1.0),
                                 width=1.0, kinks=(0.0,),
                                 name=f"snntorch_triangular(threshold={_round(t):g})")
    if c > 0.0 and np.all(np.isfinite(values)):
        k = int(np.flatnonzero(np.isclose(np.abs(u), 0.3))[0])  # fit at |u| = 0.3
        for fam in FAMILIES:
            p = fam.invert(float(values[k]) / c)
            p = 1.0 if fam.name == "straight_through" else _round(p / abs(u[k]))
            if not np.isfinite(p) or p <= 0.0:
                continue
            c_r = _round(c)
            model = c_r * fam.shape(p * u)
            if np.allclose(model, values, rtol=MATCH_RTOL, atol=0.0):
                return fam.to_gk(c_r, p, height)
    names = ", ".join(f.name for f in FAMILIES)
    raise ValueError(f"cannot translate the surrogate gradient of {what}: its backward "
                     f"matches none of {names}, snnTorch's triangular (its values at the "
                     f"threshold + {np.array2string(u, precision=3)}: "
                     f"{np.array2string(values, precision=4)})")


def _probe_backward(fn: Callable[[Any], Any], at: float) -> np.ndarray:
    """d fn / dv at ``at`` + PROBE_OFFSETS (a column of points: any elementwise module)."""
    v = torch.tensor(at + PROBE_OFFSETS, dtype=torch.float64).reshape(-1, 1).requires_grad_()
    (grad,) = torch.autograd.grad(fn(v).to(torch.float64).sum(), v)
    return grad.detach().cpu().numpy().astype(np.float64).reshape(-1)


def _forward_values(fn: Callable[[Any], Any], v: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = fn(torch.tensor(v, dtype=torch.float64).reshape(-1, 1))
    return out.to(torch.float64).cpu().numpy().reshape(-1)


def _jump(fn: Callable[[Any], Any], what: str) -> tuple[float, float, float]:
    """(threshold, low, high) of a forward that is a single jump, read from its values:
    constant levels on a grid over [-64, 64] and the jump located by bisection to
    adjacent doubles (of the two, the one with the shorter decimal form: 1.0, not
    1.0000000000000002)."""
    grid = np.linspace(-64.0, 64.0, 2**14 + 1)
    vals = _forward_values(fn, grid)
    low, high = float(vals[0]), float(vals[-1])
    changes = np.flatnonzero(vals[1:] != vals[:-1])
    if low == high or not np.all(np.isin(vals, (low, high))) or changes.size != 1:
        raise ValueError(f"cannot translate {what}: its forward is not a single jump between "
                         f"two levels on [-64, 64] (levels seen: {np.unique(vals)[:6]})")
    a, b = float(grid[changes[0]]), float(grid[changes[0] + 1])
    while np.nextafter(a, b) < b:
        mid = 0.5 * (a + b)
        if mid in (a, b):
            mid = float(np.nextafter(a, b))
        if _forward_values(fn, np.array([mid]))[0] == low:
            a = mid
        else:
            b = mid
    theta = min((a, b), key=lambda t: (len(repr(t)), abs(t)))
    return theta, low, high


def _jump_activation(theta: float, low: float, high: float) -> Activation:
    if (low, high) == (0.0, 1.0):
        return activations.step(theta)
    if (low, high) == (-1.0, 1.0):
        return activations.sign(theta)
    return activations.quantizer((theta,), (low, high))


@dataclass(frozen=True)
class _Read:
    """What a nonlinearity module computes: its activation and, for a jump, its backward
    sampled at PROBE_OFFSETS from the threshold (``values``) for a jump of ``height``."""

    activation: Activation
    values: tuple[float, ...] | None
    height: float
    what: str

    def surrogate(self) -> ScalarFunction | None:
        if self.values is None:
            return None
        return _match_surrogate(np.asarray(self.values), self.height, self.what)


def _read_leaky(mod: Any) -> _Read:
    """snnTorch Leaky on one time step from rest: mem = input, spike g H(mem - theta)."""
    name = type(mod).__name__
    if getattr(mod, "inhibition", False) or getattr(mod, "state_quant", False):
        raise ValueError(f"cannot translate {name} with inhibition or state_quant: "
                         "they couple the units or quantize the membrane")
    if torch.as_tensor(mod.threshold).numel() != 1:
        raise ValueError(f"cannot translate {name} with one threshold per unit")
    theta = float(torch.as_tensor(mod.threshold).reshape(-1)[0])
    if getattr(mod, "reset_mechanism", "none") == "subtract" and theta <= 0.0:
        raise ValueError(f"cannot translate {name} with threshold {theta} <= 0 and "
                         "reset by subtraction: its first step already subtracts theta")
    g = float(torch.as_tensor(mod.graded_spikes_factor).reshape(-1)[0])
    grad = mod.spike_grad
    what = f"{name}.spike_grad ({getattr(grad, '__qualname__', type(grad).__name__)})"
    values = _probe_backward(grad, 0.0) * g
    return _Read(_jump_activation(theta, 0.0, g), tuple(values), g, what)


def _read(mod: Any) -> _Read:
    """A nonlinearity module's activation and backward."""
    if isinstance(mod, nn.ReLU):
        return _Read(activations.relu(), None, 0.0, "nn.ReLU")
    if isinstance(mod, nn.Identity):
        return _Read(activations.linear(), None, 0.0, "nn.Identity")
    if type(mod).__name__ == "Leaky" and type(mod).__module__.startswith("snntorch"):
        return _read_leaky(mod)
    if type(mod).__module__.startswith("snntorch"):
        raise ValueError(f"cannot translate snnTorch's {type(mod).__name__}: only Leaky "
                         "(one time step) is supported")
    what = f"module {type(mod).__name__}"
    theta, low, high = _jump(mod, what)
    values = _probe_backward(mod, theta)
    return _Read(_jump_activation(theta, low, high), tuple(values), high - low, what)


def from_torch(module: Any, weight_std: float = 1.0 / math.sqrt(3.0), bias_std: float = 0.0,
               dtype: Any = np.float64) -> tuple[MLP, Params]:
    """``(MLP, Params)`` of an ``nn.Sequential`` [Linear, nonlinearity, ..., Linear].

    The MLP is standard-parameterized with the module's hidden widths; its parameters
    are the module's (one network, E = 1, in ``dtype``). ``weight_std``, ``bias_std``
    describe the initialisation the analytic kernels assume (W ~ N(0, sw^2/fan_in),
    b ~ N(0, sb^2)); they do not enter the finite network. Their defaults: PyTorch's
    ``nn.Linear`` initialisation has weight variance 1/(3 fan_in); its bias variance
    1/(3 fan_in) shrinks with the fan-in and is not a bias_std: pass the stds you drew
    with.
    """
    layers = list(module.children()) if isinstance(module, nn.Module) else list(module)
    if not layers:
        raise ValueError("module must be an nn.Sequential of nn.Linear and nonlinearities")
    linears = layers[0::2]
    for i, lin in enumerate(linears):
        if not isinstance(lin, nn.Linear):
            raise ValueError(f"module layer {2 * i} must be nn.Linear (the layers alternate "
                             f"Linear, nonlinearity, ..., Linear), got {type(lin).__name__}")
        if lin.bias is None:
            raise ValueError(f"module layer {2 * i}: nn.Linear(bias=False) is not supported "
                             "(gpukern's layers have biases)")
    if len(layers) % 2 == 0 or len(layers) < 3:
        raise ValueError("module must end with nn.Linear and have at least one hidden layer "
                         f"(got {len(layers)} layers)")
    reads = [_read(m) for m in layers[1::2]]
    first = reads[0]
    for i, r in enumerate(reads[1:], start=1):
        if r.activation.name != first.activation.name or r.values != first.values:
            raise ValueError(f"module layer {2 * i + 1} ({r.what}, {r.activation!r}) computes "
                             f"another nonlinearity than layer 1 ({first.what}, "
                             f"{first.activation!r}): an MLP has one")
    dt = _checks.float_dtype("dtype", dtype)
    widths = tuple(int(lin.out_features) for lin in linears[:-1])
    net = MLP(len(reads), first.activation, first.surrogate(), weight_std=weight_std,
              bias_std=bias_std, parameterization="standard", widths=widths)
    to = BACKEND.asarray

    def host(t: Any) -> np.ndarray:
        return t.detach().cpu().to(torch.float64).numpy().astype(dt)[None]

    params = Params(tuple(to(host(lin.weight)) for lin in linears),
                    tuple(to(host(lin.bias)) for lin in linears))
    return net, params


# ------------------------------------------------------------------------ to torch
class _Surrogate(torch.autograd.Function):
    """Forward sigma, backward ``derivative`` (gpukern functions on the backend's arrays)."""

    @staticmethod
    def forward(ctx: Any, h: Any, sigma: ScalarFunction, derivative: ScalarFunction) -> Any:
        ctx.save_for_backward(h)
        ctx.derivative = derivative
        return _apply(sigma, h)

    @staticmethod
    def backward(ctx: Any, grad: Any) -> tuple[Any, None, None]:
        (h,) = ctx.saved_tensors
        return grad * _apply(ctx.derivative, h), None, None


def _apply(fn: ScalarFunction, t: Any) -> Any:
    out = fn(_checks.backend_array(t.detach()))
    return torch.from_dlpack(BACKEND.xp.ascontiguousarray(out)).to(t.dtype)


class GkActivation(nn.Module):
    """sigma forward and gpukern's surrogate (or sigma') backward."""

    def __init__(self, sigma: ScalarFunction, derivative: ScalarFunction, name: str) -> None:
        super().__init__()
        self.sigma, self.derivative, self.name = sigma, derivative, name

    def forward(self, h: Any) -> Any:
        return _Surrogate.apply(h, self.sigma, self.derivative)

    def extra_repr(self) -> str:
        return self.name


class ScaledLinear(nn.Linear):
    """nn.Linear of the NTK parameterization: h = a z W^T + b_s b with N(0, 1) W, b."""

    def __init__(self, fan_in: int, fan_out: int, weight_scale: float, bias_scale: float
                 ) -> None:
        super().__init__(fan_in, fan_out, dtype=torch.float64)
        self.weight_scale, self.bias_scale = weight_scale, bias_scale

    def forward(self, z: Any) -> Any:
        return nn.functional.linear(z, self.weight * self.weight_scale, self.bias * self.bias_scale)


def to_torch(net: MLP, params: Params, index: int = 0) -> nn.Sequential:
    """Network ``index`` of ``params`` as a float64 torch module: nn.Linear layers
    (ScaledLinear in the NTK parameterization) and :class:`GkActivation` (forward sigma,
    backward the surrogate, or sigma' for an MLP without one)."""
    params = finite.check_params(net.arch, params)
    index = _checks.integer("index", index, 0, params.ensemble - 1)
    derivative = net.side("derivative", "surrogate" if net.surrogate is not None else "true")
    arch = net.arch
    mods: list[nn.Module] = []
    for l, (w, b) in enumerate(zip(params.weights, params.biases)):
        fan_out, fan_in = int(w.shape[1]), int(w.shape[2])
        lin = (nn.Linear(fan_in, fan_out, dtype=torch.float64) if arch.standard else
               ScaledLinear(fan_in, fan_out, arch.weight_scale(fan_in), arch.bias_scale))
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.asarray(BACKEND.to_host(w[index]), np.float64)))
            lin.bias.copy_(torch.from_numpy(np.asarray(BACKEND.to_host(b[index]), np.float64)))
        mods.append(lin)
        if l < net.depth:
            mods.append(GkActivation(arch.sigma, derivative, repr(net.activation)))
    return nn.Sequential(*mods)


# ------------------------------------------------------------------------ documentation
def equivalence_table() -> str:
    """The README's table of snnTorch surrogates and their gpukern equivalents with
    ``step(theta)``, as :func:`from_torch` translates them (tests/test_torch.py checks
    the README against it and each row against snnTorch's backward)."""
    rows = [("`surrogate.fast_sigmoid(slope=k)`", "`fast_sigmoid(beta=k, scale=2/k)`"),
            ("`surrogate.atan(alpha=a)`", "`atan(alpha=a)`"),
            ("`surrogate.sigmoid(slope=k)`", "`sigmoid(beta=k)`"),
            ("`surrogate.straight_through_estimator()`", "`straight_through(scale=2)`"),
            ("`surrogate.triangular(threshold=t)`",
             "`custom(2t (1 if u < 0 else -1), kinks=(0,))` (snnTorch's backward is +t below "
             "the threshold, -t above: not gpukern's `triangle`)")]
    lines = ["| snnTorch `spike_grad` (Leaky, `threshold=θ`) | gpukern surrogate with "
             "`gk.activations.step(θ)` |", "|---|---|"]
    lines += [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(lines)
