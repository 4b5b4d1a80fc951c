"""Experiment 9: jumps at a threshold and quantizers, the SG-NTK beyond sign(0).

(a) erf(m (h - 1)) -> sign(h - 1): the naive NTK diagonal diverges with m, the SG-NTK
    diagonal converges to the delta reduction at the threshold; (b) the empirical
    quasi-Jacobian kernel J~(x) J~(x')^T (surrogate on both sides) of finite step(theta = 1)
    and 2-bit-quantizer networks approaches the analytic one like 1/width (their true
    Jacobian is the readout's only, a delta being 0 almost everywhere: the finite-width
    SG-NTK J(x) J~(X)^T of a jump network is the readout term, and the analytic SG-NTK is
    the m -> inf limit of (a) instead); (c) SGL ensembles of those networks against their
    SG-NTK Gaussian process and the NNGP posterior, with training loss against the GP's
    expected loss.
"""

from __future__ import annotations

import warnings

import numpy as np

import gpukern as gk

from .common import (
    BIAS_STD,
    DEPTH,
    Context,
    figure,
    loglog_slope,
    save_figure,
    save_npz,
)
from .ensembles import (
    distances,
    gp_loss_curve,
    plot_ensemble_vs_gp,
    predictions,
    train_sign_ensemble,
)

THRESHOLD = 1.0
WEIGHT_STD = 2.0  # the first layer's variance ~2, so that units cross theta = 1 at every depth
SURROGATE_K = 1.0
DEPTHS = (1, 2, 3)


LABELS = {"step": f"step(h - {THRESHOLD:g})", "quantizer": "2-bit quantizer on [-1, 1]"}


def activations() -> dict[str, gk.activations.Activation]:
    return {"step": gk.activations.step(THRESHOLD),
            "quantizer": gk.activations.uniform_quantizer(2, -1.0, 1.0)}


def _net(act, depth: int = DEPTH) -> gk.MLP:
    return gk.MLP(depth, act, gk.surrogates.erf(k=SURROGATE_K), weight_std=WEIGHT_STD,
                  bias_std=BIAS_STD)


def run(ctx: Context) -> dict:
    metrics: dict = {"threshold": THRESHOLD, "surrogate": f"erf(k={SURROGATE_K:g})",
                     "weight_std": WEIGHT_STD, "depth": DEPTH,
                     "activations": {k: a.name for k, a in activations().items()}}
    arrays: dict = {}
    _divergence(ctx, arrays, metrics)
    _convergence(ctx, arrays, metrics)
    _ensembles(ctx, arrays, metrics)
    save_npz(ctx.out / "thresholds" / "data.npz", **arrays)
    _plot(ctx, arrays, metrics)
    return metrics


