"""Kernels without closed forms (Mehler series, tables + 1-D rules) against closed-form
ones, and the symmetric path for x2 equal to x1 (asv_benchmarks/RESULTS.md, issue 15).

    python scripts/bench_tables.py [N] [N_OLD]    (defaults 256 and 12)

"first" is the process's first call (tables filled, series coefficients computed), the
other times the best of five calls after it (the coefficients kept: they are the same
numbers recomputed or not; five, because this shared 2-core machine's timings of one
0.05 s call vary by ~20 %).

Depth 3, sign activations, bias_std 0.2, inputs N(0, I_3) (the first layer's variances
differ from point to point: a pair without a closed form is read there from its table
over variances, after it from its table in the correlation), then the same inputs scaled
to the unit sphere (one norm: every layer's variances are one value, so every such pair
is read from its table in the correlation). The nested 2-D
quadrature that the tables replace is timed at N_OLD points (it takes ~10-50 ms per
entry) by routing the pairs back to it.
"""

import sys
import time
from collections.abc import Callable

import numpy as np

import gpukern as gk
from gpukern import gaussian
from gpukern.kernels import ops

S = gk.surrogates


def best(call: Callable[[], object], repeat: int = 5) -> float:
    out = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        out = min(out, time.perf_counter() - t0)
    return out


def per_entry(seconds: float, n: int) -> float:
    """Seconds per kernel entry and layer (a symmetric N x N kernel: N(N+1)/2 entries)."""
    return seconds / (n * (n + 1) / 2) / 3


def surrogate_kernels(x: np.ndarray, x_old: np.ndarray | None, label: str) -> None:
    old_n = "" if x_old is None else f" (2-D quadrature at N = {len(x_old)})"
    print(f"\nsurrogate x surrogate kernel, depth 3, sign, N = {len(x)}, {label}{old_n}")
    print(f"{'surrogate':<18} {'first':>9} {'time':>9} {'per entry':>10} {'/ erf':>7} "
          f"{'2-D quad/entry':>15} {'speed-up':>9}")
    base = None
    first = S.erf(2.0)
    for sur in (first, S.sigmoid(2.0), S.fast_sigmoid(2.0), S.atan(2.0)):
        net = gk.MLP(3, gk.activations.sign(), sur, bias_std=0.2)
        run = lambda net=net: net.kernel(x, left="surrogate", right="surrogate")  # noqa: E731
        t_first = best(run, 1)  # fills the tables, computes the coefficients
        t = best(run)
        base = t if base is None else base
        old = ""
        if sur is not first and x_old is not None:
            routes = gaussian.reduced_pair, gaussian.series_or_reduced
            gaussian.reduced_pair = gaussian.series_or_reduced = gaussian.quad_pair
            try:  # the array path: the compiled recursion would sum the series itself
                with ops.use_executor("array"):
                    t_old = per_entry(best(lambda net=net: net.kernel(
                        x_old, left="surrogate", right="surrogate"), 1), len(x_old))
            finally:
                gaussian.reduced_pair, gaussian.series_or_reduced = routes
            old = f"{t_old * 1e3:>12.2f} ms {t_old / per_entry(t, len(x)):>9.0f}"
        print(f"{sur.name:<18} {t_first:>8.3f}s {t:>8.3f}s {per_entry(t, len(x)) * 1e6:>9.3f} us "
              f"{t / base:>7.1f} {old}")


def custom_activation(x: np.ndarray) -> None:
    tanh = gk.activations.custom(np.tanh, lambda v: 1.0 - np.tanh(v) ** 2, name="tanh")
    print(f"\nNNGP + NTK, depth 3, N = {len(x)}")
    base = None
    for act in (gk.activations.erf(1.0), tanh):
        net = gk.MLP(3, act, bias_std=0.2)
        run = lambda net=net: net.kernels(x, which=("nngp", "ntk"))  # noqa: E731
        t_first = best(run, 1)
        t = best(run)
        base = t if base is None else base
        print(f"{act.name:<18} first {t_first:>8.3f}s, then {t:>8.3f}s {t / base:>7.1f} x erf")


def symmetric_path(n: int) -> None:
    x = np.random.default_rng(1).normal(size=(n, 3))
    net = gk.MLP(3, gk.activations.erf(1.0), S.erf(1.0), bias_std=0.2)
    print(f"\nx2 is x1 (erf NNGP + NTK, depth 3, N = {n})")
    which = ("nngp", "ntk")
    for name, call in (("kernels(x)", lambda: net.kernels(x, which=which)),
                       ("kernels(x, x)", lambda: net.kernels(x, x, which=which)),
                       ("kernels(x, x.copy())", lambda: net.kernels(x, x.copy(), which=which))):
        call()
        print(f"{name:<24} {best(call):.3f} s")
    p = net.init(3, 1024, ensemble=1, seed=0, dtype=np.float32)
    xe = x[:1024].astype(np.float32)
    for name, call in (("empirical(p, x)", lambda: net.empirical_kernel(p, xe)),
                       ("empirical(p, x, x)", lambda: net.empirical_kernel(p, xe, xe))):
        call()
        print(f"{name:<24} {best(call):.3f} s   (width 1024, N = {len(xe)}, float32)")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    n_old = int(sys.argv[2]) if len(sys.argv) > 2 else 12
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3))
    surrogate_kernels(x, x[:n_old], "inputs N(0, I_3)")
    surrogate_kernels(x / np.linalg.norm(x, axis=1, keepdims=True), None, "inputs of norm 1")
    custom_activation(x)
    symmetric_path(4096)


if __name__ == "__main__":
    main()
