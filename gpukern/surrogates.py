"""Surrogate derivatives sigma~ used in place of sigma' in the backward pass.

Each is the derivative of a sign-like function rising from -1 to +1, so its area is 2
(sign's jump), times an optional ``scale`` (``scale=0.5`` for the step's jump of 1):

=====================  =============================================
``erf(k)``             (2k/sqrt(pi)) exp(-k^2 v^2)
``sigmoid(beta)``      (beta/2) sech^2(beta v / 2)
``fast_sigmoid(beta)`` beta / (1 + beta |v|)^2   (SuperSpike)
``atan(alpha)``        alpha / (1 + (pi alpha v / 2)^2)
``boxcar(width)``      1/width for |v| < width, else 0
``triangle(width)``    (2/width) max(0, 1 - |v|/width)
``custom(fn)``         any vectorised function
=====================  =============================================

Closed Gaussian averages exist for erf, atan, boxcar and triangle; sigmoid,
fast_sigmoid and custom use quadrature graded to their width and kinks.

Other libraries: snnTorch and SpikingJelly differentiate a 0/1 spike H, so their
surrogates have area 1. The same backward pass in gpukern is the step activation with
``scale=0.5`` (or sign with the surrogate as given). Equivalents (derived from their
documented formulas):

* SpikingJelly ``surrogate.Erf(alpha=a)`` (grad (a/sqrt(pi)) exp(-a^2 x^2)):
  ``erf(k=a, scale=0.5)``;
* SpikingJelly ``surrogate.Sigmoid(alpha=a)`` and snnTorch ``surrogate.sigmoid(slope=a)``
  (grad a s(ax)(1 - s(ax))): ``sigmoid(beta=a, scale=0.5)``;
* SpikingJelly ``surrogate.ATan(alpha=a)`` and snnTorch ``surrogate.atan(alpha=a)``
  (grad (a/2) / (1 + (pi a x / 2)^2)): ``atan(alpha=a, scale=0.5)``;
* snnTorch ``surrogate.fast_sigmoid(slope=a)`` (grad 1/(1 + a|x|)^2, area 2/a, not 1):
  ``fast_sigmoid(beta=a, scale=1/a)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import _checks
from .functions import (
    Atan,
    Boxcar,
    Custom,
    FastSigmoid,
    GaussianBump,
    ScalarFunction,
    Sigmoid,
    Triangle,
)

__all__ = ["erf", "sigmoid", "fast_sigmoid", "atan", "boxcar", "triangle", "custom"]


def _scale(scale: float) -> float:
    return _checks.positive("scale", scale)


def erf(k: float = 1.0, scale: float = 1.0) -> ScalarFunction:
    """scale * (2k/sqrt(pi)) exp(-k^2 v^2), the derivative of erf(k v)."""
    k = _checks.positive("k", k)
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
    On the CuPy backend ``fn`` receives CuPy arrays and runs through the array code
    (no fused CUDA kernel): correct, but slower than the built-ins.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {fn!r}")
    width = _checks.positive("width", width)
    kinks = tuple(_checks.real("kinks", k) for k in kinks)
    return Custom(fn, width, kinks, _scale(scale), name=name)
