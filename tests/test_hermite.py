"""Pairs of analytic functions by Mehler's series (gpukern/hermite.py).

Against the independent nested 2-D quadrature; the coefficients of polynomials exactly;
the truncation within its Cauchy–Schwarz bound; the points it cannot serve left to the
reduced pair; values independent of the batch; compiled = array path.
"""

import math

import numpy as np
import pytest
from conftest import registry_examples

import gpukern as gk
from gpukern import gaussian, hermite, registry, tables
from gpukern.functions import shifted
from gpukern.gaussian import quad_avg

S = gk.surrogates
TANH = gk.activations.custom(np.tanh, lambda v: 1.0 / np.cosh(v) ** 2, name="tanh")
PAIRS = [(S.sigmoid(3.0), S.sigmoid(3.0)), (S.atan(1.0), S.atan(1.0)),
         (S.sigmoid(2.0), S.atan(1.0, 0.5)), (TANH.function, TANH.function),
         (TANH.derivative, TANH.derivative), (shifted(S.sigmoid(3.0), 0.7), S.sigmoid(2.0)),
         (S.custom(lambda v: np.exp(-v * v), width=0.7, name="gauss"), S.sigmoid(1.0))]
IDS = ["sigmoid", "atan", "sigmoid-atan", "tanh", "tanh'", "sigmoid@0.7-sigmoid", "gauss-sigmoid"]


def _covariances(seed: int, n: int = 100):
    """q, q' log-uniform in [0.05, 5], rho uniform, nearly +-1 (to 1e-15) and 0."""
    rng = np.random.default_rng(seed)
    q, qp = np.exp(rng.uniform(math.log(0.05), math.log(5.0), (2, n)))
    rho = np.concatenate([rng.uniform(-1, 1, n - 22), 1 - 10.0 ** -rng.uniform(1, 15, 10),
                          -1 + 10.0 ** -rng.uniform(1, 15, 10), [0.0, 1.0]])
    c = rho * np.sqrt(q * qp)
    return q, qp, c, np.maximum(q * qp - c * c, 0.0)


def _mean_sq(fn, var):
    return quad_avg(S.custom(lambda v: fn(v) ** 2, width=0.2), var, order=16)


@pytest.mark.parametrize("f, g", PAIRS, ids=IDS)
def test_series_against_2d_quadrature(f, g):
    """|series - 2-D quadrature| <= 1e-11 sqrt(E f^2 E g^2): the truncation bound 1e-12,
    the coefficients' rule (checked to 1e-13 per coefficient) and the reference's own
    error (order 16 panels, ~1e-13). Most entries must be served."""
    q, qp, c, det = _covariances(1)
    got = hermite.mehler_pair(f, g, q, qp, c)
    served = ~np.isnan(got)
    assert served.mean() > 0.5
    ref = gaussian.quad_pair(f, g, q[served], qp[served], c[served], det[served], order=16)
    scale = np.sqrt(_mean_sq(f, q[served]) * _mean_sq(g, qp[served]))
    err = np.abs(got[served] - ref) / scale
    assert err.max() <= 1e-11, (err.max(), q[served][err.argmax()], qp[served][err.argmax()])


def test_coefficients_of_polynomials_are_exact():
    """f(v) = v: a_1 = sqrt(q), all others 0; f(v) = v^2 = q (X^2 - 1) + q: a_0 = q,
    a_2 = sqrt(2) q; E[u^2 v^2] = q q' (1 + 2 rho^2) (Isserlis)."""
    q = np.array([0.3, 1.0, 4.0])
    a, n = hermite.coefficients(S.custom(lambda v: v, name="v"), q)
    want = np.zeros_like(a)
    want[:, 1] = np.sqrt(q)
    np.testing.assert_allclose(a, want, rtol=0, atol=1e-14 * 2)
    assert list(n) == [1, 1, 1]
    sq = S.custom(lambda v: v * v, name="v^2")
    a, n = hermite.coefficients(sq, q)
    want = np.zeros_like(a)
    want[:, 0], want[:, 2] = q, math.sqrt(2.0) * q
    np.testing.assert_allclose(a, want, rtol=0, atol=1e-14 * 16)
    assert list(n) == [2, 2, 2]
    qp, rho = np.array([2.0, 0.5, 1.0]), np.array([0.3, -0.9, 1.0])
    got = hermite.mehler_pair(sq, sq, q, qp, rho * np.sqrt(q * qp))
    np.testing.assert_allclose(got, q * qp * (1 + 2 * rho**2), rtol=1e-14)


