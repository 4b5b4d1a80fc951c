"""Gaussian pair expectations: closed forms vs the library's own quadrature, and vs the
textbook forms of docs/architecture.md."""

import math

import numpy as np
import pytest

import gpukern as gk
from gpukern.functions import (
    Constant,
    ErfStep,
    GaussianBump,
    Heaviside,
    Identity,
    ReLU,
)
from gpukern.gaussian import expect_pair, quad_pair


def _cov(seed=0, m=24):
    rng = np.random.default_rng(seed)
    q = rng.uniform(0.05, 3.0, m)
    qp = rng.uniform(0.05, 3.0, m)
    rho = rng.uniform(-0.98, 0.98, m)
    rho[:3] = [0.999, -0.999, 0.0]
    c = rho * np.sqrt(q * qp)
    det = np.maximum(q * qp - c * c, 0.0)
    return q, qp, c, det


CLOSED_PAIRS = {
    "erf5 x erf5": (ErfStep(1 / 25), ErfStep(1 / 25)),
    "erf1 x erf5": (ErfStep(1.0), ErfStep(1 / 25)),
    "sign x sign": (ErfStep(0.0), ErfStep(0.0)),
    "step x step": (ErfStep(0.0, 0.5, 0.5), ErfStep(0.0, 0.5, 0.5)),
    "relu x relu": (ReLU(), ReLU()),
    "relu' x relu'": (Heaviside(), Heaviside()),
    "linear x linear": (Identity(), Identity()),
    "erf5' x erf2'": (GaussianBump(1 / 25), GaussianBump(1 / 4)),
    "erf5' x atan": (GaussianBump(1 / 25), gk.surrogates.atan(2.0)),
    "erf5' x boxcar": (GaussianBump(1 / 25), gk.surrogates.boxcar(0.3)),
    "erf5' x triangle": (GaussianBump(1 / 25), gk.surrogates.triangle(0.3)),
    "erf2 surrogate x erf2 surrogate": (gk.surrogates.erf(2.0), gk.surrogates.erf(2.0)),
    "1 x fast_sigmoid": (Constant(1.0), gk.surrogates.fast_sigmoid(5.0)),
}


@pytest.mark.parametrize("name", CLOSED_PAIRS)
def test_closed_form_equals_quadrature(name):
    f, g = CLOSED_PAIRS[name]
    q, qp, c, det = _cov()
    closed = expect_pair(f, g, q, qp, c, det)
    quad = expect_pair(f, g, q, qp, c, det, method="quadrature", order=12)
    np.testing.assert_allclose(closed, quad, rtol=1e-10, atol=1e-10 * float(np.abs(closed).max()) * 1e-3)


@pytest.mark.parametrize("name", ["sign' x atan", "sign' x boxcar", "step' x triangle",
                                  "sign' x erf2"])
def test_delta_reduction_closed_vs_quadrature(name):
    bump = GaussianBump(0.0, 1.0 if name.startswith("step") else 2.0)
    g = {"atan": gk.surrogates.atan(2.0), "boxcar": gk.surrogates.boxcar(0.3),
         "triangle": gk.surrogates.triangle(0.3), "erf2": gk.surrogates.erf(2.0)}[name.split()[-1]]
    q, qp, c, det = _cov(1)
    closed = expect_pair(bump, g, q, qp, c, det)
    quad = expect_pair(bump, g, q, qp, c, det, method="quadrature", order=12)
    np.testing.assert_allclose(closed, quad, rtol=1e-10)


def test_design_delta_reduction_formula():
    """E[2 delta(u) erf_k'(v)] = (4k / (pi sqrt(2q))) / sqrt(1 + 2 k^2 s^2), s^2 = q' - c^2/q."""
    q, qp, c, det = _cov(2)
    k = 3.0
    s2 = qp - c * c / q
    expected = (4 * k / (math.pi * np.sqrt(2 * q))) / np.sqrt(1 + 2 * k * k * s2)
    got = expect_pair(GaussianBump(0.0, 2.0), gk.surrogates.erf(k), q, qp, c, det)
    np.testing.assert_allclose(got, expected, rtol=1e-13)


