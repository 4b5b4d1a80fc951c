"""Different surrogate derivatives on the same task (the seed's experiment 3).

The six built-in surrogate shapes, matched by their peak: every surrogate has area 2
(sign's jump), and each gets the peak height sigma~(0) = 2/sqrt(pi) of erf(k=1) (equal
area and peak: the same width area/peak = sqrt(pi)). Sign networks trained by SGL with
each, one learning rate for all (0.5 / the largest |lambda|max of their SG-NTKs on the
training inputs), against each one's SG-NTK GP: kernels, ensemble mean and band, loss
curves, and the distance of the ensemble to its GP relative to the ensemble's noise floor.
"""

from __future__ import annotations

import math

import numpy as np

import gpukern as gk

from .common import BIAS_STD, DEPTH, WEIGHT_STD, Context, figure, lambda_max, save_figure, save_npz
from .ensembles import distances, gp_loss_curve, plot_ensemble_vs_gp, test_rmse, train_sign_ensemble

PEAK = 2.0 / math.sqrt(math.pi)  # erf(k=1)'s sigma~(0)


def family() -> dict[str, gk.surrogates.ScalarFunction]:
    """The six shapes with area 2 and peak PEAK (parameters solved from each peak formula)."""
    s = gk.surrogates
    return {"erf": s.erf(k=PEAK * math.sqrt(math.pi) / 2),  # peak 2k/sqrt(pi)
            "sigmoid": s.sigmoid(beta=2 * PEAK),  # peak beta/2
            "fast_sigmoid": s.fast_sigmoid(beta=PEAK),  # peak beta
            "atan": s.atan(alpha=PEAK),  # peak alpha
            "boxcar": s.boxcar(width=1 / PEAK),  # peak 1/width
            "triangle": s.triangle(width=2 / PEAK)}  # peak 2/width


def _net(surrogate) -> gk.MLP:
    return gk.MLP(DEPTH, gk.activations.sign(), surrogate, weight_std=WEIGHT_STD,
                  bias_std=BIAS_STD)


def run(ctx: Context) -> dict:
    sc, task = ctx.scale, ctx.task
    fams = family()
    nets = {name: _net(f) for name, f in fams.items()}
    lam = {name: lambda_max(net, task.x_train, ("true", "surrogate"))
           for name, net in nets.items()}
    lr = 0.5 / max(lam.values())
    y_scale = float(np.std(task.y_train))
    v = np.linspace(-3, 3, 601)
    arrays: dict = {"axis": task.test_axis()[0], "v": v}
    metrics: dict = {"matching": "area 2 and peak sigma~(0) = 2/sqrt(pi) (that of erf(k=1))",
                     "surrogates": {n: repr(f) for n, f in fams.items()}, "lr": lr,
                     "depth": DEPTH, "networks": sc.sf_networks, "width": sc.sf_width,
                     "steps": sc.sf_steps, "results": {}}
    for name in ctx.bar(list(fams), len(fams), "surrogate_family"):
        net, f = nets[name], fams[name]
        # the scalar formula on the host (f itself computes on the backend's arrays)
        arrays[f"shape_{name}"] = np.array([f.scalar(float(u), *f.params()) for u in v])
        arrays[f"kernel_{name}"] = gk.to_host(net.sgntk(task.x_test, task.x_train[:1]))[:, 0]
        run_ = train_sign_ensemble(ctx, "surrogate_family", net, sc.sf_width, sc.sf_networks,
                                   sc.sf_steps, (name,), lr=lr, records=20)
        pred = gk.predict(net, task.x_train, task.y_train, task.x_test, lr=lr,
                          steps=sc.sf_steps, full_cov=False)
        arrays[f"outputs_{name}"] = run_.outputs
        arrays[f"gp_mean_{name}"] = gk.to_host(pred.mean[0])
        arrays[f"gp_std_{name}"] = gk.to_host(pred.std[0])
        arrays[f"loss_{name}"], arrays[f"steps_{name}"] = run_.loss, run_.record_steps
        arrays[f"gp_loss_{name}"] = gp_loss_curve(net, task, lr,
                                                  [int(s) for s in run_.record_steps], "sgntk")
        d = distances(run_.outputs, pred, y_scale, seed=len(name))
        metrics["results"][name] = {
            "lambda_max": lam[name], "sgntk": d,
            "rmse_mean_over_noise_floor": d["rmse_mean"] / d["noise_floor_mean"],
            "final_loss_mean": float(run_.loss[-1].mean()),
            "gp_final_loss": float(arrays[f"gp_loss_{name}"][-1]),
            "test_rmse_networks": test_rmse(run_.outputs, task, y_scale),
        }
    save_npz(ctx.out / "surrogate_family" / "data.npz", **arrays)
    _plot(ctx, metrics, arrays)
    return metrics


