"""Jumps at thresholds and quantizers: the bivariate normal CDF, every closed form of a
term at a threshold, the m -> inf and theta = 0 limits, Monte Carlo of finite networks,
surrogate backprop through a staircase, and bad input."""

import ctypes
import math

import mpmath as mp
import numpy as np
import pytest
from conftest import assert_within_se, cptr
from hypothesis import given, settings
from hypothesis import strategies as st

import gpukern as gk
from gpukern import bivariate, gaussian
from gpukern.functions import ErfStep, GaussianBump, Shifted, Sum

A = gk.activations
S = gk.surrogates

# ------------------------------------------------------------------ bivariate normal
def _bvn_reference(h: float, k: float, rho: mp.mpf) -> float:
    """P(X > h, Y > k) = int_h^inf phi(x) Phi((rho x - k)/sqrt(1 - rho^2)) dx at 40 digits
    (the inner Phi's step at x = k/rho is a panel edge)."""
    with mp.workdps(40):
        h, k = mp.mpf(h), mp.mpf(k)
        s = mp.sqrt(1 - rho * rho)
        edges = [h] + ([k / rho] if rho != 0 and k / rho > h else []) + [mp.inf]
        return float(mp.quad(lambda x: mp.npdf(x) * mp.ncdf((rho * x - k) / s), edges))


RHOS = ["0", "0.2", "-0.5", "0.74", "0.8", "0.924", "0.93", "-0.93", "0.999", "0.999999",
        "0.999999999999", "-0.999999999999"]
HK = [(0, 0), (1, 1), (1, -1), (-2, 0.5), (3, 3), (0.5, 0.7), (-1, -1.3), (5, -5), (10, 9),
      (30, 30), (-30, 2), (2, 2.0000001), (-30, -29)]


def test_bvn_against_high_precision(host_lib):
    """P(X > h, Y > k) within 1e-14 absolute of a 40-digit reference, on a grid with
    rho = +-(1 - 1e-12) and |h|, |k| up to 30; rho and 1 - rho^2 are given to the function
    as the nearest doubles (as the kernels know them from the carried determinant)."""
    h, k, rho, s2, ref = [], [], [], [], []
    for text in RHOS:
        with mp.workdps(40):
            r = mp.mpf(text)
        for a, b in HK:
            h.append(a)
            k.append(b)
            rho.append(float(r))
            with mp.workdps(40):
                s2.append(float(1 - r * r))
            ref.append(_bvn_reference(a, b, r))
    h, k, rho, s2, ref = (np.asarray(v, dtype=np.float64) for v in (h, k, rho, s2, ref))
    got = bivariate.upper(h, k, rho, s2)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-14)
    out = np.empty_like(h)
    host_lib.gk_bvn(cptr(h), cptr(k), cptr(rho), cptr(s2), cptr(out), h.size)
    np.testing.assert_allclose(out, got, rtol=1e-13, atol=1e-16, err_msg="cuda/ headers")


def test_bvn_limits():
    inf = np.inf
    h = np.array([-inf, -inf, 1.0, inf, 0.5])
    k = np.array([-inf, 0.3, -inf, 0.0, inf])
    got = bivariate.upper(h, k, np.full(5, 0.5), np.full(5, 0.75))
    from scipy.special import ndtr
    np.testing.assert_allclose(got, [1.0, ndtr(-0.3), ndtr(-1.0), 0.0, 0.0], atol=1e-16)


# ----------------------------------------------------- closed forms vs quadrature
def _cov(m=16, seed=0):
    """Well-separated (q, q', c) plus a coinciding and an antipodal pair."""
    rng = np.random.default_rng(seed)
    q, qp = rng.uniform(0.2, 3.0, m), rng.uniform(0.2, 3.0, m)
    rho = rng.uniform(-0.97, 0.97, m)
    q, qp, rho = np.append(q, [1.3, 0.8]), np.append(qp, [1.3, 0.8]), np.append(rho, [1.0, -1.0])
    c = rho * np.sqrt(q * qp)
    det = np.maximum(q * qp - c * c, 0.0)
    det[-2:] = 0.0
    return q, qp, c, det


STEPS = [ErfStep(0.0), ErfStep(0.0, 0.5, 0.5), ErfStep(0.25), ErfStep(0.04, -0.7, 0.2)]
BUMPS = [GaussianBump(0.25), GaussianBump(0.04, 1.3)]
SHIFTS = [(0.8, -0.4), (0.0, 1.1), (-1.5, 0.0), (2.0, 2.0)]


