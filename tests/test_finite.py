"""Finite-width networks: Jacobians, quasi-Jacobians, empirical kernels, ensembles."""

import math

import numpy as np
import pytest

import gpukern as gk

pytestmark = pytest.mark.usefixtures("executor")  # every test on every executor

SIDES = ("true", "surrogate")


def _x(n=5, d=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


@pytest.mark.parametrize("depth, widths", [(1, (7,)), (2, (6, 3)), (3, (4, 9, 5))])
@pytest.mark.parametrize("act", [gk.activations.erf(2.0), gk.activations.relu(),
                                 gk.activations.sign(), gk.activations.step()])
def test_layerwise_gram_equals_jacobian_product(depth, widths, act):
    net = gk.MLP(depth, act, gk.surrogates.fast_sigmoid(3.0), weight_std=1.3, bias_std=0.4)
    p = net.init(3, widths, ensemble=3, seed=2)
    x, y = _x(5), _x(4, seed=1)
    for left in SIDES:
        for right in SIDES:
            k = net.empirical_kernel(p, x, y, left=left, right=right)
            j1, j2 = net.jacobian(p, x, left), net.jacobian(p, y, right)
            np.testing.assert_allclose(k, j1 @ j2.transpose(0, 2, 1), rtol=1e-10, atol=1e-12)
            kx = net.empirical_kernel(p, x, left=left, right=right)
            jx = net.jacobian(p, x, right)
            np.testing.assert_allclose(kx, j1 @ jx.transpose(0, 2, 1), rtol=1e-10, atol=1e-12)


def test_empirical_kernel_of_x_with_itself_takes_the_symmetric_path(monkeypatch):
    """empirical_kernel(p, x, x) (same array or a copy) is empirical_kernel(p, x) bit for
    bit, computed as x2 = None (mirrored blocks); a changed point is not."""
    from gpukern import finite

    net = gk.MLP(2, gk.activations.sign(), gk.surrogates.atan(2.0), bias_std=0.1)
    p = net.init(3, 16, ensemble=2, seed=1)
    x = _x(5)
    seen = []
    kernel = finite.empirical_kernel
    monkeypatch.setattr(finite, "empirical_kernel",
                        lambda arch, params, x1, x2, *a, **k: seen.append(x2)
                        or kernel(arch, params, x1, x2, *a, **k))
    for right in ("true", "surrogate"):
        ref = net.empirical_kernel(p, x, left=right, right=right)
        for x2 in (x, x.copy()):
            np.testing.assert_array_equal(net.empirical_kernel(p, x, x2, left=right,
                                                               right=right), ref)
    assert seen == [None] * 6
    net.empirical_kernel(p, x, x + 1e-9)
    assert seen[-1] is not None


def test_empirical_nngp_is_readout_feature_gram():
    net = gk.MLP(2, gk.activations.erf(1.0), gk.surrogates.erf(1.0), weight_std=1.1, bias_std=0.2)
    p = net.init(3, (6, 8), ensemble=2, seed=0)
    x = _x(4)
    j = net.jacobian(p, x, "true")
    n_readout = 8 + 1  # last layer: W (1 x 8) then b (1)
    readout = j[..., -n_readout:]
    np.testing.assert_allclose(net.empirical_kernel(p, x, kind="nngp"),
                               readout @ readout.transpose(0, 2, 1), rtol=1e-12)


@pytest.mark.parametrize("act", [gk.activations.erf(1.5), gk.activations.relu(),
                                 gk.activations.linear()])
def test_true_jacobian_equals_finite_differences(act):
    """Directional central differences (f(p + h v) - f(p - h v)) / 2h = J v."""
    net = gk.MLP(2, act, weight_std=1.2, bias_std=0.3)
    p = net.init(3, (5, 4), ensemble=2, seed=3)
    x = _x(6, seed=4)
    flat = p.ravel()
    j = net.jacobian(p, x, "true")
    rng = np.random.default_rng(5)
    h = 1e-6
    for _ in range(4):
        v = rng.normal(size=flat.shape)
        fd = (net.apply(p.unravel(flat + h * v), x) - net.apply(p.unravel(flat - h * v), x)) / (2 * h)
        jv = np.einsum("enp,ep->en", j, v)
        # relu: the kinks are at h = 0; with h = 1e-6 no pre-activation crosses one here
        np.testing.assert_allclose(jv, fd, rtol=1e-6, atol=1e-8)


def _hand_backprop(x, p, sigma, dsur, sw, sb):
    """The quasi-Jacobian of one network written out with loops over layers (no batching)."""
    ws = [np.asarray(w[0]) for w in p.weights]
    bs = [np.asarray(b[0]) for b in p.biases]
    grads = []
    for xi in x:
        zs, hs = [xi], []
        for l, (w, b) in enumerate(zip(ws, bs)):
            h = sw / math.sqrt(w.shape[1]) * (w @ zs[-1]) + sb * b
            hs.append(h)
            if l < len(ws) - 1:
                zs.append(sigma(h))
        delta = np.ones(1)
        row = []
        for l in range(len(ws) - 1, -1, -1):
            gw = np.outer(delta, sw / math.sqrt(ws[l].shape[1]) * zs[l])
            row = [gw.ravel(), sb * delta] + row
            if l > 0:
                delta = sw / math.sqrt(ws[l].shape[1]) * (ws[l].T @ delta) * dsur(hs[l - 1])
        grads.append(np.concatenate(row))
    return np.array(grads)


@pytest.mark.parametrize("act_name", ["sign", "step"])
@pytest.mark.parametrize("sur", [gk.surrogates.erf(2.0), gk.surrogates.sigmoid(4.0),
                                 gk.surrogates.fast_sigmoid(5.0), gk.surrogates.atan(2.0),
                                 gk.surrogates.boxcar(0.5), gk.surrogates.triangle(0.7)])
def test_quasi_jacobian_equals_hand_backprop(act_name, sur):
    sign = lambda v: np.sign(v)  # noqa: E731
    step = lambda v: 0.5 * (1 + np.sign(v))  # noqa: E731
    sigma = sign if act_name == "sign" else step
    act = getattr(gk.activations, act_name)()
    net = gk.MLP(3, act, sur, weight_std=1.4, bias_std=0.2)
    p = net.init(2, (5, 6, 4), ensemble=1, seed=7)
    x = _x(5, d=2, seed=8)
    j = net.jacobian(p, x, "surrogate")[0]
    d = sur if act_name == "sign" else (lambda v: 0.5 * sur(v))  # half the step's jump
    np.testing.assert_allclose(j, _hand_backprop(x, p, sigma, d, 1.4, 0.2), rtol=1e-12, atol=1e-14)


def test_jump_true_side_is_readout_only():
    net = gk.MLP(2, gk.activations.sign(), gk.surrogates.erf(1.0), bias_std=0.1)
    p = net.init(3, 8, ensemble=2, seed=0)
    x = _x(4)
    np.testing.assert_array_equal(net.empirical_kernel(p, x, left="true", right="true"),
                                  net.empirical_kernel(p, x, kind="nngp"))
    j = net.jacobian(p, x, "true")
    assert np.all(j[..., : p.size - 9] == 0)
    # the SG-NTK of a jump network: readout only too, and the Jacobian product says so
    js = net.jacobian(p, x, "surrogate")
    np.testing.assert_allclose(net.empirical_kernel(p, x, left="true", right="surrogate"),
                               j @ js.swapaxes(-1, -2), rtol=1e-12, atol=1e-14)


def test_ensemble_axis_is_independent():
    net = gk.MLP(2, gk.activations.erf(2.0), gk.surrogates.atan(2.0), bias_std=0.2)
    p = net.init(3, (6, 5), ensemble=4, seed=11)
    x, y = _x(5), _x(3, seed=2)
    k_all = net.empirical_kernel(p, x, y)
    f_all = net.apply(p, x)
    for e in range(4):
        np.testing.assert_array_equal(net.apply(p[e], x)[0], f_all[e])
        np.testing.assert_allclose(net.empirical_kernel(p[e], x, y)[0], k_all[e], rtol=1e-14)
    # and network e does not depend on the ensemble size
    p2 = net.init(3, (6, 5), ensemble=2, seed=11)
    np.testing.assert_array_equal(p2.ravel(), p[:2].ravel())


def test_init_statistics_and_seeds():
    net = gk.MLP(2, gk.activations.relu())
    p = net.init(4, 300, ensemble=3, seed=0)
    flat = p.ravel()
    assert flat.shape == (3, p.size) and p.size == 4 * 300 + 300 + 300 * 300 + 300 + 300 + 1
    # iid N(0, 1): mean within 5 standard errors of 0, variance within 5 of 1
    n = flat.size
    assert abs(flat.mean()) < 5 / math.sqrt(n)
    assert abs(flat.var() - 1) < 5 * math.sqrt(2 / n)
    np.testing.assert_array_equal(net.init(4, 300, ensemble=3, seed=0).ravel(), flat)
    assert not np.array_equal(net.init(4, 300, ensemble=3, seed=1).ravel(), flat)
    assert net.init(4, 3, dtype=np.float32).dtype == np.float32


def test_blocks_equal_one_block():
    from gpukern.finite import empirical_kernel
    net = gk.MLP(2, gk.activations.erf(2.0), gk.surrogates.erf(1.0), bias_std=0.2)
    p = net.init(3, (6, 5), ensemble=2, seed=1)
    x, y = _x(11), _x(7, seed=3)
    for left, right in (("true", "true"), ("true", "surrogate")):
        a, b = net.side("left", left), net.side("right", right)
        whole = net.empirical_kernel(p, x, y, left=left, right=right)
        tiny = empirical_kernel(net.arch, p, x, y, a, b, budget=1)  # one point per block
        np.testing.assert_allclose(tiny, whole, rtol=1e-12, atol=1e-13)
        whole_sym = net.empirical_kernel(p, x, left=left, right=right)
        tiny_sym = empirical_kernel(net.arch, p, x, None, a, b, budget=1500)
        np.testing.assert_allclose(tiny_sym, whole_sym, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("n", [530, 700])  # 530: the last 18 rows join the previous block
@pytest.mark.parametrize("kind, left", [("ntk", "true"), ("ntk", "surrogate"),
                                        ("nngp", "true")])
def test_symmetric_tiles_equal_jacobian_product(n, kind, left):
    """A block against itself is computed in row tiles I <= J and mirrored."""
    from gpukern import finite
    assert n >= 2 * finite.SYMMETRIC_SPLIT
    net = gk.MLP(2, gk.activations.erf(2.0), gk.surrogates.erf(1.0), bias_std=0.2)
    p = net.init(3, (6, 5), ensemble=2, seed=1)
    x = _x(n)
    got = net.empirical_kernel(p, x, left=left, right=left, kind=kind)
    if kind == "nngp":
        z = finite.forward(net.arch, p, x)[1][-1]
        ref = z @ z.swapaxes(-1, -2) / z.shape[-1] + 0.2**2
    else:
        j = net.jacobian(p, x, left)
        ref = j @ j.swapaxes(-1, -2)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(got, got.swapaxes(-1, -2), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("kernel, left, right", [("ntk", "true", "true"),
                                                 ("sgntk", "true", "surrogate")])
def test_empirical_converges_to_analytic_like_one_over_width(kernel, left, right):
    """At initialization the empirical kernel is an average over n neurons per layer:
    by the law of large numbers (and the CLT) its error to the analytic kernel has
    variance ~ 1/width and a bias ~ 1/width, so the MSE falls like 1/width (slope -1
    on a log-log plot; the squared bias adds only 1/width^2)."""
    act, sur = gk.activations.erf(2.0), gk.surrogates.erf(1.0)
    net = gk.MLP(2, act, sur, weight_std=1.0, bias_std=0.2)
    a = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    x = np.stack([np.cos(a), np.sin(a)], axis=1) * np.linspace(0.6, 1.6, 6)[:, None]
    exact = net.kernel(x, left=left, right=right)
    widths = [64, 128, 256, 512, 1024, 2048]
    mse = []
    for i, w in enumerate(widths):
        p = net.init(2, w, ensemble=16, seed=100 + i)
        k = net.empirical_kernel(p, x, left=left, right=right)
        mse.append(np.mean((k - exact) ** 2))
    slope = np.polyfit(np.log(widths), np.log(mse), 1)[0]
    # 16 networks x 36 entries per width: the fitted slope's scatter is ~0.1; the band
    # +-0.3 is 3 of those and excludes the 1/sqrt(width) (slope -0.5) or no convergence.
    assert -1.3 <= slope <= -0.7, (slope, mse)


def test_bad_finite_input():
    net = gk.MLP(2, gk.activations.erf(2.0), gk.surrogates.erf(1.0))
    p = net.init(3, 4, ensemble=2)
    with pytest.raises(ValueError, match="x has 2 features but params expect n_in = 3"):
        net.apply(p, np.ones((4, 2)))
    with pytest.raises(ValueError, match="params are for depth 3, but this MLP has depth 2"):
        net.apply(gk.MLP(3, gk.activations.erf(2.0)).init(3, 4), np.ones((4, 3)))
    with pytest.raises(TypeError, match="params must come from net.init"):
        net.apply({"w": 1}, np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"x1 contains NaN or inf \(first in row 1\)"):
        net.empirical_kernel(p, np.array([[0.0, 1, 2], [np.nan, 0, 0]]))
    with pytest.raises(ValueError, match="x2 has 4 features"):
        net.empirical_kernel(p, np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="x must be 2-D"):
        net.jacobian(p, np.ones(3))
    with pytest.raises(ValueError, match="derivative must be one of"):
        net.jacobian(p, np.ones((2, 3)), derivative="sg")
    with pytest.raises(ValueError, match="kind must be one of"):
        net.empirical_kernel(p, np.ones((2, 3)), kind="cov")
    with pytest.raises(ValueError, match="width must be an int or 2 ints"):
        net.init(3, (4, 4, 4))
    with pytest.raises(ValueError, match="width must be >= 1"):
        net.init(3, 0)
    with pytest.raises(ValueError, match="ensemble must be >= 1"):
        net.init(3, 4, ensemble=0)
    with pytest.raises(gk.InsufficientMemoryError, match="Jacobian of shape"):
        net.jacobian(net.init(3, 4000, ensemble=1), np.ones((200000, 3)))
    bad = p.unravel(p.ravel())
    broken = type(p)(bad.weights[:-1] + (bad.weights[-1][:, :, :2],), bad.biases)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        net.apply(broken, np.ones((2, 3)))
    with pytest.raises(ValueError, match="flat must have shape"):
        p.unravel(np.ones((2, 5)))
