"""Kernels of nearly collinear, coinciding, antipodal and zero inputs.

At rho -> +-1 the arcsin/arccos forms of jumps and kinks turn an absolute error eps of
1 - rho into sqrt(eps), so the recursion carries the determinant q q' - c^2 itself
(gpukern.analytic.next_det). The reference here is independent of it: the layer-1
(q, q', c) are exact rationals of the float inputs, and the recursion runs in mpmath at
80 digits with the textbook closed forms (Q Q' - C^2 is then exact to ~1e-45, far below
the 1e-33 determinants these inputs produce).
"""

from __future__ import annotations

from fractions import Fraction

import mpmath as mp
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import gpukern as gk
from gpukern import functions as fns
from gpukern.kernels import ops

pytestmark = pytest.mark.usefixtures("executor")

mp.mp.dps = 80

REL = 1e-10  # the accuracy asked of every entry, relative to it ...
ABS = 1e-13  # ... plus this fraction of the largest entry (entries that cancel to ~0)
AGREE = 1e-12  # executors against each other


# --------------------------------------------------------------------------- reference
def _clamp(rho):
    """rho in [-1, 1]: exactly collinear inputs may land a last digit beyond it."""
    return max(min(rho, mp.mpf(1)), mp.mpf(-1))


def _pair(f, g, q, qp, c):
    """E[f(u) g(v)] in closed form at mpmath precision; det = q q' - c^2 exactly here."""
    det = q * qp - c * c
    if det < 0:
        det = mp.mpf(0)
    if isinstance(f, fns.Constant):
        return f.value * _avg(g, qp)
    if isinstance(g, fns.Constant):
        return g.value * _avg(f, q)
    if isinstance(f, fns.ErfStep) and isinstance(g, fns.ErfStep):
        den = mp.sqrt((f.t + 2 * q) * (g.t + 2 * qp))
        rho = 2 * c / den if den > 0 else mp.mpf(0)
        return f.offset * g.offset + f.amp * g.amp * (2 / mp.pi) * mp.asin(_clamp(rho))
    if isinstance(f, fns.Heaviside) and isinstance(g, fns.Heaviside):
        rho = c / mp.sqrt(q * qp) if q * qp > 0 else mp.mpf(0)
        return f.scale * g.scale * (mp.mpf(1) / 4 + mp.asin(_clamp(rho)) / (2 * mp.pi))
    if isinstance(f, fns.ReLU) and isinstance(g, fns.ReLU):
        if q * qp == 0:
            return mp.mpf(0)
        theta = mp.acos(_clamp(c / mp.sqrt(q * qp)))
        return (mp.sqrt(det) + (mp.pi - theta) * c) / (2 * mp.pi)
    if isinstance(f, fns.Identity) and isinstance(g, fns.Identity):
        return c
    if isinstance(f, fns.GaussianBump) and isinstance(g, fns.GaussianBump):
        root = mp.sqrt((f.t + 2 * q) * (g.t + 2 * qp) - 4 * c * c)
        return f.weight * g.weight / (mp.pi * root) if root > 0 else mp.inf
    raise NotImplementedError(f"no reference for ({f!r}, {g!r})")


def _avg(g, s2):
    if isinstance(g, fns.Constant):
        return mp.mpf(g.value)
    if isinstance(g, fns.ErfStep):
        return mp.mpf(g.offset)
    if isinstance(g, fns.Heaviside):
        return mp.mpf(g.scale) / 2
    if isinstance(g, fns.GaussianBump):
        return g.weight / mp.sqrt(mp.pi * (g.t + 2 * s2))
    raise NotImplementedError(f"no reference average for {g!r}")


def reference(net: gk.MLP, x: np.ndarray, left: str, right: str):
    """(NNGP, K) of ``net`` on the rows of x, at mpmath precision from exact layer-1 values."""
    arch = net.arch
    sigma = arch.sigma
    pair = net.pair(left, right)
    sw2 = Fraction(arch.weight_std) ** 2
    sb2 = Fraction(arch.bias_std) ** 2
    rows = [[Fraction(v) for v in row] for row in x]
    n0 = x.shape[1]

    def exact(a, b):  # the exact rational, then rounded once (mpmath 1.3 takes no Fraction)
        r = sw2 * sum(u * v for u, v in zip(a, b)) / n0 + sb2
        return mp.mpf(r.numerator) / r.denominator

    n = len(rows)
    nngp = mp.matrix(n, n)
    kern = mp.matrix(n, n)
    for i in range(n):
        for j in range(n):
            q, qp, c = exact(rows[i], rows[i]), exact(rows[j], rows[j]), exact(rows[i], rows[j])
            k = c
            for _ in range(arch.depth):
                nxt = [arch.weight_std**2 * _pair(sigma, sigma, a, a, a) + arch.bias_std**2
                       for a in (q, qp)]
                sig = arch.weight_std**2 * _pair(sigma, sigma, q, qp, c) + arch.bias_std**2
                d = _pair(pair.left, pair.right, q, qp, c)
                k = sig + (0 if k == 0 else arch.weight_std**2 * d * k)
                q, qp, c = nxt[0], nxt[1], sig
            nngp[i, j], kern[i, j] = c, k
    as_np = lambda m: np.array(m.tolist(), dtype=float)  # noqa: E731
    return as_np(nngp), as_np(kern)


