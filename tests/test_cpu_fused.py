"""The compiled CPU recursion against the NumPy array path (the two executors of the
NumPy backend, gpukern.kernels.ops).

Both evaluate the same formulas in float64; they differ only in the elementary functions
(glibc's libmvec vs NumPy's SIMD atan2/erf/exp, each within a few ulp), so entries agree
to ~1e-15 relative per layer; 1e-13 leaves room for the growth of rounding through three
layers near coinciding points, and is far below any modelling tolerance.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import gpukern as gk
from gpukern.kernels import cpu_fused, ops
from gpukern.network import KERNEL_SIDES

pytestmark = pytest.mark.skipif(not cpu_fused.available(),
                                reason="no host C++ compiler: the NumPy path is used")

ACTIVATIONS = {"erf": gk.activations.erf(2.0), "sign": gk.activations.sign(),
               "step": gk.activations.step(), "relu": gk.activations.relu(),
               "linear": gk.activations.linear()}
SURROGATES = {"erf": gk.surrogates.erf(1.5), "atan": gk.surrogates.atan(2.0),
              "boxcar": gk.surrogates.boxcar(0.7), "triangle": gk.surrogates.triangle(0.9),
              # no closed average: a table of it (facing a bump), as on the NumPy path
              "fast_sigmoid": gk.surrogates.fast_sigmoid(5.0), "sigmoid": gk.surrogates.sigmoid(3.0)}


def _inputs(n: int, n0: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, n0))
    x[0] = 0.0  # the degenerate point
    x[3] = 2.5 * x[2]  # collinear
    x[5] = x[1]  # coinciding rows
    return x


def _numpy_path(net, x1, x2, which):
    with ops.use_executor("array"):
        return net.kernels(x1, x2, which=which)


@pytest.mark.parametrize("act", list(ACTIVATIONS))
@pytest.mark.parametrize("sur", list(SURROGATES))
@pytest.mark.parametrize("depth, bias, n0", [(1, 0.0, 3), (3, 0.2, 2), (2, 0.1, 12)])
def test_agrees_with_numpy_path(act, sur, depth, bias, n0):
    net = gk.MLP(depth, ACTIVATIONS[act], SURROGATES[sur], weight_std=1.3, bias_std=bias)
    x1 = _inputs(9, n0, depth)
    x2 = np.concatenate([x1[[1, 4, 2]], np.random.default_rng(7).normal(size=(4, n0))])
    # closed forms only: the rest run on the NumPy path in both calls
    which = ("nngp",) + tuple(name for name, (a, b) in KERNEL_SIDES.items()
                              if cpu_fused.supports(net.activation.function,
                                                    [(net.side("left", a), net.side("right", b))])
                              and not (a == b == "true" and net.activation.has_jump))
    for a, b in ((x1, None), (x1, x2)):
        with np.errstate(all="ignore"):
            got = net.kernels(a, b, which=which)
            ref = _numpy_path(net, a, b, which)
        for name in which:
            np.testing.assert_array_equal(np.isinf(got[name]), np.isinf(ref[name]), err_msg=name)
            fin = np.isfinite(ref[name])
            np.testing.assert_allclose(got[name][fin], ref[name][fin], rtol=1e-13, atol=1e-15,
                                       err_msg=name)


def test_tables_are_used_for_quadrature_surrogates():
    sign = gk.activations.sign().derivative
    assert cpu_fused.supports(gk.activations.sign().function,
                              [(sign, gk.surrogates.fast_sigmoid(5.0))])
    assert not cpu_fused.table_pair(sign, gk.surrogates.fast_sigmoid(5.0))  # a formula
    # two quadrature functions face each other: no formula; a table in the correlation
    # where a layer's variances are each one value (tests/test_correlation.py)
    fs = gk.surrogates.fast_sigmoid(5.0)
    assert cpu_fused.supports(gk.activations.sign().function, [(fs, fs)])
    assert cpu_fused.table_pair(fs, fs)


@pytest.mark.parametrize("gap", [1e-3, 1e-9, 1e-13])
def test_near_coinciding_inputs_off_the_table(gap):
    """Averages at s^2 below the table (1e-16 max q) come back NaN from the CPU loop and
    are recomputed on the NumPy path: the result is the NumPy path's, with no NaN."""
    net = gk.MLP(2, gk.activations.sign(), gk.surrogates.fast_sigmoid(5.0), bias_std=0.0)
    x = _inputs(9, 4, 5)
    x[7] = x[4] * (1.0 + gap)  # collinear and close: det ~ gap^2
    x[8] = x[4] + gap
    got = net.kernels(x, which=("nngp", "sgntk"))
    with np.errstate(all="ignore"):
        ref = _numpy_path(net, x, None, ("nngp", "sgntk"))
    for name in ("nngp", "sgntk"):
        assert not np.isnan(got[name]).any()
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-13, atol=1e-15, err_msg=name)