def _plot(ctx: Context, metrics: dict, arrays: dict) -> None:
    sc = ctx.scale
    names = list(metrics["results"])
    colours = dict(zip(names, ("black", "tab:blue", "tab:orange", "tab:green", "tab:red",
                               "tab:purple")))
    fig, axes = figure(2, len(names), width=3.6, height=3.2)
    for ax, name in zip(axes[0], names):
        plot_ensemble_vs_gp(ax, ctx.task, arrays[f"outputs_{name}"], arrays[f"gp_mean_{name}"],
                            arrays[f"gp_std_{name}"], ms=4)
        d = metrics["results"][name]["sgntk"]
        ax.set_title(f"{name}: RMSE(mean) {d['rmse_mean']:.3f}, RMSE(std) {d['rmse_std']:.3f}",
                     fontsize=8)
        ax.set_ylabel("network output f(x)")
    axes[0, 0].legend(fontsize=6)
    _plot_summary(ctx, axes[1], metrics, arrays, names, colours)
    fig.suptitle(f"Six surrogates ({metrics['matching']}): sign networks, depth {DEPTH}, "
                 f"{sc.sf_networks} networks of width {sc.sf_width}, {sc.sf_steps} SGL steps "
                 "(RMSE relative to std(y))", fontsize=10)
    save_figure(fig, ctx.out / "surrogate_family.png")


def _plot_summary(ctx: Context, axes, metrics: dict, arrays: dict, names: list[str],
                  colours: dict) -> None:
    """The bottom row: shapes, kernels, loss curves, distance over noise floor."""
    axis, label = ctx.task.test_axis()
    ax = axes[0]
    for name in names:
        ax.plot(arrays["v"], arrays[f"shape_{name}"], color=colours[name], label=name)
    ax.set_xlabel("pre-activation h")
    ax.set_ylabel("surrogate σ̃(h)")
    ax.set_title("the six shapes: area 2, equal peak", fontsize=9)
    ax.legend(fontsize=6)
    ax = axes[1]
    for name in names:
        ax.plot(axis, arrays[f"kernel_{name}"], color=colours[name], label=name)
    ax.set_xlabel(label)
    ax.set_ylabel("SG-NTK I(x, x_1)")
    ax.set_title("SG-NTK against the first training input", fontsize=9)
    ax = axes[2]
    for name in names:
        loss = arrays[f"loss_{name}"]
        ax.plot(arrays[f"steps_{name}"], loss.mean(1), color=colours[name], label=name)
        ax.plot(arrays[f"steps_{name}"], arrays[f"gp_loss_{name}"], color=colours[name],
                ls="--", lw=0.8)
    ax.plot([], [], "k--", lw=0.8, label="SG-NTK GP: expected loss")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss ½Σ(f − y)² (mean)")
    ax.set_title(f"lr {metrics['lr']:.3g} for all", fontsize=9)
    ax.legend(fontsize=6)
    ax = axes[3]
    ratio = [metrics["results"][n]["rmse_mean_over_noise_floor"] for n in names]
    err = [metrics["results"][n]["sgntk"]["rmse_mean_se"]
           / metrics["results"][n]["sgntk"]["noise_floor_mean"] for n in names]
    ax.bar(range(len(names)), ratio, yerr=err, capsize=3, color=[colours[n] for n in names])
    ax.axhline(1.0, color="gray", ls=":", lw=1, label="noise floor")
    ax.set_xticks(range(len(names)), names, rotation=30, fontsize=7)
    ax.set_ylabel("RMSE(ensemble mean, GP mean) / noise floor")
    ax.set_title("distance to each SG-NTK GP (bars: bootstrap SE)", fontsize=9)
    ax.legend(fontsize=6)
    for ax in axes[4:]:
        ax.axis("off")
