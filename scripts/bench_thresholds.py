"""NNGP + SG-NTK of jumps at thresholds against sign's, depth 3 (asv_benchmarks/RESULTS.md).

    python scripts/bench_thresholds.py [N]    (default 2048; best of two calls each)
"""

import sys
import time

import numpy as np

import gpukern as gk


def best_time(net: gk.MLP, x: np.ndarray) -> float:
    net.kernels(x[:64], which=("nngp", "sgntk"))  # build and warm up
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        net.kernels(x, which=("nngp", "sgntk"))
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2048
    x = np.random.default_rng(0).normal(size=(n, 3))
    make = lambda act: gk.MLP(3, act, gk.surrogates.erf(2.0), weight_std=1.5,  # noqa: E731
                              bias_std=0.2)
    base = best_time(make(gk.activations.sign()), x)
    print(f"N = {n}, depth 3, NNGP + SG-NTK, surrogate erf(k=2); sign: {base:.3f} s")
    print(f"{'activation':<28} {'jumps n':>7} {'time':>9} {'/ sign':>7} {'/ (n^2 sign)':>13}")
    for act in (gk.activations.sign(1.0), gk.activations.step(1.0),
                gk.activations.uniform_quantizer(2), gk.activations.uniform_quantizer(3)):
        t = best_time(make(act), x)
        jumps = len(act.jumps)
        print(f"{act.name[:28]:<28} {jumps:>7} {t:>8.3f}s {t / base:>7.1f} "
              f"{t / base / jumps**2:>13.1f}")


if __name__ == "__main__":
    main()
