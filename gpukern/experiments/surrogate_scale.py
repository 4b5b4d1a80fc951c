"""The scale of the surrogate derivative: kernel and learning dynamics (the seed's
experiment 2).

Sign networks, surrogate erf(k=1) times c. Each hidden layer's derivative pair carries one
factor c, the readout term none, so the SG-NTK of depth L is a polynomial in c,

    I_c = T_0 + c T_1 + ... + c^L T_L,     T_0 = Sigma_{L+1} (the readout term, the NNGP),

not c I_1: a larger scale is not a larger learning rate. In a finite network the same
holds layer by layer: the update of layer l scales with c^(L+1-l) (readout: c^0), where a
learning rate c would scale every layer by c. The terms T_j are recovered exactly from the
kernels at L+1 scales (a Vandermonde solve; the other scales check the polynomial form).
All ensembles train with one lr, stable for the largest scale.
"""

from __future__ import annotations

import numpy as np

import gpukern as gk

from .common import BIAS_STD, DEPTH, WEIGHT_STD, Context, figure, lambda_max, save_figure, save_npz
from .ensembles import distances, gp_loss_curve, test_rmse, train_sign_ensemble

SURROGATE_K = 1.0


def _net(c: float) -> gk.MLP:
    return gk.MLP(DEPTH, gk.activations.sign(), gk.surrogates.erf(k=SURROGATE_K, scale=c),
                  weight_std=WEIGHT_STD, bias_std=BIAS_STD)


def layer_update_ratios(c: float, n_in: int, x: np.ndarray, y: np.ndarray, seed: int,
                        width: int = 64) -> list[float]:
    """|update of layer l at scale c| / |at scale 1| after one SGL step from the same
    initialisation, l = 1..L+1 (the readout last): c^(L+1-l) by linearity."""
    norms = []
    for scale in (1.0, c):
        net = _net(scale)
        p0 = net.init(n_in, width, seed=seed)
        res = gk.train(net, p0, x, y, lr=1e-3, steps=1, on_divergence="continue")  # p0 kept
        norms.append([float(np.linalg.norm(gk.to_host(w1 - w0)))
                      for w0, w1 in zip(p0.weights, res.params.weights)])
    return [b / a for a, b in zip(*norms)]


def run(ctx: Context) -> dict:
    sc, task = ctx.scale, ctx.task
    scales = sc.ss_scales
    x0 = task.x_train[:1]
    # kernels against the first training point, on the test inputs
    kern = {c: gk.to_host(_net(c).sgntk(task.x_test, x0))[:, 0] for c in scales}
    basis = sorted(scales, key=lambda c: abs(np.log(c)))[:DEPTH + 1]
    vander = np.vander(np.asarray(basis), DEPTH + 1, increasing=True)
    terms = np.linalg.solve(vander, np.stack([kern[c] for c in basis]))  # (L+1, N_test)
    fit = {c: np.polynomial.polynomial.polyval(c, terms) for c in scales}
    poly_residual = max(float(np.abs(fit[c] - kern[c]).max() / np.abs(kern[c]).max())
                        for c in scales)
    nngp = gk.to_host(_net(1.0).nngp(task.x_test, x0))[:, 0]
    lam = {c: lambda_max(_net(c), task.x_train, ("true", "surrogate")) for c in scales}
    lr = 0.5 / max(lam.values())
    y_scale = float(np.std(task.y_train))
    metrics: dict = {"surrogate": f"erf(k={SURROGATE_K:g}) x c", "scales": list(scales),
                     "depth": DEPTH, "networks": sc.ss_networks, "width": sc.ss_width,
                     "steps": sc.ss_steps, "lr": lr,
                     "readout_term_equals_nngp": float(np.abs(terms[0] - nngp).max()),
                     "polynomial_residual": poly_residual,
                     "kernel_vs_lr_scaling": {}, "layer_update_ratio": {}, "results": {}}
    arrays: dict = {"axis": task.test_axis()[0], "terms": terms, "nngp": nngp}
    for c in ctx.bar(scales, len(scales), "surrogate_scale"):
        net = _net(c)
        arrays[f"kernel_c{c:g}"] = kern[c]
        metrics["kernel_vs_lr_scaling"][f"{c:g}"] = float(
            np.abs(kern[c] - c * kern[1.0]).max() / np.abs(kern[c]).max()) if 1.0 in kern else None
        metrics["layer_update_ratio"][f"{c:g}"] = layer_update_ratios(
            c, task.x_train.shape[1], task.x_train, task.y_train, ctx.seed_for("ratio"))
        run_ = train_sign_ensemble(ctx, "surrogate_scale", net, sc.ss_width, sc.ss_networks,
                                   sc.ss_steps, (c,), lr=lr, records=20)
        gp_loss = gp_loss_curve(net, task, lr, [int(s) for s in run_.record_steps], "sgntk")
        pred = gk.predict(net, task.x_train, task.y_train, task.x_test, lr=lr,
                          steps=sc.ss_steps, full_cov=False)
        arrays[f"loss_c{c:g}"], arrays[f"gp_loss_c{c:g}"] = run_.loss, gp_loss
        arrays[f"steps_c{c:g}"] = run_.record_steps
        metrics["results"][f"{c:g}"] = {
            "lambda_max": lam[c],
            "final_loss_mean": float(run_.loss[-1].mean()),
            "gp_final_loss": float(gp_loss[-1]),
            "sgntk": distances(run_.outputs, pred, y_scale, seed=int(100 * c)),
            "test_rmse_networks": test_rmse(run_.outputs, task, y_scale),
        }
    save_npz(ctx.out / "surrogate_scale" / "data.npz", **arrays)
    _plot(ctx, metrics, arrays)
    return metrics


