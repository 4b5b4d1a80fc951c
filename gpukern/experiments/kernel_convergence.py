"""Experiments 1 and 2: empirical vs analytic NTK / SG-NTK of erf_m networks.

For each m and width, ten (scale-dependent) networks: the empirical kernel K(x(α), x0)
against the analytic one, at initialization and after training on the task (gradient
descent for the NTK, SGL with the surrogate for the SG-NTK). The mean squared error
over α and networks should fall like 1/width at initialization (law of large numbers)
and stay close after training (the kernel barely moves at large width).
"""

from __future__ import annotations

import numpy as np

import gpukern as gk

from .common import (
    BIAS_STD,
    DEPTH,
    WEIGHT_STD,
    Context,
    asinh_axis,
    figure,
    learning_rate,
    loglog_slope,
    save_figure,
    save_npz,
)

SURROGATE_K = 1.0
SIDES = {"ntk": ("true", "true"), "sgntk": ("true", "surrogate")}
TITLES = {"ntk": "NTK Θ", "sgntk": "SG-NTK I"}


def run(ctx: Context, kind: str) -> dict:
    left, right = SIDES[kind]
    sc, task = ctx.scale, ctx.task
    xs = task.x_test
    x0 = xs[:1]
    axis, axis_label = task.test_axis()
    sur = gk.surrogates.erf(k=SURROGATE_K)
    name = f"kernel_{kind}"
    metrics: dict = {"surrogate": f"erf(k={SURROGATE_K:g})", "depth": DEPTH,
                     "widths": list(sc.conv_widths), "networks": sc.conv_networks,
                     "steps": sc.conv_steps, "mse_init": {}, "mse_trained": {},
                     "slope_init": {}, "slope_trained": {}}
    arrays: dict = {"axis": axis, "widths": np.asarray(sc.conv_widths)}
    configs = [(m, w) for m in sc.conv_ms for w in sc.conv_widths]
    analytic = {}
    for m, w in ctx.bar(configs, len(configs), name):
        net = gk.MLP(DEPTH, gk.activations.erf(m), sur, weight_std=WEIGHT_STD, bias_std=BIAS_STD)
        if m not in analytic:
            analytic[m] = gk.to_host(net.kernel(xs, x0, left=left, right=right))[:, 0]
            arrays[f"analytic_m{m:g}"] = analytic[m]
        params = net.init(xs.shape[1], w, ensemble=sc.conv_networks, seed=ctx.seed_for(name, m, w),
                          n_out=task.n_out)
        k0 = gk.to_host(net.empirical_kernel(params, xs, x0, left=left, right=right))[:, :, 0]
        lr = learning_rate(net, task.x_train, (left, right))
        res = gk.train(net, params, task.x_train, task.y_train, lr=lr, steps=sc.conv_steps,
                       derivative=right, checkpoint=ctx.checkpoint(name, m, w))
        k1 = gk.to_host(net.empirical_kernel(res.params, xs, x0, left=left, right=right))[:, :, 0]
        arrays[f"init_m{m:g}_w{w}"] = k0
        arrays[f"trained_m{m:g}_w{w}"] = k1
        metrics["mse_init"].setdefault(f"{m:g}", {})[str(w)] = float(np.mean((k0 - analytic[m]) ** 2))
        metrics["mse_trained"].setdefault(f"{m:g}", {})[str(w)] = float(
            np.mean((k1 - analytic[m]) ** 2))
    for key in ("init", "trained"):
        for m in sc.conv_ms:
            mse = metrics[f"mse_{key}"][f"{m:g}"]
            metrics[f"slope_{key}"][f"{m:g}"] = loglog_slope(sc.conv_widths, mse.values())
    save_npz(ctx.out / name / "data.npz", **arrays)
    _plot(ctx, kind, arrays, metrics, axis_label)
    return metrics


def _plot(ctx: Context, kind: str, arrays: dict, metrics: dict, axis_label: str) -> None:
    sc = ctx.scale
    fig, axes = figure(len(sc.conv_ms), 3, width=4.6, height=3.3)
    cmap = __import__("matplotlib").colormaps["viridis"]
    colors = {w: cmap(i / max(1, len(sc.conv_widths) - 1)) for i, w in enumerate(sc.conv_widths)}
    axis = arrays["axis"]
    for row, m in enumerate(sc.conv_ms):
        exact = arrays[f"analytic_m{m:g}"]
        for col, key in enumerate(("init", "trained")):
            ax = axes[row, col]
            for w in sc.conv_widths:
                curves = arrays[f"{key}_m{m:g}_w{w}"]
                for i, c in enumerate(curves):
                    ax.plot(axis, c, color=colors[w], lw=0.7, alpha=0.6,
                            label=f"width {w}" if i == 0 else None)
            ax.plot(axis, exact, color="k", lw=2, label="analytic")
            asinh_axis(ax, np.concatenate([exact] + [arrays[f"{key}_m{m:g}_w{w}"].ravel()
                                                      for w in sc.conv_widths]))
            ax.set_xlabel(axis_label)
            ax.set_ylabel(f"{TITLES[kind]}(x, x₀)")
            when = "at initialization" if key == "init" else f"after {sc.conv_steps} steps"
            ax.set_title(f"erf, m = {m:g}: {when}")
            if row == 0 and col == 0:
                ax.legend(fontsize=7)
        ax = axes[row, 2]
        for key, marker in (("init", "o"), ("trained", "s")):
            mse = metrics[f"mse_{key}"][f"{m:g}"]
            ax.loglog(sc.conv_widths, list(mse.values()), marker=marker,
                      label=f"{key} (slope {metrics[f'slope_{key}'][f'{m:g}']:.2f})")
        first = metrics["mse_init"][f"{m:g}"][str(sc.conv_widths[0])]
        ref = [first * sc.conv_widths[0] / w for w in sc.conv_widths]
        ax.loglog(sc.conv_widths, ref, "k--", lw=1, label="∝ 1/width")
        ax.set_xticks(sc.conv_widths, [str(w) for w in sc.conv_widths])
        ax.set_xlabel("network width")
        ax.set_ylabel("MSE to analytic kernel")
        ax.set_title(f"erf, m = {m:g}: convergence")
        ax.legend(fontsize=7)
    fig.suptitle(f"Empirical vs analytic {TITLES[kind]} (depth {DEPTH}, "
                 f"{sc.conv_networks} networks per width; x₀ = first test point)")
    save_figure(fig, ctx.out / f"kernel_{kind}.png")
