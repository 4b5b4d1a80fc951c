"""Experiment 5 (beyond the paper): how well does the SG-NTK describe SGL in sign networks,
as a function of the surrogate's width (erf(k)) and the network width?

For each (k, width): the ensemble mean and spread after training, against three
descriptions: the SG-NTK GP (true derivative at x, surrogate at X), the surrogate-
surrogate kernel GP, and the NNGP posterior. Distances are RMSE over test points
relative to std(y), with bootstrap standard errors over networks; and the position t of
the ensemble mean on the line from the SG-NTK GP's mean (t = 0) to the surrogate-surrogate
GP's (t = 1), whose standard error is the ensemble noise along the gap between the two.
"""

from __future__ import annotations

import numpy as np

import gpukern as gk

from .common import (
    BIAS_STD,
    DEPTH,
    WEIGHT_STD,
    Context,
    figure,
    loglog_fit,
    save_figure,
    save_npz,
    weighted_line,
)
from .ensembles import distances, gap_position, predictions, train_sign_ensemble

DESCRIPTIONS = {"sgntk": "SG-NTK GP", "surrogate": "surrogate–surrogate GP", "nngp": "NNGP posterior"}


def run(ctx: Context) -> dict:
    sc, task = ctx.scale, ctx.task
    y_scale = float(np.std(task.y_train))
    metrics: dict = {"depth": DEPTH, "networks": sc.sw_networks, "steps": sc.sw_steps,
                     "ks": list(sc.sw_ks), "widths": list(sc.sw_widths), "results": {},
                     "positions": {}}
    arrays: dict = {}
    configs = [(k, w) for k in sc.sw_ks for w in sc.sw_widths]
    for k, width in ctx.bar(configs, len(configs), "surrogate_width"):
        net = gk.MLP(DEPTH, gk.activations.sign(), gk.surrogates.erf(k=k), weight_std=WEIGHT_STD,
                     bias_std=BIAS_STD)
        run_ = train_sign_ensemble(ctx, "surrogate_width", net, width, sc.sw_networks,
                                   sc.sw_steps, (k, width))
        preds = predictions(ctx, net, run_.lr, sc.sw_steps)
        arrays[f"outputs_k{k:g}_w{width}"] = run_.outputs
        for kind, p in preds.items():
            arrays[f"{kind}_mean_k{k:g}"] = gk.to_host(p.mean[0])
            arrays[f"{kind}_std_k{k:g}"] = gk.to_host(p.std[0])
        metrics["results"].setdefault(f"{k:g}", {})[str(width)] = {
            kind: distances(run_.outputs, p, y_scale, seed=int(1000 * k) + width)
            for kind, p in preds.items()}
        metrics["positions"].setdefault(f"{k:g}", {})[str(width)] = gap_position(
            run_.outputs, gk.to_host(preds["sgntk"].mean[0]), gk.to_host(preds["surrogate"].mean[0]),
            y_scale)
    metrics["position_summary"] = {f"{k:g}": _summary(metrics["positions"][f"{k:g}"], sc.sw_widths)
                                   for k in sc.sw_ks}
    if len(sc.sw_widths) >= 3:  # how each distance scales with width: slope and its SE
        metrics["slopes"] = {
            f"{k:g}": {kind: {what: dict(zip(("slope", "se"), loglog_fit(
                sc.sw_widths,
                [metrics["results"][f"{k:g}"][str(w)][kind][f"rmse_{what}"] for w in sc.sw_widths],
                [metrics["results"][f"{k:g}"][str(w)][kind][f"rmse_{what}_se"]
                 for w in sc.sw_widths]))) for what in ("mean", "std")}
                       for kind in DESCRIPTIONS} for k in sc.sw_ks}
    save_npz(ctx.out / "surrogate_width" / "data.npz", **arrays)
    _plot(ctx, metrics)
    return metrics


def _summary(positions: dict, widths) -> dict:
    """Across widths: the inverse-variance pooled t, and t's trend per doubling of the width
    (weighted least squares in log2 width; its error needs 3 widths)."""
    t = np.array([positions[str(w)]["t"] for w in widths])
    se = np.array([positions[str(w)]["t_se"] for w in widths])
    wts = se**-2.0
    out = {"pooled_t": float(np.sum(wts * t) / np.sum(wts)), "pooled_t_se": float(np.sum(wts) ** -0.5)}
    if len(widths) >= 3:
        slope, slope_se = weighted_line(np.log2(widths), t, se)
        out.update(t_per_doubling=slope, t_per_doubling_se=slope_se)
    return out


def _plot(ctx: Context, metrics: dict) -> None:
    from matplotlib.ticker import NullLocator

    sc = ctx.scale
    fig, axes = figure(3, len(sc.sw_ks), width=3.8, height=3.2)
    for col, k in enumerate(sc.sw_ks):
        res = metrics["results"][f"{k:g}"]
        for row, (what, label) in enumerate((("mean", "RMSE of ensemble mean"),
                                             ("std", "RMSE of ensemble std"))):
            ax = axes[row, col]
            for kind, desc in DESCRIPTIONS.items():
                vals = [res[str(w)][kind][f"rmse_{what}"] for w in sc.sw_widths]
                errs = [res[str(w)][kind][f"rmse_{what}_se"] for w in sc.sw_widths]
                ax.errorbar(sc.sw_widths, vals, yerr=errs, marker="o", ms=4, capsize=3,
                            label=desc)
            if what == "mean":
                floor = [res[str(w)]["sgntk"]["noise_floor_mean"] for w in sc.sw_widths]
                ax.plot(sc.sw_widths, floor, "k:", lw=1, label="ensemble noise floor")
            ax.set_xscale("log")
            ax.set_xticks(sc.sw_widths, [str(w) for w in sc.sw_widths])
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xlabel("network width")
            ax.set_ylabel(f"{label} / std(y)")
            ax.set_title(f"surrogate erf(k={k:g})")
            if col == 0:
                ax.legend(fontsize=7)
        ax = axes[2, col]
        pos = metrics["positions"][f"{k:g}"]
        ax.axhline(0.0, color="tab:blue", lw=1.5, label="SG-NTK GP (t = 0)")
        ax.axhline(1.0, color="tab:orange", lw=1.5, label="surrogate–surrogate GP (t = 1)")
        ax.errorbar(sc.sw_widths, [pos[str(w)]["t"] for w in sc.sw_widths],
                    yerr=[pos[str(w)]["t_se"] for w in sc.sw_widths], color="k", marker="o",
                    ms=4, capsize=3, label="ensemble mean ± SE")
        ax.set_xscale("log")
        ax.set_xticks(sc.sw_widths, [str(w) for w in sc.sw_widths])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("network width")
        ax.set_ylabel("position t between the GP means")
        gap = np.mean([pos[str(w)]["gap"] for w in sc.sw_widths])
        ax.set_title(f"erf(k={k:g}): gap between the GP means {gap:.3f} std(y)", fontsize=9)
        if col == 0:
            ax.legend(fontsize=7)
    fig.suptitle(f"Sign networks, SGL, depth {DEPTH}, {sc.sw_networks} networks, {sc.sw_steps} "
                 "steps: which description fits? (bars: bootstrap standard errors)", fontsize=10)
    save_figure(fig, ctx.out / "surrogate_width.png")
