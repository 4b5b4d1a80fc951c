"""Scalar functions R -> R as small immutable value objects.

Activations and their derivatives are built from the classes here; the surrogate
derivatives' own classes are in :mod:`gpukern.surrogates`. A built-in class is one
function kind of :mod:`gpukern.registry` and holds everything Python knows about it:

* ``__call__(v)``: the value on the backend's arrays;
* ``scalar(v, a, b, c)``: the same value for one float from the descriptor's parameters
  (``math`` only: what the Numba CUDA kernels compile);
* ``params()``: (a, b, c) of the descriptor ``(kind, a, b, c)`` that the compiled kernels
  receive (cuda/gpukern/functions.cuh holds the kind's device formulas);
* ``features()``: kinks, jumps and the scale it varies on (what quadrature must resolve);
* ``gauss_avg(s2)``: E[f(v)], v ~ N(0, s2), in closed form (kinds with ``closed_avg``);
* ``pair_closed_form(other, q, qp, c, det)``: E[f(u) g(v)] for two functions of this kind
  (kinds with ``self_pair``), det = q q' - c^2 already clamped at 0;
* ``examples()``: instances that the contract tests run on every path.

Pure-NumPy scalar constants are Python floats so that float32 work stays float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ._backend import BACKEND
from .registry import Kind

Array = Any
Feature = tuple[float, float]  # (centre, scale); scale 0 = a breakpoint only

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _xp():
    return BACKEND.xp


_BY_KIND: dict[Kind, type[ScalarFunction]] = {}


def classes_by_kind() -> dict[Kind, type[ScalarFunction]]:
    """The built-in class of every kind that has a Python class (all but TABLE)."""
    from . import surrogates  # noqa: F401  (defines, and so registers, its classes)

    return dict(sorted(_BY_KIND.items()))


class ScalarFunction:
    """Base class: a vectorised real function with what Gaussian averages need."""

    name: str = "function"
    kind: ClassVar[Kind | None] = None
    """The registry kind; None for functions the compiled kernels do not know (custom)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("kind") is not None:
            _BY_KIND[cls.kind] = cls

    def __call__(self, v: Array) -> Array:
        raise NotImplementedError

    def features(self) -> list[Feature]:
        """Kinks/jumps and scales quadrature must resolve, as (centre, scale) pairs."""
        return [(0.0, 1.0)]

    @property
    def is_delta(self) -> bool:
        """True for a Dirac delta (the derivative of a jump)."""
        return False

    def gauss_avg(self, s2: Array) -> Array:
        """E[f(v)] for v ~ N(0, s2) in closed form (kinds with ``closed_avg`` only)."""
        raise NotImplementedError(f"{self!r} has no closed Gaussian average")

    def pair_closed_form(self, other: ScalarFunction, q: Array, qp: Array, c: Array,
                         det: Array) -> Array:
        """E[self(u) other(v)] for ``other`` of the same kind (kinds with ``self_pair``)."""
        raise NotImplementedError(f"{self!r} has no closed self pair")

    def params(self) -> tuple[float, float, float]:
        """(a, b, c) of the descriptor."""
        return (0.0, 0.0, 0.0)

    def descriptor(self) -> tuple[float, float, float, float] | None:
        """(kind, a, b, c) for the compiled kernels, or None (no compiled version)."""
        if self.kind is None:
            return None
        return (float(self.kind), *self.params())

    @staticmethod
    def scalar(v: float, a: float, b: float, c: float) -> float:
        """The value at one float v from the descriptor's (a, b, c) (for Numba)."""
        raise NotImplementedError

    @classmethod
    def examples(cls) -> list[ScalarFunction]:
        """Instances the contract tests run on every path."""
        return []


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

    kind: ClassVar[Kind] = Kind.ERF_STEP

    def params(self) -> tuple[float, float, float]:
        return (self.t, self.amp, self.offset)

    @staticmethod
    def scalar(v: float, a: float, b: float, c: float) -> float:
        if a == 0.0:
            return c + b * (1.0 if v > 0.0 else (-1.0 if v < 0.0 else 0.0))
        return c + b * math.erf(v / math.sqrt(a))

    @classmethod
    def examples(cls) -> list[ScalarFunction]:
        return [cls(1.0 / 9.0), cls(0.0), cls(0.0, amp=0.5, offset=0.5)]

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

    kind: ClassVar[Kind] = Kind.GAUSS_BUMP

    def params(self) -> tuple[float, float, float]:
        return (self.t, self.weight, 0.0)

    @staticmethod
    def scalar(v: float, a: float, b: float, c: float) -> float:
        if a == 0.0:  # a delta is 0 almost everywhere
            return 0.0
        return (b / math.sqrt(math.pi * a)) * math.exp(-v * v / a)

    @classmethod
    def examples(cls) -> list[ScalarFunction]:
        return [cls(1.0 / 9.0), cls(0.25, 1.0), cls(0.0), cls(0.0, 1.0)]

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
        with BACKEND.ignore_fp_errors():
            return self.weight / _xp().sqrt(math.pi * (self.t + 2.0 * s2))

    def tilt(self, q: Array, qp: Array, det: Array) -> tuple[Array, Array]:
        """The Gaussian tilt: E[self(u) g(v)] = pref * E_{v ~ N(0, s2)}[g(v)].

        pref = weight / sqrt(pi (t + 2q)),  s2 = (t q' + 2 det) / (t + 2q).
        At t = 0 this is the delta reduction (pref = 2 phi(0; q) for weight 2,
        s2 = q' - c**2/q). At t = q = 0 pref is +inf; s2 is then reported as q'.
        """
        xp = _xp()
        denom = self.t + 2.0 * q
        with BACKEND.ignore_fp_errors():
            pref = self.weight / xp.sqrt(math.pi * denom)
            s2 = xp.where(denom > 0, (self.t * qp + 2.0 * det) / denom, qp)
        return pref, s2


