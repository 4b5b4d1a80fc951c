"""The PyTorch / snnTorch bridge against the real libraries: quasi-Jacobians from torch
autograd through snnTorch's own surrogate backward, SGD in torch against gk.train, the
README's equivalence table, and the modules to_torch builds.

snnTorch's spike functions return float32 ((input > 0).float()), so in an unmodified
float64 network the gradient arriving at each spiking layer is rounded to float32. Two
forms of each comparison therefore: (1) the unmodified Leaky network, with tolerances
derived from that rounding; (2) float64 throughout, calling snnTorch's own surrogate
autograd Functions (their forward and backward staticmethods) in double precision,
<= 1e-10.
"""

from __future__ import annotations

import os
import types
from pathlib import Path

import numpy as np
import pytest

if os.environ.get("GPUKERN_REQUIRE_TORCH") == "1":  # CI: the bridge's tests must run
    import snntorch as snn
    import torch
else:
    torch = pytest.importorskip("torch")
    snn = pytest.importorskip("snntorch")
from snntorch import surrogate, utils  # noqa: E402

import gpukern as gk  # noqa: E402
from gpukern.torch import equivalence_table, from_torch, to_torch  # noqa: E402

U32 = 2.0**-24
THETA = 1.0
README = Path(__file__).resolve().parents[1] / "README.md"

# snnTorch's surrogates: (constructor, its autograd Function, the Function's ctx attributes)
SURROGATES = {
    "fast_sigmoid": (lambda: surrogate.fast_sigmoid(slope=5.0), surrogate.FastSigmoid,
                     {"slope": 5.0}),
    "atan": (lambda: surrogate.atan(alpha=2.0), surrogate.ATan, {"alpha": 2.0}),
    "sigmoid": (lambda: surrogate.sigmoid(slope=4.0), surrogate.Sigmoid, {"slope": 4.0}),
    "triangular": (lambda: surrogate.triangular(threshold=0.5), surrogate.Triangular,
                   {"threshold": 0.5}),
    "straight_through": (surrogate.straight_through_estimator,
                         surrogate.StraightThroughEstimator, {}),
}


class _Ctx(types.SimpleNamespace):
    """An autograd context for calling a Function's static forward/backward directly."""

    def save_for_backward(self, *tensors):
        self.saved_tensors = tensors


class Float64Spike(torch.autograd.Function):
    """snnTorch's surrogate Function run in float64: its own forward (0/1 spikes, exact
    in any precision) and its own backward given a float64 incoming gradient."""

    @staticmethod
    def forward(ctx, u, fn_cls, attrs):
        ctx.fn_cls, ctx.attrs = fn_cls, attrs
        ctx.save_for_backward(u)
        inner = _Ctx()
        return fn_cls.forward(inner, u, *attrs.values()).to(torch.float64)

    @staticmethod
    def backward(ctx, grad):
        (u,) = ctx.saved_tensors
        inner = _Ctx(saved_tensors=(u,), **ctx.attrs)
        out = ctx.fn_cls.backward(inner, grad)
        return (out[0] if isinstance(out, tuple) else out), None, None


def _leaky(name):
    make, _, _ = SURROGATES[name]
    return snn.Leaky(beta=0.7, threshold=THETA, spike_grad=make(), init_hidden=True)


def _snn_module(name, sizes=(3, 24, 16, 1), seed=0):
    """An snnTorch network as a user writes it (float64 Linear layers)."""
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = torch.nn.Linear(a, b, dtype=torch.float64)
        torch.nn.init.normal_(lin.weight, std=2.0 / np.sqrt(a))
        torch.nn.init.normal_(lin.bias, std=0.5)
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(_leaky(name))
    return torch.nn.Sequential(*layers)


def _run(module, x, name, mode):
    """Forward pass of ``module``: "snntorch" runs its Leaky layers from rest (the spikes
    cast to float64 for the next Linear), "float64" replaces each by snnTorch's surrogate
    Function in double precision on mem - theta (one step from rest: mem = input)."""
    utils.reset(module)
    _, fn_cls, attrs = SURROGATES[name]
    z = x
    for m in module:
        if isinstance(m, snn.Leaky):
            z = m(z).to(torch.float64) if mode == "snntorch" else Float64Spike.apply(
                z - THETA, fn_cls, attrs)
        else:
            z = m(z)
    return z[:, 0]


def _autograd_rows(f, params):
    """(N, P) rows d f_i / d theta by torch autograd, params in gpukern's order."""
    rows = []
    for i in range(f.shape[0]):
        grads = torch.autograd.grad(f[i], params, retain_graph=True)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows).detach().numpy()


def _torch_jacobian(module, x, name, mode):
    """Outputs f(x) and the (N, P) Jacobian rows of ``module`` run as ``mode`` says."""
    params = [p for lin in module if isinstance(lin, torch.nn.Linear)
              for p in (lin.weight, lin.bias)]
    f = _run(module, x, name, mode)
    return f.detach().numpy(), _autograd_rows(f, params)


def _inputs(n=12, seed=1):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, 3)) * 1.5)


