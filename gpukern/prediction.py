"""Gaussian-process prediction of (SG-)NTK training, and the NNGP baseline.

Linearized dynamics with a possibly asymmetric kernel I (docs/architecture.md): with
I_XX = I(X, X), I_xX = I(x, X) (true derivative at the predicted point x, the kernel's
right side at the training points X) and the trainer's convention (loss 1/2 sum (f - Y)^2,
steps of size lr, no division by the number of targets):

    continuous time t:  f_t(x) = f_0(x) + I_xX G_t (Y - f_0(X)),  G_t = I_XX^-1 (1 - e^{-lr I_XX t})
    k discrete steps:   G_k = I_XX^-1 (1 - (1 - lr I_XX)^k) = lr sum_{j<k} (1 - lr I_XX)^j
    t = inf:            G = I_XX^-1

f_0 ~ GP(0, Sigma) (the NNGP of the activation), so f_t is Gaussian with

    mean = A Y,   cov = S_xx - A S_Xx - S_xX A^T + A S_XX A^T,   A = I_xX G.

G is computed without inverting I_XX: from the block exponential
expm([[-lr t I, lr t 1], [0, 0]]) (top right block = G_t) and the block power
[[1 - lr I, 1], [0, 1]]^k (top right = sum_{j<k} (1 - lr I)^j). I_XX is not symmetric:
no Cholesky of it anywhere. ``ridge`` adds ridge * 1 to I_XX (and to Sigma_XX for the
NNGP posterior) where a singular kernel must be regularized.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _checks
from ._backend import BACKEND
from .kernels import ops
from .network import KERNEL_SIDES

Array = Any

_COND_LIMIT = 1e12


@dataclass
class Prediction:
    """Mean (T, N_test), and cov (T, N_test, N_test) or var (T, N_test), at ``times``.

    ``times`` are continuous times t or step counts k (``discrete``); a scalar request
    still has the leading axis of length 1.
    """

    times: np.ndarray
    mean: Array
    var: Array
    cov: Array | None
    discrete: bool

    @property
    def std(self) -> Array:
        return BACKEND.xp.sqrt(BACKEND.xp.maximum(self.var, 0.0))


def _times(t, steps) -> tuple[np.ndarray, bool]:
    if (t is None) == (steps is None):
        raise ValueError("give exactly one of t (continuous time) or steps (discrete steps)")
    if steps is not None:
        vals = [steps] if np.isscalar(steps) else list(steps)
        if not vals:
            raise ValueError("steps must be a step count or a non-empty sequence of them")
        out = [_checks.integer("steps", int(v) if isinstance(v, np.integer) else v, 0)
               for v in vals]
        return np.asarray(out, dtype=float), True
    vals = [t] if np.isscalar(t) else list(t)
    if not vals:
        raise ValueError("t must be a time or a non-empty sequence of times")
    out = []
    for v in vals:
        v = _checks.real("t", v)
        if v < 0:
            raise ValueError(f"t must be >= 0 (or inf), got {v}")
        out.append(v)
    return np.asarray(out, dtype=float), False


def _check_spectrum(i_xx: np.ndarray, lr: float, times: np.ndarray, discrete: bool) -> None:
    """Warn or raise where training would not converge or I_XX is numerically singular."""
    eig = np.linalg.eigvals(i_xx)
    worst = eig[np.argmin(eig.real)]
    absmax = np.abs(eig).max()
    cond = absmax / max(np.abs(eig).min(), 1e-300)
    if np.isinf(times).any():
        if worst.real <= 0 or cond > _COND_LIMIT:
            raise ValueError(
                f"t = inf needs I_XX with eigenvalues of positive real part and a moderate "
                f"condition number; got smallest real part {worst.real:.3g} (eigenvalue "
                f"{worst:.3g}) and condition number {cond:.3g}. Pass ridge > 0 "
                "(adds ridge * identity to I_XX) or predict at finite t")
    if worst.real <= 0:
        warnings.warn(f"I_XX has an eigenvalue {worst:.3g} with non-positive real part: "
                      "training along it does not converge (ridge > 0 shifts it)",
                      RuntimeWarning, stacklevel=3)
    if discrete:
        factor = np.abs(1.0 - lr * eig)
        bad = np.argmax(factor)
        if factor[bad] > 1.0 and times.max() > 0:
            lam = eig[bad]
            warnings.warn(
                f"lr = {lr:g} is too large: |1 - lr * lambda| = {factor[bad]:.4g} > 1 for the "
                f"eigenvalue lambda = {lam:.4g} of I_XX, so gradient descent diverges; "
                f"use lr < {2 * lam.real / abs(lam) ** 2:.4g}", RuntimeWarning, stacklevel=3)


def _gain(i_xx: Array, lr: float, time: float, discrete: bool, solve) -> Array:
    """G = I^-1 (1 - e^{-lr I t}), I^-1 (1 - (1 - lr I)^k), or I^-1 (t = inf)."""
    xp = BACKEND.xp
    n = i_xx.shape[0]
    eye = xp.eye(n)
    if math.isinf(time):
        return solve(eye)
    block = xp.zeros((2 * n, 2 * n))
    if discrete:
        block[:n, :n] = eye - lr * i_xx
        block[:n, n:] = eye
        block[n:, n:] = eye
        return lr * _matrix_power(block, int(time))[:n, n:]
    block[:n, :n] = -lr * time * i_xx
    block[:n, n:] = lr * time * eye
    return ops.expm(block)[:n, n:]


def _matrix_power(a: Array, k: int) -> Array:
    return BACKEND.xp.linalg.matrix_power(a, k)


def _gaussian(a: Array, y: Array, s_xx: Array, s_xX: Array, s_XX: Array, full: bool):
    xp = BACKEND.xp
    mean = a @ y
    if full:
        cross = a @ s_xX.T  # A S_Xx, N_test x N_test
        cov = s_xx - cross - cross.T + a @ s_XX @ a.T
        cov = 0.5 * (cov + cov.T)
        return mean, xp.diagonal(cov).copy(), cov
    var = _diagonal(s_xx) - 2 * xp.sum(a * s_xX, axis=1) + xp.sum((a @ s_XX) * a, axis=1)
    return mean, var, None


def _diagonal(s: Array) -> Array:
    """The diagonal of S_xx given as a matrix, or as its diagonal already (1-D)."""
    return s if s.ndim == 1 else BACKEND.xp.diagonal(s)


def _setup(net, x_train, y_train, x_test, full_cov: bool):
    """Validated inputs and the NNGP blocks: S_xx (only its diagonal without full_cov: O(N)
    memory in the test points), S_xX and S_XX."""
    xt = _checks.inputs("x_train", x_train)
    xs = _checks.inputs("x_test", x_test, n_features=xt.shape[1])
    y = _checks.targets("y_train", y_train, xt.shape[0])
    if not full_cov:
        return xt, xs, y, net.nngp_diagonal(xs), net.nngp(xs, xt), net.nngp(xt)
    nngp = net.nngp(BACKEND.xp.concatenate([xs, xt]))  # one symmetric pass
    m = xs.shape[0]
    return xt, xs, y, nngp[:m, :m], nngp[:m, m:], nngp[m:, m:]


def predict(net, x_train: Array, y_train: Array, x_test: Array, *, lr: float,
            t: float | Sequence[float] | None = None,
            steps: int | Sequence[int] | None = None,
            kernel: str | tuple[str, str] = "sgntk", ridge: float = 0.0,
            full_cov: bool = True) -> Prediction:
    """Distribution of the network outputs on ``x_test`` after training on (x_train, y_train).

    ``kernel``: "sgntk" (true, surrogate: SGL), "ntk" (true, true: gradient descent),
    "surrogate" (surrogate, surrogate), or a (left, right) tuple. Exactly one of ``t``
    (gradient-flow time, inf allowed) or ``steps`` (gradient-descent steps of size lr,
    as in ``gk.train``). ``full_cov=False`` returns only variances (large test sets).
    """
    lr = _checks.positive("lr", lr)
    ridge = _checks.nonnegative("ridge", ridge)
    times, discrete = _times(t, steps)
    if isinstance(kernel, str):
        _checks.choice("kernel", kernel, tuple(KERNEL_SIDES))
        left, right = KERNEL_SIDES[kernel]
    elif isinstance(kernel, tuple | list) and len(kernel) == 2:
        left, right = kernel
    else:
        raise ValueError(f"kernel must be one of {', '.join(map(repr, KERNEL_SIDES))} or a "
                         f"(left, right) pair of 'true'/'surrogate', got {kernel!r}")
    xt, xs, y, s_xx, s_xX, s_XX = _setup(net, x_train, y_train, x_test, full_cov)
    i_xX = net.kernel(xs, xt, left=left, right=right)
    i_XX = net.kernel(xt, None, left=left, right=right)
    if not bool(BACKEND.xp.isfinite(i_XX).all()):
        raise ValueError(f"the ({left}, {right}) kernel of {net.activation!r} is infinite on the "
                         "training inputs (the naive NTK of a jump activation); use kernel='sgntk'")
    xp = BACKEND.xp
    i_XX = i_XX + ridge * xp.eye(xt.shape[0])
    _check_spectrum(BACKEND.to_host(i_XX), lr, times, discrete)
    return linear_dynamics(i_xX, i_XX, s_xx, s_xX, s_XX, y, lr, times, discrete, full_cov)


def linear_dynamics(i_xX: Array, i_XX: Array, s_xx: Array, s_xX: Array, s_XX: Array, y: Array,
                    lr: float, times: np.ndarray, discrete: bool,
                    full_cov: bool = True) -> Prediction:
    """The Gaussian f_t for given kernel blocks (see the module docstring), at each time."""
    xp = BACKEND.xp

    def solve(b):
        return xp.linalg.solve(i_XX, b)

    means, vars_, covs = [], [], []
    for time in times:
        a = i_xX @ _gain(i_XX, lr, float(time), discrete, solve)
        mean, var, cov = _gaussian(a, y, s_xx, s_xX, s_XX, full_cov)
        means.append(mean)
        vars_.append(var)
        covs.append(cov)
    return Prediction(np.asarray(times), xp.stack(means), xp.stack(vars_),
                      xp.stack(covs) if full_cov else None, discrete)


def nngp_posterior(net, x_train: Array, y_train: Array, x_test: Array, *, ridge: float = 0.0,
                   full_cov: bool = True) -> Prediction:
    """Bayesian posterior of the NNGP: mean S_xX S_XX^-1 Y, cov S_xx - S_xX S_XX^-1 S_Xx.

    ``ridge`` is the observation noise variance added to S_XX (0: noiseless).
    """
    ridge = _checks.nonnegative("ridge", ridge)
    xt, xs, y, s_xx, s_xX, s_XX = _setup(net, x_train, y_train, x_test, full_cov)
    xp = BACKEND.xp
    s_XX = s_XX + ridge * xp.eye(xt.shape[0])
    ev = np.linalg.eigvalsh(BACKEND.to_host(s_XX))
    if ev.min() <= ev.max() / _COND_LIMIT:
        raise ValueError(f"Sigma_XX is singular or ill-conditioned (eigenvalues {ev.min():.3g} .. "
                         f"{ev.max():.3g}); pass ridge > 0 (noise variance)")
    a = xp.linalg.solve(s_XX, s_xX.T).T
    mean = a @ y
    if full_cov:
        cov = s_xx - a @ s_xX.T
        cov = 0.5 * (cov + cov.T)
        var = xp.diagonal(cov).copy()
    else:
        cov, var = None, _diagonal(s_xx) - xp.sum(a * s_xX, axis=1)
    return Prediction(np.asarray([np.inf]), mean[None], var[None],
                      None if cov is None else cov[None], False)