def _divergence(ctx: Context, arrays: dict, metrics: dict) -> None:
    """(a) diagonal of the naive NTK and of the SG-NTK of erf(m (h - theta)) at x_test[0]."""
    x = ctx.task.x_test[:1]
    ms = np.asarray(ctx.scale.div_ms, dtype=float)
    arrays["m"] = ms
    out = {"naive_slope_last_decade": {}, "sgntk_rel_gap_to_limit": {}}
    for depth in DEPTHS:
        naive, sg = [], []
        for m in ms:
            k = _net(gk.activations.erf(m, THRESHOLD), depth).kernels(x, which=("ntk", "sgntk"))
            naive.append(float(k["ntk"][0, 0]))
            sg.append(float(k["sgntk"][0, 0]))
        limit = float(_net(gk.activations.sign(THRESHOLD), depth).sgntk(x)[0, 0])
        arrays[f"naive_d{depth}"], arrays[f"sgntk_d{depth}"] = np.array(naive), np.array(sg)
        arrays[f"limit_d{depth}"] = np.array(limit)
        last = ms >= ms.max() / 10
        out["naive_slope_last_decade"][str(depth)] = loglog_slope(ms[last], np.array(naive)[last])
        out["sgntk_rel_gap_to_limit"][str(depth)] = abs(sg[-1] - limit) / abs(limit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out["sign_threshold_naive_ntk_is_inf"] = bool(np.isinf(
            _net(gk.activations.sign(THRESHOLD)).ntk(x)[0, 0]))
    metrics["divergence"] = out


def _convergence(ctx: Context, arrays: dict, metrics: dict) -> None:
    """(b) mean squared error of the empirical quasi-Jacobian kernel K(x(alpha), x0) at
    initialization."""
    sc, xs = ctx.scale, ctx.task.x_test
    x0 = xs[:1]
    out: dict = {"widths": list(sc.conv_widths), "networks": sc.conv_networks}
    for name, act in activations().items():
        net = _net(act)
        exact = gk.to_host(net.kernel(xs, x0, "surrogate", "surrogate"))[:, 0]
        mse = []
        for w in sc.conv_widths:
            p = net.init(xs.shape[1], w, ensemble=sc.conv_networks,
                         seed=ctx.seed_for("thresholds", name, w))
            emp = gk.to_host(net.empirical_kernel(p, xs, x0, "surrogate", "surrogate"))[:, :, 0]
            mse.append(float(np.mean((emp - exact) ** 2)))
        arrays[f"mse_{name}"] = np.array(mse)
        arrays[f"surrogate_kernel_{name}"] = exact
        out[name] = {"mse": mse, "slope": loglog_slope(sc.conv_widths, mse),
                     "mean_square_kernel": float(np.mean(exact ** 2))}
    metrics["convergence"] = out


def _ensembles(ctx: Context, arrays: dict, metrics: dict) -> None:
    """(c) SGL ensembles vs the SG-NTK GP and the NNGP posterior."""
    sc, task = ctx.scale, ctx.task
    y_scale = float(np.std(task.y_train))
    out: dict = {"width": sc.th_width, "networks": sc.th_networks, "steps": sc.th_steps}
    for name, act in activations().items():
        net = _net(act)
        run_ = train_sign_ensemble(ctx, "thresholds", net, sc.th_width, sc.th_networks,
                                   sc.th_steps, (name,))
        preds = predictions(ctx, net, run_.lr, sc.th_steps)
        for kind in ("sgntk", "nngp"):
            arrays[f"{name}_{kind}_mean"] = gk.to_host(preds[kind].mean[0])
            arrays[f"{name}_{kind}_std"] = gk.to_host(preds[kind].std[0])
        arrays[f"{name}_outputs"] = run_.outputs
        arrays[f"{name}_loss"] = run_.loss
        arrays[f"{name}_loss_steps"] = run_.record_steps
        gp_loss = gp_loss_curve(net, task, run_.lr, [int(s) for s in run_.record_steps], "sgntk")
        arrays[f"{name}_gp_loss"] = gp_loss
        out[name] = {"lr": run_.lr,
                     "sgntk": distances(run_.outputs, preds["sgntk"], y_scale, seed=1),
                     "nngp": distances(run_.outputs, preds["nngp"], y_scale, seed=1),
                     "final_loss_mean": float(run_.loss[-1].mean()),
                     "gp_expected_final_loss": float(gp_loss[-1])}
    metrics["ensembles"] = out


def _plot(ctx: Context, arrays: dict, metrics: dict) -> None:
    fig, axes = figure(2, 3, width=4.6, height=3.6)
    _plot_kernels(ctx, axes[0], arrays, metrics)
    _plot_ensembles(ctx, axes[1], arrays, metrics)
    fig.suptitle(f"Jumps at a threshold: step(h - {THRESHOLD:g}) and a 2-bit quantizer, "
                 f"surrogate {metrics['surrogate']} centred at each jump (half its height), "
                 f"weight_std {WEIGHT_STD:g}", fontsize=10)
    save_figure(fig, ctx.out / "thresholds.png")


def _plot_kernels(ctx: Context, axes, arrays: dict, metrics: dict) -> None:
    """(a) divergence and convergence in m, (b) empirical kernels vs width."""
    sc = ctx.scale
    ms = arrays["m"]
    ax = axes[0]
    for depth in DEPTHS:
        slope = metrics["divergence"]["naive_slope_last_decade"][str(depth)]
        ax.loglog(ms, arrays[f"naive_d{depth}"], marker="o", ms=3,
                  label=f"depth {depth} (slope {slope:.2f})")
    ax.set_xlabel("steepness m of erf(m (h - 1))")
    ax.set_ylabel("naive NTK Θ(x, x)")
    ax.set_title("naive NTK diverges", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[1]
    for depth in DEPTHS:
        line, = ax.semilogx(ms, arrays[f"sgntk_d{depth}"], marker="o", ms=3,
                            label=f"depth {depth}")
        ax.axhline(float(arrays[f"limit_d{depth}"]), color=line.get_color(), ls="--", lw=1)
    ax.set_xlabel("steepness m of erf(m (h - 1))")
    ax.set_ylabel("SG-NTK I(x, x)")
    ax.set_title("SG-NTK converges (dashed: sign(h - 1), delta at θ = 1)", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[2]
    widths = np.asarray(sc.conv_widths, dtype=float)
    for name in activations():
        c = metrics["convergence"][name]
        line, = ax.loglog(widths, arrays[f"mse_{name}"], marker="o",
                          label=f"{LABELS[name]} (slope {c['slope']:.2f})")
        ax.loglog(widths, arrays[f"mse_{name}"][0] * widths[0] / widths, ls=":",
                  color=line.get_color(), lw=1)
    ax.set_xlabel("width")
    ax.set_ylabel("MSE of empirical J̃(x) J̃(x0)ᵀ")
    ax.set_title(f"empirical → analytic at init ({sc.conv_networks} networks; dotted 1/width)",
                 fontsize=9)
    ax.legend(fontsize=7)


def _plot_ensembles(ctx: Context, axes, arrays: dict, metrics: dict) -> None:
    """(c) ensembles vs the SG-NTK GP, and training loss vs the GP's expected loss."""
    sc, task = ctx.scale, ctx.task
    for ax, name in zip(axes[:2], activations()):
        plot_ensemble_vs_gp(ax, task, arrays[f"{name}_outputs"], arrays[f"{name}_sgntk_mean"],
                            arrays[f"{name}_sgntk_std"], ms=4)
        ax.plot(task.test_axis()[0], task.first_output(arrays[f"{name}_nngp_mean"]),
                color="tab:green", ls=":", lw=1.5, label="NNGP posterior mean")
        d = metrics["ensembles"][name]["sgntk"]
        ax.set_title(f"{LABELS[name]}: RMSE(mean) {d['rmse_mean']:.3f}, "
                     f"RMSE(std) {d['rmse_std']:.3f} (of std y)", fontsize=9)
        ax.set_ylabel("network output f(x)")
    axes[0].legend(fontsize=6, loc="best")
    ax = axes[2]
    start = max(float(arrays[f"{name}_loss"][0].mean()) for name in activations())
    for name in activations():
        steps = arrays[f"{name}_loss_steps"]
        line, = ax.semilogy(steps, arrays[f"{name}_loss"].mean(1), marker="o", ms=3,
                            label=f"{LABELS[name]}: networks (mean)")
        ax.semilogy(steps, arrays[f"{name}_gp_loss"], ls="--", color=line.get_color(),
                    label=f"{LABELS[name]}: SG-NTK GP expected loss")
    ax.set_ylim(bottom=1e-5 * start)  # the GP's loss of step falls to rounding level
    ax.set_xlabel("SGL step")
    ax.set_ylabel("training loss")
    ax.set_title(f"{sc.th_networks} networks of width {sc.th_width}", fontsize=9)
    ax.legend(fontsize=7)
