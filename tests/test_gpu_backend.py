"""The CuPy backend against the NumPy backend: through the strict CuPy stand-in
(tests/cupy_standin: CuPy's API only, arrays that refuse implicit host conversion, the
RawModule built for the host, the Numba kernels in the simulator) on every machine, and
on a real device where one is usable.

The backend is fixed at import, so each side runs in its own process: the reference with
GPUKERN_BACKEND=numpy, the candidate with GPUKERN_BACKEND=cupy; results are compared here
as NumPy arrays, to 1e-12 relative in float64 (the executors differ in rounding only).
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from gpukern._backend import BackendUnavailableError, choose_backend

ROOT = Path(__file__).resolve().parents[1]
STANDIN = Path(__file__).resolve().parent / "cupy_standin"


def _have_gpu() -> bool:
    """A real CUDA device for the CuPy backend (this process may run on NumPy)."""
    try:
        return not choose_backend("cupy").xp.__version__.endswith("+standin")
    except BackendUnavailableError:
        return False


def _env(kind: str) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    path = [str(ROOT)] + ([str(STANDIN)] if kind == "standin" else [])
    env["PYTHONPATH"] = os.pathsep.join(path + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["GPUKERN_BACKEND"] = "numpy" if kind == "numpy" else "cupy"
    if kind == "standin":
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    return env


@pytest.fixture(params=["standin", "device"])
def cupy_kind(request):
    if request.param == "standin" and shutil.which(os.environ.get("CXX", "g++")) is None:
        pytest.skip("the stand-in builds the RawModule with a host C++ compiler")
    if request.param == "device" and not _have_gpu():
        pytest.skip("no usable CUDA device (CuPy backend)")
    return request.param


SCRIPT = textwrap.dedent("""
    import sys, warnings
    import numpy as np
    import gpukern as gk
    from gpukern._backend import BACKEND
    assert gk.backend() == sys.argv[2], gk.backend()
    warnings.simplefilter("ignore", RuntimeWarning)
    host = BACKEND.to_host
    x = np.load(sys.argv[1] + "/x.npy")
    nets = {
        "sign_erf": gk.MLP(3, gk.activations.sign(), gk.surrogates.erf(2.0), bias_std=0.1),
        "erf_boxcar": gk.MLP(2, gk.activations.erf(5.0), gk.surrogates.boxcar(0.5), bias_std=0.2),
        "relu_fast": gk.MLP(2, gk.activations.relu(), gk.surrogates.fast_sigmoid(4.0)),
        "step_sigmoid": gk.MLP(1, gk.activations.step(), gk.surrogates.sigmoid(3.0), bias_std=0.1),
        "step1_erf": gk.MLP(2, gk.activations.step(1.0), gk.surrogates.erf(2.0), bias_std=0.3),
        "quant_tri": gk.MLP(2, gk.activations.uniform_quantizer(2), gk.surrogates.triangle(0.6),
                            bias_std=0.2),
        "standard": gk.MLP(2, gk.activations.sign(), gk.surrogates.erf(1.0), bias_std=0.2,
                           parameterization="standard", widths=(64, 32)),
    }
    if sys.argv[2] == "cupy":  # the fused RawModule and the Numba kernels, not array code
        from gpukern import planner
        from gpukern.kernels import ops
        assert ops.available_executors() == ("cupy", "array")
        net = nets["sign_erf"]
        assert planner.plan(net.arch, [net.pair("true", "surrogate")]).executor == "cupy"
        assert ops._use_numba()
    out = {}
    for name, net in nets.items():
        xs = x[:7] if name in ("relu_fast", "step_sigmoid", "quant_tri") else x  # quadrature: small
        for k, v in net.kernels(xs, which=("nngp", "ntk", "sgntk", "surrogate")).items():
            out[f"{name}_{k}"] = host(v)
        out[f"{name}_xy"] = host(net.sgntk(xs[:5], xs[3:]))
    # Mehler series: a sigmoid surrogate pair, a custom activation's NNGP and NTK (on the
    # device: the fused kernel with host-made coefficient rows, every point served)
    snet = gk.MLP(3, gk.activations.sign(), gk.surrogates.sigmoid(2.0), bias_std=0.2)
    tnet = gk.MLP(3, gk.activations.custom(np.tanh, lambda v: 1.0 - np.tanh(v) ** 2),
                  bias_std=0.2)
    if sys.argv[2] == "cupy":
        from gpukern import planner
        from gpukern.kernels import cupy_fused
        for n, pair in ((snet, ("surrogate", "surrogate")), (tnet, ("true", "true"))):
            assert planner.plan(n.arch, [n.pair(*pair)]).executor == "cupy"
            q = np.stack([host(v) for v in planner.prepare(n.arch, BACKEND.xp.asarray(x),
                                                           None).q1])
            sides = [(n.side("left", pair[0]), n.side("right", pair[1]))]
            assert cupy_fused.series_rows(n.arch.sigma, sides, q, q)[0].any()
    # correlation tables: fast_sigmoid (no closed form, no series) on 70 inputs of one norm,
    # every layer one variance: on the device, the fused kernel reading the tables
    xs70 = np.random.default_rng(7).normal(size=(70, 3))
    xs70 /= np.linalg.norm(xs70, axis=1, keepdims=True)
    fnet = gk.MLP(3, gk.activations.sign(), gk.surrogates.fast_sigmoid(2.0), bias_std=0.2)
    if sys.argv[2] == "cupy":
        q = np.stack([host(v) for v in planner.prepare(fnet.arch, BACKEND.xp.asarray(xs70),
                                                       None).q1])
        sides = [(fnet.side("left", "surrogate"), fnet.side("right", "surrogate"))]
        series, (off, data) = cupy_fused.routes(fnet.arch.sigma, sides, q, q, fnet.arch.order)
        assert (off[0] >= 0).all() and not series[0].any()
    out["table_fast"] = host(fnet.kernel(xs70, left="surrogate", right="surrogate"))
    out["table_fast_xy"] = host(fnet.kernel(xs70[:30], xs70[20:], left="surrogate",
                                            right="surrogate"))
    # a table over variances, read on the array path (the fused kernels do not read them)
    from gpukern import variance
    vt = variance.build(lambda q, qp, c, det: np.log(q) * qp + c + 0.5 * c ** 3 / (q * qp),
                        -2, 1)
    rv = np.random.default_rng(8)
    qv, qpv, r = 2.0 ** rv.uniform(-2, 6, 300), 2.0 ** rv.uniform(1, 9, 300), rv.uniform(-1, 1, 300)
    cov = (qv, qpv, r * np.sqrt(qv * qpv), qv * qpv * (1.0 - r * r))
    out["variance_table"] = host(vt(*(BACKEND.xp.asarray(a) for a in cov)))
    out["series_sig"] = host(snet.kernel(x, left="surrogate", right="surrogate"))
    out["series_sig_xy"] = host(snet.kernel(x[:9], x[4:], left="surrogate", right="surrogate"))
    for k, v in tnet.kernels(x, which=("nngp", "ntk")).items():
        out[f"series_tanh_{k}"] = host(v)
    net = nets["sign_erf"]
    p = net.init(3, (32, 16, 8), ensemble=4, seed=0)
    out["emp"] = host(net.empirical_kernel(p, x))
    out["emp_xy"] = host(net.empirical_kernel(p, x[:9], x[4:], left="surrogate"))
    out["apply"] = host(net.apply(p, x))
    res = gk.train(net, p, x, np.sin(x[:, 0]), lr=0.05, steps=6, record_every=3,
                   kernel_steps=[6])
    out["loss"], out["train_out"], out["k6"] = res.loss, res.outputs, res.kernels[6]
    pred = gk.predict(net, x[:6], np.sin(x[:6, 0]), x, lr=0.05, steps=[5, 50])
    out["pred_mean"], out["pred_var"] = host(pred.mean), host(pred.var)
    pred = gk.predict(net, x[:6], np.sin(x[:6, 0]), x, lr=0.05, t=[1.0, np.inf], ridge=1e-3,
                      full_cov=False)
    out["predt_mean"], out["predt_var"] = host(pred.mean), host(pred.var)
    post = gk.nngp_posterior(net, x[:6], np.sin(x[:6, 0]), x, ridge=1e-6)
    out["post_mean"] = host(post.mean)
    p3 = net.init(3, 16, ensemble=3, seed=1, n_out=3)  # C outputs
    y3 = np.stack([np.sin(x[:, 0]), x[:, 1], np.cos(x[:, 2])], axis=1)
    out["apply3"] = host(net.apply(p3, x))
    out["blocks3"] = host(net.empirical_kernel(p3, x[:5], blocks=True))
    res3 = gk.train(net, p3, x, y3, lr=0.05, steps=4, record_every=2)
    out["loss3"], out["train_out3"] = res3.loss, res3.outputs
    out["pred3"] = host(gk.predict(net, x[:6], y3[:6], x, lr=0.05, steps=[5]).mean)
    qnet = nets["quant_tri"]  # a sum of thresholded terms through the Numba backprop
    pq = qnet.init(3, (16, 8), ensemble=2, seed=2)
    out["quant_emp"] = host(qnet.empirical_kernel(pq, x[:8], left="surrogate"))
    resq = gk.train(qnet, pq, x, np.sin(x[:, 0]), lr=0.05, steps=3, record_every=3)
    out["quant_loss"], out["quant_out"] = resq.loss, resq.outputs
    snet = nets["standard"]  # the standard parameterization: its init, kernel and SGL step
    ps = snet.init(3, ensemble=2, seed=3)
    out["std_emp"] = host(snet.empirical_kernel(ps, x[:8], left="surrogate"))
    ress = gk.train(snet, ps, x, np.sin(x[:, 0]), lr=0.01, steps=3, record_every=3)
    out["std_loss"], out["std_out"] = ress.loss, ress.outputs
    np.savez(sys.argv[1] + "/" + sys.argv[2] + ".npz", **out)