def test_design_gaussian_shaped_pair_formula():
    """E[erf_m'(u) erf_k'(v)] = (4mk/pi) / sqrt((1+2m^2 q)(1+2k^2 q') - 4 m^2 k^2 c^2)."""
    q, qp, c, det = _cov(3)
    m, k = 5.0, 2.0
    expected = (4 * m * k / math.pi) / np.sqrt((1 + 2 * m * m * q) * (1 + 2 * k * k * qp)
                                               - 4 * m * m * k * k * c * c)
    got = expect_pair(GaussianBump(1 / m**2), GaussianBump(1 / k**2), q, qp, c, det)
    np.testing.assert_allclose(got, expected, rtol=1e-11)


def test_design_closed_forms_written_again():
    """sign, step, relu, relu'relu' and erf_m closed forms (docs/architecture.md's table),
    in textbook form."""
    q, qp, c, det = _cov(4)
    rho = c / np.sqrt(q * qp)
    theta = np.arccos(rho)
    m = 3.0
    cases = [
        (ErfStep(0.0), ErfStep(0.0), (2 / np.pi) * np.arcsin(rho)),
        (ErfStep(0.0, 0.5, 0.5), ErfStep(0.0, 0.5, 0.5), 0.25 + np.arcsin(rho) / (2 * np.pi)),
        (ReLU(), ReLU(), np.sqrt(q * qp) * (np.sin(theta) + (np.pi - theta) * np.cos(theta)) / (2 * np.pi)),
        (Heaviside(), Heaviside(), (np.pi - theta) / (2 * np.pi)),
        (ErfStep(1 / m**2), ErfStep(1 / m**2),
         (2 / np.pi) * np.arcsin(2 * m * m * c / np.sqrt((1 + 2 * m * m * q) * (1 + 2 * m * m * qp)))),
    ]
    for f, g, expected in cases:
        np.testing.assert_allclose(expect_pair(f, g, q, qp, c, det), expected, rtol=1e-12, atol=1e-15)


def test_naive_sign_ntk_term():
    """E[2 delta(u) 2 delta(v)] = 4 / (2 pi sqrt(q q' - c^2)); +inf at det = 0."""
    q, qp, c, det = _cov(5)
    d = GaussianBump(0.0, 2.0)
    np.testing.assert_allclose(expect_pair(d, d, q, qp, c, det), 4 / (2 * np.pi * np.sqrt(det)),
                               rtol=1e-12)
    with np.errstate(divide="ignore"):
        assert np.isinf(expect_pair(d, d, np.array([1.0]), np.array([1.0]), np.array([1.0]),
                                    np.array([0.0])))[0]


def test_tilt_at_large_m_approaches_delta():
    q, qp, c, det = _cov(6)
    g = gk.surrogates.fast_sigmoid(5.0)
    delta = expect_pair(GaussianBump(0.0), g, q, qp, c, det)
    diffs = [np.abs(expect_pair(GaussianBump(1 / m**2), g, q, qp, c, det) - delta).max()
             for m in (1e2, 1e3, 1e4)]
    assert diffs[0] > diffs[1] > diffs[2]
    assert diffs[2] < 1e-6 * np.abs(delta).max()
    big = expect_pair(GaussianBump(1e-16), g, q, qp, c, det)  # m = 1e8
    assert np.all(np.isfinite(big))
    np.testing.assert_allclose(big, delta, rtol=1e-10)


def test_heaviside_reduction_equals_2d_quadrature():
    q, qp, c, det = _cov(7)
    for g in (gk.surrogates.fast_sigmoid(5.0), gk.surrogates.sigmoid(3.0), gk.surrogates.boxcar(0.4)):
        one_d = expect_pair(Heaviside(), g, q, qp, c, det)
        two_d = quad_pair(Heaviside(), g, q, qp, c, det, order=10)
        np.testing.assert_allclose(one_d, two_d, rtol=1e-9)


