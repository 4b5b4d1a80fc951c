"""Activation functions sigma as value objects: the function and its true derivative.

Each constructor returns an :class:`Activation`; its ``function`` and ``derivative``
are scalar value objects (:mod:`gpukern.functions`) that know their closed forms.

* ``erf(m, threshold)``: erf(m (v - theta)), derivative (2m/sqrt(pi)) exp(-m^2 (v - theta)^2);
  ``m=inf`` is sign(threshold).
* ``sign(threshold)``: sign(v - theta) with sign(0) = 0, derivative 2 delta(v - theta).
* ``step(threshold)``: H(v - theta) (H(0) = 1/2), derivative delta(v - theta).
* ``quantizer(thresholds, levels)``: the staircase levels[k] between thresholds k-1 and k;
  ``uniform_quantizer(bits, low, high)`` the uniform b-bit one.
* ``relu()``: max(v, 0), derivative H(v).
* ``linear()``: v, derivative 1.
* ``custom(fn, derivative)``: any vectorised functions (Gaussian averages by quadrature).

**Piecewise-constant activations** are sigma(v) = c0 + sum_i a_i H(v - theta_i), thresholds
strictly increasing, H(0) = 1/2 (at a threshold sigma is the midpoint of its two levels);
sigma' = sum_i a_i delta(v - theta_i). Their surrogate derivative
(:meth:`Activation.surrogate_derivative`) is **sum_i (a_i / 2) s(v - theta_i)**: the
surrogate shape s (area 2 x scale) centred at every jump, weighted by half the jump
height, so that sign's is s itself and step's is s / 2. ``erf(m, threshold)`` rises by 2
like sign: its surrogate is s(v - theta).

A jump's true derivative is a delta: in a finite network it is 0 almost everywhere,
analytically it enters through the exact delta reduction (docs/architecture.md). The naive
NTK (delta on both sides) is +inf at coinciding inputs where two deltas sit at the same
threshold; gpukern returns +inf there with a RuntimeWarning, unlike neural-tangents'
``Sign``, which sets the derivative term to 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _checks
from .functions import Custom, ErfStep, GaussianBump, Identity, ReLU, ScalarFunction, Sum, scaled, shifted

__all__ = ["Activation", "erf", "sign", "step", "quantizer", "uniform_quantizer", "relu",
           "linear", "custom", "BUILTIN"]

MAX_THRESHOLDS = 4096
"""A quantizer's thresholds at most (each adds a term to every pair expectation)."""


@dataclass(frozen=True)
class Activation:
    """An activation: ``function`` sigma, its true ``derivative`` sigma' and, for a jump
    activation, its ``jumps`` ((threshold, height), ...) that centre the surrogate."""

    name: str
    function: ScalarFunction
    derivative: ScalarFunction
    jumps: tuple[tuple[float, float], ...] = ()

    def __call__(self, v: Any) -> Any:
        return self.function(v)

    @property
    def has_jump(self) -> bool:
        """True when sigma jumps (its derivative is a delta)."""
        return self.derivative.is_delta

    def surrogate_derivative(self, surrogate: ScalarFunction) -> ScalarFunction:
        """The surrogate used in place of sigma': sum_i (a_i/2) s(v - theta_i) over the
        jumps (module docstring); ``surrogate`` itself for an activation without jumps."""
        if not self.jumps:
            return surrogate
        parts = tuple(shifted(scaled(surrogate, 0.5 * height), theta)
                      for theta, height in self.jumps)
        return parts[0] if len(parts) == 1 else Sum(parts)

    def __repr__(self) -> str:
        return f"gk.activations.{self.name}"


def _threshold(value: Any) -> float:
    theta = _checks.real("threshold", value)
    if not math.isfinite(theta):
        raise ValueError(f"threshold must be finite, got {theta}")
    return theta


def _at(theta: float) -> str:
    return "" if theta == 0.0 else f"threshold={theta:g}"


def erf(m: float = 1.0, threshold: float = 0.0) -> Activation:
    """sigma(v) = erf(m (v - threshold)); ``m=float('inf')`` is sign(threshold)."""
    m = _checks.positive("m", m, allow_inf=True)
    theta = _threshold(threshold)
    if math.isinf(m):
        return sign(theta)
    _checks.squarable("m", m)
    fn = ErfStep(1.0 / (m * m))
    at = _at(theta)
    return Activation(f"erf(m={m:g}{', ' + at if at else ''})", shifted(fn, theta),
                      shifted(fn.derivative(), theta), ((theta, 2.0),))


def sign(threshold: float = 0.0) -> Activation:
    """sigma(v) = sign(v - threshold), sign(0) = 0; sigma' = 2 delta(v - threshold)."""
    theta = _threshold(threshold)
    fn = ErfStep(0.0)
    return Activation(f"sign({_at(theta)})", shifted(fn, theta),
                      shifted(fn.derivative(), theta), ((theta, 2.0),))


def step(threshold: float = 0.0) -> Activation:
    """sigma(v) = H(v - threshold) (H(0) = 1/2); sigma' = delta(v - threshold)."""
    theta = _threshold(threshold)
    fn = ErfStep(0.0, amp=0.5, offset=0.5)
    return Activation(f"step({_at(theta)})", shifted(fn, theta),
                      shifted(fn.derivative(), theta), ((theta, 1.0),))