@pytest.mark.parametrize("f, g", PAIRS[:3], ids=IDS[:3])
def test_truncation_within_its_bound(f, g):
    """The series cut at N = max(N_f, N_g) differs from the series to MAX_TERMS by at most
    TAIL_TOL sqrt(E f^2 E g^2) (Cauchy–Schwarz on the Parseval tails)."""
    q, qp, c, _ = _covariances(2, 120)
    everything = np.full(q.size, hermite.MAX_TERMS)
    a, na = hermite.coefficients(f, q, everything)
    b, nb = hermite.coefficients(g, qp, everything)
    ok = (na >= 0) & (nb >= 0)
    assert ok.mean() > 0.5
    rho = np.clip(c / np.sqrt(q * qp), -1, 1)[ok]
    idx = np.arange(int(ok.sum()))
    cut = gk.kernels.ops.mehler_series(a[ok], b[ok], idx, idx, np.maximum(na, nb)[ok], rho)
    full = gk.kernels.ops.mehler_series(a[ok], b[ok], idx, idx,
                                        np.full(idx.size, hermite.MAX_TERMS), rho)
    bound = hermite.TAIL_TOL * np.sqrt(_mean_sq(f, q[ok]) * _mean_sq(g, qp[ok]))
    assert np.all(np.abs(cut - full) <= bound * 1.01 + 1e-15)


def test_points_it_cannot_serve_take_the_reduced_pair():
    """Kinks (fast_sigmoid, a custom function with kinks) are not expanded at all; a
    function narrow against sqrt(q) (atan at q = 50: too many terms) is not served at that
    q, and its entries still come out within 1e-9 of 2-D quadrature through the reduced
    pair."""
    assert not hermite.serves(S.fast_sigmoid(2.0))
    assert not hermite.serves(S.custom(np.abs, kinks=(0.0,)))
    assert hermite.serves(S.sigmoid(1.0)) and hermite.serves(shifted(S.atan(1.0), 0.5))
    f = S.atan(2.0)
    _, n = hermite.coefficients(f, np.array([0.5, 50.0]))
    assert n[0] >= 0 and n[1] == -1
    q, qp = np.array([50.0, 0.5]), np.array([0.5, 0.5])
    c = np.array([0.3, 0.2]) * np.sqrt(q * qp)
    det = q * qp - c * c
    assert np.isnan(hermite.mehler_pair(f, f, q, qp, c)[0])
    got = gaussian.series_or_reduced(f, f, q, qp, c, det)
    ref = gaussian.quad_pair(f, f, q, qp, c, det, order=16)
    np.testing.assert_allclose(got, ref, rtol=1e-9)


def test_a_value_does_not_depend_on_its_batch():
    """Coefficients are computed point by point in fixed blocks of terms: an entry computed
    with others (other distinct q, other series lengths) equals the same entry alone, bit
    for bit, and so does a batch computed on kept rows that it extends."""
    q, qp, c, _ = _covariances(3, 200)
    for f, g in PAIRS[2:4]:
        hermite.clear_cache()
        full = hermite.mehler_pair(f, g, q, qp, c)
        for k in (0, 57, 199):
            hermite.clear_cache()  # recomputed, not read back
            alone = hermite.mehler_pair(f, g, q[k:k + 1], qp[k:k + 1], c[k:k + 1])
            assert np.array_equal(alone, full[k:k + 1], equal_nan=True)
        hermite.clear_cache()
        for k in (0, 57, 199):  # rows kept at these entries' lengths ...
            hermite.mehler_pair(f, g, q[k:k + 1], qp[k:k + 1], c[k:k + 1])
        # ... and extended by the whole batch
        assert np.array_equal(hermite.mehler_pair(f, g, q, qp, c), full, equal_nan=True)


@pytest.mark.skipif("compiled" not in gk.kernels.ops.available_executors(),
                    reason="no compiled CPU path")
