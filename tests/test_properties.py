"""Hypothesis property tests: symmetries, PSD, finiteness of the SG-NTK, limits."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import gpukern as gk

pytestmark = pytest.mark.usefixtures("executor")  # every test on every executor

ACTS = [gk.activations.erf(0.7), gk.activations.erf(4.0), gk.activations.sign(),
        gk.activations.step(), gk.activations.relu(), gk.activations.linear()]
SURS = [gk.surrogates.erf(1.5), gk.surrogates.atan(2.0), gk.surrogates.boxcar(0.4),
        gk.surrogates.triangle(0.6), gk.surrogates.fast_sigmoid(3.0)]

# |x| >= 1e-6 or 0: squared norms of x ~ 1e-160 underflow to subnormals in float64,
# where no float64 computation keeps 12 digits
coords = st.floats(-3, 3, allow_nan=False, allow_infinity=False).filter(
    lambda v: v == 0.0 or abs(v) >= 1e-6)
point_sets = st.integers(1, 3).flatmap(
    lambda d: st.tuples(arrays(np.float64, st.tuples(st.integers(1, 5), st.just(d)), elements=coords),
                        arrays(np.float64, st.tuples(st.integers(1, 4), st.just(d)), elements=coords)))
nets = st.builds(
    lambda depth, a, s, sw, sb: gk.MLP(depth, ACTS[a], SURS[s], weight_std=sw, bias_std=sb),
    st.integers(1, 3), st.integers(0, len(ACTS) - 1), st.integers(0, len(SURS) - 1),
    st.floats(0.3, 2.5), st.sampled_from([0.0, 0.05, 0.5]))


@settings(max_examples=60, deadline=None)
@given(nets, point_sets)
def test_sgntk_and_nngp_finite_everywhere(net, xs):
    x, y = xs
    ks = net.kernels(x, y, which=("nngp", "sgntk", "surrogate"))
    for k in ks.values():
        assert k.shape == (len(x), len(y))
        assert np.all(np.isfinite(k))


def _rtol(net, kernel):
    """1e-12 for closed forms; 1e-9 where a pair goes through 2-D quadrature, whose
    default accuracy is 1e-10 relative (the transposed call integrates in the other order)."""
    two_d = kernel == "surrogate" and net.surrogate.name != "erf(k=1.5)"
    return 1e-9 if two_d else 1e-12


@settings(max_examples=30, deadline=None)
@given(nets, point_sets)
def test_symmetric_kernels_transpose(net, xs):
    x, y = xs
    which = ("nngp", "surrogate") if net.activation.has_jump else ("nngp", "ntk", "surrogate")
    a = net.kernels(x, y, which=which)
    b = net.kernels(y, x, which=which)
    for k in which:
        np.testing.assert_allclose(a[k], b[k].T, rtol=_rtol(net, k), atol=1e-300)


@settings(max_examples=60, deadline=None)
@given(nets, point_sets)
def test_nngp_psd_and_cauchy_schwarz(net, xs):
    x, _ = xs
    k = net.nngp(x)
    np.testing.assert_array_equal(k, k.T)
    ev = np.linalg.eigvalsh(k)
    assert ev.min() >= -1e-10 * max(ev.max(), 1e-300)
    d = np.diag(k)
    assert np.all(k**2 <= np.outer(d, d) * (1 + 1e-10) + 1e-300)


@settings(max_examples=40, deadline=None)
@given(nets, point_sets)
def test_sgntk_swap_is_the_reversed_kernel(net, xs):
    """I(x, x') with (true, surrogate) equals the transposed (surrogate, true) kernel."""
    x, y = xs
    a = net.kernel(x, y, left="true", right="surrogate")
    b = net.kernel(y, x, left="surrogate", right="true")
    np.testing.assert_allclose(a, b.T, rtol=1e-12, atol=1e-300)


def _well_separated(x, y, min_sin=0.05):
    """Pairs that are not (anti)collinear. At rho -> 1 the sign kernel's arcsin turns a
    rounding error eps of rho into sqrt(eps), compounding per layer: an ill-conditioning
    of the kernel itself, which no float64 implementation avoids."""
    nx, ny = np.linalg.norm(x, axis=1), np.linalg.norm(y, axis=1)
    if np.any(nx == 0) or np.any(ny == 0):
        return False
    cos = (x @ y.T) / np.outer(nx, ny)
    return bool(np.all(1 - cos**2 >= min_sin**2))


@settings(max_examples=40, deadline=None)
@given(nets, point_sets, st.floats(0.1, 10.0))
def test_homogeneity_without_bias(net, xs, scale):
    """Without bias, sign networks see only directions: the NNGP of (c x, y) equals (x, y)."""
    x, y = xs
    assume(x.shape[1] >= 2 and _well_separated(x, y))
    net = gk.MLP(net.depth, gk.activations.sign(), net.surrogate, weight_std=net.weight_std)
    np.testing.assert_allclose(net.nngp(scale * x, y), net.nngp(x, y), rtol=1e-10, atol=1e-14)
