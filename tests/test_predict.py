"""GP prediction of linearized training: against direct integration, recursion, baselines."""

import warnings

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import gpukern as gk
from gpukern.prediction import linear_dynamics

pytestmark = pytest.mark.usefixtures("executor")  # every test on every executor


def _random_problem(seed=0, m=4, n=5):
    """Random asymmetric I (eigenvalues with positive real part: SPD + skew), random SPD Sigma."""
    rng = np.random.default_rng(seed)
    b = rng.normal(size=(n, n))
    skew = rng.normal(size=(n, n))
    i_XX = b @ b.T / n + 0.3 * np.eye(n) + 0.8 * (skew - skew.T)
    assert np.linalg.eigvals(i_XX).real.min() > 0
    assert np.abs(i_XX - i_XX.T).max() > 0.1
    i_xX = rng.normal(size=(m, n))
    c = rng.normal(size=(m + n, m + n))
    s = c @ c.T / (m + n) + 0.1 * np.eye(m + n)
    y = rng.normal(size=n)
    return i_xX, i_XX, s, y


def _push_forward(flow, s, m, n):
    """Mean and covariance of f_t(x) for f0 ~ N(0, s), given the affine flow f0 -> f_t."""
    zero = flow(np.zeros(m + n))
    cols = np.stack([flow(e) - zero for e in np.eye(m + n)], axis=1)  # the linear part P
    return zero[:m], (cols @ s @ cols.T)[:m, :m]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_continuous_time_equals_ode_integration(seed):
    i_xX, i_XX, s, y = _random_problem(seed)
    m, n = i_xX.shape
    lr, times = 0.7, [0.0, 0.3, 1.5, 4.0]
    pred = linear_dynamics(i_xX, i_XX, s[:m, :m], s[:m, m:], s[m:, m:], y, lr,
                           np.array(times), discrete=False)
    kern = np.concatenate([i_xX, i_XX])  # d/dt [f(x); f(X)] = -lr I_[x;X],X (f(X) - Y)
    for k, t in enumerate(times):
        def flow(f0, t=t):
            if t == 0:
                return f0
            sol = solve_ivp(lambda _, f: -lr * kern @ (f[m:] - y), (0, t), f0,
                            rtol=1e-12, atol=1e-13, method="DOP853")
            return sol.y[:, -1]
        mean, cov = _push_forward(flow, s, m, n)
        np.testing.assert_allclose(pred.mean[k], mean, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(pred.cov[k], cov, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(pred.var[k], np.diag(cov), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("seed", [0, 3])
def test_discrete_steps_equal_the_recursion(seed):
    i_xX, i_XX, s, y = _random_problem(seed)
    m, n = i_xX.shape
    lr = 0.9 / np.abs(np.linalg.eigvals(i_XX)).max()
    steps = [0, 1, 7, 40]
    pred = linear_dynamics(i_xX, i_XX, s[:m, :m], s[:m, m:], s[m:, m:], y, lr,
                           np.array(steps, dtype=float), discrete=True)
    kern = np.concatenate([i_xX, i_XX])
    for k, nsteps in enumerate(steps):
        def flow(f0, nsteps=nsteps):
            f = f0.copy()
            for _ in range(nsteps):
                f = f - lr * kern @ (f[m:] - y)
            return f
        mean, cov = _push_forward(flow, s, m, n)
        np.testing.assert_allclose(pred.mean[k], mean, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(pred.cov[k], cov, rtol=1e-10, atol=1e-12)


def test_infinite_time_is_kernel_regression():
    i_xX, i_XX, s, y = _random_problem(4)
    m, n = i_xX.shape
    pred = linear_dynamics(i_xX, i_XX, s[:m, :m], s[:m, m:], s[m:, m:], y, 0.3,
                           np.array([np.inf, 1e4]), discrete=False)
    a = i_xX @ np.linalg.inv(i_XX)
    np.testing.assert_allclose(pred.mean[0], a @ y, rtol=1e-10)
    np.testing.assert_allclose(pred.mean[1], pred.mean[0], rtol=1e-8)
    np.testing.assert_allclose(pred.cov[1], pred.cov[0], rtol=1e-7, atol=1e-10)


def _circle(n, shift=0.0):
    a = np.linspace(0, 2 * np.pi, n, endpoint=False) + shift
    return np.stack([np.cos(a), np.sin(a)], axis=1), a


def test_predict_on_the_training_points_interpolates():
    net = gk.MLP(2, gk.activations.sign(), gk.surrogates.erf(1.0), bias_std=0.2)
    x, a = _circle(6)
    y = np.sin(2 * a)
    p = gk.predict(net, x, y, x, lr=0.1, t=np.inf)
    np.testing.assert_allclose(p.mean[0], y, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(p.var[0], 0.0, atol=1e-8)
    post = gk.nngp_posterior(net, x, y, x)
    np.testing.assert_allclose(post.mean[0], y, rtol=1e-9, atol=1e-9)


def test_nngp_posterior_formula():
    net = gk.MLP(1, gk.activations.erf(2.0), bias_std=0.3)
    x, a = _circle(5)
    xs, _ = _circle(7, 0.2)
    y = np.cos(a)
    post = gk.nngp_posterior(net, x, y, xs, ridge=0.01)
    k = net.nngp(np.concatenate([xs, x]))
    s_xx, s_xX, s_XX = k[:7, :7], k[:7, 7:], k[7:, 7:] + 0.01 * np.eye(5)
    np.testing.assert_allclose(post.mean[0], s_xX @ np.linalg.solve(s_XX, y), rtol=1e-10)
    np.testing.assert_allclose(post.cov[0], s_xx - s_xX @ np.linalg.solve(s_XX, s_xX.T),
                               rtol=1e-9, atol=1e-12)
    v = gk.nngp_posterior(net, x, y, xs, ridge=0.01, full_cov=False)
    np.testing.assert_allclose(v.var[0], np.diag(post.cov[0]), rtol=1e-9, atol=1e-12)


def test_variances_only_equal_full_diagonal():
    net = gk.MLP(2, gk.activations.erf(3.0), gk.surrogates.atan(2.0), bias_std=0.1)
    x, a = _circle(5)
    xs, _ = _circle(9, 0.1)
    full = gk.predict(net, x, np.sin(a), xs, lr=0.2, steps=[3, 30])
    diag = gk.predict(net, x, np.sin(a), xs, lr=0.2, steps=[3, 30], full_cov=False)
    assert diag.cov is None
    np.testing.assert_allclose(diag.var, np.diagonal(full.cov, axis1=1, axis2=2), rtol=1e-10,
                               atol=1e-13)


def test_variances_need_no_test_by_test_matrix():
    """full_cov=False computes the test points' NNGP diagonal, test x train and train x
    train only: 100000 test points (an (N_test + N_train)^2 NNGP would be 80 GB)."""
    net = gk.MLP(2, gk.activations.sign(), gk.surrogates.erf(1.0), bias_std=0.1)
    x, a = _circle(6)
    xs = np.random.default_rng(0).normal(size=(100_000, 2))
    pred = gk.predict(net, x, np.sin(a), xs, lr=0.2, steps=5, full_cov=False)
    post = gk.nngp_posterior(net, x, np.sin(a), xs, full_cov=False, ridge=1e-6)
    assert pred.var.shape == post.var.shape == (1, 100_000)
    small = xs[:40]
    np.testing.assert_allclose(net.nngp_diagonal(small), np.diagonal(net.nngp(small)),
                               rtol=1e-13)
    np.testing.assert_allclose(pred.var[0, :40], gk.predict(
        net, x, np.sin(a), small, lr=0.2, steps=5).var[0], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(post.var[0, :40], gk.nngp_posterior(
        net, x, np.sin(a), small, ridge=1e-6).var[0], rtol=1e-10, atol=1e-13)


def test_ill_posed_reported():
    net = gk.MLP(1, gk.activations.erf(2.0), gk.surrogates.erf(1.0), bias_std=0.2)
    x, a = _circle(4)
    x = np.concatenate([x, x[:1]])  # a repeated training point: I_XX singular
    y = np.concatenate([np.sin(a), [0.0]])
    with pytest.raises(ValueError, match="condition number .* Pass ridge > 0"):
        gk.predict(net, x, y, x, lr=0.1, t=np.inf)
    ok = gk.predict(net, x, y, x, lr=0.1, t=np.inf, ridge=1e-6)
    assert np.all(np.isfinite(ok.mean))
    with pytest.raises(ValueError, match="Sigma_XX is singular"):
        gk.nngp_posterior(net, x, y, x)
    with pytest.warns(RuntimeWarning, match="lr = 10 is too large"):
        gk.predict(net, x[:4], y[:4], x, lr=10.0, steps=5)
    sign = gk.MLP(1, gk.activations.sign(), gk.surrogates.erf(1.0))
    with pytest.raises(ValueError, match="infinite on the training inputs"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            gk.predict(sign, x[:4], y[:4], x, lr=0.1, t=1.0, kernel="ntk")


def test_bad_prediction_input():
    net = gk.MLP(1, gk.activations.erf(2.0), gk.surrogates.erf(1.0))
    x, a = _circle(4)
    y = np.sin(a)
    with pytest.raises(ValueError, match="exactly one of t"):
        gk.predict(net, x, y, x, lr=0.1)
    with pytest.raises(ValueError, match="exactly one of t"):
        gk.predict(net, x, y, x, lr=0.1, t=1.0, steps=3)
    with pytest.raises(ValueError, match="lr must be > 0"):
        gk.predict(net, x, y, x, lr=-0.1, t=1.0)
    with pytest.raises(ValueError, match="steps must be >= 0"):
        gk.predict(net, x, y, x, lr=0.1, steps=-1)
    with pytest.raises(ValueError, match="t must be >= 0"):
        gk.predict(net, x, y, x, lr=0.1, t=-1.0)
    with pytest.raises(ValueError, match=r"y_train must have shape \(4,\)"):
        gk.predict(net, x, y[:3], x, lr=0.1, t=1.0)
    with pytest.raises(ValueError, match="y_train contains NaN"):
        gk.predict(net, x, np.array([0, np.nan, 0, 0]), x, lr=0.1, t=1.0)
    with pytest.raises(ValueError, match="x_test has 3 features"):
        gk.predict(net, x, y, np.ones((2, 3)), lr=0.1, t=1.0)
    with pytest.raises(ValueError, match="kernel must be one of"):
        gk.predict(net, x, y, x, lr=0.1, t=1.0, kernel="nngp")