def test_sign_ntk_infinite_where_numpy_path_is():
    net = gk.MLP(2, gk.activations.sign(), gk.surrogates.erf(1.0), bias_std=0.1)
    x = _inputs(8, 3, 1)
    with pytest.warns(RuntimeWarning, match="inf"):
        got = net.ntk(x)
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning, match="inf"):
        ref = _numpy_path(net, x, None, ("ntk",))["ntk"]
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))
    assert np.isinf(got).any()


@pytest.mark.parametrize("n0", [3, 16])
def test_entry_independent_of_block(n0):
    """An entry is bitwise the same whatever block it is computed in (vector lanes, chunk
    offsets, the mirrored triangle): every loop runs over whole padded chunks."""
    net = gk.MLP(3, gk.activations.erf(1.0), gk.surrogates.erf(1.0), bias_std=0.1)
    x = _inputs(700, n0, 3)
    which = ("nngp", "ntk")
    halves = [net.kernels(x[rows], x, which=which) for rows in (slice(0, 350), slice(350, 700))]
    full = {name: np.vstack([h[name] for h in halves]) for name in which}  # no mirroring
    for r0, r1, c0, c1 in ((3, 250, 301, 699), (650, 700, 1, 2), (17, 18, 0, 700),
                           (0, 700, 5, 6)):
        part = net.kernels(x[r0:r1], x[c0:c1], which=which)
        for name in which:
            np.testing.assert_array_equal(part[name], full[name][r0:r1, c0:c1], err_msg=name)
    # x2 = None: the upper triangle as computed directly, mirrored below the diagonal
    sym = net.kernels(x, which=which)
    for name in which:
        np.testing.assert_array_equal(np.triu(sym[name]), np.triu(full[name]), err_msg=name)
        np.testing.assert_array_equal(sym[name], sym[name].T, err_msg=name)


def test_float32_is_the_rounded_float64():
    net = gk.MLP(3, gk.activations.sign(), gk.surrogates.atan(2.0), bias_std=0.1)
    x = _inputs(300, 5, 4)
    k64 = net.sgntk(x)
    k32 = net.sgntk(x, dtype=np.float32)
    assert k32.dtype == np.float32
    np.testing.assert_array_equal(k32, k64.astype(np.float32))


def test_fallback_without_the_library(tmp_path):
    """GPUKERN_CPU_FUSED=0 (as without a compiler): the NumPy path gives the kernels."""
    code = ("import numpy as np, gpukern as gk\n"
            "from gpukern.kernels import cpu_fused\n"
            "assert cpu_fused.library() is None\n"
            "x = np.random.default_rng(0).normal(size=(20, 3))\n"
            "k = gk.MLP(2, gk.activations.erf(1.0)).ntk(x)\n"
            "np.save(r'%s', k)\n" % (tmp_path / "k.npy"))
    env = dict(os.environ, GPUKERN_CPU_FUSED="0")
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    x = np.random.default_rng(0).normal(size=(20, 3))
    np.testing.assert_allclose(np.load(tmp_path / "k.npy"), gk.MLP(2, gk.activations.erf(1.0)).ntk(x),
                               rtol=1e-13)