def test_compiled_equals_array_path():
    """The compiled coefficient loop and series (gk_cpu_hermite_coefficients,
    gk_cpu_mehler_series) against NumPy: the series is the same Horner recurrence (equal
    bits given equal coefficients); the coefficients sum 1665 nodes in another order
    (<= 1e-14 of sqrt(E f^2))."""
    f = S.sigmoid(3.0)
    q, qp, c, _ = _covariances(4, 100)
    hermite.clear_cache()
    with gk.kernels.ops.use_executor("compiled"):
        a1, n1 = hermite.coefficients(f, q)
        got = hermite.mehler_pair(f, f, q, qp, c)
    with gk.kernels.ops.use_executor("array"):
        a2, n2 = hermite.coefficients(f, q)
        ref = hermite.mehler_pair(f, f, q, qp, c)
        rho = np.clip(c / np.sqrt(q * qp), -1, 1)
        idx = np.arange(q.size)
        terms = np.full(q.size, 300)
        series_np = gk.kernels.ops.mehler_series(a1, a1, idx, idx, terms, rho)
    assert np.max(np.abs(a1 - a2), axis=1).max() <= 1e-14 * np.sqrt(_mean_sq(f, q)).max()
    assert np.abs(n1 - n2).max() <= 1
    with gk.kernels.ops.use_executor("compiled"):
        series_c = gk.kernels.ops.mehler_series(a1, a1, idx, idx, terms, rho)
    assert np.array_equal(series_c, series_np)
    both = ~np.isnan(got) & ~np.isnan(ref)
    np.testing.assert_allclose(got[both], ref[both], rtol=0, atol=1e-13)


@pytest.mark.parametrize("kind", [k for k in registry.Kind if registry.analytic(k)],
                         ids=lambda k: k.name)
def test_every_analytic_kind_is_served(kind):
    """The registry capability is a promise: each example of an ``analytic`` kind has a
    converging series at a q where it is not narrow (q = 0.1 / rate^2: ~10^2 terms), and
    that series is E[f(u) f(v)] by 2-D quadrature to 1e-11 of E f^2."""
    examples = [fn for fn in registry_examples() if fn.kind is kind]
    assert examples
    for fn in examples:
        rate = tables.unit_form(fn)[2]
        q = np.array([0.1 / rate**2])
        _, n = hermite.coefficients(fn, q)
        assert 0 <= n[0] < 1000, (fn, n)
        c, qp = 0.6 * q, q
        got = hermite.mehler_pair(fn, fn, q, qp, c)
        ref = gaussian.quad_pair(fn, fn, q, qp, c, q * qp - c * c, order=16)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-11 * _mean_sq(fn, q)[0])


def test_many_distinct_points_are_expanded_in_groups(monkeypatch):
    """Beyond _GROUP distinct q or q' the entries go in blocks of that many (bounded
    memory): the same numbers, bit for bit, as one group."""
    q, qp, c, _ = _covariances(5, 120)
    f, g = PAIRS[2]
    hermite.clear_cache()
    whole = hermite.mehler_pair(f, g, q, qp, c)
    monkeypatch.setattr(hermite, "_GROUP", 7)
    hermite.clear_cache()
    assert np.array_equal(hermite.mehler_pair(f, g, q, qp, c), whole, equal_nan=True)
    diag = hermite.mehler_pair(f, f, q, q, q)  # a diagonal: q = q', rho = 1
    monkeypatch.setattr(hermite, "_GROUP", 1024)
    hermite.clear_cache()
    assert np.array_equal(hermite.mehler_pair(f, f, q, q, q), diag, equal_nan=True)


@pytest.mark.skipif("compiled" not in gk.kernels.ops.available_executors(),
                    reason="no compiled CPU path")
