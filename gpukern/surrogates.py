"""Surrogate derivatives sigma~ used in place of sigma' in the backward pass.

Each is the derivative of a sign-like function rising from -1 to +1, so its area is 2
(sign's jump), times an optional ``scale``; a jump activation centres the shape at each of
its jumps, weighted by half the jump height (sign: as given; step: half of it):

=====================  =============================================
``erf(k)``             (2k/sqrt(pi)) exp(-k^2 v^2)
``sigmoid(beta)``      (beta/2) sech^2(beta v / 2)
``fast_sigmoid(beta)`` beta / (1 + beta |v|)^2   (SuperSpike)
``atan(alpha)``        alpha / (1 + (pi alpha v / 2)^2)
``boxcar(width)``      1/width for |v| < width, else 0
``triangle(width)``    (2/width) max(0, 1 - |v|/width)
``straight_through()`` 1 (the straight-through estimator; its area is not 2)
``custom(fn)``         any vectorised function
=====================  =============================================

Closed Gaussian averages exist for erf, atan, boxcar and triangle; sigmoid,
fast_sigmoid and custom use quadrature graded to their width and kinks, memoized as
tables (:mod:`gpukern.tables`: with a mean too, for sigmoid, fast_sigmoid, atan and
custom functions without kinks away from 0). Each surrogate's
class (its kind's Python side, see :mod:`gpukern.functions`) sits here beside its
constructor; ``erf`` is the Gaussian bump of :mod:`gpukern.functions`, also the
derivative of the erf activation.

Other libraries: snnTorch and SpikingJelly differentiate a 0/1 spike H(U - theta), so
their surrogates have area 1. In gpukern that spike is ``step(threshold=theta)``, whose
surrogate derivative is half the surrogate given (the shape centred at each jump,
weighted by half the jump: :meth:`gpukern.activations.Activation.surrogate_derivative`).
Equivalents with ``step(theta)`` (derived from their documented formulas):

* SpikingJelly ``surrogate.Erf(alpha=a)`` (grad (a/sqrt(pi)) exp(-a^2 x^2)): ``erf(k=a)``;
* SpikingJelly ``surrogate.Sigmoid(alpha=a)`` and snnTorch ``surrogate.sigmoid(slope=a)``
  (grad a s(ax)(1 - s(ax))): ``sigmoid(beta=a)``;
* SpikingJelly ``surrogate.ATan(alpha=a)`` and snnTorch ``surrogate.atan(alpha=a)``
  (grad (a/2) / (1 + (pi a x / 2)^2)): ``atan(alpha=a)``;
* snnTorch ``surrogate.fast_sigmoid(slope=a)`` (grad 1/(1 + a|x|)^2, area 2/a, not 1):
  ``fast_sigmoid(beta=a, scale=2/a)``.

With ``sign(theta)`` (jump 2, surrogate weight 1) halve each scale.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from . import _checks
from ._backend import BACKEND
from .functions import Constant, Custom, Feature, GaussianBump, ScalarFunction, ramp_avg
from .registry import Kind

__all__ = ["erf", "sigmoid", "fast_sigmoid", "atan", "boxcar", "triangle", "straight_through",
           "custom", "BUILTIN"]

Array = Any
_SQRT_PI = math.sqrt(math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _xp():
    return BACKEND.xp


class Surrogate(ScalarFunction):
    """A surrogate derivative of its own kind: area 2 * ``scale`` (sign's jump, scaled).

    Subclasses are dataclasses whose first field is the shape parameter (the descriptor's
    a) and which have a ``scale`` field (its b).
    """

    scale: float

    def params(self) -> tuple[float, float, float]:
        return (float(getattr(self, dataclasses.fields(self)[0].name)), self.scale, 0.0)


@dataclass(frozen=True)
class Sigmoid(Surrogate):
    """scale * (beta/2) sech^2(beta v / 2): the derivative of tanh(beta v / 2)."""

    beta: float
    scale: float = 1.0
    name: str = "sigmoid"

    kind: ClassVar[Kind] = Kind.SIGMOID

    @staticmethod
    def scalar(v: float, a: float, b: float, c: float) -> float:
        e = math.exp(-a * abs(v))
        return (b * 2.0 * a) * e / ((1.0 + e) * (1.0 + e))

    @classmethod
    def examples(cls) -> list[ScalarFunction]:
        return [cls(3.0), cls(0.7, 0.5)]

    def __call__(self, v: Array) -> Array:
        xp = _xp()
        e = xp.exp(-self.beta * xp.abs(v))  # sech^2(y/2) = 4 e^-|y| / (1 + e^-|y|)^2
        return (self.scale * 2.0 * self.beta) * e / (1.0 + e) ** 2

    def features(self) -> list[Feature]:
        return [(0.0, 1.0 / self.beta)]


@dataclass(frozen=True)
class FastSigmoid(Surrogate):
    """scale * beta / (1 + beta |v|)^2 (SuperSpike): derivative of v beta/(1+beta|v|)."""

    beta: float
    scale: float = 1.0
    name: str = "fast_sigmoid"

    kind: ClassVar[Kind] = Kind.FAST_SIGMOID

    @staticmethod
    def scalar(v: float, a: float, b: float, c: float) -> float:
        d = 1.0 + a * abs(v)
        return (b * a) / (d * d)

    @classmethod
    def examples(cls) -> list[ScalarFunction]:
        return [cls(5.0), cls(1.5, 0.5)]

    def __call__(self, v: Array) -> Array:
        return (self.scale * self.beta) / (1.0 + self.beta * _xp().abs(v)) ** 2

    def features(self) -> list[Feature]:
        return [(0.0, 1.0 / self.beta)]


@dataclass(frozen=True)
class Atan(Surrogate):
    """scale * alpha / (1 + (pi alpha v / 2)^2): derivative of (2/pi) arctan(pi alpha v/2)."""

    alpha: float
    scale: float = 1.0
    name: str = "atan"

    kind: ClassVar[Kind] = Kind.ATAN

    @staticmethod
    def scalar(v: float, a: float, b: float, c: float) -> float:
        x = math.pi * a / 2.0 * v
        return (b * a) / (1.0 + x * x)

    @classmethod
    def examples(cls) -> list[ScalarFunction]:
        return [cls(2.0), cls(0.5, 0.5)]

    def __call__(self, v: Array) -> Array:
        a = math.pi * self.alpha / 2.0
        return (self.scale * self.alpha) / (1.0 + (a * v) ** 2)

    def features(self) -> list[Feature]:
        return [(0.0, 2.0 / (math.pi * self.alpha))]

    def gauss_avg(self, s2: Array) -> Array:
        """E[1/(1 + a^2 v^2)] = sqrt(pi) z erfcx(z), z = 1/(sqrt(2) a s), a = pi alpha/2."""
        xp = _xp()
        a = math.pi * self.alpha / 2.0
        s = xp.sqrt(s2)
        with BACKEND.ignore_fp_errors():
            z = 1.0 / (math.sqrt(2.0) * a * s)
            val = _SQRT_PI * z * BACKEND.special.erfcx(z)
        # z * erfcx(z) -> 1/sqrt(pi) as z -> inf; at s = 0 the average is f(0).
        val = xp.where(s > 0, val, 1.0)
        return (self.scale * self.alpha) * val


@dataclass(frozen=True)
class Boxcar(Surrogate):
    """scale / width for |v| < width, else 0."""

    width: float
    scale: float = 1.0
    name: str = "boxcar"

    kind: ClassVar[Kind] = Kind.BOXCAR

    @staticmethod
    def scalar(v: float, a: float, b: float, c: float) -> float:
        return b / a if abs(v) < a else 0.0

    @classmethod
    def examples(cls) -> list[ScalarFunction]:
        return [cls(0.5), cls(1.5, 0.5)]

    def __call__(self, v: Array) -> Array:
        xp = _xp()
        return xp.where(xp.abs(v) < self.width, self.scale / self.width, 0.0)

    def features(self) -> list[Feature]:
        return [(-self.width, 0.0), (self.width, 0.0)]

    def gauss_avg(self, s2: Array) -> Array:
        """(2 Phi(w/s) - 1) / w = erf(w / (sqrt 2 s)) / w; 1/w at s = 0."""
        xp = _xp()
        s = xp.sqrt(s2)
        with BACKEND.ignore_fp_errors():
            val = BACKEND.special.erf(self.width / (math.sqrt(2.0) * s)) / self.width
        return self.scale * xp.where(s > 0, val, 1.0 / self.width)

    def gauss_avg_mean(self, m: Array, s2: Array) -> Array:
        """(scale/w) P(|m + s Z| < w) = (scale/2w) [erf((w - m)/(sqrt 2 s)) + erf((w + m)/(sqrt 2 s))]."""
        xp = _xp()
        w = self.width
        s = xp.sqrt(s2)
        with BACKEND.ignore_fp_errors():
            r = 1.0 / (math.sqrt(2.0) * s)
            val = (0.5 / w) * (BACKEND.special.erf((w - m) * r) + BACKEND.special.erf((w + m) * r))
        return self.scale * xp.where(s > 0, val, xp.where(xp.abs(m) < w, 1.0 / w, 0.0))


@dataclass(frozen=True)
class Triangle(Surrogate):
    """scale * (2/width) * max(0, 1 - |v|/width)."""

    width: float
    scale: float = 1.0
    name: str = "triangle"

    kind: ClassVar[Kind] = Kind.TRIANGLE

    @staticmethod
    def scalar(v: float, a: float, b: float, c: float) -> float:
        r = 1.0 - abs(v) / a
        return (b * 2.0 / a) * (r if r > 0.0 else 0.0)

    @classmethod
    def examples(cls) -> list[ScalarFunction]:
        return [cls(0.7), cls(1.2, 0.5)]

    def __call__(self, v: Array) -> Array:
        xp = _xp()
        w = self.width
        return (self.scale * 2.0 / w) * xp.maximum(0.0, 1.0 - xp.abs(v) * (1.0 / w))

    def features(self) -> list[Feature]:
        w = self.width
        return [(-w, 0.0), (0.0, w), (w, 0.0)]

    def gauss_avg(self, s2: Array) -> Array:
        """(4/w) [Phi(w/s) - 1/2 - (s/w)(phi(0) - phi(w/s))]; 2/w at s = 0.

        Written without cancellation for s >> w: Phi(z) - 1/2 = erf(z/sqrt 2)/2 and
        phi(0) - phi(z) = -phi(0) expm1(-z^2/2).
        """
        xp = _xp()
        w = self.width
        s = xp.sqrt(s2)
        with BACKEND.ignore_fp_errors():
            z = w / s
            val = (4.0 / w) * (0.5 * BACKEND.special.erf(z * (1.0 / math.sqrt(2.0)))
                               + (s / w) * _INV_SQRT_2PI * xp.expm1(-0.5 * z * z))
        return self.scale * xp.where(s > 0, val, 2.0 / w)

    def gauss_avg_mean(self, m: Array, s2: Array) -> Array:
        """(2 scale / w^2) [R(m + w) - 2 R(m) + R(m - w)], R(x) = E[max(x + s Z, 0)]
        (a second difference: relative error ~ eps (s/w)^2 for s >> w); at m = 0 the
        zero-mean form, which has no cancellation."""
        xp = _xp()
        w = self.width
        val = (2.0 / (w * w)) * (ramp_avg(m + w, s2) - 2.0 * ramp_avg(m, s2)
                                 + ramp_avg(m - w, s2))
        out = self.scale * xp.where(s2 > 0, val, self(m) / self.scale)
        return xp.where(m == 0, self.gauss_avg(s2), out)

    def mean_avg_condition(self, m: Array, s2: Array) -> Array:
        """The second difference loses (s/w)^2 roundings for s >> w."""
        return 1.0 + s2 / (self.width * self.width) + _xp().zeros_like(m)




# ------------------------------------------------------------------------ constructors
def _scale(scale: float) -> float:
    return _checks.positive("scale", scale)


def erf(k: float = 1.0, scale: float = 1.0) -> ScalarFunction:
    """scale * (2k/sqrt(pi)) exp(-k^2 v^2), the derivative of erf(k v)."""
    k = _checks.squarable("k", _checks.positive("k", k))
    return GaussianBump(1.0 / (k * k), 2.0 * _scale(scale), name=f"erf(k={k:g})")


def sigmoid(beta: float = 1.0, scale: float = 1.0) -> ScalarFunction:
    """scale * (beta/2) sech^2(beta v/2)."""
    return Sigmoid(_checks.positive("beta", beta), _scale(scale))


def fast_sigmoid(beta: float = 1.0, scale: float = 1.0) -> ScalarFunction:
    """scale * beta / (1 + beta |v|)^2."""
    return FastSigmoid(_checks.positive("beta", beta), _scale(scale))


def atan(alpha: float = 1.0, scale: float = 1.0) -> ScalarFunction:
    """scale * alpha / (1 + (pi alpha v/2)^2)."""
    return Atan(_checks.positive("alpha", alpha), _scale(scale))


def boxcar(width: float = 1.0, scale: float = 1.0) -> ScalarFunction:
    """scale / width on |v| < width."""
    return Boxcar(_checks.positive("width", width), _scale(scale))


def triangle(width: float = 1.0, scale: float = 1.0) -> ScalarFunction:
    """scale * (2/width) max(0, 1 - |v|/width)."""
    return Triangle(_checks.positive("width", width), _scale(scale))


def straight_through(scale: float = 1.0) -> ScalarFunction:
    """The straight-through estimator: the constant ``scale`` (sign's surrogate derivative
    1 x scale, a step's half of it: snnTorch's ``straight_through_estimator()`` with
    ``step(theta)`` is ``straight_through(scale=2)``)."""
    return Constant(_scale(scale), name=f"straight_through(scale={scale:g})")


def custom(
    fn: Callable[[Any], Any],
    width: float = 1.0,
    kinks: tuple[float, ...] = (),
    scale: float = 1.0,
    name: str = "custom",
) -> ScalarFunction:
    """A user surrogate ``fn`` (vectorised over backend arrays), times ``scale``.

    ``width``: the scale on which fn varies; ``kinks``: where it has kinks or jumps.
    Quadrature grades its panels to both, so give them for narrow or kinked functions.
    Without kinks away from 0 its Gaussian averages with a mean come from a table built on
    first use (:mod:`gpukern.tables`); with them, from nested quadrature (slow).
    On the CuPy backend ``fn`` receives CuPy arrays and runs through the array code
    (no fused CUDA kernel): correct, but slower than the built-ins.
    """
    _checks.vectorised("fn", fn)
    width = _checks.positive("width", width)
    kinks = tuple(_checks.real("kinks", k) for k in kinks)
    return Custom(fn, width, kinks, _scale(scale), name=name)


BUILTIN: dict[str, Callable[..., ScalarFunction]] = {
    "erf": erf, "sigmoid": sigmoid, "fast_sigmoid": fast_sigmoid, "atan": atan,
    "boxcar": boxcar, "triangle": triangle,
}
"""The built-in surrogates by name: constructor(shape parameter, scale=...)."""