def test_degenerate_q_zero():
    """u = 0 exactly when q = 0: E[f(0) g(v)] = f(0) E[g(v)]."""
    z = np.zeros(3)
    qp = np.array([0.5, 1.0, 2.0])
    sign = ErfStep(0.0)
    step = ErfStep(0.0, 0.5, 0.5)
    np.testing.assert_array_equal(expect_pair(sign, sign, z, qp, z, z), 0.0)
    np.testing.assert_array_equal(expect_pair(step, step, z, qp, z, z), 0.25)
    np.testing.assert_array_equal(expect_pair(ReLU(), ReLU(), z, qp, z, z), 0.0)
    np.testing.assert_array_equal(expect_pair(Heaviside(), Heaviside(), z, qp, z, z), 0.25)
    assert np.all(np.isinf(expect_pair(GaussianBump(0.0), gk.surrogates.erf(1.0), z, qp, z, z)))
    g = gk.surrogates.sigmoid(2.0)
    np.testing.assert_allclose(quad_pair(ReLU(), g, z, qp, z, z), 0.0)


@pytest.mark.parametrize("g", [gk.surrogates.sigmoid(3.0), gk.surrogates.fast_sigmoid(50.0),
                               gk.surrogates.custom(lambda v: np.exp(-np.abs(v)), kinks=(0.0,))],
                         ids=["sigmoid", "fast_sigmoid50", "custom"])
def test_table_interpolates_quadrature(g):
    """The memoized Chebyshev table of G(s) equals direct quadrature to 1e-12 relative, and
    a value does not depend on the batch it is computed in."""
    from gpukern.gaussian import quad_avg
    from gpukern.tables import table_avg

    s = np.exp(np.random.default_rng(0).uniform(np.log(1e-7), np.log(1e3), 2000))
    got = table_avg(g, s * s)
    np.testing.assert_allclose(got, quad_avg(g, s * s), rtol=1e-12)
    np.testing.assert_array_equal(table_avg(g, (s * s)[::7]), got[::7])
    assert table_avg(g, np.array([0.0]))[0] == g(np.array([0.0]))[0]


@pytest.mark.parametrize("width1, width2", [(0.5, 0.5), (0.3, 1.2)])
def test_boxcar_pair_quadrature_against_mpmath(width1, width2):
    """E[box(u) box(v)] = P(|u| < w1, |v| < w2) / (w1 w2): the library's 2-D quadrature at
    the default order against a 30-digit 1-D integral of the conditional probability
    (mpmath, split at the jumps), including nearly coinciding and antipodal pairs."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 30
    f, g = gk.surrogates.boxcar(width1), gk.surrogates.boxcar(width2)
    q, qp, c, det = _cov(seed=3, m=8)
    q, qp = np.append(q, [0.3, 1.7]), np.append(qp, [0.3, 1.7])
    c, det = np.append(c, [0.3 * (1 - 1e-7), -1.7 * (1 - 1e-6)]), np.append(det, 0.0)
    det = np.maximum(q * qp - c * c, 0.0)
    got = quad_pair(f, g, q, qp, c, det)
    for i in range(len(q)):
        qi, qpi, ci = (mp.mpf(float(v)) for v in (q[i], qp[i], c[i]))
        sd = mp.sqrt((qi * qpi - ci * ci) / qi)
        slope = ci / qi

        def inner(u, qi=qi, slope=slope, sd=sd):
            m = slope * u
            return mp.npdf(u, 0, mp.sqrt(qi)) * (mp.ncdf((width2 - m) / sd) -
                                                 mp.ncdf((-width2 - m) / sd))

        jumps = [p for p in (width2 / slope, -width2 / slope) if abs(p) < width1] if ci else []
        ref = mp.quad(inner, sorted([-width1, width1, *jumps])) / (width1 * width2)
        assert abs(got[i] - float(ref)) <= 1e-10 * abs(float(ref)), (i, got[i], ref)
