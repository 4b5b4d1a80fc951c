"""The fused recursion of the cuda/ headers compiled for the host, against the NumPy
backend; nvcc builds of the kernels.

The same __host__ __device__ functions the GPU kernels call are built with the host C++
compiler into a shared library (once per test session, ``host_lib`` in conftest.py) and
called through ctypes. Per-function values, averages and pairs: tests/test_contract.py.
"""

import ctypes
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import CUDA_DIR, cptr, desc

import gpukern as gk
from gpukern.functions import GaussianBump, classes_by_kind
from gpukern.planner import prepare
from gpukern.registry import closed_avg
from gpukern.surrogates import Surrogate

REQUIRE_NVCC = os.environ.get("GPUKERN_REQUIRE_NVCC") == "1"
REQUIRE_NVRTC = os.environ.get("GPUKERN_REQUIRE_NVRTC") == "1"
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"

# one example of every surrogate kind with a closed Gaussian average, and the erf bump
CLOSED_SURROGATES = [GaussianBump(0.25, 1.0)] + [
    cls.examples()[0] for cls in classes_by_kind().values()
    if issubclass(cls, Surrogate) and closed_avg(cls.kind)]


def _closed(lib, f, g):
    one = np.ones(1)
    out = np.empty(1)
    return bool(lib.gk_pair(cptr(desc(f)), cptr(desc(g)), cptr(one), cptr(one), cptr(0.5 * one),
                            cptr(0.75 * one), cptr(out), 1))


def _host_recursion(lib, net, pairs, x1, x2):
    arch = net.arch
    inputs = prepare(arch, x1, x2)
    q1, q2 = np.stack(inputs.q1), np.stack(inputs.q2)
    ids1, ids2 = inputs.ids1, inputs.ids2
    gram = (x1 @ x2.T) * (1.0 / x1.shape[1])
    fns = np.concatenate([desc(net.activation.function)] +
                         [np.concatenate([desc(a), desc(b)]) for a, b in pairs])
    n1, n2 = len(x1), len(x2)
    nngp = np.empty((n1, n2))
    kout = np.empty((len(pairs), n1, n2))
    ok = lib.gk_recursion(n1, n2, x1.shape[1], cptr(np.ascontiguousarray(gram)),
                          cptr(np.ascontiguousarray(q1)), cptr(np.ascontiguousarray(q2)),
                          cptr(ids1.astype(np.int64), ctypes.c_int64),
                          cptr(ids2.astype(np.int64), ctypes.c_int64),
                          cptr(np.ascontiguousarray(x1)), cptr(np.ascontiguousarray(x2)), arch.depth,
                          arch.sw2, arch.sb2, cptr(np.asarray(arch.own_terms(x1.shape[1]))),
                          cptr(fns), len(pairs), cptr(nngp), cptr(kout))
    assert ok
    return nngp, kout


@pytest.mark.usefixtures("executor")  # the reference on every executor
@pytest.mark.parametrize("act", ["erf(3)", "sign", "step", "relu", "linear"])
@pytest.mark.parametrize("surrogate", CLOSED_SURROGATES, ids=lambda f: type(f).__name__)
@pytest.mark.parametrize("depth, bias, n0, param", [(1, 0.0, 2, "ntk"), (3, 0.2, 2, "ntk"),
                                                    (2, 0.1, 12, "ntk"), (3, 0.2, 2, "standard")])
def test_fused_recursion_agrees(host_lib, act, surrogate, depth, bias, n0, param):
    activation = {"erf(3)": gk.activations.erf(3.0), "sign": gk.activations.sign(),
                  "step": gk.activations.step(), "relu": gk.activations.relu(),
                  "linear": gk.activations.linear()}[act]
    net = gk.MLP(depth, activation, surrogate, weight_std=1.3, bias_std=bias,
                 parameterization=param, widths=(40, 7, 300)[:depth] if param == "standard" else None)
    rng = np.random.default_rng(depth)
    x1 = rng.normal(size=(7, n0))
    x1[0] = 0.0  # the degenerate point
    x1[3] = 2.5 * x1[2]  # collinear pair
    x2 = np.concatenate([x1[[1, 4, 2]], rng.normal(size=(3, n0))])  # coinciding rows
    names = {"ntk": ("true", "true"), "sgntk": ("true", "surrogate"),
             "surrogate": ("surrogate", "surrogate")}
    candidates = ("sgntk", "surrogate") if activation.has_jump else ("ntk", "sgntk", "surrogate")
    # the fused kernel takes closed-form pairs (quadrature pairs run on the array path)
    which = tuple(w for w in candidates
                  if _closed(host_lib, net.side("left", names[w][0]), net.side("right", names[w][1])))
    assert "sgntk" in which or act == "relu"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = net.kernels(x1, x2, which=("nngp",) + which)
    pairs = [(net.side("left", names[w][0]), net.side("right", names[w][1])) for w in which]
    nngp, kout = _host_recursion(host_lib, net, pairs, x1, x2)
    np.testing.assert_allclose(nngp, ref["nngp"], rtol=1e-13, atol=1e-15)
    for w, k in zip(which, kout):
        np.testing.assert_allclose(k, ref[w], rtol=1e-13, atol=1e-15)