def assert_close(got, ref, label):
    tol = REL * np.abs(ref) + ABS * np.max(np.abs(ref))
    err = np.abs(got - ref)
    worst = np.unravel_index(np.argmax(err - tol), err.shape)
    assert np.all(err <= tol), (f"{label}: |got - ref| = {err[worst]:.3g} at {worst} > "
                                f"{tol[worst]:.3g}\ngot={got}\nref={ref}")


# ------------------------------------------------------------------------------ inputs
def activations():
    a = gk.activations
    return [a.sign(), a.step(), a.erf(2.0), a.erf(300.0), a.relu(), a.linear()]


def kernel_sides(act) -> tuple[str, str]:
    """The finite kernel to check besides the NNGP: the SG-NTK where the true NTK of a
    jump is infinite on the diagonal, the NTK otherwise."""
    return ("true", "surrogate") if act.has_jump else ("true", "true")


def collinear_points(base, scales, tilt):
    """Rows scale * base + tilt * (a fixed direction orthogonal to base)."""
    base = np.asarray(base, dtype=float)
    other = np.roll(base, 1) - base * (np.roll(base, 1) @ base) / (base @ base)
    return np.array([s * base + t * other for s, t in zip(scales, tilt)])


ISSUE_POINTS = np.array([[-1.138, .771, 1.15], [-1.1 * 1.138, 1.1 * .771, 1.1 * 1.15],
                         [-1.3 * 1.138, 1.3 * .771, 1.3 * 1.15],
                         [.7 * 1.138, -.7 * .771, -.7 * 1.15]])


@pytest.mark.parametrize("bias_std", [0.0, 0.3])
@pytest.mark.parametrize("act", activations(), ids=lambda a: repr(a))
def test_collinear_points_against_exact_reference(act, bias_std):
    """The issue's points: v, 1.1 v, 1.3 v, -0.7 v (rounded: 1 - rho^2 ~ 1e-33), depth 4."""
    net = gk.MLP(4, act, gk.surrogates.erf(2.0), bias_std=bias_std)
    left, right = kernel_sides(act)
    ref_nngp, ref_k = reference(net, ISSUE_POINTS, left, right)
    nngp = net.nngp(ISSUE_POINTS)
    assert_close(nngp, ref_nngp, "nngp")
    assert_close(net.kernel(ISSUE_POINTS, left=left, right=right), ref_k, "kernel")
    assert np.linalg.eigvalsh(nngp)[0] >= -1e-12 * np.abs(nngp).max()


@pytest.mark.parametrize("act", activations()[:2] + activations()[4:5], ids=repr)
def test_wide_collinear_inputs_against_exact_reference(act):
    """20 features (layer-1 determinant recomputed from the inputs where q q' - c^2 is
    ill-conditioned): scalings of one direction and a pair 1e-9 apart in angle, depth 3."""
    rng = np.random.default_rng(5)
    base = rng.normal(size=20)
    x = collinear_points(base, [1.0, 1.1, 1.0, -0.7, 1.0], [0.0, 0.0, 1e-9, 0.0, 0.4])
    net = gk.MLP(3, act, gk.surrogates.erf(2.0))
    left, right = kernel_sides(act)
    ref_nngp, ref_k = reference(net, x, left, right)
    assert_close(net.nngp(x), ref_nngp, "nngp")
    assert_close(net.kernel(x, left=left, right=right), ref_k, "kernel")


def test_sign_nngp_of_the_issue_is_psd_and_not_degenerate():
    """The sign NNGP the issue reported (K[0,1] = 1, min eigenvalue -0.0042)."""
    k = gk.MLP(4, gk.activations.sign()).nngp(ISSUE_POINTS)
    assert np.linalg.eigvalsh(k)[0] > 0
    assert k[0, 1] < 1.0 - 1e-3