@pytest.mark.parametrize("name", list(SURROGATES))
def test_quasi_jacobian_gram_equals_torch_autograd_in_float64(name):
    module = _snn_module(name)
    net, params = from_torch(module)
    x1, x2 = _inputs(), _inputs(7, seed=2)
    f1, j1 = _torch_jacobian(module, x1, name, "float64")
    _, j2 = _torch_jacobian(module, x2, name, "float64")
    np.testing.assert_allclose(gk.to_host(net.apply(params, x1))[0], f1, rtol=1e-13, atol=1e-13)
    jac = gk.to_host(net.jacobian(params, x1, "surrogate"))[0]
    np.testing.assert_allclose(jac, j1, rtol=1e-12, atol=1e-12 * np.abs(j1).max())
    k = gk.to_host(net.empirical_kernel(params, x1, x2, "surrogate", "surrogate"))[0]
    ref = j1 @ j2.T
    assert np.abs(k - ref).max() <= 1e-10 * np.abs(ref).max(), np.abs(k - ref).max()


@pytest.mark.parametrize("name", list(SURROGATES))
def test_quasi_jacobian_of_the_unmodified_snntorch_network(name):
    """Leaky layers as they are: the incoming gradient at each of the L spiking layers is
    rounded to float32 (relative U32), so each Jacobian entry may move by up to
    L U32 relative to the largest of its products: |diff| <= 4 L U32 max|J|."""
    module = _snn_module(name)
    net, params = from_torch(module)
    x = _inputs()
    f, j = _torch_jacobian(module, x, name, "snntorch")
    np.testing.assert_allclose(gk.to_host(net.apply(params, x))[0], f, rtol=1e-13, atol=1e-13)
    jac = gk.to_host(net.jacobian(params, x, "surrogate"))[0]
    depth = net.depth
    assert np.abs(jac - j).max() <= 4 * depth * U32 * np.abs(j).max()
    assert np.abs(jac - j).max() > 0.0  # the rounding is real


def _flat(module):
    """The module's parameters in gpukern's order (per layer W row-major, then b)."""
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()]).numpy()


def _torch_sgd(module, x, y, lr, steps, forward):
    opt = torch.optim.SGD(module.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * ((forward(x) - y) ** 2).sum()).backward()
        opt.step()
    with torch.no_grad():
        return forward(x).numpy(), _flat(module)


@pytest.mark.parametrize("name", ["fast_sigmoid", "atan", "sigmoid", "triangular"])
@pytest.mark.parametrize("mode", ["float64", "snntorch"])
def test_sgd_in_torch_is_gk_train(name, mode):
    """k full-batch SGD steps in torch from the same weights as gk.train (standard
    parameterization): outputs and every parameter at the end. (A step network's outputs
    see the hidden weights only through its spikes, so the parameters are where the
    surrogate gradient shows.) float64: <= 1e-10 of the largest parameter change.
    Unmodified snnTorch: each step's gradient carries the float32 rounding of the L
    spiking layers (4 L U32 relative, as above): <= 4 k L U32 of the largest change."""
    module = _snn_module(name, seed=3)
    net, params = from_torch(module)
    x = _inputs(10, seed=4)
    y = np.sin(np.arange(10.0))
    lr, steps = 0.01, 5
    res = gk.train(net, params, x, y, steps=steps, lr=lr, derivative="surrogate")
    f_gk = gk.to_host(net.apply(res.params, x))[0]
    theta0, theta_gk = gk.to_host(params.ravel())[0], gk.to_host(res.params.ravel())[0]
    f_torch, theta_torch = _torch_sgd(module, x, torch.from_numpy(y), lr, steps,
                                      lambda v: _run(module, v, name, mode))
    change = np.abs(theta_gk - theta0).max()
    assert change > 1e-3  # training moved the parameters
    np.testing.assert_allclose(f_torch, f_gk, rtol=1e-10, atol=1e-10 * np.abs(f_gk).max())
    tol = 1e-10 * change if mode == "float64" else 4 * steps * net.depth * U32 * change
    diff = np.abs(theta_gk - theta_torch).max()
    assert diff <= tol, (diff, tol)


def test_readme_table_is_the_bridge_and_each_row_is_snntorch():
    """The README's table is equivalence_table(), and each snnTorch surrogate's translation
    (as from_torch reads it from a Leaky layer) is snnTorch's backward: the surrogate
    derivative of step(theta) at 41 points equals the gradient snnTorch computes (float64
    input, incoming gradient 1)."""
    assert equivalence_table() in README.read_text()
    expected = {"fast_sigmoid": gk.surrogates.fast_sigmoid(beta=5.0, scale=2 / 5.0),
                "atan": gk.surrogates.atan(alpha=2.0), "sigmoid": gk.surrogates.sigmoid(beta=4.0),
                "straight_through": gk.surrogates.straight_through(scale=2.0)}
    u = np.linspace(-3, 3, 41) + 0.0123
    for name, (make, _, _) in SURROGATES.items():
        net, _ = from_torch(_snn_module(name, sizes=(3, 4, 1)))
        if name in expected:
            assert net.surrogate == expected[name], (name, net.surrogate)
        v = torch.tensor(u, requires_grad=True)
        (grad,) = torch.autograd.grad(make()(v).sum(), v)
        mine = gk.to_host(net.side("d", "surrogate")(np.asarray(u + THETA)))
        np.testing.assert_allclose(mine, grad.numpy(), rtol=1e-14, atol=1e-15, err_msg=name)


