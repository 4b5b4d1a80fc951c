"""Numba CUDA kernels against NumPy. Runs where numba.cuda works: on a GPU, or in the
simulator (NUMBA_ENABLE_CUDASIM=1, set by CI for this file in its own pytest run)."""

import os

import numpy as np
import pytest

numba_cuda = pytest.importorskip("numba.cuda")
if not (os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or numba_cuda.is_available()):
    pytest.skip("no CUDA device and NUMBA_ENABLE_CUDASIM is not set", allow_module_level=True)

from conftest import example_id, registry_examples  # noqa: E402

import gpukern as gk  # noqa: E402
from gpukern.kernels import numba_cuda as nk  # noqa: E402

FUNCS = registry_examples()  # every registry kind (tests/test_contract.py)
_Q = gk.activations.quantizer([-0.4, 0.3, 1.0], [-1.0, 0.0, 0.5, 2.0])
SUMS = [_Q.function, _Q.derivative, _Q.surrogate_derivative(gk.surrogates.atan(2.0)),
        gk.activations.step(0.5).surrogate_derivative(gk.surrogates.triangle(0.7))]


@pytest.mark.parametrize("fn", FUNCS + SUMS, ids=lambda f: example_id(f)[:60])
def test_scaled_derivative(fn):
    rng = np.random.default_rng(0)
    h = np.concatenate([rng.normal(size=37), [0.0, 0.5, -0.5, 0.7]])
    pre = rng.normal(size=h.size)
    out = np.empty_like(h)
    nk.scaled_derivative(pre, h, out, 0.8, np.asarray(fn.descriptor()))
    np.testing.assert_allclose(out, pre * 0.8 * fn(h), rtol=1e-13, atol=1e-300)


def test_hadamard_accumulate_and_axpy():
    rng = np.random.default_rng(1)
    k, dd, zz = rng.normal(size=(3, 300))
    ref = k + dd * (0.7 * zz + 0.01)
    nk.hadamard_accumulate(k, dd, zz, 0.7, 0.01)
    np.testing.assert_allclose(k, ref, rtol=1e-14)
    w, g = rng.normal(size=(2, 513))
    ref = w - 0.05 * g
    nk.axpy(w, g, -0.05)
    np.testing.assert_allclose(w, ref, rtol=1e-14)


def test_empirical_kernel_from_numba_pieces_equals_numpy():
    """The layerwise Gram assembly built from the kernels equals net.empirical_kernel."""
    from gpukern.finite import backward, forward

    net = gk.MLP(2, gk.activations.sign(), gk.surrogates.fast_sigmoid(3.0), bias_std=0.2)
    p = net.init(3, (6, 5), ensemble=2, seed=0)
    x = np.random.default_rng(2).normal(size=(4, 3))
    hs, zs = forward(net.arch, p, x)
    da = backward(net.arch, p, hs, net.activation.derivative)
    db = backward(net.arch, p, hs, net.surrogate)
    k = np.zeros((2, 4, 4))
    for z, d1, d2 in zip(zs, da, db):
        zz = np.broadcast_to(z @ z.swapaxes(-1, -2), k.shape).copy()
        dd = np.ascontiguousarray(d1 @ d2.swapaxes(-1, -2))
        nk.hadamard_accumulate(k.reshape(-1), dd.reshape(-1), zz.reshape(-1),
                               1.0 / z.shape[-1], 0.04)
    np.testing.assert_allclose(k, net.empirical_kernel(p, x), rtol=1e-12)


def test_backprop_step_from_numba_equals_numpy():
    net = gk.MLP(2, gk.activations.sign(), gk.surrogates.atan(2.0), bias_std=0.2)
    p = net.init(3, (6, 5), ensemble=2, seed=0)
    from gpukern.finite import backward, forward

    x = np.random.default_rng(3).normal(size=(4, 3))
    hs, _ = forward(net.arch, p, x)
    deltas = backward(net.arch, p, hs, net.surrogate)
    w = p.weights[2]
    pre = np.ascontiguousarray(deltas[2] @ w)
    out = np.empty_like(pre)
    nk.scaled_derivative(pre.reshape(-1), np.ascontiguousarray(hs[1]).reshape(-1),
                         out.reshape(-1), 1.0 / np.sqrt(w.shape[2]), np.asarray(net.surrogate.descriptor()))
    np.testing.assert_allclose(out, deltas[1], rtol=1e-13)


def test_library_paths_through_numba_kernels(monkeypatch):
    """With the Numba kernels switched on (as on the CuPy backend), empirical kernels and
    SGL training give the NumPy results: the dispatch in gpukern.kernels.ops is wired."""
    from gpukern.kernels import ops

    net = gk.MLP(2, gk.activations.sign(), gk.surrogates.triangle(0.8), bias_std=0.2)
    p = net.init(3, (7, 5), ensemble=2, seed=1)
    x = np.random.default_rng(4).normal(size=(5, 3))
    y = np.sin(x[:, 0])
    ref_k = net.empirical_kernel(p, x)
    ref_t = gk.train(net, p, x, y, lr=0.05, steps=4)
    monkeypatch.setattr(ops, "_use_numba", lambda: True)
    np.testing.assert_allclose(net.empirical_kernel(p, x), ref_k, rtol=1e-12)
    got = gk.train(net, p, x, y, lr=0.05, steps=4)
    np.testing.assert_allclose(got.loss, ref_t.loss, rtol=1e-12)
