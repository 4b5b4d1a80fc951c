"""Experiment 3: the naive NTK diagonal Θ^{erf_m}(x, x) grows like m^depth; the SG-NTK stays finite.

Analytic for depth 1..3, plus the empirical naive NTK of finite erf_m networks (depth 2)
to show that finite networks follow the divergence too.
"""

from __future__ import annotations

import warnings

import numpy as np

import gpukern as gk

from .common import BIAS_STD, WEIGHT_STD, Context, figure, loglog_slope, save_figure, save_npz

SURROGATE_K = 1.0
DEPTHS = (1, 2, 3)


def run(ctx: Context) -> dict:
    sc = ctx.scale
    x = ctx.task.x_test[:1]
    sur = gk.surrogates.erf(k=SURROGATE_K)
    ms = np.asarray(sc.div_ms, dtype=float)
    arrays: dict = {"m": ms}
    metrics: dict = {"surrogate": f"erf(k={SURROGATE_K:g})", "m": ms.tolist(),
                     "naive_ntk_diag": {}, "sgntk_diag": {}, "sign_limit_sgntk_diag": {},
                     "naive_slope_last_decade": {}}
    for depth in ctx.bar(DEPTHS, len(DEPTHS), "ntk_divergence"):
        naive, sg = [], []
        for m in ms:
            net = gk.MLP(depth, gk.activations.erf(m), sur, weight_std=WEIGHT_STD, bias_std=BIAS_STD)
            k = net.kernels(x, which=("ntk", "sgntk"))
            naive.append(float(k["ntk"][0, 0]))
            sg.append(float(k["sgntk"][0, 0]))
        sign = gk.MLP(depth, gk.activations.sign(), sur, weight_std=WEIGHT_STD, bias_std=BIAS_STD)
        limit = float(sign.sgntk(x)[0, 0])
        arrays[f"naive_d{depth}"], arrays[f"sgntk_d{depth}"] = np.array(naive), np.array(sg)
        metrics["naive_ntk_diag"][str(depth)] = naive
        metrics["sgntk_diag"][str(depth)] = sg
        metrics["sign_limit_sgntk_diag"][str(depth)] = limit
        last = ms >= ms.max() / 10
        metrics["naive_slope_last_decade"][str(depth)] = loglog_slope(ms[last], np.array(naive)[last])
    # finite networks, depth 2: mean empirical naive NTK diagonal over networks
    emp_ms = ms[:: max(1, len(ms) // 5)]
    emp = []
    for m in emp_ms:
        net = gk.MLP(2, gk.activations.erf(m), sur, weight_std=WEIGHT_STD, bias_std=BIAS_STD)
        p = net.init(x.shape[1], sc.div_empirical_width, ensemble=sc.div_empirical_networks,
                     seed=ctx.seed_for("div", m))
        emp.append(float(np.mean(gk.to_host(net.empirical_kernel(p, x, left="true",
                                                                  right="true")))))
    arrays["empirical_m"], arrays["empirical_naive_d2"] = emp_ms, np.array(emp)
    metrics["empirical_naive_ntk_diag_depth2"] = dict(zip((f"{m:g}" for m in emp_ms), emp))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        metrics["sign_naive_ntk_is_inf"] = bool(np.isinf(gk.MLP(
            2, gk.activations.sign(), sur, bias_std=BIAS_STD).ntk(x)[0, 0]))
    save_npz(ctx.out / "ntk_divergence" / "data.npz", **arrays)
    _plot(ctx, arrays, metrics)
    return metrics


def _plot(ctx: Context, arrays: dict, metrics: dict) -> None:
    fig, axes = figure(1, 2, width=5.2, height=3.8)
    ms = arrays["m"]
    ax = axes[0, 0]
    for depth in DEPTHS:
        line, = ax.loglog(ms, arrays[f"naive_d{depth}"], marker="o", ms=3,
                          label=f"naive NTK, depth {depth} "
                                f"(slope {metrics['naive_slope_last_decade'][str(depth)]:.2f})")
        ref = arrays[f"naive_d{depth}"][-1] * (ms / ms[-1]) ** depth
        ax.loglog(ms, ref, ls=":", color=line.get_color(), lw=1)
    ax.loglog(arrays["empirical_m"], arrays["empirical_naive_d2"], "kx", ms=7,
              label=f"finite networks, depth 2, width {ctx.scale.div_empirical_width} "
                    f"(mean of {ctx.scale.div_empirical_networks})")
    ax.set_xlabel("activation steepness m (erf(m·x) → sign)")
    ax.set_ylabel("Θ(x, x)")
    ax.set_title("naive NTK diagonal diverges (dotted: ∝ m^depth)")
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    for depth in DEPTHS:
        line, = ax.semilogx(ms, arrays[f"sgntk_d{depth}"], marker="o", ms=3,
                            label=f"SG-NTK, depth {depth}")
        ax.axhline(metrics["sign_limit_sgntk_diag"][str(depth)], color=line.get_color(), ls="--",
                   lw=1)
    ax.set_xlabel("activation steepness m (erf(m·x) → sign)")
    ax.set_ylabel("I(x, x)")
    ax.set_title(f"SG-NTK diagonal stays finite (dashed: sign limit), "
                 f"surrogate {metrics['surrogate']}", fontsize=9)
    ax.legend(fontsize=7)
    save_figure(fig, ctx.out / "ntk_divergence.png")