@pytest.mark.parametrize("sf, sg", SHIFTS)
@pytest.mark.parametrize("f", STEPS, ids=repr)
@pytest.mark.parametrize("g", STEPS[:3], ids=repr)
def test_orthant_pair_against_2d_quadrature(f, g, sf, sg):
    """E[f(u - sf) g(v - sg)] of erf/sign/step terms (a bivariate normal orthant
    probability) against 2-D graded quadrature, <= 1e-10."""
    q, qp, c, det = _cov()
    got = gaussian._shifted_pair(f, sf, g, sg, q, qp, c, det, 8, "auto")
    live = det > 0  # quadrature needs a conditional spread
    ref = gaussian.quad_pair(Shifted(f, sf), Shifted(g, sg), q[live], qp[live], c[live],
                             det[live])
    np.testing.assert_allclose(got[live], ref, rtol=1e-10, atol=1e-11)
    # coinciding and antipodal inputs: u = +-v, a 1-D Gaussian average
    for idx, sign in ((-2, 1.0), (-1, -1.0)):
        fv = Shifted(f, sf)
        gv = Shifted(g, sg)
        one_d = gaussian.quad_avg(_Product(fv, gv, sign), np.array([q[idx]]))
        np.testing.assert_allclose(got[idx], one_d[0], rtol=1e-10, atol=1e-11)


class _Product(gk.functions.ScalarFunction):
    """u -> f(u) g(sign u) (coinciding or antipodal inputs), for 1-D quadrature."""

    def __init__(self, f, g, sign):
        self.f, self.g, self.sign = f, g, sign

    def __call__(self, v):
        return self.f(v) * self.g(self.sign * v)

    def features(self):
        return self.f.features() + [(self.sign * a, w) for a, w in self.g.features()]


SURS = [S.erf(2.0), S.boxcar(0.5), S.triangle(0.7), S.atan(2.0), S.sigmoid(3.0),
        S.fast_sigmoid(4.0), ErfStep(0.0, 0.5, 0.5), gk.functions.ReLU(),
        gk.functions.Identity(), gk.functions.Constant(0.7)]


@pytest.mark.parametrize("sf, sg", SHIFTS)
@pytest.mark.parametrize("bump", [GaussianBump(0.0), GaussianBump(0.0, 1.0)] + BUMPS,
                         ids=repr)
@pytest.mark.parametrize("g", SURS, ids=repr)
def test_tilt_with_a_mean_against_quadrature(bump, g, sf, sg):
    """A delta or bump at sf facing g at sg: the delta reduction
    w phi_q(sf) E[g(v - sg) | u = sf] against the 1-D average of g over the conditional
    Gaussian by quadrature (a delta) or 2-D quadrature (a bump), <= 1e-10."""
    q, qp, c, det = _cov(seed=3)
    got = gaussian._shifted_pair(bump, sf, g, sg, q, qp, c, det, 8, "auto")
    assert gaussian.has_closed_pair(Shifted(bump, sf + 1e-300), Shifted(g, sg + 1e-300)) == (
        gk.registry.mean_avg(g.kind) or isinstance(g, GaussianBump))
    if bump.t == 0.0:
        big_q = q
        mean = c * sf / big_q - sg
        s2 = qp - c * c / big_q
        s2[-2:] = 0.0
        ref = (bump.weight * np.exp(-sf * sf / (2 * big_q)) / np.sqrt(2 * np.pi * big_q)
               * gaussian.quad_avg(g, s2, mean=mean))
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)
    else:
        live = det > 0
        ref = gaussian.quad_pair(Shifted(bump, sf), Shifted(g, sg), q[live], qp[live], c[live],
                                 det[live])
        np.testing.assert_allclose(got[live], ref, rtol=1e-9, atol=1e-11)
    # the right-hand version is the same expectation with the roles swapped
    swapped = gaussian._shifted_pair(g, sg, bump, sf, qp, q, c, det, 8, "auto")
    np.testing.assert_allclose(swapped, got, rtol=1e-14, atol=0)


