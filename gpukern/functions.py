"""Scalar functions R -> R as small immutable value objects.

Activations and their derivatives are built from the classes here; the surrogate
derivatives' own classes are in :mod:`gpukern.surrogates`. A built-in class is one
function kind of :mod:`gpukern.registry` and holds everything Python knows about it:

* ``__call__(v)``: the value on the backend's arrays;
* ``scalar(v, a, b, c)``: the same value for one float from the descriptor's parameters
  (``math`` only: what the Numba CUDA kernels compile);
* ``params()``: (a, b, c) of a descriptor term ``(kind, a, b, c, shift)`` that the compiled
  kernels receive (cuda/gpukern/functions.cuh holds the kind's device formulas);
* ``features()``: kinks, jumps and the scale it varies on (what quadrature must resolve);
* ``gauss_avg(s2)``: E[f(v)], v ~ N(0, s2), in closed form (kinds with ``closed_avg``);
* ``gauss_avg_mean(m, s2)``: E[f(m + s Z)], Z ~ N(0, 1), s^2 = s2, in closed form (kinds
  with ``mean_avg``);
* ``pair_closed_form(other, q, qp, c, det)``: E[f(u) g(v)] for two functions of this kind
  (kinds with ``self_pair``), det = q q' - c^2 already clamped at 0;
* ``self_gaps(q, qp, c, det)``: for an activation f of this kind (kinds with
  ``det_gaps``), the terms of the next layer's determinant without cancellation
  (:class:`Gaps`; :func:`gpukern.analytic.next_det` combines them);
* ``examples()``: instances that the contract tests run on every path.

Two classes combine the kinds: :class:`Shifted` (f(v - shift): a jump at a threshold)
and :class:`Sum` (a quantizer's staircase, its deltas, its centred surrogates); a
descriptor lists the terms, each (kind, a, b, c, shift).

Pure-NumPy scalar constants are Python floats so that float32 work stays float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, NamedTuple

from ._backend import BACKEND
from .registry import NORM_GAP_TAYLOR, Kind

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


class Gaps(NamedTuple):
    """E[f(u) f(v)] split so that the next determinant is computed without cancellation.

    With E[f(u)^2] = kappa + alpha, E[f(v)^2] = kappa + alphap, E[f(u) f(v)] = kappa + beta
    (kappa: the constant part), the gaps are gminus = sqrt(alpha alphap) - beta and
    gplus = sqrt(alpha alphap) + beta, each computed from q, q', c and det = q q' - c^2
    by a formula with no cancellation near rho = +1 (gminus) or rho = -1 (gplus).
    """

    kappa: Array
    alpha: Array
    alphap: Array
    gminus: Array
    gplus: Array


def _gap_to_collinear(q: Array, qp: Array, c: Array, det: Array, sign: float) -> Array:
    """sqrt(q q') - sign * c, as det / (sqrt(q q') + sign * c) where that has no cancellation."""
    xp = _xp()
    cstar = xp.sqrt(q * qp)
    sc = sign * c
    with BACKEND.ignore_fp_errors():
        return xp.where(sc > 0, det / (cstar + sc), cstar - sc)


def _erf_family_gaps(t: float, amp: float, offset: float, q: Array, qp: Array, c: Array,
                     det: Array) -> Gaps:
    """Gaps of f = offset + amp erf(v / sqrt t) (t = 0: sign).

    erf(v / sqrt t) is the sign of v plus independent N(0, t/2) noise, so with
    qt = q + t/2:  E[f(u) f(v)] = offset^2 + amp^2 (2/pi) asin(c / sqrt(qt qt')).
    Splitting at the collinear covariance c* = sqrt(q q'):
        gminus = [sqrt(alpha alphap) - beta(c*)] + amp^2 (2/pi) (asin(c*/r) - asin(c/r))
    with r = sqrt(qt qt'), and asin x - asin y = 2 atan((x - y)/(sqrt(1-x^2) + sqrt(1-y^2)))
    = 2 atan((c* - c) / (w + sqrt(det_t))), w^2 = r^2 - q q' = t (q + q')/2 + t^2/4,
    det_t = r^2 - c^2 = det + w^2 (gplus: c -> -c). The first bracket depends on q, q'
    only (:func:`_erf_norm_gap`).
    """
    xp = _xp()
    half = 0.5 * t

    def width(a, b):  # sqrt(qt qt' - q q') for variances a, b
        return xp.sqrt(half * (a + b) + half * half)

    two_pi = 2.0 / math.pi
    if t == 0.0:  # sign: E[sign(u)^2] = 1 (0 at q = 0), no noise, no norm gap
        alpha, alphap = xp.where(q > 0, 1.0, 0.0), xp.where(qp > 0, 1.0, 0.0)
        norm_gap, spread = 0.0, xp.sqrt(det)
    else:
        alpha = two_pi * xp.arctan2(q, width(q, q))
        alphap = two_pi * xp.arctan2(qp, width(qp, qp))
        w = width(q, qp)
        norm_gap = _erf_norm_gap(half, q, qp, alpha, alphap, w)
        spread = w + xp.sqrt(det + w * w)
    gminus = norm_gap + (2.0 * two_pi) * xp.arctan2(_gap_to_collinear(q, qp, c, det, 1.0), spread)
    gplus = norm_gap + (2.0 * two_pi) * xp.arctan2(_gap_to_collinear(q, qp, c, det, -1.0), spread)
    a2 = amp * amp
    return Gaps(xp.full_like(q, offset * offset), a2 * alpha, a2 * alphap, a2 * gminus,
                a2 * gplus)


def _erf_norm_gap(half: float, q: Array, qp: Array, alpha: Array, alphap: Array, w: Array
                  ) -> Array:
    """N = sqrt(alpha alphap) - (2/pi) asin(x_m) >= 0, x = q/qt, x_m = sqrt(x_q x_q').

    N depends on q, q' only, is 0 at q = q' and second order in q - q'. Directly it is a
    difference of O(1) numbers (an absolute error eps, which the next layer's
    t^2 + 4 t q + 4 det divides by t q); for nearly equal variances it is computed from
    phi(s) = log asin(e^s), s = log x, as N = (2/pi) F expm1(phi''(s_m) delta^2 / 2) with
    delta = (s_q - s_q')/2 = log1p(h (q - q') / (q' qt)) / 2, F = asin(x_m),
    phi'' = (x / (r F)) (1/r^2 - x / (r F)), r^2 = 1 - x_m^2 = w^2 / (qt qt').
    """
    xp = _xp()
    cstar = xp.sqrt(q * qp)
    big_f = xp.arctan2(cstar, w)
    direct = xp.sqrt(alpha * alphap) - (2.0 / math.pi) * big_f
    with BACKEND.ignore_fp_errors():
        rt2 = (q + half) * (qp + half)  # qt qt'
        r2 = w * w / rt2
        delta = 0.5 * xp.log1p(half * (q - qp) / (qp * (q + half)))
        slope = cstar / (w * big_f)  # x / (r F)
        phi2 = slope * (rt2 / (w * w) - slope)
        taylor = (2.0 / math.pi) * big_f * xp.expm1(0.5 * phi2 * delta * delta)
        use = xp.abs(delta) < NORM_GAP_TAYLOR * r2
    return xp.maximum(xp.where(use, taylor, direct), 0.0)


_SWING_TERMS = 10  # sin(theta) - theta cos(theta) as a series for theta < 1: error < 1e-20
_SWING_COEF = tuple((-1.0) ** (k + 1) * 2.0 * k / math.factorial(2 * k + 1)
                    for k in range(1, _SWING_TERMS + 1))


def _swing_series(theta: Array) -> Array:
    """sin(theta) - theta cos(theta) = sum_k (-1)^(k+1) 2k theta^(2k+1)/(2k+1)!, theta < 1
    (where the direct form loses digits to cancellation)."""
    t2 = theta * theta
    series = _xp().zeros_like(theta)
    for coef in reversed(_SWING_COEF):  # Horner in theta^2
        series = series * t2 + coef
    return series * t2 * theta


def ramp_avg(m: Array, s2: Array) -> Array:
    """E[max(m + s Z, 0)] = m Phi(m/s) + s phi(m/s), s^2 = s2 (max(m, 0) at s = 0)."""
    xp = _xp()
    s = xp.sqrt(s2)
    with BACKEND.ignore_fp_errors():
        z = xp.where(s > 0, m / xp.where(s > 0, s, 1.0), 0.0)
        val = m * BACKEND.special.ndtr(z) + s * (_INV_SQRT_2PI * xp.exp(-0.5 * z * z))
    return xp.where(s > 0, val, xp.maximum(m, 0.0))


class ScalarFunction:
    """Base class: a vectorised real function with what Gaussian averages need."""

    name: str = "function"
    kind: ClassVar[Kind | None] = None
    """The registry kind; None for functions the compiled kernels do not know (custom)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if isinstance(cls.__dict__.get("kind"), Kind):
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

    def gauss_avg_mean(self, m: Array, s2: Array) -> Array:
        """E[f(m + s Z)], s^2 = s2, in closed form (kinds with ``mean_avg`` only)."""
        raise NotImplementedError(f"{self!r} has no closed Gaussian average with a mean")

    def mean_avg_condition(self, m: Array, s2: Array) -> Array:
        """How many roundings (relative) ``gauss_avg_mean`` may lose at (m, s2): 1 unless a
        closed form cancels (the tests scale their tolerance by it)."""
        return _xp().ones_like(m + s2)

    def terms(self) -> tuple[tuple[ScalarFunction, float], ...]:
        """The function as a sum of terms base(v - shift): ((base, shift), ...)."""
        return ((self, 0.0),)

    @property
    def shifted(self) -> bool:
        """True unless the function is one term at shift 0 (a kind as it is)."""
        t = self.terms()
        return len(t) != 1 or t[0][1] != 0.0

    def pair_closed_form(self, other: ScalarFunction, q: Array, qp: Array, c: Array,
                         det: Array) -> Array:
        """E[self(u) other(v)] for ``other`` of the same kind (kinds with ``self_pair``)."""
        raise NotImplementedError(f"{self!r} has no closed self pair")

    def self_gaps(self, q: Array, qp: Array, c: Array, det: Array) -> Gaps:
        """The :class:`Gaps` of E[f(u) f(v)] (kinds with ``det_gaps``)."""
        raise NotImplementedError(f"{self!r} has no closed determinant gaps")

    def params(self) -> tuple[float, float, float]:
        """(a, b, c) of the descriptor."""
        return (0.0, 0.0, 0.0)

    def descriptor(self) -> tuple[float, ...] | None:
        """(n, then kind, a, b, c, shift per term) for the compiled kernels, or None (a term
        without a kind: no compiled version)."""
        terms = self.terms()
        if any(base.kind is None for base, _ in terms):
            return None
        out = [float(len(terms))]
        for base, shift in terms:
            out += [float(base.kind), *base.params(), float(shift)]
        return tuple(out)

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

    def gauss_avg_mean(self, m: Array, s2: Array) -> Array:
        """offset + amp erf(m / sqrt(t + 2 s2)) (offset + amp sign(m) where t + 2 s2 = 0)."""
        xp = _xp()
        width = self.t + 2.0 * s2
        with BACKEND.ignore_fp_errors():
            core = xp.where(width > 0, BACKEND.special.erf(m / xp.sqrt(width)), xp.sign(m))
        return self.offset + self.amp * core

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

    def self_gaps(self, q, qp, c, det):
        return _erf_family_gaps(self.t, self.amp, self.offset, q, qp, c, det)


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

    def gauss_avg_mean(self, m: Array, s2: Array) -> Array:
        """weight exp(-m^2 / D) / sqrt(pi D), D = t + 2 s2 (a delta at s2 = 0: +inf at m = 0,
        else 0)."""
        xp = _xp()
        width = self.t + 2.0 * s2
        with BACKEND.ignore_fp_errors():
            dens = self.weight / xp.sqrt(math.pi * width) * xp.exp(-(m * m) / width)
            return xp.where(width > 0, dens, xp.where(m == 0, xp.inf, 0.0))

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

    def gauss_avg_mean(self, m: Array, s2: Array) -> Array:
        """scale Phi(m / s) (scale H(m) at s = 0)."""
        xp = _xp()
        s = xp.sqrt(s2)
        with BACKEND.ignore_fp_errors():
            p = xp.where(s > 0, BACKEND.special.ndtr(m / s), 0.5 * (1.0 + xp.sign(m)))
        return self.scale * p

    def pair_closed_form(self, other, q, qp, c, det):
        """scale1*scale2*(1/4 + arcsin(rho)/(2 pi)) = (pi - theta)/(2 pi), theta = arccos rho."""
        angle = _xp().arctan2(c, _xp().sqrt(det))
        return self.scale * other.scale * (0.25 + angle * (0.5 / math.pi))

    def self_gaps(self, q, qp, c, det):
        """scale H = scale/2 + (scale/2) sign: the erf family at t = 0."""
        return _erf_family_gaps(0.0, 0.5 * self.scale, 0.5 * self.scale, q, qp, c, det)


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

    def gauss_avg_mean(self, m: Array, s2: Array) -> Array:
        """m Phi(m/s) + s phi(m/s) (max(m, 0) at s = 0)."""
        return ramp_avg(m, s2)

    def pair_closed_form(self, other, q, qp, c, det):
        """Arc-cosine kernel of order 1: (sqrt(det) + (pi - theta) c) / (2 pi)."""
        xp = _xp()
        root = xp.sqrt(det)
        theta = xp.arctan2(root, c)
        return (root + (math.pi - theta) * c) * (0.5 / math.pi)

    def self_gaps(self, q, qp, c, det):
        """alpha = q/2; with c* = sqrt(q q'), 2 pi gminus = pi (c* - c) - c* (sin - theta cos)
        (each term free of cancellation); gplus = c*/2 + beta (beta >= 0)."""
        xp = _xp()
        cstar = xp.sqrt(q * qp)
        root = xp.sqrt(det)
        theta = xp.arctan2(root, c)
        swing = xp.where(theta < 1.0, cstar * _swing_series(theta), root - theta * c)
        gminus = (math.pi * _gap_to_collinear(q, qp, c, det, 1.0) - swing) * (0.5 / math.pi)
        gplus = 0.5 * cstar + (root + (math.pi - theta) * c) * (0.5 / math.pi)
        return Gaps(xp.zeros_like(q), 0.5 * q, 0.5 * qp, xp.maximum(gminus, 0.0), gplus)


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

    def gauss_avg_mean(self, m: Array, s2: Array) -> Array:
        return m + _xp().zeros_like(s2)

    def pair_closed_form(self, other, q, qp, c, det):
        return c

    def self_gaps(self, q, qp, c, det):
        return Gaps(_xp().zeros_like(q), q, qp, _gap_to_collinear(q, qp, c, det, 1.0),
                    _gap_to_collinear(q, qp, c, det, -1.0))


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

    def gauss_avg_mean(self, m: Array, s2: Array) -> Array:
        return _xp().full_like(m + s2, self.value)

    def self_gaps(self, q, qp, c, det):
        zero = _xp().zeros_like(q)
        return Gaps(_xp().full_like(q, self.value * self.value), zero, zero, zero, zero)


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


# ------------------------------------------------------------ shifts and sums of kinds
@dataclass(frozen=True)
class Shifted(ScalarFunction):
    """base(v - shift): a function moved to a threshold (a jump at ``shift``, its delta,
    the surrogate centred there)."""

    base: ScalarFunction
    shift: float
    name: str = "shifted"

    def __call__(self, v: Array) -> Array:
        return self.base(v - self.shift)

    def features(self) -> list[Feature]:
        return [(centre + self.shift, width) for centre, width in self.base.features()]

    @property
    def is_delta(self) -> bool:
        return self.base.is_delta

    def terms(self) -> tuple[tuple[ScalarFunction, float], ...]:
        return tuple((b, s + self.shift) for b, s in self.base.terms())


@dataclass(frozen=True)
class Sum(ScalarFunction):
    """The sum of ``parts`` (a staircase of jumps, their deltas, their surrogates)."""

    parts: tuple[ScalarFunction, ...]
    name: str = "sum"

    def __call__(self, v: Array) -> Array:
        out = self.parts[0](v)
        for p in self.parts[1:]:
            out = out + p(v)
        return out

    def features(self) -> list[Feature]:
        return [f for p in self.parts for f in p.features()]

    @property
    def is_delta(self) -> bool:
        return all(p.is_delta for p in self.parts)

    def terms(self) -> tuple[tuple[ScalarFunction, float], ...]:
        return tuple(t for p in self.parts for t in p.terms())


def shifted(fn: ScalarFunction, shift: float) -> ScalarFunction:
    """fn(v - shift); fn itself at shift 0."""
    return fn if shift == 0.0 else Shifted(fn, float(shift))


def scaled(fn: ScalarFunction, factor: float) -> ScalarFunction:
    """factor * fn for an amplitude-carrying function (a bump, a surrogate, a custom one)."""
    if factor == 1.0:
        return fn
    if isinstance(fn, GaussianBump):
        return replace(fn, weight=fn.weight * factor)
    if isinstance(fn, Constant):
        return replace(fn, value=fn.value * factor)
    if hasattr(fn, "scale"):
        return replace(fn, scale=fn.scale * factor)
    raise TypeError(f"{fn!r} has no amplitude to scale")
