"""The cuda/ headers compiled for the host, against the NumPy backend; nvcc builds of the kernels.

The same __host__ __device__ functions the GPU kernels call are built with the host C++
compiler into a shared library (once per test session) and called through ctypes.
"""

import ctypes
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

import gpukern as gk
from gpukern.analytic import _row_ids, layer_diagonals
from gpukern.gaussian import expect_pair

CUDA_DIR = Path(__file__).resolve().parents[1] / "cuda"
REQUIRE_NVCC = os.environ.get("GPUKERN_REQUIRE_NVCC") == "1"

_D = ctypes.POINTER(ctypes.c_double)
_I64 = ctypes.POINTER(ctypes.c_int64)


@pytest.fixture(scope="session")
def lib(tmp_path_factory):
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    if cxx is None:
        pytest.skip("no host C++ compiler")
    out = tmp_path_factory.mktemp("cuda_host") / "libgk_host.so"
    # no FMA contraction: the host build must round like NumPy does
    subprocess.run([cxx, "-O2", "-std=c++17", "-ffp-contract=off", "-shared", "-fPIC",
                    f"-I{CUDA_DIR}", str(CUDA_DIR / "host_api.cpp"), "-o", str(out)], check=True)
    lib = ctypes.CDLL(str(out))
    lib.gk_value.argtypes = [_D, _D, _D, ctypes.c_int64]
    lib.gk_gauss_avg.argtypes = [_D, _D, _D, ctypes.c_int64]
    lib.gk_gauss_avg.restype = ctypes.c_int
    lib.gk_pair.argtypes = [_D, _D, _D, _D, _D, _D, _D, ctypes.c_int64]
    lib.gk_pair.restype = ctypes.c_int
    lib.gk_recursion.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, _D, _D, _D, _I64, _I64,
                                 _D, _D, ctypes.c_int, ctypes.c_double, ctypes.c_double, _D,
                                 ctypes.c_int, _D, _D]
    lib.gk_recursion.restype = ctypes.c_int
    return lib


def _p(a, kind=ctypes.c_double):
    return a.ctypes.data_as(ctypes.POINTER(kind))


def _desc(fn):
    return np.ascontiguousarray(fn.cuda_descriptor(), dtype=np.float64)


