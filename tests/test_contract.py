"""The function-kind contract: every kind of gpukern/registry.py, through its example
functions, gives the same values, Gaussian averages and pair expectations on every path
(NumPy arrays, the scalar formula Numba compiles, the cuda/ headers built for the host,
the compiled CPU kernels), and its declared capabilities are what its code does.

Nothing here lists kinds: a kind added to the registry with a class and examples is
tested on every path (the Numba kernels in tests/test_numba_cuda.py, same examples).
"""

import math

import numpy as np
import pytest
from conftest import CUDA_DIR, cptr, desc, example_id, registry_examples
from scipy import integrate

from gpukern import registry
from gpukern.functions import ScalarFunction, classes_by_kind
from gpukern.gaussian import expect_pair, has_closed_pair, quad_avg, quad_pair
from gpukern.kernels import cpu_fused
from gpukern.registry import Kind
from gpukern.surrogates import Surrogate

EXAMPLES = registry_examples()
V = np.concatenate([np.linspace(-3, 3, 121) + 0.013, [0.0, -0.0, 0.5, -0.5, 0.7, 1e-300, -7.0]])


def test_generated_header_is_current():
    committed = (CUDA_DIR / "gpukern" / "registry.cuh").read_text()
    assert committed == registry.header(), (
        "cuda/gpukern/registry.cuh is stale: run python -m gpukern.registry "
        "cuda/gpukern/registry.cuh")


def test_every_kind_has_a_class_with_examples():
    classes = classes_by_kind()
    assert set(classes) == set(Kind) - {Kind.TABLE}  # TABLE is made by the CPU path only
    for kind, cls in classes.items():
        assert cls.kind is kind
        assert cls.examples(), f"{cls.__name__} has no examples for the contract tests"
        assert set(registry.CAPABILITIES) == set(Kind)


@pytest.mark.parametrize("cls", list(classes_by_kind().values()), ids=lambda c: c.__name__)
def test_capabilities_are_what_the_class_implements(cls):
    caps = registry.CAPABILITIES[cls.kind]
    assert caps.closed_avg == (cls.gauss_avg is not ScalarFunction.gauss_avg)
    assert caps.self_pair == (cls.pair_closed_form is not ScalarFunction.pair_closed_form)
    assert caps.det_gaps == (cls.self_gaps is not ScalarFunction.self_gaps)
    assert caps.mean_avg == (cls.gauss_avg_mean is not ScalarFunction.gauss_avg_mean)


@pytest.mark.parametrize("kind", [k for k in Kind if registry.det_gaps(k)], ids=lambda k: k.name)
def test_determinant_gaps_are_the_determinant(kind, host_lib):
    """next_det (from the gaps) equals Q Q' - C^2 from the closed forms on well-separated
    pairs (where that subtraction is accurate), and the headers compute the same numbers."""
    from gpukern.analytic import next_det
    from gpukern.architecture import Architecture

    q, qp, c, det = _cov(m=12, seed=5)
    for fn in classes_by_kind()[kind].examples():
        arch = Architecture(2, fn, 1.3, 0.4, 8)
        sw2, sb2 = arch.sw2, arch.sb2
        big_q = sw2 * expect_pair(fn, fn, q, q, q, 0 * q) + sb2
        big_qp = sw2 * expect_pair(fn, fn, qp, qp, qp, 0 * q) + sb2
        big_c = sw2 * expect_pair(fn, fn, q, qp, c, det) + sb2
        naive = big_q * big_qp - big_c * big_c
        got = next_det(arch, q, qp, c, det)
        np.testing.assert_allclose(got, naive, rtol=1e-9, atol=1e-12 * np.max(big_q * big_qp),
                                   err_msg=repr(fn))
        out = np.empty_like(q)
        assert host_lib.gk_next_det(cptr(desc(fn)), sw2, sb2, cptr(q), cptr(qp), cptr(c),
                                    cptr(det), cptr(out), q.size)
        np.testing.assert_allclose(out, got, rtol=1e-13, atol=1e-300, err_msg=repr(fn))


@pytest.mark.parametrize("fn", EXAMPLES, ids=example_id)
def test_value_on_every_path(fn, host_lib):
    ref = fn(V)
    n, kind, a, b, c, shift = fn.descriptor()
    assert (n, shift) == (1, 0.0)
    np.testing.assert_allclose([fn.scalar(float(v), a, b, c) for v in V], ref, rtol=1e-13,
                               atol=1e-300, err_msg="scalar formula (Numba's)")
    out = np.empty_like(V)
    host_lib.gk_value(cptr(desc(fn)), cptr(V), cptr(out), V.size)
    np.testing.assert_allclose(out, ref, rtol=1e-13, atol=1e-300, err_msg="cuda/ headers")
    if cpu_fused.available():
        np.testing.assert_allclose(cpu_fused.map_values(fn, V), ref, rtol=1e-13, atol=1e-300,
                                   err_msg="compiled CPU kernels")


S2 = np.concatenate([[0.0], np.logspace(-8, 4, 49)])


@pytest.mark.parametrize("fn", EXAMPLES, ids=example_id)
def test_gauss_average_on_every_path(fn, host_lib):
    out = np.empty_like(S2)
    closed = bool(host_lib.gk_gauss_avg(cptr(desc(fn)), cptr(S2), cptr(out), S2.size))
    assert closed == registry.closed_avg(fn.kind)
    if not closed:
        return
    ref = fn.gauss_avg(S2)
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(out, ref, rtol=1e-13, atol=0, err_msg="cuda/ headers")
    if fn.is_delta:  # a delta's average is its Gaussian's density at 0: no quadrature
        return
    live = S2 > 1e-6  # quadrature resolves the function's features against the Gaussian
    quad = quad_avg(fn, S2[live])
    # odd functions average to 0: rounding of the quadrature there is relative to E|f| ~ 1 + s
    tol = 1e-9 * np.abs(quad) + 1e-13 * (1.0 + np.sqrt(S2[live]))
    worst = np.max(np.abs(ref[live] - quad) / tol)
    assert worst <= 1.0, f"closed form vs quadrature off by {worst:.3g} x tolerance"


