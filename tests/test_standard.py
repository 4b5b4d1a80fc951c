"""The standard parameterization (PyTorch's nn.Linear): the same functions as the NTK
parameterization, gradients with respect to the effective weights, and its analytic
NTK-type kernels for given widths against Monte Carlo of finite networks."""

import numpy as np
import pytest
from conftest import assert_within_se

import gpukern as gk

pytestmark = pytest.mark.usefixtures("executor")  # every test on every executor


def _nets(depth=2, act=None, sur=None, sw=1.3, sb=0.4, widths=None):
    act = act or gk.activations.erf(m=2.0)
    sur = sur or gk.surrogates.erf(k=1.5)
    ntk = gk.MLP(depth, act, sur, weight_std=sw, bias_std=sb)
    std = gk.MLP(depth, act, sur, weight_std=sw, bias_std=sb, parameterization="standard",
                 widths=widths)
    return ntk, std


def _points(n=5, n0=3, seed=1):
    return np.random.default_rng(seed).standard_normal((n, n0))


def test_same_seed_same_functions_and_effective_weights():
    ntk, std = _nets()
    x = _points()
    p_ntk = ntk.init(3, (7, 5), ensemble=3, seed=4)
    p_std = std.init(3, (7, 5), ensemble=3, seed=4)
    np.testing.assert_allclose(std.apply(p_std, x), ntk.apply(p_ntk, x), rtol=1e-13, atol=1e-13)
    for l, (w, v) in enumerate(zip(p_std.weights, p_ntk.weights)):
        np.testing.assert_allclose(w, v * 1.3 / np.sqrt(w.shape[2]), rtol=1e-15, err_msg=f"W{l}")
    np.testing.assert_allclose(p_std.biases[0], 0.4 * p_ntk.biases[0], rtol=1e-15)


@pytest.mark.parametrize("derivative", ["true", "surrogate"])
def test_jacobian_is_the_chain_rule_of_the_effective_weights(derivative):
    """W_std = a W_ntk, b_std = sb b_ntk: df/dW_std = (1/a) df/dW_ntk, df/db_std =
    (1/sb) df/db_ntk, column by column."""
    ntk, std = _nets()
    x = _points()
    p_ntk = ntk.init(3, (7, 5), ensemble=2, seed=2)
    p_std = std.init(3, (7, 5), ensemble=2, seed=2)
    j_ntk = ntk.jacobian(p_ntk, x, derivative)
    j_std = std.jacobian(p_std, x, derivative)
    factors, sizes = [], (3, 7, 5, 1)
    for a, b in zip(sizes[:-1], sizes[1:]):
        factors += [np.full(a * b, 1.3 / np.sqrt(a)), np.full(b, 0.4)]
    np.testing.assert_allclose(j_std * np.concatenate(factors), j_ntk, rtol=1e-12, atol=1e-14)


