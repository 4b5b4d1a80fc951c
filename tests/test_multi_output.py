"""Networks with C outputs: every API against C single-output computations it must equal
(the readout units are independent and share the hidden layers)."""

import numpy as np
import pytest
from conftest import z_bound

import gpukern as gk
from gpukern.finite import Params

pytestmark = pytest.mark.usefixtures("executor")  # every test on every executor

C = 3


def _net(act=None):
    return gk.MLP(2, act or gk.activations.erf(2.0), gk.surrogates.erf(1.5), bias_std=0.3)


def _data(n=7, n0=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n0))
    return x, rng.normal(size=(n, C))


def _single(params: Params, c: int) -> Params:
    """The single-output network of readout unit c (shared hidden layers)."""
    ws = params.weights[:-1] + (params.weights[-1][:, c:c + 1].copy(),)
    bs = params.biases[:-1] + (params.biases[-1][:, c:c + 1].copy(),)
    return Params(tuple(w.copy() for w in ws[:-1]) + ws[-1:],
                  tuple(b.copy() for b in bs[:-1]) + bs[-1:])


def test_init_shapes_and_one_output_unchanged():
    net = _net()
    p1, pc = net.init(3, 16, ensemble=2, seed=4), net.init(3, 16, ensemble=2, seed=4, n_out=C)
    assert p1.n_out == 1 and pc.n_out == C
    assert pc.weights[-1].shape == (2, C, 16) and pc.biases[-1].shape == (2, C)
    x, _ = _data()
    assert net.apply(p1, x).shape == (2, len(x))
    assert net.apply(pc, x).shape == (2, len(x), C)
    np.testing.assert_array_equal(pc.weights[0], p1.weights[0])  # same streams


def test_apply_and_jacobian_per_output_equal_single_output_networks():
    net = _net()
    params = net.init(3, 16, ensemble=2, seed=1, n_out=C)
    x, _ = _data()
    f = net.apply(params, x)
    n_hidden = params.size - (16 + 1) * C  # parameters before the readout layer
    for c in range(C):
        single = _single(params, c)
        np.testing.assert_allclose(f[..., c], net.apply(single, x), rtol=1e-13, atol=1e-13)
        for d in ("true", "surrogate"):
            jc = net.jacobian(params, x, d, output=c)
            js = net.jacobian(single, x, d)
            np.testing.assert_allclose(jc[..., :n_hidden], js[..., :n_hidden], rtol=1e-12,
                                       atol=1e-13)
            readout = jc[..., n_hidden:n_hidden + 16 * C].reshape(2, len(x), C, 16)
            np.testing.assert_allclose(readout[:, :, c], js[..., n_hidden:n_hidden + 16],
                                       rtol=1e-12, atol=1e-13)
            others = np.delete(readout, c, axis=2)
            assert np.all(others == 0)


@pytest.mark.parametrize("left, right", [("true", "surrogate"), ("surrogate", "surrogate")])
def test_empirical_kernel_blocks_are_jacobian_products(left, right):
    net = _net()
    params = net.init(3, 12, ensemble=2, seed=2, n_out=C)
    x, _ = _data(n=5)
    y = _data(n=4, seed=1)[0]
    blocks = net.empirical_kernel(params, x, y, left, right, blocks=True)
    assert blocks.shape == (2, 5 * C, 4 * C)
    for a in range(C):
        np.testing.assert_allclose(net.empirical_kernel(params, x, y, left, right, output=a),
                                   blocks[:, a::C, a::C], rtol=1e-12, atol=1e-12)
        ja = net.jacobian(params, x, left, output=a)
        for b in range(C):
            jb = net.jacobian(params, y, right, output=b)
            np.testing.assert_allclose(blocks[:, a::C, b::C], ja @ jb.swapaxes(1, 2),
                                       rtol=1e-11, atol=1e-11)
    sym = net.empirical_kernel(params, x, None, "surrogate", "surrogate", blocks=True)
    np.testing.assert_allclose(sym, sym.swapaxes(1, 2), rtol=1e-12, atol=1e-12)