""")


def _run(args: list[str], kind: str, timeout: int = 900, extra: dict | None = None
         ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=_env(kind) | (extra or {}),
                          capture_output=True, text=True, timeout=timeout)


def test_cupy_equals_numpy(tmp_path, cupy_kind):
    x = np.random.default_rng(0).normal(size=(24, 3))
    x[5] = x[2]
    np.save(tmp_path / "x.npy", x)
    for kind, backend in (("numpy", "numpy"), (cupy_kind, "cupy")):
        r = _run(["-c", SCRIPT, str(tmp_path), backend], kind)
        assert r.returncode == 0, r.stderr[-4000:]
    ref, got = np.load(tmp_path / "numpy.npz"), np.load(tmp_path / "cupy.npz")
    assert set(ref.files) == set(got.files)
    for k in ref.files:
        np.testing.assert_array_equal(np.isinf(got[k]), np.isinf(ref[k]), err_msg=k)
        fin = np.isfinite(ref[k])
        np.testing.assert_allclose(got[k][fin], ref[k][fin], rtol=1e-11, atol=1e-13, err_msg=k)


def test_reproduce_tiny_through_cupy(tmp_path, cupy_kind):
    """`gpukern reproduce` end to end on the CuPy backend; metrics as on NumPy. Through the
    stand-in on CuPy's array executor: the Numba simulator runs a Python thread per CUDA
    thread, minutes here (the kernels themselves are in test_cupy_equals_numpy)."""
    metrics = {}
    for kind in ("numpy", cupy_kind):
        out = tmp_path / kind
        extra = {"GPUKERN_EXECUTOR": "array"} if kind == "standin" else {}
        r = _run(["-m", "gpukern", "reproduce", "--scale", "tiny", "--no-progress",
                  "--out", str(out)], kind, extra=extra)
        assert r.returncode == 0, r.stderr[-4000:]
        metrics[kind] = json.loads((out / "metrics.json").read_text())
    ref, got = metrics["numpy"], metrics[cupy_kind]
    assert got["config"]["backend"] == "cupy"
    for name in ref:
        if name != "config":
            _close(got[name], ref[name], name)


def _close(a, b, where: str) -> None:
    if isinstance(b, dict):
        for k in b:
            if k != "seconds":
                _close(a[k], b[k], f"{where}.{k}")
    elif isinstance(b, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{where}[{i}]")
    elif isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-6, abs=1e-9), where
    else:
        assert a == b, where


FALLBACK = textwrap.dedent("""
    import warnings
    import numpy as np
    import gpukern as gk
    net = gk.MLP(2, gk.activations.sign(), gk.surrogates.erf(1.0), bias_std=0.1)
    x = np.random.default_rng(0).normal(size=(6, 3))
    p = net.init(3, 8, ensemble=2, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        k = gk.to_host(net.empirical_kernel(p, x))
        res = gk.train(net, p, x, np.sin(x[:, 0]), lr=0.05, steps=3)
    numba = [w for w in caught if "Numba CUDA kernels cannot run" in str(w.message)]
    assert len(numba) == 1, [str(w.message) for w in caught]
    np.save("{out}/k.npy", k)
    np.save("{out}/loss.npy", res.loss)
""")


def test_numba_failure_falls_back_to_array_expressions(tmp_path):
    """Without a usable Numba CUDA (here: the stand-in without the simulator, so Numba
    looks for a real driver, as on a machine with CuPy but no NVVM) the elementwise steps
    run as CuPy array expressions after one warning, with the same results."""
    env = _env("standin")
    env.pop("NUMBA_ENABLE_CUDASIM")
    r = subprocess.run([sys.executable, "-c", FALLBACK.format(out=tmp_path)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    import gpukern as gk  # the references: this process, pinned to NumPy by CI

    net = gk.MLP(2, gk.activations.sign(), gk.surrogates.erf(1.0), bias_std=0.1)
    x = np.random.default_rng(0).normal(size=(6, 3))
    p = net.init(3, 8, ensemble=2, seed=0)
    np.testing.assert_allclose(np.load(tmp_path / "k.npy"), net.empirical_kernel(p, x),
                               rtol=1e-12)
    res = gk.train(net, p, x, np.sin(x[:, 0]), lr=0.05, steps=3)
    np.testing.assert_allclose(np.load(tmp_path / "loss.npy"), res.loss, rtol=1e-12)


ASV = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    from benchmarks import bench_analytic, bench_finite
    rows = bench_analytic.GpuMemory()
    rows.setup(64)
    assert rows.track_gpu_pool_bytes(64) >= 0
    a = bench_analytic.AnalyticKernels()
    a.setup(64, 1, "erf")
    a.time_erf_nngp_ntk(64, 1, "erf")
    a.time_sign_sgntk(64, 1, "erf")
    print("ok")
""")


def test_asv_gpu_rows(cupy_kind):
    """The asv suite's CuPy rows (synchronized timings, the memory pool) run on the backend."""
    r = _run(["-c", ASV, str(ROOT / "asv_benchmarks")], cupy_kind,
             extra={"GPUKERN_EXECUTOR": "array"} if cupy_kind == "standin" else {})
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]