def test_built_once_into_the_cache(tmp_path):
    code = ("from gpukern.kernels import cpu_fused\n"
            "assert cpu_fused.library() is not None\n")
    env = dict(os.environ, GPUKERN_CACHE_DIR=str(tmp_path))
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    built = sorted(tmp_path.glob("libgk_cpu_*.so"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    assert sorted(tmp_path.glob("libgk_cpu_*.so")) == built
    assert built[0].stat().st_mtime_ns == stamp


ELEMENTWISE = [gk.activations.erf(2.0).function, gk.activations.erf(2.0).derivative,
               gk.activations.sign().function, gk.activations.step().function,
               gk.activations.relu().function, gk.activations.relu().derivative,
               gk.activations.linear().function, gk.activations.linear().derivative,
               *SURROGATES.values()]


@pytest.mark.parametrize("fn", ELEMENTWISE, ids=repr)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_elementwise_values(fn, dtype):
    """f(h) and (pre * scale) * f(h) as the NumPy expressions give them: float64 to a few
    ulp (libmvec vs NumPy's exp/erf), float32 to one float32 rounding of the float64
    value (the CPU kernel evaluates f in float64 and rounds once)."""
    rng = np.random.default_rng(3)
    h = np.concatenate([rng.normal(scale=2.0, size=5000), [0.0, -0.0, 1e-300, 40.0, -40.0]])
    h = h.astype(dtype)
    pre = rng.normal(size=h.size).astype(dtype)
    assert cpu_fused.can_map(fn, h) and cpu_fused.can_map(fn, pre, h)
    exact = np.asarray(fn(h.astype(np.float64)), dtype=np.float64)
    got = cpu_fused.map_values(fn, h)
    assert got.dtype == dtype
    tol = dict(rtol=1e-14, atol=1e-300) if dtype == np.float64 else dict(rtol=6e-8, atol=1e-38)
    np.testing.assert_allclose(got, exact, **tol)
    scaled = cpu_fused.map_values(fn, h, pre, 0.7)
    np.testing.assert_array_equal(scaled, (pre * dtype(0.7)) * got)


def test_elementwise_refuses_what_it_cannot_do():
    custom = gk.surrogates.custom(lambda v: 1.0 / (1.0 + v * v))
    h = np.ones(4)
    assert not cpu_fused.can_map(custom, h)  # no descriptor: NumPy evaluates it
    assert not cpu_fused.can_map(gk.surrogates.erf(1.0), h[::2])  # not contiguous
    assert not cpu_fused.can_map(gk.surrogates.erf(1.0), h, h.astype(np.float32))


def test_unwritable_cache_falls_back(tmp_path):
    """A cache folder that cannot be created: a warning, and the NumPy path."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = ("import warnings, numpy as np, gpukern as gk\n"
            "from gpukern.kernels import cpu_fused\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    assert cpu_fused.library() is None\n"
            "assert any('NumPy path' in str(x.message) for x in w)\n"
            "x = np.random.default_rng(0).normal(size=(6, 3))\n"
            "assert np.isfinite(gk.MLP(2, gk.activations.erf(1.0)).ntk(x)).all()\n")
    env = dict(os.environ, GPUKERN_CACHE_DIR=str(blocker / "sub"))
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shared", [True, False])
def test_hadamard_is_numpys_expression(dtype, shared):
    """out + dd * (c zz + b) in NumPy's operation order: the same numbers, bitwise."""
    rng = np.random.default_rng(4)
    dd = rng.normal(size=(3, 70, 90)).astype(dtype)
    zz = rng.normal(size=(70, 90) if shared else (3, 70, 90)).astype(dtype)
    out = rng.normal(size=dd.shape).astype(dtype)
    assert cpu_fused.can_hadamard(out, dd, zz)
    want = out + dd * (0.3 * zz + 0.01)
    np.testing.assert_array_equal(cpu_fused.hadamard(out.copy(), dd, zz, 0.3, 0.01), want)
    np.testing.assert_array_equal(cpu_fused.hadamard(None, dd, zz, 0.3, 0.01),
                                  dd * (0.3 * zz + 0.01))
    assert not cpu_fused.can_hadamard(out, dd, zz[..., :-1])  # shapes must line up


def _circle(n_train: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.linspace(0, 2 * np.pi, n_train, endpoint=False) + 0.15
    return np.stack([np.cos(a), np.sin(a)], axis=1), np.sin(2 * a) + 0.5 * np.cos(a)


@pytest.mark.parametrize("act, sur, derivative", [
    ("sign", gk.surrogates.fast_sigmoid(3.0), "surrogate"),
    ("erf", gk.surrogates.erf(2.0), "true"),
    ("relu", gk.surrogates.boxcar(0.5), "surrogate"),
    ("step", gk.surrogates.atan(2.0), "true"),  # a delta: hidden layers do not move
])
@pytest.mark.parametrize("depth, widths", [(1, 7), (3, (9, 4, 6))])
def test_compiled_step_equals_numpy_step(act, sur, derivative, depth, widths):
    """The compiled SGL step (cpu_fused.sgl_step) against the per-network NumPy loop:
    float64 to rounding (GEMM summation orders differ), 10 steps."""
    activation = {"sign": gk.activations.sign(), "erf": gk.activations.erf(1.5),
                  "relu": gk.activations.relu(), "step": gk.activations.step()}[act]
    net = gk.MLP(depth, activation, sur, weight_std=1.2, bias_std=0.3)
    x, y = _circle(6)
    p = net.init(2, widths, ensemble=4, seed=2)
    if not cpu_fused.can_step(net.activation.function, net.side("d", derivative), p.weights,
                              p.biases, x, y):
        pytest.skip("no compiled CPU kernels here")
    got = gk.train(net, p, x, y, lr=0.05, steps=10, derivative=derivative, record_every=1)
    with ops.use_executor("array"):
        ref = gk.train(net, p, x, y, lr=0.05, steps=10, derivative=derivative, record_every=1)
    np.testing.assert_allclose(got.loss, ref.loss, rtol=1e-10, atol=1e-12)
    for a, b in zip(got.params.weights + got.params.biases, ref.params.weights + ref.params.biases):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    if derivative == "true" and act == "step":
        np.testing.assert_array_equal(got.params.weights[0], p.weights[0])
