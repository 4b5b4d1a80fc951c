"""The standard bivariate normal: upper orthant probabilities and densities (arrays).

For (X, Y) standard normal with correlation rho, ``upper(h, k, rho, s2)`` is
P(X > h, Y > k), given s2 = 1 - rho^2 separately (callers know it without cancellation
from the carried determinant). The scheme is Drezner and Wesolowsky's, as refined by Genz
(Statistics and Computing 14, 2004), written from its formulas:

* |rho| < 0.925, from Plackett's identity dP/drho = phi_2:
      P = Phi(-h) Phi(-k) + (1/2pi) int_0^{asin rho} exp(-(h^2 + k^2 - 2hk sin t)/(2 cos^2 t)) dt
  by Gauss–Legendre with 6, 12 or 20 nodes (|rho| < 0.3, < 0.75, else);
* rho >= 0.925: P = Phi(-max(h, k)) - int_rho^1 phi_2 dr; with x = sqrt(1 - r^2) that is
      (1/2pi) int_0^a exp(-(h-k)^2/(2x^2)) exp(-hk/(1 + r_x)) / r_x dx,  a = sqrt(s2),
  whose integrand is exp(-hk/2)(1 + c x^2 + c d x^4 + O(x^6)) e^{-(h-k)^2/(2x^2)},
  c = (4 - hk)/8, d = (12 - hk)/16: the series is integrated exactly (J_n =
  int_0^a x^{2n} e^{-b^2/(2x^2)} dx by J_0 = a E - b sqrt(2 pi) Phi(-b/a),
  J_n = (a^{2n+1} E - b^2 J_{n-1})/(2n+1), E = e^{-b^2/(2a^2)}) and the O(x^6) rest by
  20-node Gauss–Legendre;
* rho <= -0.925: P(h, k, rho) = Phi(-h) - P(h, -k, -rho).

Absolute error below 1e-15 (tested against mpmath). cuda/gpukern/bivariate.cuh is the same
scheme for the compiled kernels.
"""

from __future__ import annotations

import math
from typing import Any

from ._backend import BACKEND
from .registry import BVN_NODES, BVN_RHO_EDGES, legendre

Array = Any

_TWO_PI = 2.0 * math.pi
_SQRT_2PI = math.sqrt(_TWO_PI)


def _phi_cdf(x: Array) -> Array:
    return BACKEND.special.ndtr(x)


def _middle(order: int, h: Array, k: Array, rho: Array, s2: Array) -> Array:
    """|rho| < 0.925: Plackett's integral in t = asin(r) by Gauss–Legendre of ``order``."""
    xp = BACKEND.xp
    hk, hs = h * k, 0.5 * (h * h + k * k)
    asr = xp.arctan2(rho, xp.sqrt(s2))
    acc = xp.zeros_like(h)
    for x, w in zip(*legendre(order)):
        sn = xp.sin(asr * (0.5 * (x + 1.0)))
        acc = acc + w * xp.exp((sn * hk - hs) / (1.0 - sn * sn))
    return _phi_cdf(-h) * _phi_cdf(-k) + acc * asr * (0.5 / _TWO_PI)


def _near_one(h: Array, k: Array, s2: Array) -> Array:
    """rho >= 0.925: Phi(-max(h, k)) minus the integral from rho to 1 (module docstring)."""
    xp = BACKEND.xp
    a = xp.sqrt(s2)
    hk = h * k
    bs = (h - k) * (h - k)
    b = xp.sqrt(bs)
    c = (4.0 - hk) / 8.0
    d = (12.0 - hk) / 16.0
    live = a > 0
    with BACKEND.ignore_fp_errors():
        safe_a = xp.where(live, a, 1.0)
        safe_s2 = xp.where(live, s2, 1.0)
        asr = -0.5 * (bs / safe_s2 + hk)
        series = safe_a * xp.exp(asr) * (1.0 - c * (bs - safe_s2) * (1.0 - d * bs / 5.0) / 3.0
                                         + c * d * safe_s2 * safe_s2 / 5.0)
        tail = xp.where(hk > -100.0,
                        xp.exp(-0.5 * hk) * (_SQRT_2PI * _phi_cdf(-b / safe_a)) * b
                        * (1.0 - c * bs * (1.0 - d * bs / 5.0) / 3.0), 0.0)
        total = series - tail
        half = 0.5 * safe_a
        xs, ws = legendre(BVN_NODES[-1])
        for x, w in zip(xs, ws):
            xsq = (half * (x + 1.0)) ** 2
            rs = xp.sqrt(1.0 - xsq)
            expo = -0.5 * (bs / xsq + hk)
            rest = (xp.exp(-hk * (1.0 - rs) / (2.0 * (1.0 + rs))) / rs
                    - (1.0 + c * xsq * (1.0 + d * xsq)))
            total = total + (half * w) * xp.exp(expo) * rest
    return _phi_cdf(-xp.maximum(h, k)) - xp.where(live, total, 0.0) / _TWO_PI


def upper(h: Array, k: Array, rho: Array, s2: Array) -> Array:
    """P(X > h, Y > k) for standard normals with correlation rho, s2 = 1 - rho^2 (h, k may
    be +-inf). Each entry is computed by its scheme only (``bvn_class`` in the header)."""
    xp = BACKEND.xp
    h, k, rho, s2 = (xp.asarray(v, dtype=xp.float64) for v in xp.broadcast_arrays(h, k, rho, s2))
    shape = h.shape
    h, k, rho, s2 = (v.reshape(-1) for v in (h, k, rho, s2))
    s2 = xp.maximum(s2, 0.0)
    hf, kf = xp.where(xp.isfinite(h), h, 0.0), xp.where(xp.isfinite(k), k, 0.0)
    # an infinite limit: P(X > h) or P(Y > k), 1 or 0
    out = xp.where((h == -xp.inf) & (k == -xp.inf), 1.0,
                   xp.where(h == -xp.inf, _phi_cdf(-kf), xp.where(k == -xp.inf, _phi_cdf(-hf),
                                                                   0.0)))
    finite = xp.isfinite(h) & xp.isfinite(k)
    a = xp.abs(rho)
    lower = 0.0
    for order, edge in zip(BVN_NODES, BVN_RHO_EDGES):
        idx = xp.nonzero(finite & (a >= lower) & (a < edge))[0]
        if idx.size:
            out[idx] = _middle(order, hf[idx], kf[idx], rho[idx], s2[idx])
        lower = edge
    idx = xp.nonzero(finite & (a >= lower))[0]
    if idx.size:
        hi, ki, neg = hf[idx], kf[idx], rho[idx] < 0
        near = _near_one(hi, xp.where(neg, -ki, ki), s2[idx])
        out[idx] = xp.where(neg, _phi_cdf(-hi) - near, near)
    return xp.clip(out, 0.0, 1.0).reshape(shape)
