"""Gaussian averages with a mean from 2-D tables, and pairs reduced to 1-D quadrature.

The table G(m, s) = E[g(m + s Z)] against direct graded quadrature at random (m, s) over
its whole range; every pair of built-in functions that has no closed form (activations x
surrogates x derivatives, both orders, sums at thresholds) against the independent 2-D
quadrature; the public API never runs 2-D quadrature.
"""

import math

import numpy as np
import pytest
from conftest import registry_examples
from hypothesis import given, settings
from hypothesis import strategies as st

import gpukern as gk
from gpukern import gaussian, registry, tables
from gpukern.functions import ErfStep, GaussianBump, Heaviside, Identity, ReLU, Sum, shifted
from gpukern.gaussian import expect_pair, has_closed_pair, quad_avg

S = gk.surrogates
TABLED = [S.sigmoid(1.0), S.fast_sigmoid(1.0), S.atan(1.0), S.custom(np.tanh, name="tanh")]


def _draw(seed: int, n: int, lam: tuple[float, float]):
    """Random (m, s): log s uniform in ``lam``, m/s = sinh(uniform(-7, 7)) (out to 550 sd)."""
    rng = np.random.default_rng(seed)
    s = np.exp(rng.uniform(*lam, n))
    return s * np.sinh(rng.uniform(-7, 7, n)), s


@pytest.mark.parametrize("g", TABLED, ids=lambda g: g.name)
@pytest.mark.parametrize("lam, tol", [((-8.0, 8.0), 1e-12), ((8.0, 12.0), 1e-11)],
                         ids=["s<e^8", "s>e^8"])
def test_table_against_direct_quadrature(g, lam, tol):
    """|table - quadrature| <= tol * P(s), P = 1/sqrt(1 + s^2) (G's peak scale; 1 for a
    function that does not decay), at 1500 random (m, s). Above s = e^8 widths the fill
    quadrature itself differs by ~2e-12 P between orders 12 and 20, hence 1e-11 there."""
    m, s = _draw(1, 1500, lam)
    got = tables.table_mean_avg(g, m, s * s)
    ref = quad_avg(g, s * s, tables.TABLE_ORDER, mean=m)
    peak = 1.0 / np.sqrt(1.0 + s * s) if g.name != "tanh" else 1.0
    err = np.abs(got - ref) / peak
    assert err.max() <= tol, (m[err.argmax()], s[err.argmax()], err.max())


@pytest.mark.parametrize("g", [S.sigmoid(3.0, 0.5), S.fast_sigmoid(50.0), S.atan(0.3, 2.0),
                               S.custom(np.tanh, width=2.0, scale=3.0)], ids=lambda g: g.name)
def test_one_table_serves_every_parameter(g):
    """g(v) = amp h(rate v) (the unit form), and the table of h read at rate * (m, s) is
    E[g(m + s Z)] by direct quadrature of g itself; a value does not depend on its batch;
    s = 0 is g(m); outside the table's range the fallback is the quadrature itself."""
    unit, amp, rate = tables.unit_form(g)
    v = np.linspace(-4, 4, 101)
    np.testing.assert_allclose(amp * unit(rate * v), g(v), rtol=1e-15)
    m, s = _draw(2, 600, (-8.0, 8.0))
    m, s = m / rate, s / rate
    got = tables.table_mean_avg(g, m, s * s)
    ref = quad_avg(g, s * s, tables.TABLE_ORDER, mean=m)
    peak = abs(amp) / np.sqrt(1.0 + (rate * s) ** 2) if unit.positive else abs(amp)
    assert np.max(np.abs(got - ref) / peak) <= 1e-12
    np.testing.assert_array_equal(tables.table_mean_avg(g, m[::7], (s * s)[::7]), got[::7])
    np.testing.assert_allclose(tables.table_mean_avg(g, m[:5], 0.0 * m[:5]), g(m[:5]), rtol=1e-15)
    far = np.array([1e-6, 1e7]) / rate  # below e^-8 and above e^12 widths
    np.testing.assert_array_equal(tables.table_mean_avg(g, far, far * far),
                                  amp * quad_avg(unit, (rate * far) ** 2, tables.TABLE_ORDER,
                                                 mean=rate * far))


