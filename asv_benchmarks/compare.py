"""Side-by-side timings: gpukern against neural-tangents and PyTorch, in one run.

    python -m asv_benchmarks.compare [--quick] [--repeat 3] [--out compare.json]

Runs the configurations of issue 7 with gpukern and, where installed (``pip install
-e ".[compare]"``), neural-tangents (JAX, jit) and torch, on the same inputs, dtype and
machine. Before timing, every compared pair of results is checked to agree (the
relative max-norm difference below a threshold set by the dtype); a disagreement is
shown in the table and makes the exit status 1. Each time is the best of ``--repeat``
runs after one warm-up run (JIT compilation, the CPU library's build, caches).

The same run measures the machine's limits: float32/float64 GEMM FLOP/s (NumPy's BLAS,
a 2048^3 product) and streaming-copy bandwidth, and reports each workload as a fraction
of the one that bounds it. The table is printed (Markdown) and written as JSON with the
library versions, thread counts and dtypes.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import gpukern as gk
from gpukern.kernels import cpu_fused

AGREE = {np.float32: 1e-4, np.float64: 1e-9}
"""Max |a - b| / max |b| allowed between two implementations of one quantity. float32:
~1e3 eps for sums of ~1e3 products and three layers; float64: rounding of different but
exact formulas (arcsin vs atan2, GEMM orders), far above it, far below any real error."""


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


def inputs(n: int, n0: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, n0))


class Table:
    """Rows of (workload, implementation, time, ratio, fraction of the machine limit)."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.failed = False

    def add(self, **row) -> None:
        if row.get("agrees") is False:
            self.failed = True
        self.rows.append(row)
        print(_format_row(row), flush=True)


