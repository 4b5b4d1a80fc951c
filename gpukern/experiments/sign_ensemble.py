"""Experiment 4: ensembles of sign networks trained with SGL vs the SG-NTK Gaussian process.

For each width: ensemble mean and spread of the network outputs after training, against
the sign-limit SG-NTK GP at the same step (mean and 95 % band), with the NNGP posterior
(Bayesian regression with the sign network's NNGP) as the baseline.
"""

from __future__ import annotations

import numpy as np

import gpukern as gk

from .common import BIAS_STD, DEPTH, WEIGHT_STD, Context, figure, save_figure, save_npz
from .ensembles import distances, plot_ensemble_vs_gp, predictions, train_sign_ensemble

SURROGATE_K = 1.0


def run(ctx: Context) -> dict:
    sc, task = ctx.scale, ctx.task
    net = gk.MLP(DEPTH, gk.activations.sign(), gk.surrogates.erf(k=SURROGATE_K),
                 weight_std=WEIGHT_STD, bias_std=BIAS_STD)
    y_scale = float(np.std(task.y_train))
    metrics: dict = {"surrogate": f"erf(k={SURROGATE_K:g})", "depth": DEPTH,
                     "networks": sc.ens_networks, "steps": sc.ens_steps, "widths": {}}
    arrays: dict = {}
    preds = None
    for width in ctx.bar(sc.ens_widths, len(sc.ens_widths), "sign_ensemble"):
        run_ = train_sign_ensemble(ctx, "sign_ensemble", net, width, sc.ens_networks,
                                   sc.ens_steps, (width,))
        if preds is None:
            preds = predictions(ctx, net, run_.lr, sc.ens_steps)
            metrics["lr"] = run_.lr
            for kind, p in preds.items():
                arrays[f"{kind}_mean"] = gk.to_host(p.mean[0])
                arrays[f"{kind}_std"] = gk.to_host(p.std[0])
        arrays[f"outputs_w{width}"] = run_.outputs
        arrays[f"loss_w{width}"] = run_.loss
        metrics["widths"][str(width)] = {
            "sgntk": distances(run_.outputs, preds["sgntk"], y_scale, seed=width),
            "nngp": distances(run_.outputs, preds["nngp"], y_scale, seed=width),
            "final_loss_mean": float(run_.loss[-1].mean()),
        }
    save_npz(ctx.out / "sign_ensemble" / "data.npz", **arrays)
    _plot(ctx, arrays, metrics)
    return metrics


def _plot(ctx: Context, arrays: dict, metrics: dict) -> None:
    sc, task = ctx.scale, ctx.task
    axis = task.test_axis()[0]
    fig, axes = figure(1, len(sc.ens_widths), width=5.0, height=3.8)
    for ax, width in zip(axes[0], sc.ens_widths):
        plot_ensemble_vs_gp(ax, task, arrays[f"outputs_w{width}"], arrays["sgntk_mean"],
                            arrays["sgntk_std"])
        ax.plot(axis, task.first_output(arrays["nngp_mean"]), color="tab:green", ls=":", lw=1.5,
                label="NNGP posterior mean")
        d = metrics["widths"][str(width)]["sgntk"]
        ax.set_title(f"width {width}, {sc.ens_networks} sign networks: RMSE(mean) "
                     f"{d['rmse_mean']:.3f}, RMSE(std) {d['rmse_std']:.3f}", fontsize=9)
        ax.set_ylabel("network output f(x)" if task.n_out == 1
                      else f"output 1 of {task.n_out} (RMSE over all)")
    axes[0, 0].legend(fontsize=7, loc="best")
    fig.suptitle(f"Sign networks trained with SGL (surrogate {metrics['surrogate']}, "
                 f"{sc.ens_steps} steps, lr {metrics['lr']:.3g}) vs the SG-NTK Gaussian process; "
                 "RMSE relative to std(y)", fontsize=10)
    save_figure(fig, ctx.out / "sign_ensemble.png")
