"""Pairs at fixed variances read from their tables in the correlation (gpukern/correlation.py).

Against the independent nested 2-D quadrature at drawn (q, q') and correlations including
+-1, nearly +-1 (from the determinant) and 0; the compiled loop against the array path
(the same expression on the same table); whole kernels against the routes the tables
replace; the builder refusing what does not converge; variances that count as one.
"""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpukern as gk
from gpukern import correlation, gaussian, hermite, planner
from gpukern.functions import shifted
from gpukern.kernels import cpu_fused, ops

S = gk.surrogates
TANH = gk.activations.custom(np.tanh, lambda v: 1.0 / np.cosh(v) ** 2, name="tanh")
KINKED = gk.activations.custom(lambda v: np.abs(v) / (1.0 + np.abs(v)),
                               lambda v: np.sign(v) / (1.0 + np.abs(v)) ** 2, kinks=(0.0,),
                               name="soft_abs")
PAIRS = [(S.fast_sigmoid(2.0), S.fast_sigmoid(2.0)), (S.atan(2.0), S.atan(2.0)),
         (S.sigmoid(5.0), S.sigmoid(5.0)), (S.fast_sigmoid(5.0), S.atan(1.0)),
         (S.sigmoid(2.0), S.fast_sigmoid(1.0)), (TANH.function, TANH.function),
         (KINKED.function, KINKED.function), (shifted(S.sigmoid(3.0), 0.7), S.atan(2.0))]
IDS = ["fast_sigmoid", "atan", "sigmoid(5)", "fast_sigmoid-atan", "sigmoid-fast_sigmoid",
       "tanh", "kinked custom", "sigmoid@0.7-atan"]
COMPILED = "compiled" in ops.available_executors()


def _rhos(extra: list[float]) -> np.ndarray:
    """Correlations: +-1, 1 -+ 10^-k (near-coinciding inputs), 0, the panels' edges at
    t = 1/2, and drawn ones."""
    near = 10.0 ** -np.arange(1.0, 16.0, 2.0)
    return np.concatenate([[1.0, -1.0, 0.0, 0.75, -0.75], 1 - near, -1 + near, extra])


@pytest.mark.parametrize("f, g", PAIRS, ids=IDS)
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(q=st.floats(0.05, 20.0), qp=st.floats(0.05, 20.0),
       extra=st.lists(st.floats(-1.0, 1.0), min_size=4, max_size=4))
def test_table_against_2d_quadrature(f, g, q, qp, extra):
    """Every tabled pair within 1e-9 of 2-D quadrature, relative to sqrt(E f^2 E g^2)
    (tanh's pair crosses 0 at rho = 0; the others are positive): the table's own TOL
    (1e-12 of the largest value), its nodes' route (~1e-13) and the reference's
    error (order 16, ~1e-13) leave three orders to spare. Near +-1 the determinant is
    the one a near-coinciding input gives, q q' (1 - rho^2) computed without cancellation."""
    table = gaussian.correlation_table(f, g, np.array([q]), np.array([qp]), entries=1 << 20)
    if table is None:  # only a short series is summed instead
        lengths = [hermite.series_lengths(fn, np.array([v]))[0] for fn, v in ((f, q), (g, qp))]
        assert hermite.serves(f) and hermite.serves(g)
        assert 0 <= min(lengths) and max(lengths) <= gaussian.SHORT_SERIES
    rho = _rhos(extra)
    one_minus = np.where(rho >= 0, 1.0 - rho, 1.0 + rho)
    det = q * qp * one_minus * (2.0 - one_minus)
    qa, qpa, c = np.full(rho.shape, q), np.full(rho.shape, qp), rho * math.sqrt(q * qp)
    got = (table(qa, qpa, c, det) if table is not None
           else gaussian.expect_pair(f, g, qa, qpa, c, det))
    ref = gaussian.quad_pair(f, g, qa, qpa, c, det, order=16)
    scale = math.sqrt(gaussian.quad_pair(f, f, q, q, q, 0.0, order=16)
                      * gaussian.quad_pair(g, g, qp, qp, qp, 0.0, order=16))
    err = np.abs(got - ref) / scale
    assert err.max() <= 1e-9, (err.max(), rho[err.argmax()])


def test_short_series_are_summed_not_tabled():
    """sigmoid(2) at q = 1.04 has a series of ~126 terms: summed (no table), while a long
    one (atan(2): ~1900 terms) and a pair without series (fast_sigmoid) are tabled."""
    one, many = np.array([1.04]), 1 << 20
    assert gaussian.correlation_table(S.sigmoid(2.0), S.sigmoid(2.0), one, one,
                                      entries=many) is None
    assert gaussian.correlation_table(S.atan(2.0), S.atan(2.0), one, one,
                                      entries=many) is not None
    fs = S.fast_sigmoid(2.0)
    assert gaussian.correlation_table(fs, fs, one, one, entries=many) is not None
    # a small block keeps the route: the table would cost more than it saves
    assert gaussian.correlation_table(fs, fs, one, one) is None
    assert gaussian.correlation_table(fs, fs, np.full((64, 1), 1.04),
                                      np.full((1, 64), 1.04)) is not None


