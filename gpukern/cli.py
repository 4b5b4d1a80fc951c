"""The ``gpukern`` command: ``reproduce`` (the paper's experiments), ``kernel``, ``diag``."""

from __future__ import annotations

import argparse
import inspect
import math
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from ._io import check_writable


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line on stderr (exit 2), not usage + error."""

    def error(self, message: str):  # noqa: D401
        self.exit(2, f"{self.prog}: error: {message}\n")


class CLIError(Exception):
    """A user error reported as one line."""


# Run in a fresh interpreter by --backend: the backend is chosen when gpukern is imported,
# so switching means starting again with GPUKERN_BACKEND set (an import failure is one line).
_BOOT = """import sys
try:
    import gpukern.cli
except ImportError as exc:
    sys.exit(f"gpukern: error: {exc}")
sys.exit(gpukern.cli.main(sys.argv[1:]))
"""


def _switch_backend(name: str, argv: list[str]) -> None:
    """Re-execute this command with GPUKERN_BACKEND=name (never returns)."""
    if os.environ.get("GPUKERN_BACKEND") == name:
        raise CLIError(f"--backend {name} was requested but the {name} backend is not active")
    env = dict(os.environ, GPUKERN_BACKEND=name)
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-c", _BOOT, *argv], env)


def _reproduce(args: argparse.Namespace) -> int:
    import gpukern as gk
    from gpukern import experiments

    if args.backend and gk.backend() != args.backend:
        _switch_backend(args.backend, args.argv)
    task = experiments.load_task(args.train) if args.train else None
    print(f"gpukern {gk.__version__} on the {gk.backend()} backend: scale {args.scale}, "
          f"writing to {args.out}")
    metrics = experiments.reproduce(args.out, scale=args.scale, only=args.only, seed=args.seed,
                                    force=args.force, task=task, progress=not args.no_progress,
                                    keep_checkpoints=args.keep_checkpoints)
    print(f"metrics: {Path(args.out) / 'metrics.json'} ({len(metrics) - 1} experiments)")
    return 0


def _load_points(path: str, name: str) -> np.ndarray:
    p = Path(path)
    if not p.exists():
        raise CLIError(f"{name} file {p} does not exist")
    try:
        if p.suffix == ".npy":
            x = np.load(p, allow_pickle=False)
        else:
            x = np.loadtxt(p, delimiter="," if p.suffix == ".csv" else None, ndmin=2)
    except (OSError, ValueError) as exc:
        raise CLIError(f"{name} file {p} cannot be read as an array: {exc}") from exc
    x = np.asarray(x, dtype=float) if x.dtype.kind in "biuf" else x
    if x.ndim == 1:
        x = x[:, None]
    return x


def _output_file(path: str, suffix: str) -> Path:
    """Where a result will be written (``suffix`` added if missing, as NumPy does), checked
    before any work: not a folder, in a folder that exists or can be made, writable."""
    out = Path(path)
    out = out if out.suffix == suffix else out.with_name(out.name + suffix)
    try:
        check_writable(out)
    except OSError as exc:
        raise CLIError(f"--out {out} cannot be written: {exc}") from exc
    return out


def _kernel(args: argparse.Namespace) -> int:
    import gpukern as gk

    out = _output_file(args.out, ".npy")
    if args.threshold != 0.0 and args.activation not in ("erf", "sign", "step"):
        raise CLIError(f"--threshold applies to erf, sign and step, not {args.activation}")
    if args.activation == "quantizer":
        act = gk.activations.uniform_quantizer(args.bits, args.low, args.high)
    elif args.activation == "erf":
        act = gk.activations.erf(args.m, threshold=args.threshold)
    elif args.activation in ("sign", "step"):
        act = gk.activations.BUILTIN[args.activation](threshold=args.threshold)
    else:
        act = gk.activations.BUILTIN[args.activation]()
    sur = gk.surrogates.BUILTIN[args.surrogate](args.surrogate_param, scale=args.surrogate_scale)
    net = gk.MLP(args.depth, act, sur, weight_std=args.weight_std, bias_std=args.bias_std)
    x1 = _load_points(args.x1, "--x1")
    x2 = None if args.x2 is None else _load_points(args.x2, "--x2")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        k = net.kernels(x1, x2, which=(args.which,))[args.which]
    for w in caught:
        print(f"gpukern: warning: {w.message}", file=sys.stderr)
    try:
        np.save(out, gk.to_host(k))
    except OSError as exc:
        raise CLIError(f"--out {out} cannot be written: {exc}") from exc
    print(f"{args.which} of shape {k.shape} -> {out}")
    return 0


def _diag_table(args: argparse.Namespace) -> int:
    """Naive NTK vs SG-NTK on the diagonal as m grows (experiment 3, as a table)."""
    import gpukern as gk

    x = np.array([[1.0, 0.0]])
    sur = gk.surrogates.erf(k=args.k)
    print(f"gpukern {gk.__version__}, backend {gk.backend()}: depth {args.depth}, "
          f"weight_std {args.weight_std}, bias_std {args.bias_std}, surrogate erf(k={args.k}), "
          "x = (1, 0)")
    print(f"{'m':>8} {'NNGP':>12} {'naive NTK':>14} {'SG-NTK':>12}")
    for m in [1.0, 2.0, 5.0, 20.0, 100.0, 1e3, 1e4, math.inf]:
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


def _network_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--depth", type=int, default=2, help="number of hidden layers (default 2)")
    p.add_argument("--weight-std", type=float, default=1.0, help="sw, weight std (default 1)")
    p.add_argument("--bias-std", type=float, default=0.1, help="sb, bias std (default 0.1)")


def _shape_parameters() -> str:
    """'erf k, sigmoid beta, ...': each built-in surrogate's first parameter."""
    from . import surrogates

    return ", ".join(f"{name} {next(iter(inspect.signature(make).parameters))}"
                     for name, make in surrogates.BUILTIN.items())


