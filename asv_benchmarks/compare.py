"""Side-by-side timings: gpukern against neural-tangents and PyTorch, in one run.

    python -m asv_benchmarks.compare [--quick] [--repeat 5] [--out compare.json]

Runs the configurations of RESULTS.md with gpukern and, where installed (``pip install
-e ".[compare]"``), neural-tangents (JAX, jit) and torch, on the same inputs, dtype and
machine. Each library runs in its own worker process, one after the other, with its
default threading: two OpenMP runtimes in one process slow each other (measured: torch
imported next to gpukern's kernels made them 1.3x slower), and that is not how either is
used. gpukern's worker saves its results; the others load them and check that they agree
(relative max-norm difference below a threshold set by the dtype) before timing their
own; a disagreement is shown in the table and makes the exit status 1. Each time is the
best of ``--repeat`` runs after one warm-up run (JIT compilation, library builds).

The same run measures the machine's limits: float32/float64 GEMM FLOP/s (NumPy's BLAS,
a 2048^3 product) and streaming-copy bandwidth, and reports each workload as a fraction
of the one that bounds it. The table is printed (Markdown) and written as JSON with the
library versions, thread counts and dtypes.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .benchmarks.common import inputs  # the asv suite's fixed-seed data

AGREE = {"float32": 1e-4, "float64": 1e-9}
"""Max |a - b| / max |b| allowed between two implementations of one quantity. float32:
~1e3 eps for sums of ~1e3 products and three layers; float64: rounding of different but
exact formulas (arcsin vs atan2, GEMM orders), far above it, far below any real error."""

DTYPES = ("float32", "float64")
LIBRARIES = ("gpukern", "neural-tangents", "torch")


# --------------------------------------------------------------------------- helpers
def best_time(fn: Callable[[], Any], repeat: int) -> float:
    """Best wall time of ``repeat`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def rel_diff(a: Any, b: Any) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


class Sizes:
    """The configurations of RESULTS.md, or small ones with --quick."""

    def __init__(self, quick: bool) -> None:
        self.depth = 3
        self.n_analytic = 512 if quick else 4096
        self.n_emp, self.n_emp_small, self.width = (128, 64, 128) if quick else (1024, 256, 1024)
        self.ensemble, self.sgl_width, self.n_sgl, self.steps = (
            (10, 64, 16, 5) if quick else (100, 512, 16, 20))


class Worker:
    """What a worker process knows: sizes, repeats, the shared folder, machine limits."""

    def __init__(self, sizes: Sizes, repeat: int, shared: Path, limits: dict) -> None:
        self.s, self.repeat, self.shared, self.limits = sizes, repeat, shared, limits
        self.rows: list[dict] = []

    def add(self, **row) -> None:
        self.rows.append(row)

    def check(self, name: str, got: Any, dtype: str) -> tuple[float, bool]:
        """Agreement with gpukern's saved result ``name``."""
        diff = rel_diff(got, np.load(self.shared / f"{name}.npy"))
        return diff, diff < AGREE[dtype]

    def save(self, name: str, value: Any) -> None:
        np.save(self.shared / f"{name}.npy", np.asarray(value))


# ------------------------------------------------------------------- machine limits
def machine_limits(repeat: int) -> dict:
    """GEMM FLOP/s per dtype (2048^3 product) and streaming copy bandwidth (bytes/s)."""
    out = {}
    n = 2048
    for dt in (np.float32, np.float64):
        a = np.random.default_rng(0).normal(size=(n, n)).astype(dt)
        c = np.empty_like(a)
        t = best_time(lambda: np.matmul(a, a, out=c), repeat)
        out[f"gemm_flops_{np.dtype(dt).name}"] = 2 * n**3 / t
    src = np.ones(1 << 25)  # 256 MiB
    dst = np.empty_like(src)
    t = best_time(lambda: np.copyto(dst, src), repeat)
    out["copy_bytes_per_s"] = 2 * src.nbytes / t  # read + write
    return out


def _empirical_flops(n: int, widths: list[int], symmetric: bool = True) -> float:
    """GEMM FLOPs of the layerwise Gram method: forward and delta propagation 2 N n_l
    n_{l+1} each (a second delta propagation if not symmetric), per layer N^2 (n_{l-1} +
    n_l) for Z and D counted once per symmetric pair (twice for full Grams)."""
    sizes = [16] + widths + [1]
    passes = 4 if symmetric else 6
    fb = sum(passes * n * a * b for a, b in zip(sizes[:-1], sizes[1:]))
    grams = sum(n * n * (a + b) for a, b in zip(sizes[:-1], sizes[1:]))
    return fb + (grams if symmetric else 2 * grams)


def _sgl_bytes(width: int) -> int:
    """Weight entries read and written per network-step: W read by the forward and the
    backward pass, read and written by the update (4 passes)."""
    return 4 * sum(a * b for a, b in zip([16, width, width], [width, width, 1]))


# ------------------------------------------------------------------- gpukern worker
def run_gpukern(w: Worker) -> None:
    import gpukern as gk
    from gpukern.kernels import cpu_fused

    s = w.s
    # analytic
    x = inputs(s.n_analytic)
    erf_net = gk.MLP(s.depth, gk.activations.erf(1.0), gk.surrogates.erf(1.0), bias_std=0.1)
    sign_cf = gk.MLP(s.depth, gk.activations.sign(), gk.surrogates.erf(1.0), bias_std=0.1)
    sign_q = gk.MLP(s.depth, gk.activations.sign(), gk.surrogates.fast_sigmoid(5.0),
                    bias_std=0.1)
    n = s.n_analytic
    for dname in DTYPES:
        ref = erf_net.kernels(x, which=("nngp", "ntk"), dtype=dname)
        w.save(f"analytic_nngp_{dname}", ref["nngp"][::16])
        w.save(f"analytic_ntk_{dname}", ref["ntk"][::16])
        t_gk = best_time(lambda: erf_net.kernels(x, which=("nngp", "ntk"), dtype=dname),
                         w.repeat)
        out_bytes = 2 * n * n * np.dtype(dname).itemsize
        entry_layers = n * (n + 1) // 2 * s.depth  # symmetric: the upper triangle
        w.add(workload="analytic_erf", dtype=dname, impl="gpukern", seconds=t_gk,
              rate=f"{n * n / t_gk / 1e6:.0f} M entries/s",
              limit=f"compute-bound: {t_gk / entry_layers * 1e9 * cpu_fused.threads():.1f} "
                    f"core-ns per entry and layer; writes at "
                    f"{out_bytes / t_gk / w.limits['copy_bytes_per_s']:.0%} of copy bandwidth",
              note=f"compiled CPU path: {cpu_fused.available()}, {cpu_fused.threads()} threads")
        t_cf = best_time(lambda: sign_cf.sgntk(x, dtype=dname), w.repeat)
        w.add(workload="analytic_sign_closed", dtype=dname, impl="gpukern", seconds=t_cf,
              note=f"{t_cf / t_gk:.2f}× the erf NNGP+NTK time (not symmetric: all N² "
                   "entries)")
        t_q = best_time(lambda: sign_q.sgntk(x, dtype=dname), max(1, w.repeat // 3))
        w.add(workload="analytic_sign_table", dtype=dname, impl="gpukern", seconds=t_q,
              note=f"{t_q / t_cf:.2f}× the closed-form SG-NTK")
    # empirical
    dt = np.float32
    emp = gk.MLP(s.depth, gk.activations.erf(1.0), gk.surrogates.erf(1.0), bias_std=0.1)
    sg_net = gk.MLP(s.depth, gk.activations.erf(1.0), gk.surrogates.atan(2.0), bias_std=0.1)
    sign_net = gk.MLP(s.depth, gk.activations.sign(), gk.surrogates.erf(1.0), bias_std=0.1)
    params = emp.init(16, s.width, ensemble=1, seed=0, dtype=dt)
    for i, w_ in enumerate(params.weights):
        w.save(f"emp_w{i}", w_[0])
        w.save(f"emp_b{i}", params.biases[i][0])
    peak = w.limits["gemm_flops_float32"]
    for n_pts in (s.n_emp, s.n_emp_small):
        xe = inputs(n_pts).astype(dt)
        w.save(f"emp_ntk_{n_pts}", emp.empirical_kernel(params, xe, left="true", right="true")[0])
        t = best_time(lambda: emp.empirical_kernel(params, xe, left="true", right="true"),
                      w.repeat)
        fl = _empirical_flops(n_pts, [s.width] * s.depth)
        w.add(workload=f"emp_ntk_{n_pts}", dtype="float32", impl="gpukern", seconds=t,
              rate=f"{fl / t / 1e9:.0f} GFLOP/s", limit=f"{fl / t / peak:.0%} of GEMM peak")
        if n_pts != s.n_emp:
            continue
        fl_sg = _empirical_flops(n_pts, [s.width] * s.depth, symmetric=False)
        t = best_time(lambda: sg_net.empirical_kernel(params, xe, left="true",
                                                      right="surrogate"), w.repeat)
        w.add(workload="emp_sgntk_erf", dtype="float32", impl="gpukern", seconds=t,
              rate=f"{fl_sg / t / 1e9:.0f} GFLOP/s", limit=f"{fl_sg / t / peak:.0%} of GEMM peak",
              note="not symmetric: two backward passes, full Grams")
        t = best_time(lambda: sign_net.empirical_kernel(params, xe, left="true",
                                                        right="surrogate"), w.repeat)
        w.add(workload="emp_sgntk_sign", dtype="float32", impl="gpukern", seconds=t,
              note="the true side of a jump is a delta: readout layer only")
    # SGL
    net = _sgl_net(gk)
    xs = inputs(s.n_sgl)
    ys = np.sin(xs[:, 0])
    small = net.init(16, s.sgl_width, ensemble=3, seed=0, dtype=np.float64)
    after = gk.train(net, small, xs, ys, lr=0.01, steps=3).params
    for i, (w_, b_) in enumerate(zip(after.weights, after.biases)):
        w.save(f"sgl_w{i}", w_)
        w.save(f"sgl_b{i}", b_)
    for dname in DTYPES:
        p0 = net.init(16, s.sgl_width, ensemble=s.ensemble, seed=0, dtype=dname)
        t = best_time(lambda: gk.train(net, p0, xs, ys, lr=0.01, steps=s.steps), w.repeat)
        rate = s.ensemble * s.steps / t
        traffic = rate * _sgl_bytes(s.sgl_width) * np.dtype(dname).itemsize
        w.add(workload="sgl", dtype=dname, impl="gpukern", seconds=t / s.steps,
              rate=f"{rate:.0f} net-steps/s",
              limit=f"{traffic / w.limits['copy_bytes_per_s']:.0%} of copy bandwidth",
              note="time per step")


def _sgl_net(gk):
    return gk.MLP(2, gk.activations.sign(), gk.surrogates.erf(1.0), bias_std=0.1)


# ----------------------------------------------------------- neural-tangents worker
def _neural_tangents():
    """neural_tangents with the shim its STRUCTURED_DERIVATIVES needs on newer JAX."""
    import jax
    from jax._src import source_info_util
    from jax.interpreters import ad

    for name, value in (("source_info_util", source_info_util), ("config", jax.config)):
        if not hasattr(ad, name):
            setattr(ad, name, value)
    import neural_tangents as nt

    return jax, nt


def _nt_mlp(depth: int, width: int):
    from neural_tangents import stax

    layers = []
    for _ in range(depth):
        layers += [stax.Dense(width, W_std=1.0, b_std=0.1), stax.Erf()]
    layers.append(stax.Dense(1, W_std=1.0, b_std=0.1))
    return stax.serial(*layers)


def run_neural_tangents(w: Worker) -> None:
    jax, nt = _neural_tangents()
    s = w.s
    x = inputs(s.n_analytic)
    for dname in DTYPES:
        # float64 mode for float64 runs only: float32 runs as JAX users run it
        jax.config.update("jax_enable_x64", dname == "float64")
        _, _, kfn = _nt_mlp(s.depth, 1)
        kfn = jax.jit(kfn, static_argnames="get")
        xj = jax.numpy.asarray(x.astype(dname))

        def run():
            r = kfn(xj, None, get=("nngp", "ntk"))
            r.ntk.block_until_ready()
            return r

        r = run()
        d1, ok1 = w.check(f"analytic_nngp_{dname}", np.asarray(r.nngp)[::16], dname)
        d2, ok2 = w.check(f"analytic_ntk_{dname}", np.asarray(r.ntk)[::16], dname)
        w.add(workload="analytic_erf", dtype=dname, impl="neural-tangents (jit)",
              seconds=best_time(run, w.repeat), diff=max(d1, d2), agrees=ok1 and ok2)
    jax.config.update("jax_enable_x64", False)
    _, apply_fn, _ = _nt_mlp(s.depth, s.width)
    params = []
    for i in range(s.depth + 1):
        if i:
            params.append(())
        params.append((jax.numpy.asarray(np.load(w.shared / f"emp_w{i}.npy").T),
                       jax.numpy.asarray(np.load(w.shared / f"emp_b{i}.npy"))))
    impls = nt.NtkImplementation
    for n_pts in (s.n_emp, s.n_emp_small):
        xj = jax.numpy.asarray(inputs(n_pts).astype(np.float32))
        todo = [("STRUCTURED_DERIVATIVES", impls.STRUCTURED_DERIVATIVES)]
        if n_pts == s.n_emp_small:  # at the full size it needs > 8 GB and minutes
            todo.append(("JACOBIAN_CONTRACTION", impls.JACOBIAN_CONTRACTION))
        for label, impl in todo:
            fn = jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), vmap_axes=0,
                                             implementation=impl))

            def run(fn=fn, xj=xj):
                k = fn(xj, None, params)
                k.block_until_ready()
                return k

            diff, ok = w.check(f"emp_ntk_{n_pts}", run(), "float32")
            w.add(workload=f"emp_ntk_{n_pts}", dtype="float32", impl=f"neural-tangents {label}",
                  seconds=best_time(run, w.repeat), diff=diff, agrees=ok)


# --------------------------------------------------------------------- torch worker
def run_torch(w: Worker) -> None:
    import torch

    s = w.s
    # empirical: PyTorch's NTK recipe, jacrev of a functional MLP contracted with einsum
    from torch.func import jacrev, vmap

    n_pts = s.n_emp_small
    ps = {}
    for i in range(s.depth + 1):
        ps[f"w{i}"] = torch.tensor(np.load(w.shared / f"emp_w{i}.npy"))
        ps[f"b{i}"] = torch.tensor(np.load(w.shared / f"emp_b{i}.npy"))

    def f(p, xx):
        z = xx[None]
        for l in range(s.depth + 1):
            wl, bl = p[f"w{l}"], p[f"b{l}"]
            h = z @ wl.T / math.sqrt(wl.shape[1]) + 0.1 * bl
            z = torch.erf(h) if l < s.depth else h
        return z[0]

    xt = torch.tensor(inputs(n_pts).astype(np.float32))

    def ntk():
        jac = vmap(jacrev(f), (None, 0))(ps, xt)
        flat = [j.reshape(j.shape[0], -1) for j in jac.values()]
        return sum(torch.einsum("na,ma->nm", j, j) for j in flat)

    with torch.no_grad():
        diff, ok = w.check(f"emp_ntk_{n_pts}", ntk().numpy(), "float32")
    w.add(workload=f"emp_ntk_{n_pts}", dtype="float32", impl="torch.func jacrev + einsum",
          seconds=best_time(ntk, w.repeat), diff=diff, agrees=ok)
    # SGL: agreement after 3 steps on a small ensemble in float64 (in float32 a
    # pre-activation that rounding puts on the other side of 0 flips a sign unit)
    import gpukern as gk  # the initial parameters and the surrogate's descriptor only

    net = _sgl_net(gk)
    xs = inputs(s.n_sgl)
    ys = np.sin(xs[:, 0])
    for label, make in (("torch autograd.Function + baddbmm", _torch_sgl_autograd),
                        ("torch.func vmap(grad)", _torch_sgl_vmap)):
        small = net.init(16, s.sgl_width, ensemble=3, seed=0, dtype=np.float64)
        step, read = make(torch, net, small, xs, ys, 0.01)
        for _ in range(3):
            step()
        got = read()
        refs = ([np.load(w.shared / f"sgl_w{i}.npy") for i in range(3)]
                + [np.load(w.shared / f"sgl_b{i}.npy") for i in range(3)])
        diff = max(rel_diff(a, b) for a, b in zip(got, refs))
        for dname in DTYPES:
            p0 = net.init(16, s.sgl_width, ensemble=s.ensemble, seed=0, dtype=dname)
            step, _ = make(torch, net, p0, xs, ys, 0.01)

            def run(step=step):
                for _ in range(s.steps):
                    step()

            t = best_time(run, w.repeat)
            w.add(workload="sgl", dtype=dname, impl=label, seconds=t / s.steps,
                  rate=f"{s.ensemble * s.steps / t:.0f} net-steps/s", diff=diff,
                  agrees=diff < AGREE["float64"], note="time per step; agreement in float64")


def _torch_surrogate(torch, net):
    """The surrogate sigma~(v) of ``net`` as a torch function (a Gaussian bump)."""
    kind, a, b, _ = net.surrogate.descriptor()
    assert kind == 1.0 and a > 0, "the comparison uses a Gaussian-bump surrogate"
    c = b / math.sqrt(math.pi * a)
    return lambda v: c * torch.exp(v * v * (-1.0 / a))


def _torch_sgl_autograd(torch, net, p0, x, y, lr):
    """Batched over networks: baddbmm, a sign with a surrogate backward, autograd."""
    sur = _torch_surrogate(torch, net)

    class SignSG(torch.autograd.Function):
        @staticmethod
        def forward(ctx, h):
            ctx.save_for_backward(h)
            return torch.sign(h)

        @staticmethod
        def backward(ctx, g):
            (h,) = ctx.saved_tensors
            return g * sur(h)

    ws = [torch.tensor(np.array(w), requires_grad=True) for w in p0.weights]
    bs = [torch.tensor(np.array(b), requires_grad=True) for b in p0.biases]
    xt = torch.tensor(x, dtype=ws[0].dtype).expand(ws[0].shape[0], *x.shape)
    yt = torch.tensor(y, dtype=ws[0].dtype)

    def step():
        z = xt
        for l, (w, b) in enumerate(zip(ws, bs)):
            h = torch.baddbmm(net.bias_std * b[:, None, :], z, w.transpose(1, 2),
                              alpha=net.weight_std / math.sqrt(w.shape[2]))
            z = SignSG.apply(h) if l < len(ws) - 1 else h
        loss = 0.5 * ((z[..., 0] - yt) ** 2).sum()
        loss.backward()
        with torch.no_grad():
            for p in ws + bs:
                p -= lr * p.grad
                p.grad = None

    return step, lambda: [p.detach().numpy() for p in ws + bs]


def _torch_sgl_vmap(torch, net, p0, x, y, lr):
    """One network's loss, torch.func.grad, vmap over the networks."""
    from torch.func import grad, vmap

    sur = _torch_surrogate(torch, net)

    class SignSG(torch.autograd.Function):
        generate_vmap_rule = True

        @staticmethod
        def forward(h):
            return torch.sign(h)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(inputs[0])

        @staticmethod
        def backward(ctx, g):
            (h,) = ctx.saved_tensors
            return g * sur(h)

    ws = [torch.tensor(np.array(w)) for w in p0.weights]
    bs = [torch.tensor(np.array(b)) for b in p0.biases]
    xt = torch.tensor(x, dtype=ws[0].dtype)
    yt = torch.tensor(y, dtype=ws[0].dtype)
    sb, sw = net.bias_std, net.weight_std

    def loss(wl, bl):
        z = xt
        for l, (w, b) in enumerate(zip(wl, bl)):
            h = z @ w.T * (sw / math.sqrt(w.shape[1])) + sb * b
            z = SignSG.apply(h) if l < len(wl) - 1 else h
        return 0.5 * ((z[:, 0] - yt) ** 2).sum()

    g = vmap(grad(loss, argnums=(0, 1)))

    def step():
        gw, gb = g(ws, bs)
        for p, d in zip(ws + bs, list(gw) + list(gb)):
            p.sub_(lr * d)

    return step, lambda: [p.numpy() for p in ws + bs]


WORKERS = {"gpukern": run_gpukern, "neural-tangents": run_neural_tangents, "torch": run_torch}


def _versions(lib: str) -> dict:
    if lib == "gpukern":
        import scipy

        import gpukern as gk
        from gpukern.kernels import cpu_fused

        return {"gpukern": gk.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
                "compiled_cpu_kernels": cpu_fused.available(),
                "openmp_threads": cpu_fused.threads()}
    if lib == "neural-tangents":
        import jax
        import jaxlib
        import neural_tangents as nt

        return {"jax": jax.__version__, "jaxlib": jaxlib.__version__,
                "neural_tangents": nt.__version__, "jax_devices": str(jax.devices())}
    import torch

    return {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}


# ----------------------------------------------------------------------------- main
TITLES = {
    "analytic_erf": "analytic erf NNGP+NTK, depth {depth}, N={n_analytic}",
    "analytic_sign_closed": "analytic sign SG-NTK (erf surrogate, closed form), depth {depth}, "
                            "N={n_analytic}",
    "analytic_sign_table": "analytic sign SG-NTK (fast_sigmoid, quadrature table), depth "
                           "{depth}, N={n_analytic}",
    "emp_sgntk_erf": "empirical SG-NTK (erf, atan surrogate), width {width}, depth {depth}, "
                     "N={n_emp}",
    "emp_sgntk_sign": "empirical SG-NTK, sign, width {width}, depth {depth}, N={n_emp}",
    "sgl": "ensemble SGL, sign, E={ensemble}, 2 hidden x {sgl_width}, N={n_sgl}",
}


def _title(key: str, s: Sizes) -> str:
    if key.startswith("emp_ntk_"):
        return (f"empirical NTK, erf, width {s.width}, depth {s.depth}, "
                f"N={key.rsplit('_', 1)[1]}")
    return TITLES[key].format(**vars(s))


def _format_row(r: dict) -> str:
    t = r.get("seconds")
    cells = [r["title"], r["dtype"], r["impl"], "—" if t is None else f"{t:.4g} s",
             r.get("rate", ""),
             "" if r.get("speedup") is None else f"{r['speedup']:.2f}×",
             r.get("limit", ""),
             "" if r.get("diff") is None else
             f"{r['diff']:.1e} {'ok' if r['agrees'] else 'DISAGREE'}",
             r.get("note", "")]
    return "| " + " | ".join(cells) + " |"


HEADER = ("| workload | dtype | implementation | time | rate | gpukern speed-up | "
          "fraction of machine limit | agreement (rel. max diff) | note |\n"
          "|---|---|---|---|---|---|---|---|---|")


def _worker_main(args) -> int:
    s = Sizes(args.quick)
    shared = Path(args.shared)
    limits = json.loads((shared / "limits.json").read_text())
    w = Worker(s, args.repeat, shared, limits)
    WORKERS[args.worker](w)
    out = {"rows": w.rows, "versions": _versions(args.worker)}
    (shared / f"rows-{args.worker}.json").write_text(json.dumps(out))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m asv_benchmarks.compare", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per entry (best is kept)")
    ap.add_argument("--out", default="compare.json", help="JSON file for the table")
    ap.add_argument("--worker", choices=LIBRARIES, help=argparse.SUPPRESS)
    ap.add_argument("--shared", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    if args.worker:
        return _worker_main(args)

    present = {"gpukern": True,
               "neural-tangents": all(importlib.util.find_spec(m) for m in ("jax", "neural_tangents")),
               "torch": importlib.util.find_spec("torch") is not None}
    missing = [k for k, v in present.items() if not v]
    if missing:
        print(f"note: not installed: {', '.join(missing)} (pip install -e '.[compare]')",
              file=sys.stderr)
    limits = machine_limits(args.repeat)
    print(f"machine: float32 GEMM {limits['gemm_flops_float32'] / 1e9:.0f} GFLOP/s, float64 "
          f"GEMM {limits['gemm_flops_float64'] / 1e9:.0f} GFLOP/s, copy "
          f"{limits['copy_bytes_per_s'] / 1e9:.1f} GB/s", flush=True)
    s = Sizes(args.quick)
    rows: list[dict] = []
    versions: dict = {}
    with tempfile.TemporaryDirectory(prefix="gpukern-compare-") as tmp:
        shared = Path(tmp)
        (shared / "limits.json").write_text(json.dumps(limits))
        for lib in LIBRARIES:
            if not present[lib]:
                continue
            print(f"running {lib} ...", file=sys.stderr, flush=True)
            cmd = [sys.executable, "-m", "asv_benchmarks.compare", "--worker", lib,
                   "--shared", tmp, "--repeat", str(args.repeat)] + (["--quick"] if args.quick
                                                                      else [])
            done = subprocess.run(cmd, cwd=Path(__file__).resolve().parent.parent,
                                  capture_output=True, text=True)
            if done.returncode != 0:
                print(done.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"the {lib} worker failed (exit {done.returncode})")
            got = json.loads((shared / f"rows-{lib}.json").read_text())
            rows += got["rows"]
            versions[lib] = got["versions"]
    base = {(r["workload"], r["dtype"]): r["seconds"] for r in rows if r["impl"] == "gpukern"}
    order = list(dict.fromkeys(r["workload"] for r in rows))
    rows.sort(key=lambda r: (order.index(r["workload"]), r["dtype"], r["impl"] != "gpukern"))
    print("\n" + HEADER)
    for r in rows:
        r["title"] = _title(r["workload"], s)
        if r["impl"] != "gpukern" and (r["workload"], r["dtype"]) in base:
            r["speedup"] = r["seconds"] / base[(r["workload"], r["dtype"])]
        print(_format_row(r))
    report = {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "command": "python -m asv_benchmarks.compare " + " ".join(argv or sys.argv[1:]),
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                          **limits},
              "threads_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                         "MKL_NUM_THREADS", "XLA_FLAGS",
                                                         "OMP_WAIT_POLICY")
                              if k in os.environ},
              "versions": versions, "rows": rows}
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=1)
    print(f"\nwritten: {args.out}")
    failed = any(r.get("agrees") is False for r in rows)
    if failed:
        print("some results DISAGREE: see the table", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