@pytest.mark.parametrize("parameterization", ["standard", "ntk"])
def test_to_torch_trains_as_gk_train(parameterization):
    """The module to_torch builds (forward sigma, backward gpukern's surrogate), trained
    with torch.optim.SGD on 1/2 sum (f - y)^2, is gk.train: float64, <= 1e-10."""
    widths = (20, 12)
    net = gk.MLP(2, gk.activations.quantizer((-0.5, 0.8), (-1.0, 0.2, 1.0)),
                 gk.surrogates.atan(alpha=1.5), weight_std=1.7, bias_std=0.3,
                 parameterization=parameterization,
                 widths=widths if parameterization == "standard" else None)
    params = net.init(3, widths, ensemble=2, seed=5)
    x = np.random.default_rng(6).standard_normal((9, 3))
    y = np.cos(np.arange(9.0))
    lr, steps = 0.02, 4
    res = gk.train(net, params, x, y, steps=steps, lr=lr)
    module = to_torch(net, params, index=1)
    f_torch, theta_torch = _torch_sgd(module, torch.from_numpy(x), torch.from_numpy(y), lr,
                                      steps, lambda v: module(v)[:, 0])
    f_gk = gk.to_host(net.apply(res.params, x))[1]
    theta0, theta_gk = gk.to_host(params.ravel())[1], gk.to_host(res.params.ravel())[1]
    change = np.abs(theta_gk - theta0).max()
    assert change > 1e-3
    np.testing.assert_allclose(f_torch, f_gk, rtol=1e-10, atol=1e-10 * np.abs(f_gk).max())
    assert np.abs(theta_torch - theta_gk).max() <= 1e-10 * change


def test_plain_module_with_an_autograd_function():
    """A user's spike module (a torch.autograd.Function at theta = 0.7 with an atan-shaped
    backward of amplitude 3): threshold, levels and surrogate read from its values."""

    class SpikeFn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, v):
            ctx.save_for_backward(v)
            return torch.where(v > 0, 1.0, -1.0).to(v.dtype)

        @staticmethod
        def backward(ctx, g):
            (v,) = ctx.saved_tensors
            return g * 3.0 / (1 + (np.pi * 1.5 * v / 2) ** 2)

    class Spike(torch.nn.Module):
        def forward(self, x):
            return SpikeFn.apply(x - 0.7)

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(3, 8, dtype=torch.float64), Spike(),
                                 torch.nn.Linear(8, 1, dtype=torch.float64))
    net, params = from_torch(module)
    assert net.activation.name == gk.activations.sign(0.7).name
    x = _inputs(6)
    rows = _autograd_rows(module(x)[:, 0], list(module.parameters()))
    np.testing.assert_allclose(gk.to_host(net.jacobian(params, x, "surrogate"))[0],
                               rows, rtol=1e-12, atol=1e-14)


def test_torch_inputs_without_a_copy():
    from gpukern._checks import backend_array

    t = _inputs().requires_grad_()
    arr = backend_array(t)
    assert np.shares_memory(arr, t.detach().numpy())
    net, params = from_torch(_snn_module("atan"))
    np.testing.assert_array_equal(gk.to_host(net.empirical_kernel(params, t)),
                                  gk.to_host(net.empirical_kernel(params, t.detach().numpy())))


def test_what_cannot_be_translated_is_named():
    lin = torch.nn.Linear(3, 4, dtype=torch.float64)
    out = torch.nn.Linear(4, 1, dtype=torch.float64)
    sfs = snn.Leaky(beta=0.5, spike_grad=surrogate.SFS(), init_hidden=True)
    with pytest.raises(ValueError, match=r"SFS.<locals>.inner"):
        from_torch(torch.nn.Sequential(lin, sfs, out))
    with pytest.raises(ValueError, match="Synaptic"):
        from_torch(torch.nn.Sequential(lin, snn.Synaptic(alpha=0.5, beta=0.5, init_hidden=True),
                                       out))
    with pytest.raises(ValueError, match="bias=False"):
        from_torch(torch.nn.Sequential(torch.nn.Linear(3, 4, bias=False), _leaky("atan"), out))
    with pytest.raises(ValueError, match="must be nn.Linear"):
        from_torch(torch.nn.Sequential(lin, _leaky("atan"), torch.nn.Tanh()))
    with pytest.raises(ValueError, match="another nonlinearity"):
        from_torch(torch.nn.Sequential(lin, _leaky("atan"), torch.nn.Linear(4, 4),
                                       _leaky("sigmoid"), out))
    with pytest.raises(ValueError, match="single jump"):
        from_torch(torch.nn.Sequential(lin, torch.nn.Tanh(), out))