point_sets = st.builds(
    lambda base, scales, tilts, zero: (base, scales, tilts, zero),
    # up to 12 features: Lagrange's identity (n0 <= 8) and the residual form (wider)
    st.lists(st.floats(-2, 2).filter(lambda v: abs(v) > 0.1), min_size=2, max_size=12),
    st.lists(st.sampled_from([1.0, 1.0 + 1e-12, 1.0 + 1e-7, 1.3, 0.4, -1.0, -1.0 - 1e-9, -0.7]),
             min_size=3, max_size=4),
    st.lists(st.sampled_from([0.0, 0.0, 1e-14, 1e-9, 1e-5, 0.3]), min_size=4, max_size=4),
    st.booleans(),
)


def _points(drawn):
    base, scales, tilts, zero = drawn
    x = collinear_points(base, scales, tilts)
    if zero:
        x = np.concatenate([x, np.zeros((1, x.shape[1]))])
    return x


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.sampled_from(activations()), st.sampled_from([0.0, 0.05, 0.5]),
       st.floats(0.5, 2.0), point_sets)
def test_fuzz_near_collinear_against_exact_reference(depth, act, bias_std, weight_std, drawn):
    x = _points(drawn)
    net = gk.MLP(depth, act, gk.surrogates.erf(1.5), bias_std=bias_std, weight_std=weight_std)
    left, right = kernel_sides(act)
    ref_nngp, ref_k = reference(net, x, left, right)
    nngp = net.nngp(x)
    assert_close(nngp, ref_nngp, "nngp")
    assert_close(net.kernel(x, left=left, right=right), ref_k, "kernel")
    ev = np.linalg.eigvalsh(nngp)
    assert ev[0] >= -1e-12 * max(ev[-1], 1e-300)


SURROGATES = [gk.surrogates.erf(2.0), gk.surrogates.sigmoid(4.0), gk.surrogates.fast_sigmoid(3.0),
              gk.surrogates.atan(2.0), gk.surrogates.boxcar(0.5), gk.surrogates.triangle(0.7)]


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.sampled_from(activations()), st.sampled_from(SURROGATES),
       st.sampled_from([0.0, 0.2]), point_sets)
@example(2, gk.activations.erf(300.0), gk.surrogates.erf(2.0), 0.0,
         ([1.5, 1.9375], [1.0, 1.0, 1.3], [0.0, 0.0, 0.0, 0.0], False))  # collinear, m = 300
@example(4, gk.activations.erf(300.0), gk.surrogates.fast_sigmoid(3.0), 0.0,
         ([1.0, 1.5, 0.5], [1.0, 1.0, 1.3], [0.0, 0.0, 0.0, 0.0], False))  # the swap, m = 300
def test_fuzz_every_pair_psd_symmetric_and_executors_agree(depth, act, surrogate, bias_std,
                                                            drawn):
    """Every activation x surrogate: NNGP and NTK symmetric and PSD, the SG-NTK swap is its
    transpose, and every executor of this machine gives the same kernels, each to 1e-12, or
    to 4 eps m^2 for erf(m)'s NTK: its derivative pair is 1/sqrt(det + t(q + q')/2 + t^2/4),
    t = 1/m^2, so det's rounding eps q q' moves it by ~eps q/t relative (at collinear inputs,
    erf(300): both executors 2e-12 from the 80-digit reference, 4e-12 apart). The swap's
    transpose takes the same bound: the compiled loop does not evaluate a pair and its swap
    in one order of operations (collinear inputs, depth 4, erf(m) x fast_sigmoid: 1e-13
    apart at m = 30, 1.4e-12 at m = 300)."""
    x = _points(drawn)
    net = gk.MLP(depth, act, surrogate, bias_std=bias_std)
    t = getattr(act.function, "t", 0.0)
    agree = max(AGREE, 4 * np.finfo(float).eps / t) if t > 0 else AGREE
    sym = [("true", "true")] if not act.has_jump else []
    results = {}
    for name in ops.available_executors():
        with ops.use_executor(name):
            results[name] = [net.nngp(x)] + [net.kernel(x, left=a, right=b) for a, b in sym] + [
                net.sgntk(x), net.kernel(x, left="surrogate", right="true")]
    first, *others = results.values()
    for other in others:
        for a, b in zip(first, other):
            np.testing.assert_allclose(a, b, rtol=agree, atol=agree * np.abs(a).max())
    for k in first[: 1 + len(sym)]:
        np.testing.assert_array_equal(k, k.T)
        ev = np.linalg.eigvalsh(k)
        assert ev[0] >= -1e-12 * max(ev[-1], 1e-300)
    np.testing.assert_allclose(first[-2], first[-1].T, rtol=agree, atol=1e-300)