def _plot(ctx: Context, metrics: dict, arrays: dict) -> None:
    sc, task = ctx.scale, ctx.task
    axis, label = task.test_axis()
    scales = metrics["scales"]
    colours = dict(zip(scales, ("tab:purple", "tab:blue", "black", "tab:orange", "tab:red")))
    fig, axes = figure(1, 3, width=4.8, height=3.9)
    ax = axes[0, 0]
    for c in scales:
        ax.plot(axis, arrays[f"kernel_c{c:g}"], color=colours.get(c), label=f"c = {c:g}")
    ax.set_xlabel(label)
    ax.set_ylabel("SG-NTK I(x, x_1)")
    ax.set_title(f"SG-NTK against the first training input\n(I_c = T0 + c T1 + c² T2: "
                 f"polynomial fit residual {metrics['polynomial_residual']:.1e})", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    for j, term in enumerate(arrays["terms"]):
        name = "T0 (readout term = NNGP)" if j == 0 else f"T{j} (× c^{j}: {j} hidden layer(s))"
        ax.plot(axis, term, label=name)
    ax.set_xlabel(label)
    ax.set_ylabel("term of I(x, x_1)")
    ratios = metrics["layer_update_ratio"]
    cmax = f"{max(scales):g}"
    ax.set_title(f"terms by power of c; one SGL step at c = {cmax}:\nlayer updates × "
                 + ", ".join(f"{r:.3g}" for r in ratios[cmax]) + " (layer 1 … readout)",
                 fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[0, 2]
    for c in scales:
        steps = arrays[f"steps_c{c:g}"]
        loss = arrays[f"loss_c{c:g}"]
        lo, hi = np.percentile(loss, [10, 90], axis=1)
        ax.fill_between(steps, lo, hi, color=colours.get(c), alpha=0.15)
        ax.plot(steps, loss.mean(1), color=colours.get(c), lw=1.5,
                label=f"c = {c:g}: networks (mean, 10–90 %)")
        ax.plot(steps, arrays[f"gp_loss_c{c:g}"], color=colours.get(c), ls="--", lw=1)
    ax.plot([], [], "k--", lw=1, label="SG-NTK GP: expected loss")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss ½Σ(f − y)²")
    rm = ", ".join(f"{metrics['results'][f'{c:g}']['sgntk']['rmse_mean']:.3f}" for c in scales)
    ax.set_title(f"{metrics['networks']} networks of width {metrics['width']}, lr "
                 f"{metrics['lr']:.3g} for all c\nRMSE(mean vs GP) at the end: {rm}",
                 fontsize=9)
    ax.legend(fontsize=6)
    fig.suptitle(f"Scaling the surrogate erf(k={SURROGATE_K:g}) by c: sign networks, depth "
                 f"{DEPTH}, {sc.ss_steps} steps (RMSE relative to std(y))", fontsize=10)
    save_figure(fig, ctx.out / "surrogate_scale.png")