def test_compiled_evaluation_equals_array_expressions(executor):
    """The compiled CPU path (cuda/gpukern/tables.cuh's cheb2d) and the array expressions
    read the same cells to within rounding (1e-14 of P)."""
    g = S.fast_sigmoid(2.0)
    m, s = _draw(4, 3000, (-6.0, 10.0))
    with gk.kernels.ops.use_executor("array"):
        ref = tables.table_mean_avg(g, m, s * s)
    got = tables.table_mean_avg(g, m, s * s)
    peak = 2.0 / np.sqrt(1.0 + (2.0 * s) ** 2)
    assert np.max(np.abs(got - ref) / peak) <= 1e-14


def test_table_bad_input():
    g = S.sigmoid(2.0)
    out = tables.table_mean_avg(g, np.array([np.nan, 0.0, np.inf, 1.0]),
                                np.array([1.0, np.inf, 1.0, 1.0]))
    assert np.isnan(out[:3]).all() and np.isfinite(out[3])
    with pytest.raises(ValueError, match="no table"):
        tables.table_mean_avg(S.custom(np.abs, kinks=(1.0,)), np.zeros(1), np.ones(1))
    with pytest.raises(ValueError, match="no table"):
        tables.table_mean_avg(S.boxcar(1.0), np.zeros(1), np.ones(1))


def test_table_memory_is_bounded():
    """However far (m, s) reach, a table holds at most its lattice's cells; however many
    custom functions are made, at most MAX_MEAN_TABLES tables are kept."""
    g = S.atan(1.0)
    m, s = _draw(3, 200, (-40.0, 40.0))
    tables.table_mean_avg(g, m * 1e30, s * s)
    table = tables._mean_table(tables.unit_form(g)[0])
    assert table.coef.shape[0] == table.n_lam * table.n_zeta
    assert table.filled.sum() <= table.coef.shape[0]
    for k in range(tables.MAX_MEAN_TABLES + 3):
        fn = S.custom(lambda v, k=k: np.exp(-(v * v) * (1 + k)))
        tables.table_mean_avg(fn, np.array([0.3]), np.array([0.5]))
    kept = [key for key in tables._TABLES if key[0] == "with-mean"]
    assert len(kept) == tables.MAX_MEAN_TABLES
    for k in range(tables.MAX_ZERO_MEAN_TABLES + 3):
        fn = S.custom(lambda v, k=k: np.exp(-(v * v) * (1 + k)))
        tables.table_avg(fn, np.array([0.5]))
    kept = [key for key in tables._TABLES if key[0] == "zero-mean"]
    assert len(kept) == tables.MAX_ZERO_MEAN_TABLES


@pytest.mark.parametrize("kind", [k for k in registry.Kind if registry.mean_table(k)],
                         ids=lambda k: k.name)
def test_mean_table_kinds_have_a_unit_form(kind):
    """The registry's ``mean_table`` kinds: every example is amp * h(rate * v) for the
    kind's unit h (what lets one table serve every parameter), and has no closed average
    with a mean to use instead."""
    v = np.linspace(-5.0, 5.0, 201)
    for fn in (f for f in registry_examples() if f.kind is kind):
        assert not registry.mean_avg(kind)
        unit, amp, rate = tables.unit_form(fn)
        np.testing.assert_allclose(amp * unit(rate * v), fn(v), rtol=1e-14)


# ------------------------------------------------------------------ pairs reduced to 1-D
ACTIVATIONS = [ErfStep(0.0), ErfStep(0.0, 0.5, 0.5), ErfStep(1 / 4), ReLU(), Identity(),
               S.custom(np.tanh, name="tanh"),
               S.custom(lambda v: np.maximum(v - 0.5, 0.0), kinks=(0.5,), name="relu_at_half"),
               Sum((ErfStep(0.0, -0.5, 0.5), shifted(ErfStep(0.0, 0.0, 0.5), 1.0)))]
SURROGATES = [S.sigmoid(5.0), S.fast_sigmoid(5.0), S.atan(2.0), S.erf(2.0), S.boxcar(0.5),
              S.triangle(0.7), S.custom(lambda v: np.exp(-v * v), width=0.7, name="gauss")]
DERIVATIVES = [GaussianBump(0.0, 2.0), Heaviside(), shifted(GaussianBump(0.0), 1.0)]
FUNCTIONS = ACTIVATIONS + SURROGATES + DERIVATIVES + [shifted(S.sigmoid(3.0), 1.0),
                                                     shifted(S.atan(1.0, 0.5), -0.5)]
OPEN_PAIRS = [(f, g) for f in FUNCTIONS for g in FUNCTIONS if not has_closed_pair(f, g)]