def _function_options(p: argparse.ArgumentParser) -> None:
    """The activation and surrogate arguments of ``kernel``."""
    from . import activations, surrogates

    p.add_argument("--activation", choices=[*activations.BUILTIN, "quantizer"], default="sign",
                   help="default sign; quantizer: the uniform --bits quantizer on [--low, --high]")
    p.add_argument("--m", type=float, default=1.0, help="erf activation steepness m (default 1)")
    p.add_argument("--threshold", type=float, default=0.0,
                   help="where erf/sign/step jump: sigma(h - threshold) (default 0)")
    p.add_argument("--bits", type=int, default=2, help="quantizer bits (default 2)")
    p.add_argument("--low", type=float, default=-1.0, help="quantizer's lowest level (default -1)")
    p.add_argument("--high", type=float, default=1.0, help="quantizer's highest level (default 1)")
    p.add_argument("--surrogate", choices=list(surrogates.BUILTIN), default="erf",
                   help="default erf")
    p.add_argument("--surrogate-param", type=float, default=1.0,
                   help=f"the surrogate's shape parameter: {_shape_parameters()} (default 1)")
    p.add_argument("--surrogate-scale", type=float, default=1.0, help="surrogate scale (default 1)")


def build_parser() -> argparse.ArgumentParser:
    from gpukern.experiments.common import SCALES

    from .experiments import EXPERIMENTS

    parser = _Parser(prog="gpukern",
                     description="Kernels of surrogate gradient learning (NNGP, NTK, SG-NTK).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("reproduce", help="run the paper's experiments (figures + metrics.json)",
                       description="Reproduce the experiments of Eilers et al. (NeurIPS 2024) and a "
                       "fifth beyond the paper. Writes <name>.png, <name>/data.npz and "
                       "metrics.json into --out; rerunning into the same folder skips finished "
                       "experiments and resumes interrupted training from checkpoints.")
    p.add_argument("--out", default="gpukern-results", help="output folder (default ./gpukern-results)")
    p.add_argument("--scale", choices=[s for s in SCALES if s != "tiny"] + ["tiny"], default="quick",
                   help="quick (default; minutes on a 2-core CPU), paper (the paper's sizes, for a "
                        "GPU), tiny (seconds, for tests)")
    p.add_argument("--only", nargs="+", choices=list(EXPERIMENTS), metavar="NAME",
                   help=f"run only these experiments: {', '.join(EXPERIMENTS)}")
    p.add_argument("--backend", choices=("numpy", "cupy"),
                   help="force the array backend (default: cupy when a GPU is usable)")
    p.add_argument("--seed", type=int, default=0, help="base random seed (default 0)")
    p.add_argument("--force", action="store_true", help="recompute finished experiments")
    p.add_argument("--train", metavar="FILE",
                   help="own training data instead of the circle task: .npz with x (N, n0) and "
                        "y (N,), or .csv whose last column is y")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep finished experiments' training checkpoints (default: removed)")
    p.set_defaults(func=_reproduce)

    p = sub.add_parser("kernel", help="compute a kernel matrix for inputs in a file, save .npy",
                       description="Compute an analytic kernel between the rows of --x1 and --x2 "
                       "(.npy, or .csv/.txt with one point per row) and save it as .npy.")
    p.add_argument("--x1", required=True, help="inputs, (N1, n0)")
    p.add_argument("--x2", help="second inputs, (N2, n0) (default: --x1)")
    p.add_argument("--which", choices=("nngp", "ntk", "sgntk", "surrogate"), default="sgntk",
                   help="nngp; ntk (true, true); sgntk (true at x1, surrogate at x2; default); "
                        "surrogate (surrogate, surrogate)")
    _function_options(p)
    _network_options(p)
    p.add_argument("--out", required=True, help="output .npy file (.npy is added if missing)")
    p.set_defaults(func=_kernel)

    p = sub.add_parser("diag", help="table: naive NTK vs SG-NTK diagonal as erf_m -> sign")
    _network_options(p)
    p.add_argument("--k", type=float, default=1.0, help="erf surrogate sharpness k (default 1)")
    p.set_defaults(func=_diag_table)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except (CLIError, ValueError, TypeError, ImportError) as exc:
        print(f"gpukern: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gpukern: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