FUNCTIONS = {
    "erf(3)": gk.activations.erf(3.0).function, "erf(3)'": gk.activations.erf(3.0).derivative,
    "sign": gk.activations.sign().function, "sign'": gk.activations.sign().derivative,
    "step": gk.activations.step().function, "relu": gk.activations.relu().function,
    "relu'": gk.activations.relu().derivative, "linear": gk.activations.linear().function,
    "linear'": gk.activations.linear().derivative,
    "s_erf": gk.surrogates.erf(2.0, scale=0.5), "s_sigmoid": gk.surrogates.sigmoid(3.0),
    "s_fast_sigmoid": gk.surrogates.fast_sigmoid(5.0), "s_atan": gk.surrogates.atan(2.0),
    "s_boxcar": gk.surrogates.boxcar(0.5), "s_triangle": gk.surrogates.triangle(0.7),
}


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_values_agree(lib, name):
    fn = FUNCTIONS[name]
    v = np.concatenate([np.linspace(-3, 3, 121), [0.0, -0.0, 0.5, -0.5, 0.7, 1e-300]])
    out = np.empty_like(v)
    lib.gk_value(_p(_desc(fn)), _p(v), _p(out), v.size)
    np.testing.assert_allclose(out, fn(v), rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_gauss_averages_agree(lib, name):
    fn = FUNCTIONS[name]
    s2 = np.concatenate([[0.0], np.logspace(-8, 4, 49)])
    ref = fn.gauss_avg(s2)
    out = np.empty_like(s2)
    ok = lib.gk_gauss_avg(_p(_desc(fn)), _p(s2), _p(out), s2.size)
    assert bool(ok) == (ref is not None)
    if ref is not None:
        with np.errstate(invalid="ignore"):
            np.testing.assert_allclose(out, ref, rtol=1e-13, atol=0)


def _cov(seed=0, m=40):
    rng = np.random.default_rng(seed)
    q = rng.uniform(0.05, 3.0, m)
    qp = rng.uniform(0.05, 3.0, m)
    rho = rng.uniform(-1, 1, m)
    rho[:4] = [1.0, -1.0, 0.0, 0.9999999]
    c = rho * np.sqrt(q * qp)
    det = np.maximum(q * qp - c * c, 0.0)
    q[-2:], c[-2:], det[-2:] = 0.0, 0.0, 0.0  # the degenerate point x = 0
    return q, qp, c, det


PAIRS = [("erf(3)", "erf(3)"), ("sign", "sign"), ("step", "step"), ("relu", "relu"),
         ("relu'", "relu'"), ("linear", "linear"), ("erf(3)'", "erf(3)'"), ("erf(3)'", "s_erf"),
         ("erf(3)'", "s_atan"), ("erf(3)'", "s_boxcar"), ("erf(3)'", "s_triangle"),
         ("sign'", "s_erf"), ("sign'", "s_atan"), ("sign'", "s_boxcar"), ("sign'", "s_triangle"),
         ("sign'", "sign'"), ("linear'", "s_atan"), ("s_erf", "s_erf"), ("relu'", "s_erf")]


@pytest.mark.parametrize("f, g", PAIRS)
def test_pairs_agree(lib, f, g):
    f, g = FUNCTIONS[f], FUNCTIONS[g]
    q, qp, c, det = _cov()
    out = np.empty_like(q)
    assert lib.gk_pair(_p(_desc(f)), _p(_desc(g)), _p(q), _p(qp), _p(c), _p(det), _p(out), q.size)
    with np.errstate(all="ignore"):
        ref = expect_pair(f, g, q, qp, c, det)
    np.testing.assert_array_equal(np.isinf(out), np.isinf(ref))
    fin = np.isfinite(ref)
    np.testing.assert_allclose(out[fin], ref[fin], rtol=1e-13, atol=1e-15)


def test_quadrature_pairs_report_no_closed_form(lib):
    q, qp, c, det = _cov()
    out = np.empty_like(q)
    for f, g in (("erf(3)'", "s_sigmoid"), ("s_fast_sigmoid", "s_fast_sigmoid"),
                 ("relu'", "s_atan")):
        assert not lib.gk_pair(_p(_desc(FUNCTIONS[f])), _p(_desc(FUNCTIONS[g])), _p(q), _p(qp),
                               _p(c), _p(det), _p(out), q.size)


def _closed(lib, f, g):
    one = np.ones(1)
    out = np.empty(1)
    return bool(lib.gk_pair(_p(_desc(f)), _p(_desc(g)), _p(one), _p(one), _p(0.5 * one),
                            _p(0.75 * one), _p(out), 1))


def _host_recursion(lib, net, pairs, x1, x2):
    rec = net._rec
    q1 = np.stack(layer_diagonals(rec, np.sum(x1 * x1, axis=1), x1.shape[1]))
    q2 = np.stack(layer_diagonals(rec, np.sum(x2 * x2, axis=1), x1.shape[1]))
    ids1, ids2 = _row_ids(x1, x2)
    gram = (x1 @ x2.T) * (1.0 / x1.shape[1])
    fns = np.concatenate([_desc(net.activation.function)] +
                         [np.concatenate([_desc(a), _desc(b)]) for a, b in pairs])
    n1, n2 = len(x1), len(x2)
    nngp = np.empty((n1, n2))
    kout = np.empty((len(pairs), n1, n2))
    ok = lib.gk_recursion(n1, n2, x1.shape[1], _p(np.ascontiguousarray(gram)),
                          _p(np.ascontiguousarray(q1)), _p(np.ascontiguousarray(q2)),
                          _p(ids1.astype(np.int64), ctypes.c_int64),
                          _p(ids2.astype(np.int64), ctypes.c_int64),
                          _p(np.ascontiguousarray(x1)), _p(np.ascontiguousarray(x2)), rec.depth,
                          rec.weight_std**2, rec.bias_std**2, _p(fns), len(pairs), _p(nngp), _p(kout))
    assert ok
    return nngp, kout


@pytest.mark.parametrize("act", ["erf(3)", "sign", "step", "relu", "linear"])
@pytest.mark.parametrize("sur", ["s_erf", "s_atan", "s_boxcar", "s_triangle"])
@pytest.mark.parametrize("depth, bias, n0", [(1, 0.0, 2), (3, 0.2, 2), (2, 0.1, 12)])
def test_fused_recursion_agrees(lib, act, sur, depth, bias, n0):
    activation = {"erf(3)": gk.activations.erf(3.0), "sign": gk.activations.sign(),
                  "step": gk.activations.step(), "relu": gk.activations.relu(),
                  "linear": gk.activations.linear()}[act]
    surrogate = FUNCTIONS[sur]
    net = gk.MLP(depth, activation, surrogate, weight_std=1.3, bias_std=bias)
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
                  if _closed(lib, net._side("left", names[w][0]), net._side("right", names[w][1])))
    assert "sgntk" in which or act == "relu"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = net.kernels(x1, x2, which=("nngp",) + which)
    pairs = [(net._side("left", names[w][0]), net._side("right", names[w][1])) for w in which]
    nngp, kout = _host_recursion(lib, net, pairs, x1, x2)
    np.testing.assert_allclose(nngp, ref["nngp"], rtol=1e-13, atol=1e-15)
    for w, k in zip(which, kout):
        np.testing.assert_allclose(k, ref[w], rtol=1e-13, atol=1e-15)


def test_naive_sign_ntk_inf_on_host(lib):
    net = gk.MLP(2, gk.activations.sign(), gk.surrogates.erf(1.0), bias_std=0.1)
    x = np.random.default_rng(0).normal(size=(4, 2))
    d = net.activation.derivative
    _, kout = _host_recursion(lib, net, [(d, d)], x, x)
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


@pytest.mark.parametrize("f", list(FUNCTIONS))
def test_closed_pair_predicate_matches_device_code(lib, f):
    """gaussian.has_closed_pair (which routes work to the fused kernel) says yes exactly
    where the CUDA pair() has a closed form."""
    from gpukern.gaussian import has_closed_pair

    for g in FUNCTIONS:
        assert has_closed_pair(FUNCTIONS[f], FUNCTIONS[g]) == _closed(lib, FUNCTIONS[f],
                                                                       FUNCTIONS[g]), (f, g)


def test_fused_kernel_sources_found_and_routed():
    from gpukern.kernels import cupy_fused

    assert (cupy_fused.cuda_dir() / "gpukern" / "recursion.cuh").exists()
    sign, erf1 = gk.activations.sign(), gk.surrogates.erf(1.0)
    assert cupy_fused.supports(sign.function, [(sign.derivative, erf1), (erf1, erf1)])
    assert not cupy_fused.supports(sign.function, [(erf1, gk.surrogates.sigmoid(2.0))] * 1 +
                                   [(gk.surrogates.sigmoid(2.0), gk.surrogates.sigmoid(2.0))])
    assert not cupy_fused.supports(gk.activations.custom(np.tanh, np.cosh).function, [])
    assert cupy_fused.descriptors(sign.function, [(sign.derivative, erf1)]).shape == (12,)
