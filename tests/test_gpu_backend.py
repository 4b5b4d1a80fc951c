"""The CuPy backend against the NumPy backend (runs only where a CUDA device is usable).

The backend is fixed at import, so the CuPy results come from a subprocess with
GPUKERN_BACKEND=cupy and are compared here, to 1e-12 relative in float64.
"""

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import gpukern as gk
from gpukern._backend import BackendUnavailableError, choose_backend

try:
    choose_backend("cupy")
    HAVE_GPU = True
except BackendUnavailableError:
    HAVE_GPU = False

pytestmark = pytest.mark.skipif(not HAVE_GPU, reason="no usable CUDA device (CuPy backend)")

SCRIPT = textwrap.dedent("""
    import sys, warnings
    import numpy as np, cupy
    import gpukern as gk
    assert gk.backend() == "cupy"
    warnings.simplefilter("ignore", RuntimeWarning)
    x = np.load(sys.argv[1] + "/x.npy")
    out = {}
    for name, net in NETS().items():
        for k, v in net.kernels(x, which=("nngp", "sgntk", "surrogate")).items():
            out[f"{name}_{k}"] = cupy.asnumpy(v)
    net = NETS()["sign_erf"]
    p = net.init(3, (32, 16), ensemble=4, seed=0)
    out["emp"] = cupy.asnumpy(net.empirical_kernel(p, x))
    res = gk.train(net, p, x, np.sin(x[:, 0]), lr=0.05, steps=20)
    out["loss"] = np.asarray(res.loss)
    pred = gk.predict(net, x[:6], np.sin(x[:6, 0]), x, lr=0.05, steps=[5, 50])
    out["pred_mean"], out["pred_var"] = cupy.asnumpy(pred.mean), cupy.asnumpy(pred.var)
    np.savez(sys.argv[1] + "/cupy.npz", **out)
""")

NETS_SRC = textwrap.dedent("""
    def NETS():
        import gpukern as gk
        return {
            "sign_erf": gk.MLP(3, gk.activations.sign(), gk.surrogates.erf(2.0), bias_std=0.1),
            "erf_boxcar": gk.MLP(2, gk.activations.erf(5.0), gk.surrogates.boxcar(0.5), bias_std=0.2),
            "relu_fast": gk.MLP(2, gk.activations.relu(), gk.surrogates.fast_sigmoid(4.0)),
        }
""")


def test_cupy_equals_numpy(tmp_path):
    ns: dict = {}
    exec(NETS_SRC, ns)
    x = np.random.default_rng(0).normal(size=(40, 3))
    x[5] = x[2]
    np.save(tmp_path / "x.npy", x)
    env = dict(os.environ, GPUKERN_BACKEND="cupy")
    r = subprocess.run([sys.executable, "-c", NETS_SRC + SCRIPT, str(tmp_path)], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    got = np.load(tmp_path / "cupy.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for name, net in ns["NETS"]().items():
            for k, v in net.kernels(x, which=("nngp", "sgntk", "surrogate")).items():
                np.testing.assert_allclose(got[f"{name}_{k}"], v, rtol=1e-12, atol=1e-14)
    net = ns["NETS"]()["sign_erf"]
    p = net.init(3, (32, 16), ensemble=4, seed=0)
    np.testing.assert_allclose(got["emp"], net.empirical_kernel(p, x), rtol=1e-12, atol=1e-13)
    res = gk.train(net, p, x, np.sin(x[:, 0]), lr=0.05, steps=20)
    np.testing.assert_allclose(got["loss"], res.loss, rtol=1e-10)
    pred = gk.predict(net, x[:6], np.sin(x[:6, 0]), x, lr=0.05, steps=[5, 50])
    np.testing.assert_allclose(got["pred_mean"], pred.mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got["pred_var"], pred.var, rtol=1e-9, atol=1e-12)