def test_compiled_recursion_sums_the_series():
    """The compiled fused recursion takes series pairs (sigmoid and atan surrogates facing
    each other, also at a threshold) when every point is served: the same kernels as the
    array path to ~1e-14 (only the coefficients round differently: the compiled loop sums
    the nodes in another order), symmetric and cross; a pair with a point that is not
    served (atan at a large q) goes to the array path whole."""
    from gpukern import planner
    from gpukern.kernels import cpu_fused

    rng = np.random.default_rng(6)
    x = rng.normal(size=(40, 3))
    sign, at_03 = gk.activations.sign(), gk.activations.sign(threshold=0.3)
    for act, sur, served in ((sign, S.sigmoid(2.0), True), (sign, S.atan(1.0, 0.5), True),
                             (at_03, S.sigmoid(2.0), True), (sign, S.atan(3.0), False)):
        net = gk.MLP(3, act, sur, bias_std=0.2)
        sides = [(net.side("left", "surrogate"), net.side("right", "surrogate"))]
        assert cpu_fused.series_pair(*sides[0])
        assert sides[0][0].shifted == (act is at_03)
        assert planner.plan(net.arch, [net.pair("surrogate", "surrogate")]).executor == "compiled"
        q = np.stack([q for q in planner.prepare(net.arch, x, None).q1])
        assert (cpu_fused.series_rows(net.arch.sigma, sides, q, q) is not None) == served
        for a, b in ((x, None), (x[:15], x[10:])):
            got = net.kernels(a, b, which=("nngp", "surrogate", "sgntk"))
            with gk.kernels.ops.use_executor("array"):
                ref = net.kernels(a, b, which=("nngp", "surrogate", "sgntk"))
            for k in got:
                np.testing.assert_allclose(got[k], ref[k], rtol=0,
                                           atol=1e-13 * np.abs(ref[k]).max())
    assert not cpu_fused.series_pair(S.fast_sigmoid(2.0), S.fast_sigmoid(2.0))
    assert not cpu_fused.series_pair(S.sigmoid(2.0), gk.functions.GaussianBump(0.5))


@pytest.mark.skipif("compiled" not in gk.kernels.ops.available_executors(),
                    reason="no compiled CPU path")
def test_compiled_series_over_chunks_and_groups():
    """More points than a chunk of the compiled loop (256 columns), inputs of very
    different norms (first-layer series of 10 to ~600 terms: the loop visits the points
    sorted by q and sums 32 columns at a time, each group from its own longest series;
    deeper layers of a sign network have one q, so one coefficient row for all columns):
    the kernels equal the array path's to 1e-13 (symmetric, and a cross block whose rows
    and columns straddle chunks), and the symmetric one is exactly symmetric."""
    from gpukern import planner
    from gpukern.kernels import cpu_fused

    rng = np.random.default_rng(11)
    x = rng.normal(size=(300, 3)) * rng.uniform(0.2, 2.5, size=(300, 1))
    net = gk.MLP(3, gk.activations.sign(), S.sigmoid(2.0), bias_std=0.2)
    q = np.stack(planner.prepare(net.arch, x, None).q1)
    sides = [(net.side("left", "surrogate"), net.side("right", "surrogate"))]
    rows = cpu_fused.series_rows(net.arch.sigma, sides, q, q)  # all served: the compiled loop
    assert rows is not None and rows.len1[0, 0].min() < 20 and rows.len1[0, 0].max() > 500
    assert rows.uniform2[0].tolist() == [0, 1, 1]  # sign: one q at layers 2, 3 (one row)
    for a, b in ((x, None), (x[:70], x[40:])):
        got = net.kernel(a, b, left="surrogate", right="surrogate")
        with gk.kernels.ops.use_executor("array"):
            ref = net.kernel(a, b, left="surrogate", right="surrogate")
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-13 * np.abs(ref).max())
        if b is None:
            assert np.array_equal(got, got.T)


@pytest.mark.skipif("compiled" not in gk.kernels.ops.available_executors(),
                    reason="no compiled CPU path")
