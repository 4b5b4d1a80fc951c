"""Record or compare a broad set of gpukern outputs, bit for bit (a refactoring check).

    python scripts/bitwise_check.py record golden.npz   # on the commit before a change
    python scripts/bitwise_check.py compare golden.npz  # on the commit after it

Each executor that the machine has is exercised by running this script again with
``GPUKERN_CPU_FUSED=0`` (the NumPy array path) and with the compiled CPU kernels; the file
name should then say which. Covers analytic kernels of every built-in activation against
every built-in surrogate (closed forms, tables and quadrature pairs), both dtypes, x2 given
or not; empirical kernels; a few SGL steps; GP predictions. Only public API is used, so
the same script runs unchanged before and after a refactoring.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np

import gpukern as gk

A = gk.activations
S = gk.surrogates

ACTIVATIONS = {"erf2": A.erf(2.0), "sign": A.sign(), "step": A.step(), "relu": A.relu(),
               "linear": A.linear()}
SURROGATES = {"erf": S.erf(1.5), "sigmoid": S.sigmoid(3.0), "fast_sigmoid": S.fast_sigmoid(4.0),
              "atan": S.atan(2.0), "boxcar": S.boxcar(0.7), "triangle": S.triangle(0.6, 0.5)}


def _inputs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(9, 3)) * np.linspace(0.3, 2.0, 9)[:, None]
    x[4] = x[1]  # coinciding rows
    x[6] = 0.0
    y = rng.normal(size=(4, 3))
    return x, y


def outputs() -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    x, y = _inputs()
    host = gk._backend.BACKEND.to_host
    for an, act in ACTIVATIONS.items():
        for sn, sur in SURROGATES.items():
            for bias in (0.0, 0.2):
                net = gk.MLP(2, act, sur, weight_std=1.3, bias_std=bias)
                which = ("nngp", "ntk", "sgntk", "surrogate")
                small = sn in ("sigmoid", "fast_sigmoid") and an in ("relu",)
                xs = x[:5] if small else x
                for tag, x2 in (("sym", None), ("xy", y[:3] if small else y)):
                    ks = net.kernels(xs, x2, which=which)
                    for w in which:
                        out[f"k/{an}/{sn}/{bias}/{tag}/{w}"] = host(ks[w])
                if not small:
                    k32 = net.kernels(x, None, which=("nngp", "sgntk"), dtype=np.float32)
                    out[f"k32/{an}/{sn}/{bias}"] = host(k32["sgntk"])
    net = gk.MLP(3, A.custom(np.tanh, lambda v: 1 - np.tanh(v) ** 2), S.erf(1.0), bias_std=0.1)
    out["k/custom"] = host(net.kernels(x[:4], which=("nngp", "ntk"))["ntk"])
    for an in ("sign", "erf2", "relu"):
        net = gk.MLP(2, ACTIVATIONS[an], S.atan(1.5), bias_std=0.3)
        for dt in (np.float64, np.float32):
            p = net.init(3, 33, ensemble=3, seed=1, dtype=dt)
            for left, right in (("true", "surrogate"), ("surrogate", "surrogate")):
                out[f"emp/{an}/{dt.__name__}/{left}{right}"] = host(
                    net.empirical_kernel(p, x, None, left, right))
                out[f"empxy/{an}/{dt.__name__}/{left}{right}"] = host(
                    net.empirical_kernel(p, x, y, left, right))
            out[f"apply/{an}/{dt.__name__}"] = host(net.apply(p, x))
            out[f"jac/{an}/{dt.__name__}"] = host(net.jacobian(p, x[:3]))
            res = gk.train(net, p, x, np.sin(x[:, 0]), lr=0.05, steps=7, record_every=3,
                           x_eval=y, kernel_steps=[0, 7])
            out[f"train/{an}/{dt.__name__}/out"] = res.outputs
            out[f"train/{an}/{dt.__name__}/loss"] = res.loss
            out[f"train/{an}/{dt.__name__}/k7"] = res.kernels[7]
            out[f"train/{an}/{dt.__name__}/w"] = host(res.params.ravel())
        pred = gk.predict(net, x[:5], np.cos(x[:5, 0]), y, lr=0.1, steps=[0, 5, 50])
        out[f"pred/{an}/mean"], out[f"pred/{an}/cov"] = host(pred.mean), host(pred.cov)
        pred = gk.predict(net, x[:5], np.cos(x[:5, 0]), y, lr=0.1, t=[1.0, np.inf],
                          full_cov=False, ridge=1e-3)
        out[f"predt/{an}/mean"], out[f"predt/{an}/var"] = host(pred.mean), host(pred.var)
        post = gk.nngp_posterior(net, x[:5], np.cos(x[:5, 0]), y, ridge=1e-6)
        out[f"post/{an}/mean"] = host(post.mean)
    return out


def main(argv: list[str]) -> int:
    mode, path = argv
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        now = outputs()
    if mode == "record":
        np.savez(path, **now)
        print(f"recorded {len(now)} arrays to {path}")
        return 0
    with np.load(path) as ref:
        missing = sorted(set(ref.files) ^ set(now))
        diff = [k for k in ref.files if k in now and not np.array_equal(
            ref[k], now[k], equal_nan=True)]
        for k in diff:
            err = np.nanmax(np.abs(ref[k] - now[k])) if ref[k].shape == now[k].shape else "shape"
            print(f"DIFFERS {k}: max |diff| {err}")
    print(f"{len(now)} arrays: {len(diff)} differ, {len(missing)} missing on one side")
    return int(bool(diff or missing))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