def quantizer(thresholds: Sequence[float], levels: Sequence[float]) -> Activation:
    """The staircase sigma(v) = levels[k] for thresholds[k-1] < v < thresholds[k] (the
    midpoint of the two levels at a threshold): c0 + sum_i a_i H(v - theta_i) with
    c0 = levels[0], a_i = levels[i+1] - levels[i]. Thresholds strictly increasing,
    len(levels) == len(thresholds) + 1, all finite."""
    theta = _finite_list("thresholds", thresholds)
    lv = _finite_list("levels", levels)
    if not 1 <= len(theta) <= MAX_THRESHOLDS:
        raise ValueError(f"thresholds must hold 1 to {MAX_THRESHOLDS} values, got {len(theta)}")
    if any(b <= a for a, b in zip(theta, theta[1:])):
        raise ValueError(f"thresholds must be strictly increasing, got {list(theta)}")
    if len(lv) != len(theta) + 1:
        raise ValueError(f"levels must hold len(thresholds) + 1 = {len(theta) + 1} values, "
                         f"got {len(lv)}")
    heights = [b - a for a, b in zip(lv, lv[1:])]
    jumps = tuple((t, h) for t, h in zip(theta, heights) if h != 0.0)
    if not jumps:
        raise ValueError(f"levels must not all be equal (a constant has no jump), got {list(lv)}")
    parts: list[ScalarFunction] = []
    for i, (t, h) in enumerate(jumps):  # c0 + a H(v - t) = (c0 + a/2) + (a/2) sign(v - t)
        parts.append(shifted(ErfStep(0.0, amp=0.5 * h, offset=0.5 * h + (lv[0] if i == 0 else 0.0)), t))
    deltas = [shifted(GaussianBump(0.0, h), t) for t, h in jumps]
    fn = parts[0] if len(parts) == 1 else Sum(tuple(parts))
    der = deltas[0] if len(deltas) == 1 else Sum(tuple(deltas))
    name = f"quantizer([{', '.join(f'{t:g}' for t in theta)}], [{', '.join(f'{v:g}' for v in lv)}])"
    return Activation(name, fn, der, jumps)


def uniform_quantizer(bits: int, low: float = -1.0, high: float = 1.0) -> Activation:
    """The uniform b-bit quantizer on [low, high]: 2^b levels low + k (high - low)/(2^b - 1),
    thresholds at the midpoints between consecutive levels."""
    bits = _checks.integer("bits", bits, 1, 12)
    low, high = _checks.real("low", low), _checks.real("high", high)
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"low < high (both finite) expected, got low={low}, high={high}")
    n = 2**bits
    mid, step = 0.5 * (low + high), (high - low) / (n - 1)
    lv = mid + (np.arange(n) - 0.5 * (n - 1)) * step  # symmetric about mid: exact there
    theta = mid + (np.arange(n - 1) - 0.5 * (n - 2)) * step
    return quantizer(list(theta), list(lv))


def _finite_list(name: str, values: Any) -> tuple[float, ...]:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a sequence of real numbers, got {values!r}") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a flat sequence of real numbers, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr.tolist()}")
    return tuple(float(v) for v in arr)


def relu() -> Activation:
    """sigma(v) = max(v, 0); sigma' = H(v) with H(0) = 1/2."""
    fn = ReLU()
    return Activation("relu()", fn, fn.derivative())


def linear() -> Activation:
    """sigma(v) = v; sigma' = 1."""
    fn = Identity()
    return Activation("linear()", fn, fn.derivative())


def custom(
    fn: Callable[[Any], Any],
    derivative: Callable[[Any], Any],
    width: float = 1.0,
    kinks: tuple[float, ...] = (),
    name: str = "custom",
) -> Activation:
    """A user activation: vectorised ``fn`` and its ``derivative`` (backend arrays in, out).

    Without ``kinks`` fn and its derivative are taken as analytic: kernel pairs are Mehler
    series from per-point Hermite coefficients (:mod:`gpukern.hermite`; ~5 x a closed
    form in the compiled CPU loop and the fused GPU kernel), and a point whose series does
    not converge within 4096 terms (an undeclared kink, a function narrow against the
    layer's scale) falls back to the rule below. With kinks each pair is reduced to 1-D
    quadrature with a memoized table of fn's Gaussian average with a mean
    (:mod:`gpukern.tables`; ~10^3 x a closed form); ``width`` is the scale on which fn
    varies and ``kinks`` where it has kinks, so the quadrature panels resolve them. Kinks
    away from 0 leave no table: nested quadrature (slow, small N). On the CuPy backend
    the functions receive CuPy arrays.
    """
    _checks.vectorised("fn", fn)
    _checks.vectorised("derivative", derivative)
    width = _checks.positive("width", width)
    kinks = tuple(_checks.real("kinks", k) for k in kinks)
    return Activation(
        f"custom({name})",
        Custom(fn, width, kinks, name=name),
        Custom(derivative, width, kinks, name=f"{name}'"),
    )


BUILTIN: dict[str, Callable[..., Activation]] = {
    "erf": erf, "sign": sign, "step": step, "relu": relu, "linear": linear,
}
"""The built-in activations by name (``erf`` takes m; the others no argument)."""