def _format_row(r: dict) -> str:
    t = r.get("seconds")
    cells = [r["workload"], r["dtype"], r["impl"],
             "—" if t is None else f"{t:.4g} s",
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


# ----------------------------------------------------------------- neural-tangents
def _neural_tangents():
    """neural_tangents with the shim its STRUCTURED_DERIVATIVES needs on newer JAX."""
    try:
        import jax
        from jax._src import source_info_util
        from jax.interpreters import ad
    except ImportError:
        return None, None
    for name, value in (("source_info_util", source_info_util), ("config", jax.config)):
        if not hasattr(ad, name):
            setattr(ad, name, value)
    try:
        import neural_tangents as nt
    except ImportError:
        return None, None
    return jax, nt


def _x64(jax, dtype) -> None:
    """JAX's float64 mode on for float64 runs only (float32 runs as JAX users run it)."""
    jax.config.update("jax_enable_x64", np.dtype(dtype) == np.float64)


def _nt_mlp(nt, depth: int, width: int, act: str, bias_std: float):
    from neural_tangents import stax

    layers = []
    for _ in range(depth):
        layers += [stax.Dense(width, W_std=1.0, b_std=bias_std),
                   stax.Erf() if act == "erf" else stax.Relu()]
    layers.append(stax.Dense(1, W_std=1.0, b_std=bias_std))
    return stax.serial(*layers)


def _nt_params(params: gk.Params, dtype) -> list:
    """gpukern's (E=1) Params in stax's layout: Dense (W (n_in, n_out), b (n_out,)),
    activation layers ()."""
    out = []
    for l, (w, b) in enumerate(zip(params.weights, params.biases)):
        if l:
            out.append(())
        out.append((np.asarray(w[0].T, dtype=dtype), np.asarray(b[0], dtype=dtype)))
    return out


# ------------------------------------------------------------------------ workloads
def analytic(table: Table, limits: dict, n: int, depth: int, repeat: int, nt_mod) -> None:
    jax, nt = nt_mod
    x = inputs(n)
    erf_net = gk.MLP(depth, gk.activations.erf(1.0), gk.surrogates.erf(1.0), bias_std=0.1)
    sign_cf = gk.MLP(depth, gk.activations.sign(), gk.surrogates.erf(1.0), bias_std=0.1)
    sign_q = gk.MLP(depth, gk.activations.sign(), gk.surrogates.fast_sigmoid(5.0), bias_std=0.1)
    name = f"analytic erf NNGP+NTK, depth {depth}, N={n}"
    for dt in (np.float32, np.float64):
        dname = np.dtype(dt).name
        ref = erf_net.kernels(x, which=("nngp", "ntk"), dtype=dt)
        t_gk = best_time(lambda: erf_net.kernels(x, which=("nngp", "ntk"), dtype=dt), repeat)
        out_bytes = 2 * n * n * np.dtype(dt).itemsize
        entry_layers = n * (n + 1) // 2 * depth  # symmetric: the upper triangle is computed
        table.add(workload=name, dtype=dname, impl="gpukern", seconds=t_gk,
                  rate=f"{n * n / t_gk / 1e6:.0f} M entries/s",
                  limit=f"compute-bound: {t_gk / entry_layers * 1e9 * cpu_fused.threads():.1f} "
                        f"core-ns per entry and layer; writes at "
                        f"{out_bytes / t_gk / limits['copy_bytes_per_s']:.0%} of copy bandwidth",
                  note=f"compiled CPU path: {cpu_fused.available()}, "
                       f"{cpu_fused.threads()} threads")
        if nt is not None:
            _x64(jax, dt)
            _, _, kfn = _nt_mlp(nt, depth, 1, "erf", 0.1)
            kfn = jax.jit(kfn, static_argnames="get")
            xj = jax.numpy.asarray(x.astype(dt))

            def run_nt():
                r = kfn(xj, None, get=("nngp", "ntk"))
                r.ntk.block_until_ready()
                return r

            r = run_nt()
            diff = max(rel_diff(r.nngp, ref["nngp"]), rel_diff(r.ntk, ref["ntk"]))
            t_nt = best_time(run_nt, repeat)
            table.add(workload=name, dtype=dname, impl="neural-tangents (jit)", seconds=t_nt,
                      speedup=t_nt / t_gk, diff=diff, agrees=diff < AGREE[dt])
        t_cf = best_time(lambda: sign_cf.sgntk(x, dtype=dt), repeat)
        vs_nt = "" if nt is None else f"; {t_nt / t_cf:.2f}× faster than neural-tangents' erf"
        table.add(workload=f"analytic sign SG-NTK (erf surrogate, closed form), depth {depth}, "
                           f"N={n}", dtype=dname, impl="gpukern", seconds=t_cf,
                  note=f"{t_cf / t_gk:.2f}× the erf NNGP+NTK time (not symmetric: all N² "
                       f"entries){vs_nt}")
        t_q = best_time(lambda: sign_q.sgntk(x, dtype=dt), max(1, repeat // 3))
        table.add(workload=f"analytic sign SG-NTK (fast_sigmoid, quadrature table), depth "
                           f"{depth}, N={n}", dtype=dname, impl="gpukern", seconds=t_q,
                  note=f"{t_q / t_cf:.2f}× the closed-form SG-NTK")


def _empirical_flops(n: int, widths: list[int]) -> float:
    """GEMM FLOPs of the layerwise Gram method with symmetric (rank-k) Grams: forward and
    delta propagation 2 N n_l n_{l+1} each, per layer N^2 (n_{l-1} + n_l) for Z and D."""
    sizes = [16] + widths + [1]
    fb = sum(4 * n * a * b for a, b in zip(sizes[:-1], sizes[1:]))
    grams = sum(n * n * (a + b) for a, b in zip(sizes[:-1], sizes[1:]))
    return fb + grams


def empirical(table: Table, limits: dict, n: int, n_small: int, width: int, depth: int,
              repeat: int, nt_mod, torch_mod) -> None:
    jax, nt = nt_mod
    dt = np.float32
    erf_net = gk.MLP(depth, gk.activations.erf(1.0), gk.surrogates.erf(1.0), bias_std=0.1)
    sign_net = gk.MLP(depth, gk.activations.sign(), gk.surrogates.erf(1.0), bias_std=0.1)
    params = erf_net.init(16, width, ensemble=1, seed=0, dtype=dt)
    flops = _empirical_flops(n, [width] * depth)
    peak = limits["gemm_flops_float32"]
    for n_pts in (n, n_small):
        x = inputs(n_pts).astype(dt)
        name = f"empirical NTK, erf, width {width}, depth {depth}, N={n_pts}"
        ref = erf_net.empirical_kernel(params, x, left="true", right="true")[0]
        t_gk = best_time(lambda: erf_net.empirical_kernel(params, x, left="true", right="true"),
                         repeat)
        fl = _empirical_flops(n_pts, [width] * depth)
        table.add(workload=name, dtype="float32", impl="gpukern", seconds=t_gk,
                  rate=f"{fl / t_gk / 1e9:.0f} GFLOP/s",
                  limit=f"{fl / t_gk / peak:.0%} of GEMM peak")
        if n_pts == n:
            t_sg = best_time(lambda: sign_net.empirical_kernel(params, x, left="true",
                                                               right="surrogate"), repeat)
            table.add(workload=f"empirical SG-NTK, sign, width {width}, depth {depth}, N={n_pts}",
                      dtype="float32", impl="gpukern", seconds=t_sg,
                      rate=f"{flops / t_sg / 1e9:.0f} GFLOP/s",
                      limit=f"{flops / t_sg / peak:.0%} of GEMM peak",
                      note="not symmetric: both delta sets, full Gram")
        if nt is not None:
            _x64(jax, dt)
            _, apply_fn, _ = _nt_mlp(nt, depth, width, "erf", 0.1)
            p_nt = jax.tree_util.tree_map(jax.numpy.asarray, _nt_params(params, dt))
            impls = [("STRUCTURED_DERIVATIVES", nt.NtkImplementation.STRUCTURED_DERIVATIVES)]
            if n_pts == n_small:
                impls.append(("JACOBIAN_CONTRACTION", nt.NtkImplementation.JACOBIAN_CONTRACTION))
            for label, impl in impls:
                fn = jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), vmap_axes=0,
                                                 implementation=impl))
                xj = jax.numpy.asarray(x)

                def run_nt(fn=fn, xj=xj):
                    k = fn(xj, None, p_nt)
                    k.block_until_ready()
                    return k

                diff = rel_diff(run_nt(), ref)
                t_nt = best_time(run_nt, repeat)
                table.add(workload=name, dtype="float32", impl=f"neural-tangents {label}",
                          seconds=t_nt, speedup=t_nt / t_gk, diff=diff, agrees=diff < AGREE[dt])
        if torch_mod is not None and n_pts == n_small:
            t_torch, k_torch = _torch_empirical(torch_mod, params, x, depth, repeat)
            diff = rel_diff(k_torch, ref)
            table.add(workload=name, dtype="float32", impl="torch.func jacrev + einsum",
                      seconds=t_torch, speedup=t_torch / t_gk, diff=diff,
                      agrees=diff < AGREE[dt])


