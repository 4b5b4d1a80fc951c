"""Scalar functions R -> R as small immutable value objects.

Activations, their derivatives and surrogate derivatives are all built from these.
Each object knows how to evaluate itself on the backend's arrays, where its kinks and
jumps are and on which scale it varies (``features``: what quadrature must resolve), and
which Gaussian averages it has in closed form:

* ``gauss_avg(s2)``: E[f(v)], v ~ N(0, s2), or ``None`` when there is no closed form;
* ``pair_closed_form(other, q, qp, c, det)``: E[f(u) g(v)] for (u, v) ~ N(0, [[q, c],
  [c, qp]]), with ``det = q*qp - c**2`` already clamped at 0, or ``None``.

Pure-NumPy scalar constants are Python floats so that float32 work stays float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._backend import BACKEND

Array = Any
Feature = tuple[float, float]  # (centre, scale); scale 0 = a breakpoint only

_SQRT_PI = math.sqrt(math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _xp():
    return BACKEND.xp


def _errstate():
    return _xp().errstate(divide="ignore", invalid="ignore", over="ignore")


class ScalarFunction:
    """Base class: a vectorised real function with what Gaussian averages need."""

    name: str = "function"

    def __call__(self, v: Array) -> Array:
        raise NotImplementedError

    def features(self) -> list[Feature]:
        """Kinks/jumps and scales quadrature must resolve, as (centre, scale) pairs."""
        return [(0.0, 1.0)]

    @property
    def is_delta(self) -> bool:
        """True for a Dirac delta (the derivative of a jump)."""
        return False

    def gauss_avg(self, s2: Array) -> Array | None:
        """E[f(v)] for v ~ N(0, s2) in closed form, or None."""
        return None

    def pair_closed_form(
        self, other: ScalarFunction, q: Array, qp: Array, c: Array, det: Array
    ) -> Array | None:
        """E[self(u) other(v)] in closed form, or None."""
        return None

    def cuda_descriptor(self) -> tuple[float, float, float, float] | None:
        """(kind, a, b, c) for cuda/gpukern/functions.cuh, or None (no device version)."""
        return None


# --------------------------------------------------------------------------- erf family
@dataclass(frozen=True)
class ErfStep(ScalarFunction):
    """offset + amp * erf(v / sqrt(t)); t = 0 is offset + amp * sign(v) (sign(0) = 0).

    With t = 1/m**2 this is erf(m v) (m = inf: sign); amp = offset = 1/2, t = 0 is the
    step H. Derivative: GaussianBump(t, weight=2*amp).
    """

    t: float
    amp: float = 1.0
    offset: float = 0.0
    name: str = "erf"

    def cuda_descriptor(self) -> tuple[float, float, float, float]:
        return (0.0, self.t, self.amp, self.offset)

    def __call__(self, v: Array) -> Array:
        xp = _xp()
        if self.t == 0.0:
            core = xp.sign(v)
        else:
            core = BACKEND.special.erf(v * (1.0 / math.sqrt(self.t)))
        return self.offset + self.amp * core

    def features(self) -> list[Feature]:
        return [(0.0, math.sqrt(self.t) if self.t > 0 else 0.0)]

    def derivative(self) -> GaussianBump:
        return GaussianBump(self.t, 2.0 * self.amp)

    def gauss_avg(self, s2: Array) -> Array:
        return _xp().full_like(s2, self.offset)

    def pair_closed_form(self, other, q, qp, c, det):
        """offset1*offset2 + amp1*amp2*(2/pi) arcsin(2c / sqrt((t1+2q)(t2+2q'))).

        The arcsin is written as arctan2(2c, sqrt(t1 t2 + 2 t1 q' + 2 t2 q + 4 det)),
        which cannot leave [-pi/2, pi/2] and is exact at det = 0.
        """
        if not isinstance(other, ErfStep):
            return None
        xp = _xp()
        t1, t2 = self.t, other.t
        rest = t1 * t2 + 2.0 * t1 * qp + 2.0 * t2 * q + 4.0 * det
        angle = xp.arctan2(2.0 * c, xp.sqrt(rest))
        return self.offset * other.offset + self.amp * other.amp * (2.0 / math.pi) * angle


@dataclass(frozen=True)
class GaussianBump(ScalarFunction):
    """weight / sqrt(pi t) * exp(-v**2 / t): area ``weight``; t = 0 is weight * delta(v).

    erf(m v)' is GaussianBump(1/m**2, 2); sign' = GaussianBump(0, 2) = 2 delta;
    step' = GaussianBump(0, 1). Evaluated pointwise, the delta is 0 (it is 0 almost
    everywhere: the true derivative a finite sign network sees).
    """

    t: float
    weight: float = 2.0
    name: str = "gaussian_bump"

    def cuda_descriptor(self) -> tuple[float, float, float, float]:
        return (1.0, self.t, self.weight, 0.0)

    @property
    def is_delta(self) -> bool:
        return self.t == 0.0

    def __call__(self, v: Array) -> Array:
        xp = _xp()
        if self.t == 0.0:
            return xp.zeros_like(v)
        return (self.weight / math.sqrt(math.pi * self.t)) * xp.exp(v * v * (-1.0 / self.t))

    def features(self) -> list[Feature]:
        return [(0.0, math.sqrt(self.t))]

    def gauss_avg(self, s2: Array) -> Array:
        """weight / sqrt(pi (t + 2 s2)); +inf for a delta at s2 = 0."""
        with _errstate():
            return self.weight / _xp().sqrt(math.pi * (self.t + 2.0 * s2))

    def tilt(self, q: Array, qp: Array, det: Array) -> tuple[Array, Array]:
        """The Gaussian tilt: E[self(u) g(v)] = pref * E_{v ~ N(0, s2)}[g(v)].

        pref = weight / sqrt(pi (t + 2q)),  s2 = (t q' + 2 det) / (t + 2q).
        At t = 0 this is the delta reduction (pref = 2 phi(0; q) for weight 2,
        s2 = q' - c**2/q). At t = q = 0 pref is +inf; s2 is then reported as q'.
        """
        xp = _xp()
        denom = self.t + 2.0 * q
        with _errstate():
            pref = self.weight / xp.sqrt(math.pi * denom)
            s2 = xp.where(denom > 0, (self.t * qp + 2.0 * det) / denom, qp)
        return pref, s2


# ------------------------------------------------------------------- relu and friends
@dataclass(frozen=True)
class Heaviside(ScalarFunction):
    """scale * H(v), with H(0) = 1/2 (so that H = (1 + sign)/2 everywhere)."""

    scale: float = 1.0
    name: str = "heaviside"

    def cuda_descriptor(self) -> tuple[float, float, float, float]:
        return (2.0, 0.0, self.scale, 0.0)

    def __call__(self, v: Array) -> Array:
        return self.scale * 0.5 * (1.0 + _xp().sign(v))

    def features(self) -> list[Feature]:
        return [(0.0, 0.0)]

    def gauss_avg(self, s2: Array) -> Array:
        return _xp().full_like(s2, 0.5 * self.scale)

    def pair_closed_form(self, other, q, qp, c, det):
        """scale1*scale2*(1/4 + arcsin(rho)/(2 pi)) = (pi - theta)/(2 pi), theta = arccos rho."""
        if not isinstance(other, Heaviside):
            return None
        angle = _xp().arctan2(c, _xp().sqrt(det))
        return self.scale * other.scale * (0.25 + angle * (0.5 / math.pi))


@dataclass(frozen=True)
class ReLU(ScalarFunction):
    """max(v, 0); derivative Heaviside."""

    name: str = "relu"

    def cuda_descriptor(self) -> tuple[float, float, float, float]:
        return (3.0, 0.0, 0.0, 0.0)

    def __call__(self, v: Array) -> Array:
        return _xp().maximum(v, 0.0)

    def features(self) -> list[Feature]:
        return [(0.0, 0.0)]

    def derivative(self) -> Heaviside:
        return Heaviside()

    def gauss_avg(self, s2: Array) -> Array:
        return _xp().sqrt(s2) * _INV_SQRT_2PI

    def pair_closed_form(self, other, q, qp, c, det):
        """Arc-cosine kernel of order 1: (sqrt(det) + (pi - theta) c) / (2 pi)."""
        if not isinstance(other, ReLU):
            return None
        xp = _xp()
        root = xp.sqrt(det)
        theta = xp.arctan2(root, c)
        return (root + (math.pi - theta) * c) * (0.5 / math.pi)


@dataclass(frozen=True)
class Identity(ScalarFunction):
    """v; derivative Constant(1)."""

    name: str = "linear"

    def cuda_descriptor(self) -> tuple[float, float, float, float]:
        return (4.0, 0.0, 0.0, 0.0)

    def __call__(self, v: Array) -> Array:
        return v

    def derivative(self) -> Constant:
        return Constant(1.0)

    def gauss_avg(self, s2: Array) -> Array:
        return _xp().zeros_like(s2)

    def pair_closed_form(self, other, q, qp, c, det):
        return c if isinstance(other, Identity) else None


@dataclass(frozen=True)
class Constant(ScalarFunction):
    """The constant ``value`` (derivative of the linear activation)."""

    value: float = 1.0
    name: str = "constant"

    def cuda_descriptor(self) -> tuple[float, float, float, float]:
        return (5.0, 0.0, self.value, 0.0)

    def __call__(self, v: Array) -> Array:
        return _xp().full_like(v, self.value)

    def features(self) -> list[Feature]:
        return []

    def gauss_avg(self, s2: Array) -> Array:
        return _xp().full_like(s2, self.value)


# -------------------------------------------------------------------------- surrogates
@dataclass(frozen=True)
class Sigmoid(ScalarFunction):
    """scale * (beta/2) sech^2(beta v / 2): the derivative of tanh(beta v / 2)."""

    beta: float
    scale: float = 1.0
    name: str = "sigmoid"

    def cuda_descriptor(self) -> tuple[float, float, float, float]:
        return (6.0, self.beta, self.scale, 0.0)

    def __call__(self, v: Array) -> Array:
        xp = _xp()
        e = xp.exp(-self.beta * xp.abs(v))  # sech^2(y/2) = 4 e^-|y| / (1 + e^-|y|)^2
        return (self.scale * 2.0 * self.beta) * e / (1.0 + e) ** 2

    def features(self) -> list[Feature]:
        return [(0.0, 1.0 / self.beta)]


@dataclass(frozen=True)
class FastSigmoid(ScalarFunction):
    """scale * beta / (1 + beta |v|)^2 (SuperSpike): derivative of v beta/(1+beta|v|)."""

    beta: float
    scale: float = 1.0
    name: str = "fast_sigmoid"

    def cuda_descriptor(self) -> tuple[float, float, float, float]:
        return (7.0, self.beta, self.scale, 0.0)

    def __call__(self, v: Array) -> Array:
        return (self.scale * self.beta) / (1.0 + self.beta * _xp().abs(v)) ** 2

    def features(self) -> list[Feature]:
        return [(0.0, 1.0 / self.beta)]


@dataclass(frozen=True)
class Atan(ScalarFunction):
    """scale * alpha / (1 + (pi alpha v / 2)^2): derivative of (2/pi) arctan(pi alpha v/2)."""

    alpha: float
    scale: float = 1.0
    name: str = "atan"

    def cuda_descriptor(self) -> tuple[float, float, float, float]:
        return (8.0, self.alpha, self.scale, 0.0)

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
        with _errstate():
            z = 1.0 / (math.sqrt(2.0) * a * s)
            val = _SQRT_PI * z * BACKEND.special.erfcx(z)
        # z * erfcx(z) -> 1/sqrt(pi) as z -> inf; at s = 0 the average is f(0).
        val = xp.where(s > 0, val, 1.0)
        return (self.scale * self.alpha) * val


@dataclass(frozen=True)
class Boxcar(ScalarFunction):
    """scale / width for |v| < width, else 0."""

    width: float
    scale: float = 1.0
    name: str = "boxcar"

    def cuda_descriptor(self) -> tuple[float, float, float, float]:
        return (9.0, self.width, self.scale, 0.0)

    def __call__(self, v: Array) -> Array:
        xp = _xp()
        return xp.where(xp.abs(v) < self.width, self.scale / self.width, 0.0)

    def features(self) -> list[Feature]:
        return [(-self.width, 0.0), (self.width, 0.0)]

    def gauss_avg(self, s2: Array) -> Array:
        """(2 Phi(w/s) - 1) / w = erf(w / (sqrt 2 s)) / w; 1/w at s = 0."""
        xp = _xp()
        s = xp.sqrt(s2)
        with _errstate():
            val = BACKEND.special.erf(self.width / (math.sqrt(2.0) * s)) / self.width
        return self.scale * xp.where(s > 0, val, 1.0 / self.width)


@dataclass(frozen=True)
class Triangle(ScalarFunction):
    """scale * (2/width) * max(0, 1 - |v|/width)."""

    width: float
    scale: float = 1.0
    name: str = "triangle"

    def cuda_descriptor(self) -> tuple[float, float, float, float]:
        return (10.0, self.width, self.scale, 0.0)

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
        with _errstate():
            z = w / s
            val = (4.0 / w) * (0.5 * BACKEND.special.erf(z * (1.0 / math.sqrt(2.0)))
                               + (s / w) * _INV_SQRT_2PI * xp.expm1(-0.5 * z * z))
        return self.scale * xp.where(s > 0, val, 2.0 / w)


@dataclass(frozen=True)
class Custom(ScalarFunction):
    """A user function ``fn`` (vectorised over the backend's arrays), times ``scale``.

    ``width`` is the scale on which it varies and ``kinks`` the abscissas of its kinks
    and jumps: quadrature grades its panels to them, so give them if it has any.
    """

    fn: Callable[[Array], Array] = field(compare=True)
    width: float = 1.0
    kinks: tuple[float, ...] = ()
    scale: float = 1.0
    name: str = "custom"

    def __call__(self, v: Array) -> Array:
        return self.scale * self.fn(v)

    def features(self) -> list[Feature]:
        return [(0.0, self.width)] + [(float(k), self.width) for k in self.kinks]