def test_compiled_recursion_takes_series_activations():
    """A custom activation without kinks has no descriptor: the compiled loop propagates
    its NNGP by the series of sigma's own pair and sums its NTK's derivative pair by the
    series too. A custom erf(2v) (with its derivative) gives the closed-form erf(m=2)
    kernels to 1e-11 (the series' truncation bound is 1e-12 per layer). Custom tanh
    against the array path: the two executors' coefficients agree to 1e-14 sqrt(E f^2)
    each (test_compiled_equals_array_path), so by Cauchy-Schwarz an entry of N terms
    moves by <= 2e-14 sqrt(N) E f^2 per layer (most at rho = 1, the diagonal). Both run
    on the compiled executor, every point served (no array fallback)."""
    from scipy.special import erf as serf

    from gpukern import planner
    from gpukern.kernels import cpu_fused

    rng = np.random.default_rng(12)
    x = rng.normal(size=(300, 3)) * rng.uniform(0.2, 2.0, size=(300, 1))
    erf2 = gk.activations.custom(lambda v: serf(2.0 * v),
                                 lambda v: 4.0 / np.sqrt(np.pi) * np.exp(-4.0 * v * v),
                                 width=0.5)
    tanh = gk.activations.custom(np.tanh, lambda v: 1.0 - np.tanh(v) ** 2)
    which = ("nngp", "ntk")
    for act, closed in ((erf2, gk.activations.erf(2.0)), (tanh, None)):
        net = gk.MLP(3, act, bias_std=0.2)
        pairs = [net.pair("true", "true")]
        assert planner.plan(net.arch, pairs).executor == "compiled"
        q = np.stack(planner.prepare(net.arch, x, None).q1)
        rows = cpu_fused.series_rows(net.arch.sigma, [(p.left, p.right) for p in pairs], q, q)
        assert rows is not None and rows.on.tolist() == [1, 1]  # the NTK pair, sigma's pair
        for a, b in ((x, None), (x[:70], x[40:])):
            got = net.kernels(a, b, which=which)
            if closed is None:
                with gk.kernels.ops.use_executor("array"):
                    ref = net.kernels(a, b, which=which)
                tol = 2e-14 * np.sqrt(rows.width2.max()) * net.arch.depth
            else:
                ref, tol = gk.MLP(3, closed, bias_std=0.2).kernels(a, b, which=which), 1e-11
            for k in which:
                np.testing.assert_allclose(got[k], ref[k], rtol=0,
                                           atol=tol * np.abs(ref[k]).max())


@pytest.mark.skipif("compiled" not in gk.kernels.ops.available_executors(),
                    reason="no compiled CPU path")
def test_series_rows_over_budget_go_tile_by_tile(monkeypatch):
    """A request whose coefficient rows exceed SERIES_BUDGET is computed tile by tile on
    the compiled loop (each tile's rows within budget), not sent to the array path: the
    same kernels as in one call, bit for bit (each entry depends on its two points only,
    and its value not on which of them is the row: the symmetric matrix is mirrored by
    tiles here, by the loop's visiting order in one call)."""
    from gpukern import analytic, planner
    from gpukern.kernels import cpu_fused

    rng = np.random.default_rng(13)
    x = rng.normal(size=(300, 3)) * rng.uniform(0.2, 2.5, size=(300, 1))
    net = gk.MLP(3, gk.activations.sign(), S.sigmoid(2.0), bias_std=0.2)
    whole = {"sym": net.kernel(x, left="surrogate", right="surrogate"),
             "cross": net.kernel(x[:200], x[50:], left="surrogate", right="surrogate")}
    calls = []
    recursion = cpu_fused.recursion
    monkeypatch.setattr(cpu_fused, "recursion", lambda *a, **k: calls.append(1) or
                        recursion(*a, **k))
    monkeypatch.setattr(analytic, "tile", None)  # the array path would fail
    q = np.stack(planner.prepare(net.arch, x, None).q1)
    sides = [(net.side("left", "surrogate"), net.side("right", "surrogate"))]
    assert cpu_fused.series_rows(net.arch.sigma, sides, q, q).coef.size > 2_000_000
    monkeypatch.setattr(cpu_fused, "SERIES_BUDGET", 1_200_000)  # a 128 x 128 tile: <= 1e6
    monkeypatch.setattr(planner, "DEFAULT_TILE", 128)
    tiled = {"sym": net.kernel(x, left="surrogate", right="surrogate"),
             "cross": net.kernel(x[:200], x[50:], left="surrogate", right="surrogate")}
    assert len(calls) == 6 + 4  # upper tiles of 3 x 3, then 2 x 2
    for k in whole:
        assert np.array_equal(tiled[k], whole[k])