def test_true_jacobian_matches_finite_differences():
    """Independent of the NTK parameterization: central differences of f in each
    effective parameter (erf activation, smooth), error O(h^2)."""
    _, std = _nets(depth=2)
    x = _points(3)
    p = std.init(3, (4, 3), seed=5)
    jac = std.jacobian(p, x, "true")[0]
    flat = p.ravel()
    h = 1e-5
    fd = np.empty_like(jac)
    for k in range(flat.shape[1]):
        up, down = flat.copy(), flat.copy()
        up[0, k] += h
        down[0, k] -= h
        fd[:, k] = (std.apply(p.unravel(up), x)[0] - std.apply(p.unravel(down), x)[0]) / (2 * h)
    np.testing.assert_allclose(jac, fd, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("left,right", [("true", "surrogate"), ("surrogate", "surrogate")])
def test_empirical_kernel_is_the_jacobian_gram(left, right):
    _, std = _nets()
    x1, x2 = _points(4), _points(3, seed=7)
    p = std.init(3, (6, 5), ensemble=2, seed=3)
    k = std.empirical_kernel(p, x1, x2, left, right)
    ref = np.einsum("enp,emp->enm", std.jacobian(p, x1, left), std.jacobian(p, x2, right))
    np.testing.assert_allclose(k, ref, rtol=1e-12, atol=1e-12)


def test_one_training_step_is_the_quasi_gradient_step():
    """theta_1 = theta_0 - lr J~^T (f - y) in the effective parameters (biases train even
    at bias_std = 0, as nn.Linear's do)."""
    _, std = _nets(act=gk.activations.step(1.0), sur=gk.surrogates.fast_sigmoid(3.0), sb=0.0)
    x, y = _points(6), np.linspace(-1, 1, 6)
    p0 = std.init(3, (8, 6), ensemble=2, seed=6)
    lr = 0.05
    res = gk.train(std, p0, x, y, steps=1, lr=lr)
    f = std.apply(p0, x)
    jac = std.jacobian(p0, x, "surrogate")
    expected = p0.ravel() - lr * np.einsum("enp,en->ep", jac, f - y)
    np.testing.assert_allclose(gk.to_host(res.params.ravel()), expected, rtol=1e-12, atol=1e-13)
    assert np.any(expected[:, -1] != 0.0)  # the readout bias moved from its 0 start


def test_nngp_does_not_depend_on_the_parameterization():
    ntk, std = _nets(widths=(10, 20))
    x = _points()
    np.testing.assert_array_equal(std.nngp(x), ntk.nngp(x))


def test_ntk_kernels_need_widths_and_grow_with_them():
    _, std = _nets()
    with pytest.raises(ValueError, match="widths"):
        std.ntk(_points())
    x = _points()
    k = [_nets(widths=(n, 2 * n))[1].sgntk(x) for n in (100, 200, 300)]
    assert np.all(np.diag(k[2]) > 2.5 * np.diag(k[0]))  # grows with the widths ...
    scale = np.abs(k[2]).max()
    np.testing.assert_allclose(k[2] - 2 * k[1] + k[0], 0.0, atol=1e-13 * scale)  # affinely


@pytest.mark.parametrize("kind", ["ntk", "sgntk"])
def test_depth_one_kernel_is_the_finite_width_mean_at_any_width(kind):
    """With one hidden layer the empirical kernel's mean over initialisations equals the
    analytic one at every width (h_1 is exactly Gaussian, W_2 independent of it):
    E[<z, z'> + 1] = n_1 E[sigma sigma'] + 1 and E[<delta, delta'>] = sw^2 E[sigma' sigma~].
    At width 3 the +1 bias terms are a fifth of the kernel, so this sees every term;
    mean of 6000 networks within Bonferroni z standard errors."""
    act, sur = gk.activations.erf(m=1.0), gk.surrogates.erf(k=2.0)
    net = gk.MLP(1, act, sur, weight_std=1.2, bias_std=0.3, parameterization="standard",
                 widths=(3,))
    x = _points(4, n0=2, seed=3)
    p = net.init(2, ensemble=6000, seed=11)
    right = "true" if kind == "ntk" else "surrogate"
    emp = gk.to_host(net.empirical_kernel(p, x, x, "true", right))
    exact = gk.to_host(net.kernel(x, x, "true", right))
    assert_within_se(emp.mean(0), emp.std(0, ddof=1) / np.sqrt(emp.shape[0]), exact,
                     emp.shape[0] - 1, kind)


def test_deep_kernels_converge_with_width():
    """Depth 2: the empirical SG-NTK of wide standard networks over the analytic one with
    their widths -> 1 (mean of 48 networks within z SE plus the O(1/n) finite-width
    bias), for a jump activation's surrogate-surrogate kernel too."""
    x = _points(4, n0=2, seed=8)
    cases = [(gk.activations.erf(m=1.0), gk.surrogates.erf(k=2.0), ("true", "surrogate")),
             (gk.activations.sign(), gk.surrogates.erf(k=1.0), ("surrogate", "surrogate"))]
    for act, sur, (left, right) in cases:
        net = gk.MLP(2, act, sur, weight_std=1.0, bias_std=0.2, parameterization="standard",
                     widths=(1024, 1024))
        p = net.init(2, ensemble=48, seed=2)
        emp = gk.to_host(net.empirical_kernel(p, x, x, left, right))
        exact = gk.to_host(net.kernel(x, x, left, right))
        rel = emp.mean(0) / exact - 1.0
        se = emp.std(0, ddof=1) / np.sqrt(emp.shape[0]) / np.abs(exact)
        assert np.all(np.abs(rel) <= 4.5 * se + 4.0 / 1024), (act, rel, se)


def test_torch_distribution_and_bad_input():
    _, std = _nets(widths=(50, 40))
    p = std.init(3, ensemble=2, distribution="torch", seed=1)
    w = gk.to_host(p.weights[1])
    assert w.shape == (2, 40, 50) and np.abs(w).max() <= 1 / np.sqrt(50)
    assert abs(w.var() - 1 / (3 * 50)) < 0.1 / (3 * 50)  # 4000 draws: SE 2 %
    ntk, _ = _nets()
    with pytest.raises(ValueError, match="parameterization='standard'"):
        ntk.init(3, 5, distribution="torch")
    with pytest.raises(ValueError, match="distribution"):
        std.init(3, distribution="uniform")
    with pytest.raises(ValueError, match="parameterization"):
        gk.MLP(1, gk.activations.sign(), parameterization="mup")
    with pytest.raises(ValueError, match="widths"):
        gk.MLP(2, gk.activations.sign(), parameterization="standard", widths=(3,))
    with pytest.raises(ValueError, match="width is needed"):
        ntk.init(3)