def _name(fn) -> str:
    return getattr(fn, "name", type(fn).__name__) + ("@" if fn.shifted else "")


def _grid(q, qp, rho):
    c = rho * np.sqrt(q * qp)
    det = np.maximum(q * qp - c * c, 0.0)
    return q, qp, c, det


@st.composite
def covariances(draw):
    """(q, q', rho) as the hypothesis tests of the kernels draw them, plus rho = 0,
    nearly coinciding and nearly antipodal inputs and x = 0 (q = 0, c = 0)."""
    n = 2
    q = np.array(draw(st.lists(st.floats(0.05, 3.0), min_size=n, max_size=n)))
    qp = np.array(draw(st.lists(st.floats(0.05, 3.0), min_size=n, max_size=n)))
    rho = np.array(draw(st.lists(st.floats(-0.98, 0.98), min_size=n, max_size=n)))
    q = np.append(q, [1.3, 0.7, 2.0, 0.0])
    qp = np.append(qp, [0.4, 1.1, 2.0, 1.5])
    rho = np.append(rho, [0.0, 1 - 1e-9, -(1 - 1e-7), 0.0])
    return _grid(q, qp, rho)


def _scale(f, g, q, qp):
    """sqrt(E f(u)^2 E g(v)^2) (Cauchy–Schwarz: a bound on |E f g|): the pair's scale
    where the pair itself is ~0 (an odd function against an even one); 1 for deltas."""
    def mean_sq(fn, var):
        if fn.is_delta or isinstance(fn, GaussianBump):
            return np.ones_like(var)
        sq = S.custom(lambda v: fn(v) ** 2, width=0.2, kinks=(0.0,))
        return quad_avg(sq, var)
    return np.sqrt(mean_sq(f, q) * mean_sq(g, qp))


@pytest.mark.parametrize("f, g", OPEN_PAIRS,
                         ids=[f"{_name(f)}x{_name(g)}" for f, g in OPEN_PAIRS])
@settings(max_examples=1, deadline=None)
@given(cov=covariances())
def test_reduced_pairs_against_2d_quadrature(f, g, cov):
    """E[f(u) g(v)] (tables and 1-D rules) within 1e-9 of the independent nested 2-D
    quadrature (for a delta: its tilt with the other side averaged by direct quadrature),
    relative to max(|E f g|, 1e-3 sqrt(E f^2 E g^2))."""
    q, qp, c, det = cov
    got = expect_pair(f, g, q, qp, c, det)
    ref = expect_pair(f, g, q, qp, c, det, method="quadrature")
    scale = np.maximum(np.maximum(np.abs(ref), 1e-3 * _scale(f, g, q, qp)), 1e-300)
    fin = np.isfinite(ref)
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))
    err = np.abs(got[fin] - ref[fin]) / scale[fin]
    assert err.max() <= 1e-9, (err.max(), np.argmax(err))


def test_public_api_never_runs_2d_quadrature(monkeypatch):
    """Kernels of surrogate x surrogate, custom activations and quantizers with quadrature
    surrogates go through 1-D rules only (2-D quadrature is the tests' reference)."""
    def forbidden(*args, **kwargs):
        raise AssertionError("2-D quadrature in a public kernel")

    monkeypatch.setattr(gaussian, "quad_pair", forbidden)
    x = np.random.default_rng(0).normal(size=(5, 3))
    nets = [gk.MLP(2, gk.activations.sign(), S.sigmoid(4.0), bias_std=0.1),
            gk.MLP(2, gk.activations.custom(np.tanh, lambda v: 1 - np.tanh(v) ** 2),
                   S.atan(2.0), bias_std=0.1),
            gk.MLP(2, gk.activations.uniform_quantizer(2), S.fast_sigmoid(3.0))]
    for net in nets:
        with gk.kernels.ops.use_executor("array"):
            k = net.kernels(x, which=("nngp", "sgntk", "surrogate"))
        assert all(np.isfinite(v).all() for v in k.values())


def test_reduced_pair_is_symmetric_in_its_arguments():
    """E[f(u) g(v)] = E[g(v) f(u)] whichever side goes inside: two different 1-D rules
    (measured ~1e-12 from 2-D quadrature each; the pair test bounds them by 1e-9), so they
    agree to 1e-10."""
    q, qp, c, det = _grid(np.array([0.7, 1.9]), np.array([1.4, 0.3]), np.array([0.6, -0.95]))
    for f, g in [(S.sigmoid(3.0), S.atan(1.0)), (S.custom(np.tanh), ErfStep(0.0))]:
        a = gaussian.reduced_pair(f, g, q, qp, c, det)
        b = gaussian.reduced_pair(g, f, qp, q, c, det)
        np.testing.assert_allclose(a, b, rtol=1e-10)
    assert math.isfinite(float(a.sum()))