@pytest.mark.usefixtures("executor")
def test_naive_sign_ntk_inf_on_host(host_lib):
    net = gk.MLP(2, gk.activations.sign(), gk.surrogates.erf(1.0), bias_std=0.1)
    x = np.random.default_rng(0).normal(size=(4, 2))
    d = net.activation.derivative
    _, kout = _host_recursion(host_lib, net, [(d, d)], x, x)
    assert np.all(np.isinf(np.diag(kout[0])))
    off = ~np.eye(4, dtype=bool)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        np.testing.assert_allclose(kout[0][off], net.ntk(x)[off], rtol=1e-13)


def _nvcc():
    path = shutil.which("nvcc")
    if path is None:
        if REQUIRE_NVCC:
            pytest.fail("GPUKERN_REQUIRE_NVCC=1 but nvcc is not on PATH")
        pytest.skip("nvcc not found (set GPUKERN_REQUIRE_NVCC=1 to make this a failure)")
    return path


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_nvcc_compiles_kernels(tmp_path, arch):
    nvcc = _nvcc()
    for src in sorted(CUDA_DIR.glob("*.cu")):
        out = tmp_path / f"{src.stem}_{arch}.cubin"
        r = subprocess.run([nvcc, "-cubin", f"-arch={arch}", "-std=c++17", "-DGK_INSTANTIATE",
                            "-Werror", "all-warnings", f"-I{CUDA_DIR}", str(src), "-o", str(out)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert out.stat().st_size > 10_000, "no kernel instantiated in the cubin"


def _nvrtc_compile_for():
    try:
        from cupy.cuda import compiler

        compiler._get_nvrtc_version()
    except Exception as exc:  # no CuPy, or no NVRTC library
        if REQUIRE_NVRTC:
            pytest.fail(f"GPUKERN_REQUIRE_NVRTC=1 but CuPy's NVRTC is not usable: {exc}")
        pytest.skip(f"CuPy's NVRTC is not usable here ({exc}); pip install cupy-cuda12x "
                    "nvidia-cuda-nvrtc-cu12")
    sys.path.insert(0, str(SCRIPTS))
    try:
        from nvrtc_report import compile_for
    finally:
        sys.path.remove(str(SCRIPTS))
    return compile_for


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_nvrtc_compiles_the_raw_module_as_cupy_would(arch):
    """The RawModule's source, options and name expression through CuPy's own option
    assembly and NVRTC program (no device: only its architecture is given). NVRTC has no
    host headers, so nvcc accepting the file proves nothing about this."""
    from gpukern.kernels import cupy_fused

    cubin, mapping, log = _nvrtc_compile_for()(arch)
    assert mapping[cupy_fused.KERNEL].startswith("_Z15fused_recursionIdE"), mapping
    assert len(cubin) > 10_000, log


def test_kernel_source_changes_with_any_header(tmp_path, monkeypatch):
    """CuPy's cache keys on the source text: a header edit must change it."""
    from gpukern.kernels import cupy_fused

    copy = tmp_path / "cuda"
    shutil.copytree(CUDA_DIR, copy)
    monkeypatch.setattr(cupy_fused, "cuda_dir", lambda: copy)
    before = cupy_fused.source()
    header = copy / "gpukern" / "gaussian.cuh"
    header.write_text(header.read_text() + "\n// an edit\n")
    assert cupy_fused.source() != before
    assert cupy_fused.source().startswith((copy / "analytic.cu").read_text())


def test_fused_kernel_sources_found_and_routed():
    from gpukern.kernels import cupy_fused

    assert (cupy_fused.cuda_dir() / "gpukern" / "recursion.cuh").exists()
    sign, erf1 = gk.activations.sign(), gk.surrogates.erf(1.0)
    assert cupy_fused.supports(sign.function, [(sign.derivative, erf1), (erf1, erf1)])
    tanh = gk.activations.custom(np.tanh, np.cosh).function  # analytic: its series
    assert cupy_fused.supports(tanh, []) and cupy_fused.descriptors(tanh, []).tolist() == [0.0]
    # no closed form and no series (a kink): a table where a tile's variances are each one
    # value (64 x 64 entries: enough for one), else the tile goes to the array path
    fs = gk.surrogates.fast_sigmoid(2.0)
    one, many = np.full((1, 64), 1.3), np.linspace(0.5, 2.0, 64)[None, :]
    assert cupy_fused.routes(sign.function, [(fs, fs)], many, many, 8) is None
    series, (off, _) = cupy_fused.routes(sign.function, [(fs, fs)], one, one, 8)
    assert off.tolist() == [[0], [-1]] and not series[0].any()
    assert cupy_fused.descriptors(sign.function, [(sign.derivative, erf1)]).shape == (18,)  # 3 x (1 + 5)
