"""SGL training of ensembles: GP predictions, checkpoints, bad input."""

import os
import signal

import numpy as np
import pytest
from conftest import z_bound
from scipy import stats

import gpukern as gk

pytestmark = pytest.mark.usefixtures("executor")  # every test on every executor


def _task(n_train=6, n_test=10):
    a = np.linspace(0, 2 * np.pi, n_train, endpoint=False) + 0.15
    b = np.linspace(0, 2 * np.pi, n_test, endpoint=False)
    x = np.stack([np.cos(a), np.sin(a)], axis=1)
    xs = np.stack([np.cos(b), np.sin(b)], axis=1)
    return x, np.sin(2 * a) + 0.5 * np.cos(a), xs


def _compare(result, pred, label):
    """Ensemble mean vs GP mean (z-scores) and ensemble std vs GP std, per recorded step."""
    out = result.outputs  # (R, E, N)
    e = out.shape[1]
    mean = out.mean(1)
    se = out.std(1, ddof=1) / np.sqrt(e)
    z = (mean - pred.mean) / se
    ratio = out.std(1, ddof=1) / pred.std
    return z, ratio


@pytest.mark.parametrize("mode", ["gd_ntk", "sgl_sgntk"])
def test_wide_erf_ensemble_matches_kernel_prediction(mode):
    """Wide erf_3 networks (width 512, 128 of them) trained by gradient descent (NTK) or
    SGL with an erf surrogate (SG-NTK): ensemble mean within z standard errors of the GP
    mean (Bonferroni over points and steps), ensemble std within z standard errors of the
    GP std (the sample std of E normal draws has relative standard error 1/sqrt(2(E-1)))."""
    net = gk.MLP(2, gk.activations.erf(3.0), gk.surrogates.erf(1.5), bias_std=0.2)
    x, y, xs = _task()
    derivative, kernel = ("true", "ntk") if mode == "gd_ntk" else ("surrogate", "sgntk")
    steps = [0, 5, 20, 40]
    lr = 0.5 / np.abs(np.linalg.eigvals(net.kernel(x, left="true", right=derivative))).max()
    params = net.init(2, 512, ensemble=128, seed=3)
    res = gk.train(net, params, x, y, lr=lr, steps=40, derivative=derivative,
                   record_steps=steps, x_eval=xs)
    assert list(res.steps) == steps
    pred = gk.predict(net, x, y, xs, lr=lr, steps=steps, kernel=kernel)
    z, ratio = _compare(res, pred, mode)
    bound = z_bound(z.size, dof=127)
    assert np.abs(z).max() <= bound, (z, bound)
    se_ratio = 1 / np.sqrt(2 * 127)
    assert np.abs(ratio - 1).max() <= bound * se_ratio, ratio
    assert res.loss[-1].mean() < 0.05 * res.loss[0].mean()


def test_sign_ensemble_matches_sign_limit_sgntk():
    """Sign networks (width 512, 100 of them) trained by SGL with the wide surrogate
    erf(k=1) against the sign-limit SG-NTK GP: the ensemble mean agrees within standard
    errors on average (sum of z^2 below the chi-square 1 - 1e-3 quantile), and the
    ensemble spread matches the GP spread within 10 % on average."""
    net = gk.MLP(2, gk.activations.sign(), gk.surrogates.erf(1.0), bias_std=0.2)
    x, y, xs = _task(8, 12)
    lr = 0.5 / np.abs(np.linalg.eigvals(net.sgntk(x))).max()
    steps = [10, 40]
    res = gk.train(net, net.init(2, 512, ensemble=100, seed=0), x, y, lr=lr, steps=40,
                   record_steps=steps, x_eval=xs)
    pred = gk.predict(net, x, y, xs, lr=lr, steps=res.steps, kernel="sgntk")
    z, ratio = _compare(res, pred, "sign")
    for k in range(len(res.steps)):
        chi2 = float(np.sum(z[k] ** 2))
        assert chi2 <= stats.chi2.ppf(1 - 1e-3, z.shape[1]), (res.steps[k], z[k])
        assert abs(ratio[k].mean() - 1) <= 0.10, (res.steps[k], ratio[k])


def _setup_small():
    net = gk.MLP(2, gk.activations.sign(), gk.surrogates.fast_sigmoid(3.0), bias_std=0.2)
    x, y, xs = _task(5, 6)
    return net, net.init(2, (16, 12), ensemble=3, seed=5), x, y, xs


def _same(a, b):
    for w1, w2 in zip(a.params.weights + a.params.biases, b.params.weights + b.params.biases):
        np.testing.assert_array_equal(w1, w2)
    np.testing.assert_array_equal(a.steps, b.steps)
    np.testing.assert_array_equal(a.loss, b.loss)
    np.testing.assert_array_equal(a.outputs, b.outputs)
    assert a.kernels.keys() == b.kernels.keys()
    for k in a.kernels:
        np.testing.assert_array_equal(a.kernels[k], b.kernels[k])


