"""Scalar value objects: formulas, areas, derivatives, closed Gaussian averages."""

import math

import numpy as np
import pytest
from scipy import integrate

import gpukern as gk
from gpukern.functions import ErfStep, GaussianBump
from gpukern.gaussian import quad_avg

SURROGATES = {
    "erf": gk.surrogates.erf(k=2.0),
    "sigmoid": gk.surrogates.sigmoid(beta=3.0),
    "fast_sigmoid": gk.surrogates.fast_sigmoid(beta=5.0),
    "atan": gk.surrogates.atan(alpha=2.0),
    "boxcar": gk.surrogates.boxcar(width=0.5),
    "triangle": gk.surrogates.triangle(width=0.5),
}

FORMULAS = {  # gpukern/surrogates.py's table, written out again independently
    "erf": lambda v: (4 / math.sqrt(math.pi)) * math.exp(-4 * v * v),
    "sigmoid": lambda v: 1.5 / math.cosh(1.5 * v) ** 2,
    "fast_sigmoid": lambda v: 5.0 / (1 + 5 * abs(v)) ** 2,
    "atan": lambda v: 2.0 / (1 + (math.pi * v) ** 2),
    "boxcar": lambda v: 2.0 if abs(v) < 0.5 else 0.0,
    "triangle": lambda v: 4.0 * max(0.0, 1 - abs(v) / 0.5),
}


@pytest.mark.parametrize("name", SURROGATES)
def test_surrogate_formula(name):
    """Against the formulas of the surrogates' documentation, written out independently
    (areas and every other path: tests/test_contract.py)."""
    g = SURROGATES[name]
    v = np.linspace(-3, 3, 61) + 0.013
    np.testing.assert_allclose(g(v), [FORMULAS[name](t) for t in v], rtol=1e-13, atol=1e-15)


def test_scale_multiplies():
    v = np.linspace(-1, 1, 7)
    for ctor in (gk.surrogates.erf, gk.surrogates.sigmoid, gk.surrogates.fast_sigmoid,
                 gk.surrogates.atan, gk.surrogates.boxcar, gk.surrogates.triangle):
        np.testing.assert_allclose(ctor(1.5, scale=0.5)(v), 0.5 * ctor(1.5)(v), rtol=1e-15)


@pytest.mark.parametrize("m", [0.5, 1.0, 5.0, 20.0])
def test_erf_activation_derivative_is_true_derivative(m):
    act = gk.activations.erf(m)
    v = np.linspace(-2, 2, 41)
    h = 1e-6
    fd = (act(v + h) - act(v - h)) / (2 * h)
    np.testing.assert_allclose(act.derivative(v), fd, rtol=1e-7, atol=1e-9)


def test_jump_activations():
    v = np.array([-2.0, -0.0, 0.0, 1e-300, 3.0])
    np.testing.assert_array_equal(gk.activations.sign()(v), [-1, 0, 0, 1, 1])
    np.testing.assert_array_equal(gk.activations.step()(v), [0, 0.5, 0.5, 1, 1])
    assert gk.activations.erf(float("inf")) == gk.activations.sign()
    for act in (gk.activations.sign(), gk.activations.step()):
        assert act.has_jump
        np.testing.assert_array_equal(act.derivative(v), 0.0)  # zero almost everywhere
    assert gk.activations.sign().derivative == GaussianBump(0.0, 2.0)
    assert gk.activations.step().derivative == GaussianBump(0.0, 1.0)


def test_relu_linear():
    v = np.array([-1.0, 0.0, 2.0])
    np.testing.assert_array_equal(gk.activations.relu()(v), [0, 0, 2])
    np.testing.assert_array_equal(gk.activations.relu().derivative(v), [0, 0.5, 1])
    np.testing.assert_array_equal(gk.activations.linear()(v), v)
    np.testing.assert_array_equal(gk.activations.linear().derivative(v), 1.0)


def _scipy_avg(g, s, kinks):
    """E[g(v)], v ~ N(0, s^2), by adaptive scipy quadrature split at the kinks."""
    lim = 12 * s
    pts = sorted({k for k in kinks if -lim < k < lim})
    f = lambda v: float(g(np.array([v]))[0]) * math.exp(-0.5 * (v / s) ** 2) / (s * math.sqrt(2 * math.pi))  # noqa: E731
    return integrate.quad(f, -lim, lim, points=pts or None, epsabs=0, epsrel=1e-13, limit=2000)[0]


KINKED = {
    "fast_sigmoid(5)": (gk.surrogates.fast_sigmoid(5.0), [0.0]),
    "fast_sigmoid(50)": (gk.surrogates.fast_sigmoid(50.0), [0.0]),
    "boxcar(0.3)": (gk.surrogates.boxcar(0.3), [-0.3, 0.3]),
    "triangle(0.2)": (gk.surrogates.triangle(0.2), [-0.2, 0.0, 0.2]),
    "sigmoid(50)": (gk.surrogates.sigmoid(50.0), [0.0]),
    "atan(10)": (gk.surrogates.atan(10.0), [0.0]),
}
SDS = [1e-3, 0.02, 0.1, 0.5, 1.0, 3.0, 10.0]


@pytest.mark.parametrize("name", KINKED)
def test_quadrature_matches_scipy_quad(name):
    """The graded composite Gauss-Legendre rule reaches 1e-8 where Gauss-Hermite fails."""
    g, kinks = KINKED[name]
    s = np.array(SDS)
    ours = quad_avg(g, s * s)
    ref = np.array([_scipy_avg(g, si, kinks) for si in SDS])
    np.testing.assert_allclose(ours, ref, rtol=1e-8)


def test_plain_gauss_hermite_would_fail():
    """Documents why the panels exist: 200-node Gauss-Hermite misses boxcar by > 1 %."""
    g, kinks = KINKED["boxcar(0.3)"]
    x, w = np.polynomial.hermite_e.hermegauss(200)
    gh = np.sum(w * g(0.3 * x)) / math.sqrt(2 * math.pi)
    assert abs(gh / _scipy_avg(g, 0.3, kinks) - 1) > 1e-2


@pytest.mark.parametrize("name", ["atan(10)", "boxcar(0.3)", "triangle(0.2)"])
def test_closed_gauss_averages(name):
    g, kinks = KINKED[name]
    s = np.array(SDS)
    np.testing.assert_allclose(g.gauss_avg(s * s), [_scipy_avg(g, si, kinks) for si in SDS],
                               rtol=1e-10)
    assert float(g.gauss_avg(np.array([0.0]))[0]) == pytest.approx(float(g(np.array([0.0]))[0]))


def test_erf_surrogate_gauss_average():
    g = gk.surrogates.erf(k=3.0)
    s = np.array(SDS)
    np.testing.assert_allclose(g.gauss_avg(s * s), [_scipy_avg(g, si, []) for si in SDS],
                               rtol=1e-10)
    # and the closed form (2k/sqrt(pi)) / sqrt(1 + 2 k^2 s^2), derived by hand
    np.testing.assert_allclose(g.gauss_avg(s * s), 6 / math.sqrt(math.pi) / np.sqrt(1 + 18 * s * s),
                               rtol=1e-14)


def test_erfstep_is_erf_of_m():
    v = np.linspace(-2, 2, 9)
    from scipy.special import erf
    np.testing.assert_allclose(ErfStep(1 / 9.0)(v), erf(3 * v), rtol=1e-14)
