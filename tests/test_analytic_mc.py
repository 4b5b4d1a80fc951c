"""Analytic kernels against independent Monte Carlo written here in plain NumPy.

Two estimators, both unbiased for the analytic kernel (or with a bias far below the
standard error), with standard errors computed from the samples themselves:

* depth 1, finite networks: for a one-hidden-layer network of width n,
      K^(x, x') = sw^2/n sum_i sigma(h_i)sigma(h_i') + sb^2
                  + sw^2/n sum_i w2_i^2 a(h_i) b(h_i') * Sigma_1(x, x')
  has expectation exactly Sigma_2 + sw^2 E[a b] Sigma_1 at any width (h_i are exactly
  Gaussian, w2_i independent with E w2^2 = 1). Averaged over D independent networks.
* depth 2, a layerwise Monte Carlo of the Gaussian expectations: sample S joint
  pre-activations per layer from the Monte Carlo estimate of the previous layer's
  covariance, estimate Sigma and E[a b] by sample means, repeat R times. Its bias from
  propagating a noisy covariance is O(1/S), its standard error O(1/sqrt(S R)): with
  S = 100000, R = 24 the bias is about 1 % of one standard error.

Tolerance: z standard errors, z from a Bonferroni bound over all entries compared
(family-wise false-alarm rate 1e-3; Student-t for the R replicates).
"""

import numpy as np
import pytest
from conftest import assert_within_se

import gpukern as gk

pytestmark = pytest.mark.usefixtures("executor")  # every test on every executor

SW, SB = 1.3, 0.2


def _act(spec):
    kind, m = spec
    return gk.activations.erf(m) if kind == "erf" else gk.activations.relu()


SURROGATES = {
    "erf": gk.surrogates.erf(k=2.0),
    "sigmoid": gk.surrogates.sigmoid(beta=3.0),
    "fast_sigmoid": gk.surrogates.fast_sigmoid(beta=5.0),
    "atan": gk.surrogates.atan(alpha=2.0),
    "boxcar": gk.surrogates.boxcar(width=0.5),
    "triangle": gk.surrogates.triangle(width=0.5),
    "custom": gk.surrogates.custom(lambda v: 1.0 / (1.0 + v * v) / np.pi * 2.0, width=1.0),
}


def _depth1_mc(x, act, a, b, n=2000, draws=800, seed=0):
    """Per-network empirical kernels of D one-hidden-layer networks: (D, N, N) x2."""
    rng = np.random.default_rng(seed)
    n0 = x.shape[1]
    sig1 = SW**2 * (x @ x.T) / n0 + SB**2
    nngp = np.empty((draws, len(x), len(x)))
    kern = np.empty_like(nngp)
    for d in range(draws):
        w1 = rng.normal(size=(n, n0))
        b1 = rng.normal(size=(n, 1))
        w2 = rng.normal(size=n)
        h = SW / np.sqrt(n0) * (w1 @ x.T) + SB * b1  # (n, N)
        z = act(h)
        nngp[d] = SW**2 / n * (z.T @ z) + SB**2
        da = a(h) * w2[:, None]
        db = b(h) * w2[:, None]
        kern[d] = nngp[d] + SW**2 / n * (da.T @ db) * sig1
    return nngp, kern


def _summary(samples):
    return samples.mean(0), samples.std(0, ddof=1) / np.sqrt(len(samples)), len(samples) - 1


@pytest.mark.parametrize("spec", [("erf", 1.0), ("erf", 5.0), ("relu", None)])
def test_depth1_nngp_ntk_against_finite_networks(points, spec):
    act = _act(spec)
    net = gk.MLP(1, act, weight_std=SW, bias_std=SB)
    nngp_s, ntk_s = _depth1_mc(points, act, act.derivative, act.derivative)
    assert_within_se(*_summary(nngp_s)[:2], net.nngp(points), len(nngp_s) - 1, "nngp")
    assert_within_se(*_summary(ntk_s)[:2], net.ntk(points), len(ntk_s) - 1, "ntk")


@pytest.mark.parametrize("m", [1.0, 5.0])
@pytest.mark.parametrize("sname", list(SURROGATES))
def test_depth1_sgntk_against_finite_networks(points, m, sname):
    act, sur = gk.activations.erf(m), SURROGATES[sname]
    net = gk.MLP(1, act, sur, weight_std=SW, bias_std=SB)
    _, sg = _depth1_mc(points, act, act.derivative, sur, draws=400, seed=int(m) + 7)
    mean, se, dof = _summary(sg)
    assert_within_se(mean, se, net.sgntk(points), dof, f"sgntk erf({m}) x {sname}")


def _layerwise_mc(x, depth, act, pairs, samples=100000, reps=24, seed=0):
    """R replicate estimates of (NNGP, [K for (a, b) in pairs]) by sampling each layer."""
    rng = np.random.default_rng(seed)
    n0 = x.shape[1]
    out_nngp, out_k = [], []
    for _ in range(reps):
        sig = SW**2 * (x @ x.T) / n0 + SB**2
        ks = [sig.copy() for _ in pairs]
        for _ in range(depth):
            vals, vecs = np.linalg.eigh(sig)
            root = vecs * np.sqrt(np.clip(vals, 0, None))
            h = rng.normal(size=(samples, len(x))) @ root.T  # rows ~ N(0, sig)
            z = act(h)
            new = SW**2 * (z.T @ z) / samples + SB**2
            ks = [new + SW**2 * ((a(h).T @ b(h)) / samples) * k for (a, b), k in zip(pairs, ks)]
            sig = new
        out_nngp.append(sig)
        out_k.append(ks)
    return np.array(out_nngp), [np.array([r[i] for r in out_k]) for i in range(len(pairs))]


@pytest.mark.parametrize("spec", [("erf", 1.0), ("erf", 5.0), ("relu", None)])
def test_depth2_against_layerwise_mc(points, spec):
    act = _act(spec)
    sur = gk.surrogates.fast_sigmoid(5.0)
    net = gk.MLP(2, act, sur, weight_std=SW, bias_std=SB)
    nngp_r, (ntk_r, sg_r) = _layerwise_mc(points, 2, act,
                                          [(act.derivative, act.derivative), (act.derivative, sur)])
    exact = net.kernels(points)
    for name, reps in (("nngp", nngp_r), ("ntk", ntk_r), ("sgntk", sg_r)):
        mean, se, dof = _summary(reps)
        assert_within_se(mean, se, exact[name], dof, f"depth-2 {name} {spec}")


def test_depth2_sgntk_every_surrogate(points):
    act = gk.activations.erf(2.0)
    pairs = [(act.derivative, s) for s in SURROGATES.values()]
    _, reps = _layerwise_mc(points, 2, act, pairs, samples=50000, seed=3)
    for (name, sur), r in zip(SURROGATES.items(), reps):
        net = gk.MLP(2, act, sur, weight_std=SW, bias_std=SB)
        mean, se, dof = _summary(r)
        assert_within_se(mean, se, net.sgntk(points), dof, f"depth-2 sgntk {name}")