@pytest.mark.parametrize("fn", [f for f in EXAMPLES if isinstance(f, Surrogate)], ids=example_id)
def test_surrogate_area_is_two_times_scale(fn):
    cuts = sorted({0.0} | {p for p, _ in fn.features()})
    edges = [-np.inf] + cuts + [np.inf]
    area = sum(integrate.quad(lambda t: float(fn(np.array([t]))[0]), lo, hi, limit=400)[0]
               for lo, hi in zip(edges[:-1], edges[1:]))
    assert area == pytest.approx(2.0 * fn.scale, rel=1e-8)


def _cov(m=24, seed=0):
    rng = np.random.default_rng(seed)
    q, qp = rng.uniform(0.05, 3.0, (2, m))
    rho = rng.uniform(-1, 1, m)
    rho[:4] = [1.0, -1.0, 0.0, 0.9999999]
    c = rho * np.sqrt(q * qp)
    det = np.maximum(q * qp - c * c, 0.0)
    q[-2:], c[-2:], det[-2:] = 0.0, 0.0, 0.0  # the degenerate point x = 0
    return q, qp, c, det


@pytest.mark.parametrize("f", EXAMPLES, ids=example_id)
def test_pairs_closed_exactly_where_the_device_code_is(f, host_lib):
    """has_closed_pair (a registry lookup that routes work to the fused kernels) says yes
    exactly where the headers' pair() has a closed form, and the values agree."""
    q, qp, c, det = _cov()
    out = np.empty_like(q)
    for g in EXAMPLES:
        closed = bool(host_lib.gk_pair(cptr(desc(f)), cptr(desc(g)), cptr(q), cptr(qp),
                                       cptr(c), cptr(det), cptr(out), q.size))
        assert closed == has_closed_pair(f, g), (f, g)
        if not closed:
            continue
        with np.errstate(all="ignore"):
            ref = expect_pair(f, g, q, qp, c, det)
        np.testing.assert_array_equal(np.isinf(out), np.isinf(ref), err_msg=f"{f} x {g}")
        fin = np.isfinite(ref)
        np.testing.assert_allclose(out[fin], ref[fin], rtol=1e-13, atol=1e-15,
                                   err_msg=f"{f} x {g}")


@pytest.mark.parametrize("kind", [k for k in Kind if registry.self_pair(k)], ids=lambda k: k.name)
def test_self_pairs_against_2d_quadrature(kind):
    exs = classes_by_kind()[kind].examples()
    q, qp, c, det = (a[4:10] for a in _cov(m=12, seed=3))
    for f, g in {(exs[0], exs[-1]), (exs[-1], exs[0])}:
        closed = f.pair_closed_form(g, q, qp, c, det)
        np.testing.assert_allclose(closed, quad_pair(f, g, q, qp, c, det), rtol=1e-9,
                                   atol=1e-12, err_msg=f"{f} x {g}")
    assert math.isfinite(float(np.sum(closed)))


MEANS = np.array([0.0, 0.3, -0.3, 1.0, -2.5, 4.0, -7.0, 1e-3])


@pytest.mark.parametrize("fn", EXAMPLES, ids=example_id)
def test_gauss_average_with_a_mean_on_every_path(fn, host_lib):
    """E[g(m + s Z)]: the closed form (kinds with ``mean_avg``) equals graded quadrature and
    the headers compute the same numbers; at m = 0 it is the zero-mean average."""
    m, s2 = (a.reshape(-1) for a in np.meshgrid(MEANS, S2))
    out = np.empty_like(m)
    closed = bool(host_lib.gk_mean_avg(cptr(desc(fn)), cptr(m), cptr(s2), cptr(out), m.size))
    assert closed == registry.mean_avg(fn.kind)
    if not closed:
        return
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = fn.gauss_avg_mean(m, s2)
        # the deep tails (Phi(-30) ~ 1e-198) differ between libm's erfc and scipy's ndtr
        # in the 13th digit: absolute agreement to 1e-16 of the function's scale there
        scale = np.max(np.abs(ref[np.isfinite(ref)]))
        cond = fn.mean_avg_condition(m, s2)
        fin = np.isfinite(ref)
        assert np.array_equal(out[~fin], ref[~fin])
        assert np.all(np.abs(out - ref)[fin] <= 1e-13 * cond[fin] * np.abs(ref[fin])
                      + 1e-16 * scale), "cuda/ headers"
        at0 = m == 0
        np.testing.assert_allclose(ref[at0], fn.gauss_avg(s2[at0]), rtol=1e-13, atol=1e-15)
    live = s2 > 1e-6
    if fn.is_delta:  # a delta's average is the Gaussian density at the delta
        dens = fn.weight * np.exp(-m[live] ** 2 / (2 * s2[live])) / np.sqrt(2 * np.pi * s2[live])
        np.testing.assert_allclose(ref[live], dens, rtol=1e-13)
        return
    quad = quad_avg(fn, s2[live], mean=m[live])
    tol = (1e-9 * np.abs(quad) + 1e-13 * (1.0 + np.sqrt(s2[live]) + np.abs(m[live]))
           + 1e-15 * fn.mean_avg_condition(m[live], s2[live]) * np.abs(quad))
    worst = np.max(np.abs(ref[live] - quad) / tol)
    assert worst <= 1.0, f"closed form vs quadrature off by {worst:.3g} x tolerance"