@pytest.mark.parametrize("sf, sg", SHIFTS)
def test_two_deltas_are_the_bivariate_density(sf, sg):
    """delta(u - sf) delta(v - sg): the bivariate normal density at (sf, sg) (scipy's),
    +inf at coinciding inputs with sf = sg, 0 with sf != sg, 0 at antipodal inputs unless
    sf = -sg."""
    from scipy.stats import multivariate_normal
    q, qp, c, det = _cov(seed=4)
    d1, d2 = GaussianBump(0.0, 1.0), GaussianBump(0.0, 2.0)
    with np.errstate(divide="ignore"):
        got = gaussian._shifted_pair(d1, sf, d2, sg, q, qp, c, det, 8, "auto")
    for i in range(len(q) - 2):
        ref = 2.0 * multivariate_normal(cov=[[q[i], c[i]], [c[i], qp[i]]]).pdf([sf, sg])
        np.testing.assert_allclose(got[i], ref, rtol=1e-12)
    assert got[-2] == (np.inf if sf == sg else 0.0)
    assert got[-1] == (np.inf if sf == -sg else 0.0)
    # bumps of width t: the density of the noisy (u, v)
    got_t = gaussian._shifted_pair(BUMPS[0], sf, BUMPS[1], sg, q, qp, c, det, 8, "auto")
    for i in range(len(q)):
        cov = [[q[i] + 0.125, c[i]], [c[i], qp[i] + 0.02]]
        ref = 2.0 * 1.3 * multivariate_normal(cov=cov).pdf([sf, sg])
        np.testing.assert_allclose(got_t[i], ref, rtol=1e-12)


def test_theta_zero_formulas_equal_the_sign_kernels():
    """The threshold formulas at theta = 0 reproduce the closed sign/step/erf pairs: the
    orthant probability (2/pi) asin(rho), the tilt with a mean the tilt."""
    q, qp, c, det = _cov(seed=5)
    for f in STEPS:
        for g in STEPS:
            got = gaussian._orthant(f, 0.0, g, 0.0, q, qp, c, det)
            ref = gaussian.expect_pair(f, g, q, qp, c, det)
            np.testing.assert_allclose(got, ref, rtol=1e-14, atol=2e-16)
    for bump in [GaussianBump(0.0)] + BUMPS:
        for g in SURS:
            if not gk.registry.mean_avg(g.kind):
                continue
            got = gaussian._tilt_mean(bump, 0.0, g, 0.0, q, qp, c, det, 8, "auto")
            ref = gaussian.expect_pair(bump, g, q, qp, c, det)
            np.testing.assert_allclose(got, ref, rtol=1e-14, atol=1e-300)


# ------------------------------------------------------------------ kernels, limits
X = np.random.default_rng(7).normal(size=(6, 3)) * np.array([[0.4], [1.0], [1.5], [1.0],
                                                               [2.2], [0.7]])


@pytest.mark.usefixtures("executor")
def test_erf_m_converges_to_the_step_at_its_threshold():
    """erf(m (h - theta)) -> sign(h - theta): its NNGP and SG-NTK approach the delta
    reduction's at rate 1/m, one code path (the bump's width is t = 1/m^2; on the diagonal,
    rho = 1, arcsin turns t into sqrt(t))."""
    theta, sur = 1.0, S.triangle(0.6)
    limit = gk.MLP(3, A.sign(theta), surrogate=sur, weight_std=1.4, bias_std=0.5)
    ref = limit.kernels(X, which=("nngp", "sgntk"))
    errs = []
    for m in (300.0, 3000.0, 30000.0):
        net = gk.MLP(3, A.erf(m, theta), surrogate=sur, weight_std=1.4, bias_std=0.5)
        k = net.kernels(X, which=("nngp", "sgntk"))
        errs.append(max(np.max(np.abs(k[w] - ref[w])) / np.max(np.abs(ref[w])) for w in k))
    assert errs[1] < errs[0] / 8 and errs[2] < errs[1] / 8, errs
    assert errs[2] < 1e-3, errs


@pytest.mark.usefixtures("executor")
def test_naive_ntk_of_a_quantizer_diverges_only_on_the_diagonal():
    net = gk.MLP(2, A.uniform_quantizer(2), surrogate=S.erf(2.0), weight_std=1.5,
                 bias_std=0.3)
    with pytest.warns(RuntimeWarning):
        ntk = net.ntk(X)
    assert np.all(np.isinf(np.diag(ntk)))
    off = ntk[~np.eye(len(X), dtype=bool)]
    assert np.all(np.isfinite(off))
    sg = net.sgntk(X)
    assert np.all(np.isfinite(sg))