# ------------------------------------------------------------------- relu and friends
@dataclass(frozen=True)
class Heaviside(ScalarFunction):
    """scale * H(v), with H(0) = 1/2 (so that H = (1 + sign)/2 everywhere)."""

    scale: float = 1.0
    name: str = "heaviside"

    kind: ClassVar[Kind] = Kind.HEAVISIDE

    def params(self) -> tuple[float, float, float]:
        return (0.0, self.scale, 0.0)

    @staticmethod
    def scalar(v: float, a: float, b: float, c: float) -> float:
        return b * 0.5 * (1.0 + (1.0 if v > 0.0 else (-1.0 if v < 0.0 else 0.0)))

    @classmethod
    def examples(cls) -> list[ScalarFunction]:
        return [cls(), cls(0.5)]

    def __call__(self, v: Array) -> Array:
        return self.scale * 0.5 * (1.0 + _xp().sign(v))

    def features(self) -> list[Feature]:
        return [(0.0, 0.0)]

    def gauss_avg(self, s2: Array) -> Array:
        return _xp().full_like(s2, 0.5 * self.scale)

    def pair_closed_form(self, other, q, qp, c, det):
        """scale1*scale2*(1/4 + arcsin(rho)/(2 pi)) = (pi - theta)/(2 pi), theta = arccos rho."""
        angle = _xp().arctan2(c, _xp().sqrt(det))
        return self.scale * other.scale * (0.25 + angle * (0.5 / math.pi))


@dataclass(frozen=True)
class ReLU(ScalarFunction):
    """max(v, 0); derivative Heaviside."""

    name: str = "relu"

    kind: ClassVar[Kind] = Kind.RELU

    @staticmethod
    def scalar(v: float, a: float, b: float, c: float) -> float:
        return v if v > 0.0 else 0.0

    @classmethod
    def examples(cls) -> list[ScalarFunction]:
        return [cls()]

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
        xp = _xp()
        root = xp.sqrt(det)
        theta = xp.arctan2(root, c)
        return (root + (math.pi - theta) * c) * (0.5 / math.pi)


@dataclass(frozen=True)
class Identity(ScalarFunction):
    """v; derivative Constant(1)."""

    name: str = "linear"

    kind: ClassVar[Kind] = Kind.IDENTITY

    @staticmethod
    def scalar(v: float, a: float, b: float, c: float) -> float:
        return v

    @classmethod
    def examples(cls) -> list[ScalarFunction]:
        return [cls()]

    def __call__(self, v: Array) -> Array:
        return v

    def derivative(self) -> Constant:
        return Constant(1.0)

    def gauss_avg(self, s2: Array) -> Array:
        return _xp().zeros_like(s2)

    def pair_closed_form(self, other, q, qp, c, det):
        return c


@dataclass(frozen=True)
class Constant(ScalarFunction):
    """The constant ``value`` (derivative of the linear activation)."""

    value: float = 1.0
    name: str = "constant"

    kind: ClassVar[Kind] = Kind.CONSTANT

    def params(self) -> tuple[float, float, float]:
        return (0.0, self.value, 0.0)

    @staticmethod
    def scalar(v: float, a: float, b: float, c: float) -> float:
        return b

    @classmethod
    def examples(cls) -> list[ScalarFunction]:
        return [cls(), cls(0.5)]

    def __call__(self, v: Array) -> Array:
        return _xp().full_like(v, self.value)

    def features(self) -> list[Feature]:
        return []

    def gauss_avg(self, s2: Array) -> Array:
        return _xp().full_like(s2, self.value)


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
