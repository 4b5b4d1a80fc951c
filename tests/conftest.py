"""Shared test helpers: statistical tolerances derived from the number of comparisons,
the registry's example functions, and the host build of the cuda/ headers."""

from __future__ import annotations

import ctypes
import os

# The suite's own process computes references on NumPy, also on a GPU machine (the CuPy
# backend runs in subprocesses of tests/test_gpu_backend.py); before gpukern is imported.
os.environ.setdefault("GPUKERN_BACKEND", "numpy")
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from gpukern.functions import ScalarFunction, classes_by_kind
from gpukern.kernels import ops

CUDA_DIR = Path(__file__).resolve().parents[1] / "cuda"
HOST_API = Path(__file__).resolve().parent / "host_api.cpp"


@pytest.fixture(scope="module", params=ops.available_executors())
def executor(request):
    """Each test of a module that uses this (``pytestmark =
    pytest.mark.usefixtures("executor")``) runs once per executor of this machine: the
    compiled one of the backend where it is built, and the array path always."""
    with ops.use_executor(request.param):
        yield request.param


def registry_examples() -> list[ScalarFunction]:
    """Every registry kind's example functions: what the contract tests run on every path
    (a new kind is tested without editing a list)."""
    return [fn for cls in classes_by_kind().values() for fn in cls.examples()]


def example_id(fn: ScalarFunction) -> str:
    return f"{type(fn).__name__}{fn.params()}"


_D = ctypes.POINTER(ctypes.c_double)
_I64 = ctypes.POINTER(ctypes.c_int64)


def cptr(a: np.ndarray, kind=ctypes.c_double):
    return a.ctypes.data_as(ctypes.POINTER(kind))


def desc(fn: ScalarFunction) -> np.ndarray:
    return np.ascontiguousarray(fn.descriptor(), dtype=np.float64)


@pytest.fixture(scope="session")
def host_lib(tmp_path_factory):
    """tests/host_api.cpp, the cuda/ headers' __host__ __device__ math built for the host
    (no FMA contraction: it must round like NumPy), loaded with ctypes."""
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    if cxx is None:
        pytest.skip("no host C++ compiler")
    out = tmp_path_factory.mktemp("cuda_host") / "libgk_host.so"
    subprocess.run([cxx, "-O2", "-std=c++17", "-ffp-contract=off", "-shared", "-fPIC",
                    f"-I{CUDA_DIR}", str(HOST_API), "-o", str(out)], check=True)
    lib = ctypes.CDLL(str(out))
    lib.gk_value.argtypes = [_D, _D, _D, ctypes.c_int64]
    lib.gk_gauss_avg.argtypes = [_D, _D, _D, ctypes.c_int64]
    lib.gk_gauss_avg.restype = ctypes.c_int
    lib.gk_pair.argtypes = [_D, _D, _D, _D, _D, _D, _D, ctypes.c_int64]
    lib.gk_pair.restype = ctypes.c_int
    lib.gk_next_det.argtypes = [_D, ctypes.c_double, ctypes.c_double, _D, _D, _D, _D, _D,
                                ctypes.c_int64]
    lib.gk_next_det.restype = ctypes.c_int
    lib.gk_recursion.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, _D, _D, _D, _I64, _I64,
                                 _D, _D, ctypes.c_int, ctypes.c_double, ctypes.c_double, _D, _D,
                                 ctypes.c_int, _D, _D]
    lib.gk_recursion.restype = ctypes.c_int
    lib.gk_mean_avg.argtypes = [_D, _D, _D, _D, ctypes.c_int64]
    lib.gk_mean_avg.restype = ctypes.c_int
    lib.gk_bvn.argtypes = [_D, _D, _D, _D, _D, ctypes.c_int64]
    lib.gk_bvn.restype = None
    lib.gk_variance.argtypes = [_D] * 6 + [ctypes.c_int64]
    lib.gk_variance.restype = None
    return lib


def z_bound(n_comparisons: int, dof: int | None = None, family_alpha: float = 1e-3) -> float:
    """Two-sided critical value with a Bonferroni correction over ``n_comparisons``.

    A correct implementation fails one of the comparisons with probability at most
    ``family_alpha`` (Student-t with ``dof`` degrees of freedom, normal if None).
    """
    p = 1.0 - family_alpha / (2.0 * n_comparisons)
    return float(stats.norm.ppf(p) if dof is None else stats.t.ppf(p, dof))


def assert_within_se(estimate, se, exact, dof, label=""):
    """|estimate - exact| <= z * se entrywise, z from :func:`z_bound`."""
    estimate, se, exact = map(np.asarray, (estimate, se, exact))
    z = z_bound(estimate.size, dof)
    dev = np.abs(estimate - exact) / se
    assert np.all(np.isfinite(dev)), f"{label}: non-finite deviation"
    assert dev.max() <= z, (
        f"{label}: max |MC - analytic| = {dev.max():.2f} standard errors > {z:.2f}\n"
        f"analytic={exact}\nMC={estimate}\nse={se}"
    )


@pytest.fixture
def points():
    """Five points in R^3 of different norms, one of them repeated (a coinciding pair)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 3)) * np.array([[0.5], [1.0], [1.7], [2.5]])
    return np.concatenate([x, x[1:2]])