def test_resume_after_ctrl_c_is_bit_identical(tmp_path, monkeypatch):
    net, p, x, y, xs = _setup_small()
    kw = dict(lr=0.05, steps=30, record_every=4, x_eval=xs, kernel_steps=[0, 12, 30])
    ref = gk.train(net, p, x, y, **kw)
    ck = tmp_path / "run.npz"

    import gpukern.training as tr
    real = tr.sgl_step
    calls = {"n": 0}

    def interrupting(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 17:  # a real SIGINT in the middle of an update
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(tr, "sgl_step", interrupting)
    with pytest.raises(KeyboardInterrupt):
        gk.train(net, p, x, y, checkpoint=ck, checkpoint_every=5, **kw)
    monkeypatch.setattr(tr, "sgl_step", real)
    with np.load(ck) as data:
        import json
        meta = json.loads(data["meta"].tobytes().decode())
    assert meta["step"] == 17  # the step in flight finished, then it stopped
    resumed = gk.train(net, p, x, y, checkpoint=ck, checkpoint_every=5, **kw)
    _same(resumed, ref)
    again = gk.train(net, p, x, y, checkpoint=ck, checkpoint_every=5, **kw)  # finished: reload
    _same(again, ref)


def test_periodic_checkpoints_and_other_config_refused(tmp_path):
    net, p, x, y, xs = _setup_small()
    ck = tmp_path / "run.npz"
    ref = gk.train(net, p, x, y, lr=0.05, steps=12, checkpoint=ck, checkpoint_every=4)
    assert not list(tmp_path.glob("*.tmp"))
    _same(gk.train(net, p, x, y, lr=0.05, steps=12, checkpoint=ck), ref)
    with pytest.raises(ValueError, match="belongs to another run"):
        gk.train(net, p, x, y, lr=0.06, steps=12, checkpoint=ck)
    with pytest.raises(ValueError, match="belongs to another run"):
        gk.train(net, net.init(2, (16, 12), ensemble=3, seed=6), x, y, lr=0.05, steps=12,
                 checkpoint=ck)
    (tmp_path / "junk.npz").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not readable"):
        gk.train(net, p, x, y, lr=0.05, steps=12, checkpoint=tmp_path / "junk.npz")


def test_training_leaves_caller_params_and_matches_single_networks():
    net, p, x, y, _ = _setup_small()
    before = p.ravel().copy()
    res = gk.train(net, p, x, y, lr=0.05, steps=10)
    np.testing.assert_array_equal(p.ravel(), before)
    for e in range(3):
        one = gk.train(net, p[e], x, y, lr=0.05, steps=10)
        np.testing.assert_allclose(one.params.ravel()[0], res.params.ravel()[e], rtol=1e-12)
        np.testing.assert_allclose(one.loss[:, 0], res.loss[:, e], rtol=1e-12)


def test_sgl_step_equals_quasi_jacobian_descent():
    """One trainer step is theta - lr J~^T (f - Y) with J~ from net.jacobian."""
    net, p, x, y, _ = _setup_small()
    lr = 0.05
    res = gk.train(net, p, x, y, lr=lr, steps=1)
    j = net.jacobian(p, x, "surrogate")
    r = net.apply(p, x) - y
    expected = p.ravel() - lr * np.einsum("enp,en->ep", j, r)
    np.testing.assert_allclose(res.params.ravel(), expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(res.loss[0], 0.5 * np.sum(r * r, axis=1), rtol=1e-13)


def test_progress_bar(capsys):
    pytest.importorskip("tqdm")
    net, p, x, y, _ = _setup_small()
    gk.train(net, p, x, y, lr=0.05, steps=3, progress=True)
    assert "SGL" in capsys.readouterr().err


def test_bad_training_input():
    net, p, x, y, _ = _setup_small()
    with pytest.raises(ValueError, match="lr must be > 0"):
        gk.train(net, p, x, y, lr=-1.0, steps=3)
    with pytest.raises(ValueError, match="steps must be >= 0"):
        gk.train(net, p, x, y, lr=0.1, steps=-3)
    with pytest.raises(ValueError, match="y contains NaN"):
        gk.train(net, p, x, np.full(5, np.nan), lr=0.1, steps=3)
    with pytest.raises(ValueError, match=r"y must have shape \(5,\)"):
        gk.train(net, p, x, y[:4], lr=0.1, steps=3)
    with pytest.raises(ValueError, match="x has 3 features"):
        gk.train(net, p, np.ones((5, 3)), y, lr=0.1, steps=3)
    with pytest.raises(ValueError, match="record_steps has step 9 > steps = 3"):
        gk.train(net, p, x, y, lr=0.1, steps=3, record_steps=[9])
    with pytest.raises(ValueError, match="derivative must be one of"):
        gk.train(net, p, x, y, lr=0.1, steps=3, derivative="fake")


def _net(act, sur=None, sw=1.0):
    return gk.MLP(1, act, sur or gk.surrogates.erf(1.0), weight_std=sw, bias_std=0.1)


def test_checkpoint_knows_its_run_by_value(tmp_path):
    """The fingerprint is built from values: another function, or stds/parameters that
    differ in the 6th digit, are refused; the same code in new objects resumes."""
    x, y, _ = _task(6, 3)
    ck = tmp_path / "c.npz"

    def tanh():  # a new custom activation object each call, same code
        return gk.activations.custom(np.tanh, lambda v: 1 - np.tanh(v) ** 2)

    def bump():
        return gk.surrogates.custom(lambda v: 2 / (np.pi * (1 + v * v)), width=1.0)

    p = _net(tanh()).init(2, 8, ensemble=2, seed=0)
    first = gk.train(_net(tanh(), bump()), p, x, y, lr=0.05, steps=3, checkpoint=ck)
    again = gk.train(_net(tanh(), bump()), p, x, y, lr=0.05, steps=3, checkpoint=ck)
    np.testing.assert_array_equal(again.loss, first.loss)
    others = [_net(gk.activations.custom(np.sin, np.cos), bump()),
              _net(tanh(), gk.surrogates.custom(lambda v: 1 / np.cosh(v) ** 2)),
              _net(tanh(), bump(), sw=1.000004)]
    for net in others:
        with pytest.raises(ValueError, match="another run"):
            gk.train(net, p, x, y, lr=0.05, steps=3, checkpoint=ck)
    ck2 = tmp_path / "erf.npz"
    gk.train(_net(gk.activations.erf(2.0)), p, x, y, lr=0.05, steps=3, checkpoint=ck2)
    with pytest.raises(ValueError, match="another run"):
        gk.train(_net(gk.activations.erf(2.000001)), p, x, y, lr=0.05, steps=3, checkpoint=ck2)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid:RuntimeWarning")
def test_diverging_training_stops_naming_step_and_lr(tmp_path):
    """lr = 5 drives the loss to 1e100 and beyond, then inf/NaN: the run stops with the
    step and lr, and nothing diverged is checkpointed; on_divergence='continue' goes on."""
    x, y, _ = _task(6, 3)
    net = gk.MLP(2, gk.activations.erf(1.0), gk.surrogates.erf(1.0), bias_std=0.1)
    p = net.init(2, 16, ensemble=3, seed=0)
    ck = tmp_path / "c.npz"
    with pytest.raises(gk.DivergenceError, match=r"diverged at step \d+ with lr = 5"):
        gk.train(net, p, x, y, lr=5.0, steps=300, checkpoint=ck, checkpoint_every=1000)
    assert not ck.exists()
    res = gk.train(net, p, x, y, lr=5.0, steps=300, on_divergence="continue")
    assert not (np.isfinite(res.loss[-1]) & (res.loss[-1] < 1e8 * res.loss[0])).all()
    ok = gk.train(net, p, x, y, lr=0.05, steps=300)  # a stable lr never trips it
    assert np.isfinite(ok.loss).all()
    with pytest.raises(ValueError, match="on_divergence must be one of"):
        gk.train(net, p, x, y, lr=0.05, steps=3, on_divergence="ignore")


def test_checkpoint_path_checked_before_any_work(tmp_path):
    """An unwritable checkpoint path is an error before training (it was found only at the
    end, losing the run); temp files of an interrupted save are cleaned up."""
    x, y, _ = _task(6, 3)
    net = gk.MLP(1, gk.activations.sign(), gk.surrogates.erf(1.0), bias_std=0.1)
    p = net.init(2, 8, ensemble=2, seed=0)
    (tmp_path / "file").write_text("not a folder")
    for bad in (tmp_path / "file" / "c.npz", tmp_path):
        with pytest.raises(ValueError, match="checkpoint .* cannot be written"):
            gk.train(net, p, x, y, lr=0.05, steps=10**9, checkpoint=bad)
    ck = tmp_path / "c.npz"
    stale = tmp_path / "c.npz.k3j_x9.tmp"  # what a SIGKILL during a save leaves
    stale.write_bytes(b"\0" * 64)
    gk.train(net, p, x, y, lr=0.05, steps=3, checkpoint=ck)
    assert ck.exists() and not stale.exists()
    assert not list(tmp_path.glob(".gpukern-probe-*"))