def test_variances_count_as_one_within_their_spread():
    q = 1.0 + np.array([0.0, 3e-16, -2e-16])
    assert gaussian.common_variance(q) == q.max()
    assert gaussian.common_variance(np.array([1.0, 1.0 + 1e-12])) is None
    assert gaussian.common_variance(np.array([])) is None
    fs, many = S.fast_sigmoid(2.0), 1 << 20
    assert gaussian.correlation_table(fs, fs, np.array([0.0]), np.array([1.0]),
                                      entries=many) is None
    assert gaussian.correlation_table(fs, fs, np.array([1.0, 2.0]), np.array([1.0]),
                                      entries=many) is None


def test_builder_refuses_what_does_not_converge():
    """Noise never converges to TOL (every panel splits to MAX_LEVEL: None), nor does a
    non-finite value; a polynomial in t converges on the first panels, to rounding."""
    rng = np.random.default_rng(0)
    assert correlation.build(lambda c, det: rng.normal(size=c.shape), 1.0, 1.0) is None
    assert correlation.build(lambda c, det: np.full(c.shape, np.inf), 1.0, 1.0) is None
    table = correlation.build(lambda c, det: 1.0 + c + 0.5 * c ** 3, 2.0, 0.5)
    assert table is not None and table.panels == 2 * 2 ** correlation.START_LEVEL
    rho = np.linspace(-1.0, 1.0, 101)
    c = rho
    det = np.maximum(1.0 - c * c, 0.0)
    np.testing.assert_allclose(table(np.full(101, 2.0), np.full(101, 0.5), c, det),
                               1.0 + c + 0.5 * c ** 3, rtol=0, atol=1e-14)


def _sphere(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, 3))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.skipif(not COMPILED, reason="no compiled CPU path")
@pytest.mark.parametrize("sur", [S.fast_sigmoid(2.0), S.atan(2.0)], ids=["fast_sigmoid", "atan"])
def test_compiled_reads_the_tables_as_the_array_path(sur):
    """Inputs of one norm: every layer's variances are one value, so the compiled loop
    reads every (pair, layer) from a table (routes asserted: no series, all tabled), and
    its kernels equal the array path's to rounding (the same expression on the same
    tables; 1e-15 of the largest value), symmetric and cross."""
    net = gk.MLP(3, gk.activations.sign(), sur, bias_std=0.2)
    x = _sphere(300, 1)
    sides = [(net.side("left", "surrogate"), net.side("right", "surrogate"))]
    q = np.stack(planner.prepare(net.arch, x, None).q1)
    series, corr, _ = cpu_fused.routes(net.arch.sigma, sides, q, q, net.arch.order)
    assert series is None and corr.tabled[0].all()
    assert planner.plan(net.arch, [net.pair("surrogate", "surrogate")]).executor == "compiled"
    for a, b in ((x, None), (x[:100], x[50:])):
        got = net.kernels(a, b, which=("nngp", "surrogate"))
        with ops.use_executor("array"):
            ref = net.kernels(a, b, which=("nngp", "surrogate"))
        for k in got:
            np.testing.assert_allclose(got[k], ref[k], rtol=0,
                                       atol=1e-15 * np.abs(ref[k]).max())


@pytest.mark.parametrize("sur", [S.fast_sigmoid(2.0), S.sigmoid(5.0)],
                         ids=["fast_sigmoid", "sigmoid(5)"])
def test_kernels_equal_the_routes_tables_replace(sur, monkeypatch):
    """Depth 3 sign networks (layers after the first tabled; on inputs of one norm every
    layer): the kernels with tables against the same kernels with every table refused (the
    reduced pair and the series, entry by entry) to 1e-11 of the largest value (each
    layer's pair to ~1e-12, through three layers of the recursion)."""
    net = gk.MLP(3, gk.activations.sign(), sur, bias_std=0.2)
    rng = np.random.default_rng(2)
    real, read = gaussian.correlation_table, []

    def spy(*args, **kwargs):
        table = real(*args, **kwargs)
        read.append(table is not None)
        return table

    for x in (_sphere(70, 3), rng.normal(size=(70, 3))):  # 4900 entries: tables are read
        monkeypatch.setattr(gaussian, "correlation_table", spy)
        got = net.kernels(x, which=("surrogate", "sgntk"))
        monkeypatch.setattr(gaussian, "correlation_table", lambda *a, **k: None)
        monkeypatch.setattr(cpu_fused, "table_rows", lambda *a, **k: None)
        with ops.use_executor("array"):
            ref = net.kernels(x, which=("surrogate", "sgntk"))
        monkeypatch.undo()
        for k in got:
            np.testing.assert_allclose(got[k], ref[k], rtol=0,
                                       atol=1e-11 * np.abs(ref[k]).max())
    assert any(read)
