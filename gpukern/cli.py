"""The ``gpukern`` command."""

from __future__ import annotations

import argparse
import math
import sys
import warnings

import numpy as np


def _diag_table(args: argparse.Namespace) -> int:
    """Naive NTK vs SG-NTK on the diagonal as m grows (DESIGN.md experiment 3, as a table)."""
    import gpukern as gk

    x = np.array([[1.0, 0.0]])
    sur = gk.surrogates.erf(k=args.k)
    ms = [1.0, 2.0, 5.0, 20.0, 100.0, 1e3, 1e4, math.inf]
    print(f"gpukern {gk.__version__}, backend {gk.backend()}: depth {args.depth}, "
          f"weight_std {args.weight_std}, bias_std {args.bias_std}, surrogate erf(k={args.k}), "
          "x = (1, 0)")
    print(f"{'m':>8} {'NNGP':>12} {'naive NTK':>14} {'SG-NTK':>12}")
    for m in ms:
        net = gk.MLP(args.depth, gk.activations.erf(m), sur, weight_std=args.weight_std,
                     bias_std=args.bias_std)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the naive NTK of sign is +inf
            k = net.kernels(x, which=("nngp", "ntk", "sgntk"))
        label = "inf" if math.isinf(m) else f"{m:g}"
        print(f"{label:>8} {k['nngp'][0, 0]:12.6f} {k['ntk'][0, 0]:14.6g} {k['sgntk'][0, 0]:12.6f}")
    print("The naive NTK diagonal grows like m^depth and is +inf for sign; the SG-NTK "
          "converges to the finite sign-limit kernel.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gpukern",
        description="Kernels of surrogate gradient learning (NNGP, NTK, SG-NTK).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("diag", help="table: naive NTK vs SG-NTK diagonal as erf_m -> sign")
    p.add_argument("--depth", type=int, default=2, help="hidden layers (default 2)")
    p.add_argument("--weight-std", type=float, default=1.0, help="sw (default 1)")
    p.add_argument("--bias-std", type=float, default=0.1, help="sb (default 0.1)")
    p.add_argument("--k", type=float, default=1.0, help="erf surrogate sharpness k (default 1)")
    p.set_defaults(func=_diag_table)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError) as exc:
        print(f"gpukern: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