def _torch_empirical(torch, params: gk.Params, x: np.ndarray, depth: int,
                     repeat: int) -> tuple[float, np.ndarray]:
    """PyTorch's NTK recipe: jacrev of a functional MLP, contracted with einsum."""
    from torch.func import jacrev, vmap

    ws = [torch.tensor(np.asarray(w[0])) for w in params.weights]
    bs = [torch.tensor(np.asarray(b[0])) for b in params.biases]
    names = [f"w{i}" for i in range(len(ws))] + [f"b{i}" for i in range(len(bs))]
    ps = dict(zip(names, ws + bs))

    class Mlp(torch.nn.Module):
        def forward(self, xx, **p):
            z = xx
            for l in range(depth + 1):
                w, b = p[f"w{l}"], p[f"b{l}"]
                h = z @ w.T / math.sqrt(w.shape[1]) + 0.1 * b
                z = torch.erf(h) if l < depth else h
            return z

    mod = Mlp()

    def f(p, xx):
        return mod.forward(xx[None], **p)[0]

    def ntk():
        xt = torch.tensor(x)
        jac = vmap(jacrev(f), (None, 0))(ps, xt)
        flat = [j.reshape(j.shape[0], -1) for j in jac.values()]
        return sum(torch.einsum("na,ma->nm", j, j) for j in flat)

    with torch.no_grad():
        k = ntk().numpy()
    return best_time(ntk, repeat), k