@pytest.mark.usefixtures("executor")
def test_theta_zero_constructors_are_todays():
    for a, b in ((A.step(0.0), A.step()), (A.sign(0.0), A.sign()), (A.erf(2.0, 0.0), A.erf(2.0))):
        na = gk.MLP(3, a, surrogate=S.atan(2.0), weight_std=1.2, bias_std=0.2)
        nb = gk.MLP(3, b, surrogate=S.atan(2.0), weight_std=1.2, bias_std=0.2)
        ka, kb = na.kernels(X, which=("nngp", "sgntk")), nb.kernels(X, which=("nngp", "sgntk"))
        for w in ka:
            np.testing.assert_array_equal(ka[w], kb[w])


@pytest.mark.usefixtures("executor")
@pytest.mark.parametrize("act", [A.step(1.0), A.quantizer([-0.5, 0.2, 1.0], [-1, 0, 0.5, 2])],
                         ids=repr)
@pytest.mark.parametrize("sur", [S.erf(2.0), S.boxcar(0.6), S.fast_sigmoid(3.0)], ids=repr)
def test_depth1_against_finite_networks(points, act, sur):
    """NNGP and the surrogate-surrogate kernel of thresholded networks against finite
    networks (exact in expectation at depth 1), within Bonferroni z standard errors."""
    from test_analytic_mc import SB, SW, _depth1_mc, _summary
    net = gk.MLP(1, act, surrogate=sur, weight_std=SW, bias_std=SB)
    d = net.side("right", "surrogate")
    nngp_s, kern_s = _depth1_mc(points, act, d, d, n=1000, draws=400, seed=2)
    assert_within_se(*_summary(nngp_s)[:2], net.nngp(points), len(nngp_s) - 1, "nngp")
    assert_within_se(*_summary(kern_s)[:2], net.kernel(points, points, "surrogate",
                                                       "surrogate"), len(kern_s) - 1, "sur")


# ------------------------------------------------------------- definitions, finite nets
def test_definitions():
    v = np.array([-2.0, -0.5, 0.0, 0.2, 0.5, 1.0, 1.5, 3.0])
    q = A.quantizer([0.0, 1.0], [-1.0, 0.5, 2.0])
    np.testing.assert_array_equal(q(v), [-1, -1, -0.25, 0.5, 0.5, 1.25, 2, 2])
    np.testing.assert_array_equal(A.step(1.0)(v), [0, 0, 0, 0, 0, 0.5, 1, 1])
    np.testing.assert_array_equal(A.sign(0.5)(v), [-1, -1, -1, -1, 0, 1, 1, 1])
    np.testing.assert_allclose(A.erf(3.0, 0.5)(v), [math.erf(3 * (a - 0.5)) for a in v])
    u = A.uniform_quantizer(2, 0.0, 3.0)
    np.testing.assert_allclose(u(np.array([-1.0, 0.7, 1.2, 2.0, 9.0])), [0, 1, 1, 2, 3])
    # the surrogate: the shape centred at every jump, weighted by half its height
    sur = S.triangle(0.8)
    d = q.surrogate_derivative(sur)
    np.testing.assert_allclose(d(v), 0.75 * sur(v) + 0.75 * sur(v - 1.0))
    assert A.sign().surrogate_derivative(sur) is sur
    np.testing.assert_allclose(A.step(1.0).surrogate_derivative(sur)(v), 0.5 * sur(v - 1.0))
    assert A.relu().surrogate_derivative(sur) is sur


@pytest.mark.usefixtures("executor")
def test_surrogate_backprop_through_a_staircase():
    """The quasi-Jacobian of a quantizer network, by gpukern's backward pass, against
    the same chain rule written out here with the summed surrogate, per network."""
    act = A.quantizer([-0.3, 0.4], [0.0, 1.0, 3.0])
    sur = S.fast_sigmoid(2.0)
    net = gk.MLP(2, act, surrogate=sur, weight_std=1.3, bias_std=0.4)
    params = net.init(3, 40, ensemble=3, seed=1)
    x = X[:4]
    jac = net.jacobian(params, x)
    d = lambda h: 0.5 * sur(h + 0.3) + 1.0 * sur(h - 0.4)  # noqa: E731
    for e in range(3):
        ws = [w[e] for w in params.weights]
        bs = [b[e] for b in params.biases]
        for i in range(len(x)):
            hs, zs, z = [], [x[i]], x[i]
            for w, b in zip(ws, bs):
                h = 1.3 / np.sqrt(len(z)) * (w @ z) + 0.4 * b
                hs.append(h)
                z = act(h)
                zs.append(z)
            delta = np.ones(1)
            grads = []
            for l in range(len(ws) - 1, -1, -1):
                n_in = len(zs[l])
                grads.append(np.concatenate([np.outer(delta, zs[l]).ravel()
                                             * 1.3 / np.sqrt(n_in), 0.4 * delta]))
                if l > 0:
                    delta = (delta @ ws[l]) * 1.3 / np.sqrt(n_in) * d(hs[l - 1])
            flat = np.sort(np.concatenate(grads))
            np.testing.assert_allclose(np.sort(jac[e, i]), flat, rtol=1e-10, atol=1e-12)


