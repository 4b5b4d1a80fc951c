"""Activation functions sigma as value objects: the function and its true derivative.

Each constructor returns an :class:`Activation`; its ``function`` and ``derivative``
are scalar value objects (:mod:`gpukern.functions`) that know their closed forms.

* ``erf(m)``: erf(m v), derivative (2m/sqrt(pi)) exp(-m^2 v^2); ``m=inf`` is sign.
* ``sign()``: sign(v) with sign(0) = 0, derivative 2 delta(v).
* ``step()``: H(v) = (1 + sign v)/2 (H(0) = 1/2), derivative delta(v).
* ``relu()``: max(v, 0), derivative H(v).
* ``linear()``: v, derivative 1.
* ``custom(fn, derivative)``: any vectorised functions (Gaussian averages by quadrature).

A jump activation's true derivative is a delta: in a finite network it is 0 almost
everywhere, analytically it enters through the exact delta reduction (the sign-limit
kernels of docs/architecture.md). The naive NTK (delta on both sides) is +inf at coinciding
inputs; gpukern returns +inf there with a RuntimeWarning, unlike neural-tangents'
``Sign``, which sets the derivative term to 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import _checks
from .functions import Custom, ErfStep, Identity, ReLU, ScalarFunction

__all__ = ["Activation", "erf", "sign", "step", "relu", "linear", "custom", "BUILTIN"]


@dataclass(frozen=True)
class Activation:
    """An activation: ``function`` sigma and its true ``derivative`` sigma'."""

    name: str
    function: ScalarFunction
    derivative: ScalarFunction

    def __call__(self, v: Any) -> Any:
        return self.function(v)

    @property
    def has_jump(self) -> bool:
        """True when sigma jumps (its derivative is a delta)."""
        return self.derivative.is_delta

    def __repr__(self) -> str:
        return f"gk.activations.{self.name}"


def erf(m: float = 1.0) -> Activation:
    """sigma(v) = erf(m v); ``m=float('inf')`` is sign."""
    m = _checks.positive("m", m, allow_inf=True)
    if not math.isinf(m):
        _checks.squarable("m", m)
    fn = ErfStep(0.0 if math.isinf(m) else 1.0 / (m * m))
    label = "sign()" if math.isinf(m) else f"erf(m={m:g})"
    return Activation(label, fn, fn.derivative())


def sign() -> Activation:
    """sigma(v) = sign(v), sign(0) = 0; sigma' = 2 delta."""
    fn = ErfStep(0.0)
    return Activation("sign()", fn, fn.derivative())


def step() -> Activation:
    """sigma(v) = H(v) = (1 + sign v)/2; sigma' = delta."""
    fn = ErfStep(0.0, amp=0.5, offset=0.5)
    return Activation("step()", fn, fn.derivative())


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

    Kernels use 2-D quadrature (slow: use for small N); ``width`` is the scale on which
    fn varies and ``kinks`` where it has kinks, so the quadrature panels resolve them.
    On the CuPy backend the functions receive CuPy arrays (array code, no fused kernel).
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