def sgl(table: Table, limits: dict, ensemble: int, width: int, n: int, steps: int,
        repeat: int, torch_mod) -> None:
    net = gk.MLP(2, gk.activations.sign(), gk.surrogates.erf(1.0), bias_std=0.1)
    x = inputs(n)
    y = np.sin(x[:, 0])
    lr = 0.01
    name = f"ensemble SGL, sign, E={ensemble}, 2 hidden x {width}, N={n}"
    bytes_per = 4 * sum(a * b for a, b in zip([16, width, width], [width, width, 1]))
    for dt in (np.float32, np.float64):
        dname = np.dtype(dt).name
        p0 = net.init(16, width, ensemble=ensemble, seed=0, dtype=dt)
        t_gk = best_time(lambda: gk.train(net, p0, x, y, lr=lr, steps=steps), repeat)
        rate = ensemble * steps / t_gk
        traffic = rate * bytes_per * np.dtype(dt).itemsize  # W read twice, read+written once
        table.add(workload=name, dtype=dname, impl="gpukern", seconds=t_gk / steps,
                  rate=f"{rate:.0f} net-steps/s",
                  limit=f"{traffic / limits['copy_bytes_per_s']:.0%} of copy bandwidth",
                  note="time per step")
        if torch_mod is None:
            continue
        # agreement after 3 steps, checked in float64: in float32 a pre-activation that
        # rounding puts on the other side of 0 flips a sign unit, a real O(1) change
        p64 = net.init(16, width, ensemble=ensemble, seed=0, dtype=np.float64)
        ref = gk.train(net, p64, x, y, lr=lr, steps=3).params
        for label, make in (("torch autograd.Function + baddbmm", _torch_sgl_autograd),
                            ("torch.func vmap(grad)", _torch_sgl_vmap)):
            step_fn, state, read = make(torch_mod, net, p64, x, y, lr)
            for _ in range(3):
                step_fn(state)
            diff = max(rel_diff(a, np.asarray(b)) for a, b in
                       zip(read(state), list(ref.weights) + list(ref.biases)))
            step_fn, state, read = make(torch_mod, net, p0, x, y, lr)

            def run(step_fn=step_fn, state=state):
                for _ in range(steps):
                    step_fn(state)

            t = best_time(run, repeat)
            table.add(workload=name, dtype=dname, impl=label, seconds=t / steps,
                      rate=f"{ensemble * steps / t:.0f} net-steps/s", speedup=t / t_gk,
                      diff=diff, agrees=diff < AGREE[np.float64],
                      note="time per step; agreement in float64")


def _torch_surrogate(torch, net):
    """The surrogate sigma~(v) of ``net`` as a torch function (a Gaussian bump)."""
    kind, a, b, _ = net.surrogate.cuda_descriptor()
    assert kind == 1.0 and a > 0, "the comparison uses a Gaussian-bump surrogate"
    c = b / math.sqrt(math.pi * a)
    return lambda v: c * torch.exp(v * v * (-1.0 / a))


def _torch_tensors(torch, p0: gk.Params):
    ws = [torch.tensor(np.array(w), requires_grad=True) for w in p0.weights]
    bs = [torch.tensor(np.array(b), requires_grad=True) for b in p0.biases]
    return ws, bs


def _torch_sgl_autograd(torch, net, p0, x, y, lr):
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

    ws, bs = _torch_tensors(torch, p0)
    xt = torch.tensor(x, dtype=ws[0].dtype).expand(ws[0].shape[0], *x.shape)
    yt = torch.tensor(y, dtype=ws[0].dtype)
    sb = net.bias_std

    def step(state):
        z = xt
        for l, (w, b) in enumerate(zip(ws, bs)):
            h = torch.baddbmm(sb * b[:, None, :], z, w.transpose(1, 2),
                              alpha=net.weight_std / math.sqrt(w.shape[2]))
            z = SignSG.apply(h) if l < len(ws) - 1 else h
        loss = 0.5 * ((z[..., 0] - yt) ** 2).sum()
        loss.backward()
        with torch.no_grad():
            for p in ws + bs:
                p -= lr * p.grad
                p.grad = None

    return step, None, lambda s: [p.detach().numpy() for p in ws + bs]