def test_block_kernel_is_k_kron_identity_in_expectation():
    """Off-diagonal blocks K_cc' have mean exactly 0 at any width (flipping the sign of
    readout row c flips them), diagonal blocks the single-output kernel's mean: the
    ensemble means match K ⊗ I_C within z standard errors (Bonferroni)."""
    net = _net()
    e = 200
    params = net.init(3, 64, ensemble=e, seed=7, n_out=C)
    x, _ = _data(n=4)
    blocks = net.empirical_kernel(params, x, None, "true", "surrogate", blocks=True)
    mean = blocks.mean(0)
    se = blocks.std(0, ddof=1) / np.sqrt(e)
    target = np.kron(net.sgntk(x), np.eye(C))
    off = ~np.kron(np.ones((4, 4), bool), np.eye(C, dtype=bool))
    z = z_bound(int(off.sum()), dof=e - 1)
    assert np.all(np.abs(mean[off]) <= z * se[off])
    # diagonal blocks: within z SE plus the O(1/width) finite-width bias (5% here)
    diag = ~off
    assert np.all(np.abs(mean[diag] - target[diag]) <= z * se[diag] + 0.05 * np.abs(target).max())


def test_one_sgl_step_is_the_quasi_jacobian_update():
    """theta' = theta - lr sum_c J~_c^T (f_c - y_c) with loss 1/2 sum_n sum_c (f - y)^2."""
    net = _net()
    params = net.init(3, 10, ensemble=2, seed=3, n_out=C)
    x, y = _data()
    lr = 0.05
    flat = params.ravel().copy()
    f0 = net.apply(params, x)
    update = sum(np.einsum("enp,en->ep", net.jacobian(params, x, "surrogate", output=c),
                           f0[..., c] - y[:, c]) for c in range(C))
    res = gk.train(net, params, x, y, lr=lr, steps=1)
    np.testing.assert_allclose(res.params.ravel(), flat - lr * update, rtol=1e-11, atol=1e-12)
    assert res.outputs.shape == (2, 2, len(x), C)
    np.testing.assert_allclose(res.outputs[0], f0, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(res.loss[0], 0.5 * ((f0 - y) ** 2).sum(axis=(1, 2)), rtol=1e-12)


def test_training_one_column_equals_vector_targets():
    net = _net()
    x, y = _data()
    a = gk.train(net, net.init(3, 10, ensemble=2, seed=3), x, y[:, 0], lr=0.05, steps=3)
    b = gk.train(net, net.init(3, 10, ensemble=2, seed=3), x, y[:, :1], lr=0.05, steps=3)
    np.testing.assert_array_equal(a.outputs, b.outputs)


def test_predictions_per_output_equal_single_output_predictions():
    net = _net()
    x, y = _data()
    xs = _data(n=5, seed=9)[0]
    pc = gk.predict(net, x, y, xs, lr=0.1, steps=[0, 10])
    post = gk.nngp_posterior(net, x, y, xs, ridge=1e-3)
    assert pc.mean.shape == (2, 5, C) and pc.var.shape == (2, 5)
    for c in range(C):
        p1 = gk.predict(net, x, y[:, c], xs, lr=0.1, steps=[0, 10])
        np.testing.assert_allclose(pc.mean[..., c], p1.mean, rtol=1e-12, atol=1e-14)
        np.testing.assert_array_equal(pc.var, p1.var)
        q1 = gk.nngp_posterior(net, x, y[:, c], xs, ridge=1e-3)
        np.testing.assert_allclose(post.mean[..., c], q1.mean, rtol=1e-12, atol=1e-14)


def test_shape_errors_name_the_argument_and_both_shapes():
    net = _net()
    x, y = _data()
    params = net.init(3, 8, n_out=2)
    with pytest.raises(ValueError, match=r"y has shape \(7, 3\).*2 output.*\(7, 2\)"):
        gk.train(net, params, x, y, lr=0.1, steps=1)
    with pytest.raises(ValueError, match=r"y_train must have shape \(7,\) or \(7, C\).*\(6, 3\)"):
        gk.predict(net, x, y[:6], x, lr=0.1, steps=1)
    with pytest.raises(ValueError, match="output must be <= 1"):
        net.empirical_kernel(params, x, output=2)
    with pytest.raises(ValueError, match="n_out must be >= 1"):
        net.init(3, 8, n_out=0)