@pytest.mark.skipif("compiled" not in gk.kernels.ops.available_executors(),
                    reason="no compiled CPU path")
@pytest.mark.parametrize("f, g", [(S.sigmoid(3.0), S.sigmoid(3.0)),
                                  (S.fast_sigmoid(2.0), S.atan(0.7)),
                                  (Sum((shifted(S.sigmoid(2.0, 0.5), -0.5),
                                        shifted(S.sigmoid(2.0, 0.5), 0.5))), S.atan(2.0, 0.5)),
                                  (shifted(S.sigmoid(1.5, 0.5), 1.0), S.fast_sigmoid(4.0)),
                                  (S.atan(1.0), S.custom(np.tanh, name="tanh"))],
                         ids=["sigmoid", "fast_sigmoid-atan", "quantizer-atan", "step@1-fast_sigmoid",
                              "atan-tanh"])
def test_compiled_outer_rule_equals_the_array_path(f, g, monkeypatch):
    """The compiled reduced pair (gk_cpu_reduced_pair) is the array path's rule entry by
    entry: the same panels and nodes, rounded and summed in another order (<= 1e-13 of
    sqrt(E f^2 E g^2)), on 600 covariances from tiny to large, nearly coinciding and antipodal
    inputs. A fresh table leaves cells unfilled (those entries come back NaN, the array
    rule fills their cells, and the compiled rule takes them again): the warm second call
    gives the same numbers bit for bit, and only entries with a node off the table's
    lattice (sigma = 0, log sigma outside [-8, 12) or |zeta| >= 64 somewhere within 10 sd)
    are left to the array rule."""
    for key in [k for k in tables._TABLES if k[0] == "with-mean"]:
        del tables._TABLES[key]  # a fresh table: cells are filled during this test
    rng = np.random.default_rng(3)
    q, qp = np.exp(rng.uniform(-4, 4, 600)), np.exp(rng.uniform(-4, 4, 600))
    rho = np.concatenate([rng.uniform(-1, 1, 580), 1 - np.logspace(-16, -2, 10),
                          -1 + np.logspace(-16, -2, 10)])
    q, qp, c, det = _grid(q, qp, rho)
    with gk.kernels.ops.use_executor("compiled"):
        got = gaussian.reduced_pair(f, g, q, qp, c, det)  # cold: cells filled on the way
    assert tables.cell_count() > 0
    with gk.kernels.ops.use_executor("array"):
        ref = gaussian.reduced_pair(f, g, q, qp, c, det)
    # ~400 summands E|f g| <= sqrt(E f^2 E g^2) in total, each rounded differently in the
    # two codes (FMA, order): their sums differ by up to ~10^3 eps of that scale
    assert np.max(np.abs(got - ref) / _scale(f, g, q, qp)) <= 1e-13
    seen = []
    real = gk.kernels.ops.reduced_pair

    def spy(fn, qq, slope, s2, *args):
        out = real(fn, qq, slope, s2, *args)
        seen.append((qq, slope, s2, args[-2], out))  # args[-2]: the table's rate
        return out

    monkeypatch.setattr(gk.kernels.ops, "reduced_pair", spy)
    with gk.kernels.ops.use_executor("compiled"):
        again = gaussian.reduced_pair(f, g, q, qp, c, det)
    np.testing.assert_array_equal(again, got)
    qq, slope, s2, rate, out = seen[0]  # all entries (a second call retries the NaN ones)
    sigma = rate * np.sqrt(s2)
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.log(sigma)
        zeta = tables.Z0 * np.arcsinh(rate * np.abs(slope) * 10 * np.sqrt(qq) / (tables.Z0 * sigma))
    off = ~((sigma > 0) & (lam >= tables.LAMBDA_RANGE[0]) & (lam < tables.LAMBDA_RANGE[1])
            & (zeta < tables.ZETA_MAX))
    assert np.all(off[np.isnan(out)]), "a warm table left in-lattice entries to the array path"
    assert np.isnan(out).sum() < 0.1 * out.size
