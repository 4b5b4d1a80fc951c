"""Bad input: a ValueError/TypeError naming the argument, before any heavy work."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpukern as gk

ACT = gk.activations.erf(2.0)
SUR = gk.surrogates.erf(1.0)
X = np.array([[1.0, 0.0], [0.0, 2.0]])


@pytest.mark.parametrize("kwargs, exc, words", [
    ({"depth": 0}, ValueError, "depth must be >= 1"),
    ({"depth": 1.5}, TypeError, "depth must be an integer"),
    ({"depth": True}, TypeError, "depth must be an integer"),
    ({"weight_std": 0.0}, ValueError, "weight_std must be > 0"),
    ({"weight_std": -1.0}, ValueError, "weight_std must be > 0"),
    ({"weight_std": math.inf}, ValueError, "weight_std must be > 0 and finite"),
    ({"weight_std": math.nan}, ValueError, "weight_std must be a number"),
    ({"bias_std": -0.1}, ValueError, "bias_std must be >= 0"),
    ({"bias_std": "1"}, TypeError, "bias_std must be a real number"),
    ({"activation": "erf"}, TypeError, "activation must be a gk.activations object"),
    ({"surrogate": "erf"}, TypeError, "surrogate must be a gk.surrogates object"),
    ({"quad_order": 0}, ValueError, "quad_order must be >= 1"),
    ({"tile": 0}, ValueError, "tile must be >= 1"),
])
def test_bad_mlp_arguments(kwargs, exc, words):
    args = {"depth": 2, "activation": ACT, "surrogate": SUR} | kwargs
    with pytest.raises(exc, match=words):
        gk.MLP(**args)


@pytest.mark.parametrize("ctor, arg, value, exc", [
    (gk.activations.erf, "m", 0.0, ValueError),
    (gk.activations.erf, "m", -2.0, ValueError),
    (gk.activations.erf, "m", math.nan, ValueError),
    (gk.surrogates.erf, "k", 0.0, ValueError),
    (gk.surrogates.erf, "k", math.inf, ValueError),
    (gk.surrogates.sigmoid, "beta", -1.0, ValueError),
    (gk.surrogates.fast_sigmoid, "beta", 0, ValueError),
    (gk.surrogates.atan, "alpha", -3.0, ValueError),
    (gk.surrogates.boxcar, "width", 0.0, ValueError),
    (gk.surrogates.triangle, "width", "wide", TypeError),
    (gk.surrogates.erf, "scale", -1.0, ValueError),
])
def test_bad_shape_parameters(ctor, arg, value, exc):
    with pytest.raises(exc, match=arg):
        ctor(**{arg: value})


def test_bad_custom():
    with pytest.raises(TypeError, match="fn must be callable"):
        gk.surrogates.custom(3.0)
    with pytest.raises(TypeError, match="derivative must be callable"):
        gk.activations.custom(np.tanh, None)
    with pytest.raises(ValueError, match="width"):
        gk.surrogates.custom(np.tanh, width=-1.0)


@pytest.mark.parametrize("x1, x2, words", [
    (np.ones(3), None, "x1 must be 2-D"),
    (np.ones((2, 2, 2)), None, "x1 must be 2-D"),
    (np.ones((0, 2)), None, "x1 must have at least one row"),
    (X, np.ones((3, 3)), "x2 has 3 features but 2 were expected"),
    (np.array([[1.0, np.nan]]), None, r"x1 contains NaN or inf \(first in row 0\)"),
    (X, np.array([[1.0, 2.0], [np.inf, 0.0]]), r"x2 contains NaN or inf \(first in row 1\)"),
    (np.array([["a", "b"]]), None, "x1 must hold real numbers"),
])
def test_bad_inputs(x1, x2, words):
    net = gk.MLP(2, ACT, SUR)
    with pytest.raises((ValueError, TypeError), match=words):
        net.sgntk(x1, x2)


def test_bad_kernel_names():
    net = gk.MLP(2, ACT, SUR)
    with pytest.raises(ValueError, match="left must be one of 'true', 'surrogate'"):
        net.kernel(X, left="sg")
    with pytest.raises(ValueError, match="which must be one of"):
        net.kernels(X, which=("nngp", "ntkk"))
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        net.nngp(X, dtype=np.int32)
    with pytest.raises(ValueError, match="needs an MLP built with a surrogate"):
        gk.MLP(2, ACT).sgntk(X)


def test_size_that_cannot_fit_is_refused_before_work():
    net = gk.MLP(2, ACT, SUR)
    x = np.zeros((2_000_000, 1))
    with pytest.raises(gk.InsufficientMemoryError, match=r"needs about [0-9.]+ GiB") as info:
        net.kernels(x)
    assert isinstance(info.value, ValueError) and isinstance(info.value, MemoryError)


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.floats(max_value=0.0), st.just(math.nan), st.just(math.inf)))
def test_hypothesis_nonpositive_weight_std(value):
    with pytest.raises(ValueError, match="weight_std"):
        gk.MLP(1, ACT, SUR, weight_std=value)


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.floats(max_value=-1e-300, allow_infinity=True), st.just(math.nan)),
       st.sampled_from(["m", "k", "beta", "alpha", "width"]))
def test_hypothesis_nonpositive_shape(value, arg):
    ctor = {"m": gk.activations.erf, "k": gk.surrogates.erf, "beta": gk.surrogates.sigmoid,
            "alpha": gk.surrogates.atan, "width": gk.surrogates.boxcar}[arg]
    with pytest.raises(ValueError, match=arg):
        ctor(**{arg: value})


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(0, 3), st.integers(0, 3),
       st.sampled_from([math.nan, math.inf, -math.inf]))
def test_hypothesis_nonfinite_inputs_named(n, d, i, j, bad):
    x = np.ones((n, d))
    x[i % n, j % d] = bad
    with pytest.raises(ValueError, match=f"x2 contains NaN or inf \\(first in row {i % n}\\)"):
        gk.MLP(1, ACT, SUR).sgntk(np.ones((2, d)), x)


def test_out_of_range_and_malformed_arguments_named():
    """Each was a ZeroDivisionError, OverflowError, IndexError or a deep broadcast error."""
    with pytest.raises(ValueError, match="m = 1e-300 is out of range"):
        gk.activations.erf(m=1e-300)
    with pytest.raises(ValueError, match="k = 1e-300 is out of range"):
        gk.surrogates.erf(k=1e-300)
    with pytest.raises(ValueError, match="weight_std = 1e.300 is out of range"):
        gk.MLP(1, gk.activations.sign(), weight_std=1e300)
    with pytest.raises(ValueError, match="fn must return an array of the input's shape"):
        gk.surrogates.custom(lambda v: v.sum())
    with pytest.raises(ValueError, match="derivative returned NaN or inf"):
        gk.activations.custom(np.tanh, lambda v: np.log(v))
    net = gk.MLP(1, gk.activations.sign(), gk.surrogates.erf(1.0))
    x = np.eye(3)[:, :2]
    p = net.init(2, 4)
    with pytest.raises(ValueError, match="kernel_sides must be a pair"):
        gk.train(net, p, x, np.ones(3), lr=0.1, steps=1, kernel_sides=("true",))
    for kernel in (("true",), 123):
        with pytest.raises(ValueError, match="kernel must be one of"):
            gk.predict(net, x, np.ones(3), x, lr=0.1, steps=1, kernel=kernel)
    with pytest.raises(ValueError, match="steps must be a step count or a non-empty"):
        gk.predict(net, x, np.ones(3), x, lr=0.1, steps=[])


def test_results_readable_like_other_files(tmp_path):
    from gpukern._io import atomic_write

    atomic_write(tmp_path / "r.json", lambda fh: fh.write(b"{}"))
    plain = tmp_path / "plain"
    plain.write_text("")
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


@pytest.mark.parametrize("act", ["erf", "sign", "step", "relu", "linear"])
def test_inputs_that_would_overflow_refused_up_front(act):
    """x = 1e80 made the sigmoid table build an unbounded range (the process was OOM-killed
    at 24 GB), sign fail on a NaN index, relu return inf silently: now one clear error,
    before any work; inputs just inside the range give finite, correct kernels."""
    make = gk.activations.BUILTIN[act]
    activation = make(1.0) if act == "erf" else make()
    net = gk.MLP(1, activation, gk.surrogates.sigmoid(1.0))
    huge = np.array([[1e80, 0.0], [0.0, 1e80]])
    with pytest.raises(ValueError, match="x1 is too large for the kernel recursion"):
        net.kernels(huge, which=("nngp", "sgntk"))
    with pytest.raises(ValueError, match="x is too large"):
        net.nngp_diagonal(huge)
    big = np.array([[1e74, 0.0], [0.0, 1e74]])
    k = net.nngp(big)
    assert np.isfinite(k).all()
    if act == "relu":  # orthogonal inputs: q/(2 pi) off the diagonal, q/2 on it
        q = 1e148 / 2
        np.testing.assert_allclose(k, [[q / 2, q / (2 * np.pi)], [q / (2 * np.pi), q / 2]],
                                   rtol=1e-14)


def test_table_index_never_unbounded():
    from gpukern.tables import table_avg, table_panels

    g = gk.surrogates.sigmoid(1.0)
    out = table_avg(g, np.array([np.inf, np.nan, 1.0]))
    assert np.isnan(out[:2]).all() and np.isfinite(out[2])
    with pytest.raises(ValueError, match="table of .* panels"):
        table_panels(g, -(10**9), 10**9)
