"""Analytic kernels: limits, symmetries, exact edge cases, tiling and dtypes."""

import math
import warnings

import numpy as np
import pytest

import gpukern as gk

pytestmark = pytest.mark.usefixtures("executor")  # every test on every executor


def circle(n=8, radii=None):
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x = np.stack([np.cos(a), np.sin(a)], axis=1)
    return x if radii is None else x * np.asarray(radii, dtype=float)[:, None]


RADII = [1.0, 2.0, 0.5, 1.0, 1.5, 1.0, 0.7, 0.3]


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("sur", [gk.surrogates.erf(2.0), gk.surrogates.fast_sigmoid(5.0),
                                 gk.surrogates.boxcar(0.5)])
def test_sign_sgntk_is_the_large_m_limit(depth, sur):
    x = circle(6, RADII[:6])
    sign = gk.MLP(depth, gk.activations.sign(), sur, bias_std=0.1).sgntk(x)
    diffs = [np.abs(gk.MLP(depth, gk.activations.erf(m), sur, bias_std=0.1).sgntk(x) - sign).max()
             for m in (1e2, 1e3, 1e4, 1e5)]
    # On the diagonal s_t ~ 1/m, so a surrogate kinked at 0 (fast_sigmoid) converges like
    # 1/m and smooth ones like 1/m^2: each decade must gain at least 5x.
    for a, b in zip(diffs, diffs[1:]):
        assert b < a / 5, diffs
    assert diffs[-1] < 1e-3 * np.abs(sign).max()


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_naive_ntk_diagonal_grows_like_m_to_depth(depth):
    x = circle(3, [1.0, 2.0, 0.5])
    sur = gk.surrogates.erf(1.0)
    diag = {m: np.diag(gk.MLP(depth, gk.activations.erf(m), sur, bias_std=0.1).ntk(x))
            for m in (1e3, 1e4)}
    slope = np.log10(diag[1e4] / diag[1e3])
    np.testing.assert_allclose(slope, depth, atol=0.05)
    sg = [np.diag(gk.MLP(depth, gk.activations.erf(m), sur, bias_std=0.1).sgntk(x))
          for m in (1.0, 10.0, 1e2, 1e3, 1e4, 1e6)]
    sg_sign = np.diag(gk.MLP(depth, gk.activations.sign(), sur, bias_std=0.1).sgntk(x))
    assert np.all(np.isfinite(sg_sign))
    assert np.max(sg) < 2 * sg_sign.max()