@pytest.mark.usefixtures("executor")
def test_one_sgl_step_of_a_quantizer_network_is_its_quasi_gradient():
    """gk.train's step (the compiled SGL step where built) moves the parameters by
    -lr J~(X)^T (f - y), J~ the quasi-Jacobian of the summed, centred surrogate."""
    act = A.uniform_quantizer(2)
    net = gk.MLP(2, act, surrogate=S.triangle(0.7), weight_std=1.3, bias_std=0.3)
    params = net.init(3, 48, ensemble=3, seed=3)
    x, y = X[:5], np.linspace(-1, 1, 5)
    f0 = net.apply(params, x)
    jac = net.jacobian(params, x)
    lr = 0.05
    res = gk.train(net, params, x, y, lr=lr, steps=1)
    step = res.params.ravel() - params.ravel()
    np.testing.assert_allclose(step, -lr * np.einsum("enp,en->ep", jac, f0 - y), rtol=1e-9,
                               atol=1e-13)


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize("thresholds, levels, match", [
    ([1.0, 0.0], [0, 1, 2], "strictly increasing"),
    ([0.0, 0.0], [0, 1, 2], "strictly increasing"),
    ([0.0, 1.0], [0, 1], "levels must hold"),
    ([0.0, np.nan], [0, 1, 2], "thresholds must be finite"),
    ([0.0, 1.0], [0, np.inf, 2], "levels must be finite"),
    ([], [0], "thresholds must hold"),
    ([0.0], [1.0, 1.0], "levels must not all be equal"),
    ([[0.0]], [0, 1], "flat sequence"),
])
def test_bad_quantizers(thresholds, levels, match):
    with pytest.raises(ValueError, match=match):
        A.quantizer(thresholds, levels)


@pytest.mark.parametrize("ctor", [A.step, A.sign, lambda t: A.erf(2.0, t)])
def test_bad_thresholds(ctor):
    with pytest.raises(ValueError, match="threshold"):
        ctor(float("nan"))
    with pytest.raises(ValueError, match="threshold"):
        ctor(float("inf"))
    with pytest.raises(TypeError, match="threshold"):
        ctor("1")


def test_bad_uniform_quantizer():
    with pytest.raises(ValueError, match="bits"):
        A.uniform_quantizer(0)
    with pytest.raises(ValueError, match="low < high"):
        A.uniform_quantizer(2, 1.0, 1.0)


@settings(max_examples=40, deadline=None)
@given(theta=st.floats(-2, 2), q=st.floats(0.05, 5), qp=st.floats(0.05, 5),
       rho=st.floats(-1, 1))
def test_step_nngp_entry_is_a_probability(theta, q, qp, rho):
    """E[H(u - theta) H(v - theta)] is P(u > theta, v > theta): in [0, min of the
    marginals] and symmetric in the two points."""
    c = rho * math.sqrt(q * qp)
    det = max(q * qp - c * c, 0.0)
    f = Shifted(ErfStep(0.0, 0.5, 0.5), theta)
    arr = lambda v: np.array([v])  # noqa: E731
    val = gaussian.expect_pair(f, f, arr(q), arr(qp), arr(c), arr(det))[0]
    swap = gaussian.expect_pair(f, f, arr(qp), arr(q), arr(c), arr(det))[0]
    from scipy.special import ndtr
    bound = min(ndtr(-theta / math.sqrt(q)), ndtr(-theta / math.sqrt(qp)))
    assert -1e-15 <= val <= bound + 1e-15
    assert abs(val - swap) <= 1e-15


def test_descriptor_of_a_sum():
    act = A.quantizer([-1.0, 2.0], [0.0, 1.0, 3.0])
    d = act.function.descriptor()
    assert d[0] == 2 and len(d) == 11 and d[5] == -1.0 and d[10] == 2.0
    assert isinstance(act.function, Sum) and isinstance(act.derivative, Sum)
    assert ctypes.sizeof(ctypes.c_double) * len(d) == 88