def _torch_sgl_vmap(torch, net, p0, x, y, lr):
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

    ws, bs = _torch_tensors(torch, p0)
    ws = [w.detach() for w in ws]
    bs = [b.detach() for b in bs]
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

    def step(state):
        gw, gb = g(ws, bs)
        for p, d in zip(ws + bs, list(gw) + list(gb)):
            p.sub_(lr * d)

    return step, None, lambda s: [p.numpy() for p in ws + bs]


# ----------------------------------------------------------------------------- main
def _versions(nt_mod, torch_mod) -> dict:
    import scipy

    v = {"python": platform.python_version(), "gpukern": gk.__version__, "numpy": np.__version__,
         "scipy": scipy.__version__}
    if nt_mod[0] is not None:
        import jaxlib

        v |= {"jax": nt_mod[0].__version__, "jaxlib": jaxlib.__version__,
              "neural_tangents": nt_mod[1].__version__}
    if torch_mod is not None:
        v["torch"] = torch_mod.__version__
    return v


def _threads(torch_mod) -> dict:
    out = {"cpu_count": os.cpu_count(), "gpukern_cpu_recursion_threads": cpu_fused.threads(),
           "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                              "MKL_NUM_THREADS", "XLA_FLAGS")
                   if k in os.environ}}
    try:
        from threadpoolctl import threadpool_info

        out["blas"] = [{k: i.get(k) for k in ("internal_api", "num_threads", "version")}
                       for i in threadpool_info()]
    except ImportError:
        pass
    if torch_mod is not None:
        out["torch_threads"] = torch_mod.get_num_threads()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m asv_benchmarks.compare", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per entry (best is kept)")
    ap.add_argument("--only", default="analytic,empirical,sgl",
                    help="comma-separated workloads: analytic, empirical, sgl")
    ap.add_argument("--out", default="compare.json", help="JSON file for the table")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    only = set(args.only.split(","))
    unknown = only - {"analytic", "empirical", "sgl"}
    if unknown:
        ap.error(f"--only: unknown workloads {sorted(unknown)}")

    nt_mod = _neural_tangents()
    try:
        import torch
    except ImportError:
        torch = None
    if nt_mod[1] is None or torch is None:
        print("note: neural-tangents/torch not installed: gpukern only "
              "(pip install -e '.[compare]')", file=sys.stderr)
    limits = machine_limits(args.repeat)
    print(f"machine: float32 GEMM {limits['gemm_flops_float32'] / 1e9:.0f} GFLOP/s, float64 "
          f"GEMM {limits['gemm_flops_float64'] / 1e9:.0f} GFLOP/s, copy "
          f"{limits['copy_bytes_per_s'] / 1e9:.1f} GB/s\n")
    print(HEADER)
    table = Table()
    q = args.quick
    if "analytic" in only:
        analytic(table, limits, 512 if q else 4096, 3, args.repeat, nt_mod)
    if "empirical" in only:
        empirical(table, limits, 128 if q else 1024, 64 if q else 256, 128 if q else 1024, 3,
                  args.repeat, nt_mod, torch)
    if "sgl" in only:
        sgl(table, limits, 10 if q else 100, 64 if q else 512, 16, 5 if q else 20, args.repeat,
            torch)
    report = {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "command": "python -m asv_benchmarks.compare " + " ".join(argv or sys.argv[1:]),
              "machine": {"platform": platform.platform(), "processor": platform.processor(),
                          **limits},
              "versions": _versions(nt_mod, torch), "threads": _threads(torch),
              "rows": table.rows}
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=1)
    print(f"\nwritten: {args.out}")
    if table.failed:
        print("some results DISAGREE: see the table", file=sys.stderr)
    return 1 if table.failed else 0


if __name__ == "__main__":
    sys.exit(main())