def test_naive_sign_ntk_is_inf_on_coinciding_points_with_warning():
    x = circle(4, [1.0, 2.0, 0.5, 1.0])
    x = np.concatenate([x, x[:1]])
    net = gk.MLP(2, gk.activations.sign(), gk.surrogates.erf(1.0), bias_std=0.1)
    with pytest.warns(RuntimeWarning, match="diverges at coinciding inputs"):
        ntk = net.ntk(x)
    same = np.all(x[:, None, :] == x[None, :, :], axis=2)
    assert np.all(np.isinf(ntk[same]))
    assert np.all(np.isfinite(ntk[~same]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.all(np.isfinite(net.sgntk(x)))


ACTS = {
    "erf5": gk.activations.erf(5.0),
    "sign": gk.activations.sign(),
    "step": gk.activations.step(),
    "relu": gk.activations.relu(),
    "linear": gk.activations.linear(),
}


@pytest.mark.parametrize("name", list(ACTS))
def test_nngp_ntk_symmetric_psd(name):
    x = circle(8, RADII) + 0.05
    net = gk.MLP(2, ACTS[name], gk.surrogates.erf(2.0), bias_std=0.2)
    which = ("nngp", "surrogate") if ACTS[name].has_jump else ("nngp", "ntk", "surrogate")
    ks = net.kernels(x, which=which)
    y = circle(5, RADII[:5]) * 1.3
    cross = net.kernels(x, y, which=which)
    cross_t = net.kernels(y, x, which=which)
    for k in which:
        np.testing.assert_array_equal(ks[k], ks[k].T)
        np.testing.assert_allclose(cross[k], cross_t[k].T, rtol=1e-13)
        ev = np.linalg.eigvalsh(ks[k])
        assert ev.min() >= -1e-12 * ev.max(), (k, ev)


@pytest.mark.parametrize("name", ["erf5", "sign", "step", "relu"])
def test_sgntk_asymmetric_for_unequal_norms(name):
    x = circle(8, RADII)
    net = gk.MLP(2, ACTS[name], gk.surrogates.erf(2.0), bias_std=0.2)
    k = net.sgntk(x)
    assert np.abs(k - k.T).max() > 1e-3 * np.abs(k).max()
    np.testing.assert_allclose(net.sgntk(x, x[:3]), k[:, :3], rtol=1e-13)


@pytest.mark.parametrize("name", ["erf5", "sign", "step", "relu"])
def test_sgntk_exactly_symmetric_for_equal_norms(name):
    # dyadic coordinates: all squared norms are computed exactly, so q = q' bitwise
    base = np.array([0.5, -1.25, 0.75])
    x = np.array([base, base[[1, 2, 0]], -base, base[[2, 0, 1]] * [1, -1, 1], base * [-1, 1, 1]])
    net = gk.MLP(3, ACTS[name], gk.surrogates.fast_sigmoid(4.0), bias_std=0.2)
    k = net.sgntk(x)
    np.testing.assert_array_equal(k, k.T)


def test_diagonal_exact_and_duplicates():
    """Coinciding rows get det = 0 exactly: identical kernel values, no NaN, rho = 1."""
    x = circle(5, [1.0, 1e-3, 3.0, 1.0, 1.0])
    x = np.concatenate([x, x[[2, 1]]])
    for act in ACTS.values():
        net = gk.MLP(3, act, gk.surrogates.erf(1.0), bias_std=0.0)
        ks = net.kernels(x, which=("nngp", "sgntk", "surrogate"))
        for k in ks.values():
            assert not np.any(np.isnan(k))
            np.testing.assert_array_equal(k[5], k[2])
            np.testing.assert_array_equal(k[:, 6], k[:, 1])
    # the sign NNGP at coinciding inputs is exactly E[sign(u)^2] = 1 (rho = 1 exactly)
    k = gk.MLP(1, ACTS["sign"], bias_std=0.0).nngp(x)
    np.testing.assert_array_equal(np.diag(k), 1.0)


def test_zero_input_without_bias_is_exact():
    """x = 0, bias_std = 0: pre-activations are exactly 0, so sigma(0) is used (sign(0) = 0,
    H(0) = 1/2) and a delta's infinite factor meets a zero kernel (0 * inf = 0)."""
    x = np.array([[0.0, 0.0], [1.0, 0.5], [-2.0, 1.0]])
    sw = 1.5
    for depth in (1, 2, 3):
        for name, act in ACTS.items():
            net = gk.MLP(depth, act, gk.surrogates.erf(1.0), weight_std=sw, bias_std=0.0)
            ks = net.kernels(x, which=("nngp", "sgntk", "surrogate"))
            for k in ks.values():
                assert not np.any(np.isnan(k)), (name, depth)
            if name in ("erf5", "sign", "relu", "linear"):  # sigma(0) = 0: row 0 stays 0
                for k in ks.values():
                    np.testing.assert_array_equal(k[0], 0.0)
                    np.testing.assert_array_equal(k[:, 0], 0.0)
    # step, depth 1: Sigma_2(0, x') = sw^2 H(0) E[H(v)] = sw^2 / 4, also on the diagonal
    net = gk.MLP(1, ACTS["step"], gk.surrogates.erf(1.0), weight_std=sw, bias_std=0.0)
    np.testing.assert_allclose(net.nngp(x)[0], sw**2 / 4, rtol=1e-15)
    np.testing.assert_allclose(net.sgntk(x)[0], sw**2 / 4, rtol=1e-15)  # K_1(0, .) = 0


def test_large_m_stable():
    x = circle(6, RADII[:6])
    sur = gk.surrogates.erf(2.0)
    sign = gk.MLP(3, gk.activations.sign(), sur, bias_std=0.1).kernels(x, which=("nngp", "sgntk"))
    big = gk.MLP(3, gk.activations.erf(1e8), sur, bias_std=0.1).kernels(x, which=("nngp", "sgntk"))
    for k in ("nngp", "sgntk"):
        assert np.all(np.isfinite(big[k]))
        np.testing.assert_allclose(big[k], sign[k], rtol=1e-6)


@pytest.mark.parametrize("sur", [gk.surrogates.erf(2.0), gk.surrogates.sigmoid(2.0)])
def test_tiles_equal_one_block(sur, executor):
    if executor == "compiled":
        pytest.skip("the compiled executor does not tile: one call, its own row chunks")
    x = np.random.default_rng(0).normal(size=(23, 3))
    y = np.random.default_rng(1).normal(size=(17, 3))
    # (the sigmoid x sigmoid kernel is 2-D quadrature, slow: keep it to a smaller block)
    which = ("nngp", "ntk", "sgntk") + (("surrogate",) if sur.name == "erf(k=2)" else ())
    whole = gk.MLP(2, gk.activations.erf(3.0), sur, bias_std=0.1).kernels(x, y, which=which)
    tiled = gk.MLP(2, gk.activations.erf(3.0), sur, bias_std=0.1, tile=5).kernels(x, y, which=which)
    sym = ("nngp", "ntk")
    sym_whole = gk.MLP(2, gk.activations.erf(3.0), sur, bias_std=0.1).kernels(x, which=sym)
    sym_tiled = gk.MLP(2, gk.activations.erf(3.0), sur, bias_std=0.1, tile=4).kernels(x, which=sym)
    for k in which:
        np.testing.assert_allclose(tiled[k], whole[k], rtol=1e-14)
    for k in ("nngp", "ntk"):
        np.testing.assert_allclose(sym_tiled[k], sym_whole[k], rtol=1e-14)
        np.testing.assert_array_equal(sym_tiled[k], sym_tiled[k].T)


def test_x2_none_equals_explicit_x2(monkeypatch):
    """x2 equal to x1 (the same array, a copy or a list) takes the symmetric path: the
    same numbers as x2 = None, bit for bit, from inputs prepared once; a changed point
    takes the general path."""
    from gpukern import planner

    x = circle(7, RADII[:7])
    net = gk.MLP(2, gk.activations.relu(), gk.surrogates.triangle(0.5), bias_std=0.3)
    a = net.kernels(x, which=("nngp", "ntk", "sgntk"))
    seen = []
    prepare = planner.prepare
    monkeypatch.setattr(planner, "prepare",
                        lambda arch, x1, x2: seen.append(x2) or prepare(arch, x1, x2))
    for x2 in (x, x.copy(), x.tolist()):
        b = net.kernels(x, x2, which=("nngp", "ntk", "sgntk"))
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    assert seen == [None] * 3
    moved = x.copy()
    moved[3, 0] += 1e-12
    net.kernels(x, moved, which=("nngp",))
    assert seen[-1] is not None


def test_float32_on_request_and_default_float64():
    x = circle(6, RADII[:6])
    net = gk.MLP(2, gk.activations.erf(2.0), gk.surrogates.erf(1.0))
    k64 = net.sgntk(x)
    k32 = net.sgntk(x.astype(np.float32), dtype=np.float32)
    assert k64.dtype == np.float64 and k32.dtype == np.float32
    np.testing.assert_allclose(k32, k64, rtol=1e-6)
    assert net.nngp(x.astype(np.float32)).dtype == np.float64


def test_inputs_not_modified():
    x = circle(5, RADII[:5])
    x32 = x.astype(np.float32)
    before = x.copy(), x32.copy()
    gk.MLP(2, gk.activations.sign(), gk.surrogates.erf(1.0)).sgntk(x, x32)
    np.testing.assert_array_equal(x, before[0])
    np.testing.assert_array_equal(x32, before[1])


def test_quadrature_order_converged():
    x = circle(5, RADII[:5])
    for sur in (gk.surrogates.fast_sigmoid(50.0), gk.surrogates.sigmoid(20.0)):
        lo = gk.MLP(2, gk.activations.relu(), sur, bias_std=0.1).sgntk(x)
        hi = gk.MLP(2, gk.activations.relu(), sur, bias_std=0.1, quad_order=16).sgntk(x)
        np.testing.assert_allclose(lo, hi, rtol=1e-10)


def test_custom_activation_matches_builtin():
    """A custom erf activation (2-D quadrature path) equals the closed forms."""
    from scipy.special import erf as serf
    m = 2.0
    act = gk.activations.custom(lambda v: serf(m * v),
                                lambda v: 2 * m / math.sqrt(math.pi) * np.exp(-m * m * v * v),
                                width=1 / m)
    x = circle(4, [1.0, 2.0, 0.5, 1.0])
    sur = gk.surrogates.erf(1.0)
    ref = gk.MLP(2, gk.activations.erf(m), sur, bias_std=0.1).kernels(x, which=("nngp", "ntk", "sgntk"))
    got = gk.MLP(2, act, sur, bias_std=0.1).kernels(x, which=("nngp", "ntk", "sgntk"))
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-9)


def test_depth1_formula_by_hand():
    """Depth 1, sign, erf(k) surrogate: K_2 = Sigma_2 + sw^2 * E[2 delta(u) erf_k'(v)] Sigma_1."""
    x = np.array([[1.0, 0.0], [0.6, 1.2]])
    sw, sb, k = 1.2, 0.3, 2.0
    g = sw**2 * (x @ x.T) / 2 + sb**2
    q = np.diag(g)
    rho = g / np.sqrt(np.outer(q, q))
    sig2 = sw**2 * (2 / np.pi) * np.arcsin(np.clip(rho, -1, 1)) + sb**2
    s2 = q[None, :] - g**2 / q[:, None]
    s2[np.diag_indices(2)] = 0.0
    d = (4 * k / (np.pi * np.sqrt(2 * q[:, None]))) / np.sqrt(1 + 2 * k * k * s2)
    net = gk.MLP(1, gk.activations.sign(), gk.surrogates.erf(k), weight_std=sw, bias_std=sb)
    np.testing.assert_allclose(net.nngp(x), sig2, rtol=1e-13)
    np.testing.assert_allclose(net.sgntk(x), sig2 + sw**2 * d * g, rtol=1e-13)


def test_peak_memory_is_output_plus_tiles():
    """Tiling bounds the working set: peak traced memory <= outputs + O(tile^2) (NumPy
    reports its allocations to tracemalloc). Untiled, the per-layer temporaries alone
    would be ~30 N^2 floats."""
    import tracemalloc

    n, tile = 1500, 200
    x = np.random.default_rng(0).normal(size=(n, 4))
    net = gk.MLP(3, gk.activations.erf(2.0), gk.surrogates.erf(1.0), bias_std=0.1, tile=tile)
    tracemalloc.start()
    try:
        ks = net.kernels(x, which=("nngp", "ntk", "sgntk"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    outputs = sum(k.nbytes for k in ks.values())
    bound = outputs + 64 * 8 * tile * tile + 64 * 8 * n
    assert peak <= bound, (peak / 2**20, outputs / 2**20)
