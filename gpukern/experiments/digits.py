"""Classifying scikit-learn's handwritten digits with SGL, against the SG-NTK Gaussian process.

Data: ``sklearn.datasets.load_digits`` (1797 images of 8 x 8 pixels, 10 classes, shipped
with scikit-learn). A fixed split (permutation seeded with 0): the first ``n_train`` images
train, the rest (or ``n_test`` of them) test. Each pixel is standardised with the training
set's mean and std (constant pixels left at 0), then each image is scaled onto the sphere
|x|^2 = n0 = 64, so that every input has the same layer-1 variance sw^2 + sb^2. Targets:
one-hot minus 1/10 (centred), C = 10 outputs; the prediction is the argmax.

Compared on the test set: (a) the SG-NTK GP mean at the trained step count and at
t = inf, (b) the NNGP posterior mean, (c) an ensemble of sign networks trained by SGL
(erf surrogate): each network's accuracy, the accuracy of the ensemble-mean outputs, and
how often the ensemble's argmax agrees with the GP's; (d) a control: erf networks trained
by gradient descent against their NTK GP.
"""

from __future__ import annotations

import numpy as np

import gpukern as gk

from .common import BIAS_STD, DEPTH, WEIGHT_STD, Context, figure, learning_rate, save_figure, save_npz

CLASSES = 10
SURROGATE_K = 1.0
CONTROL_M = 2.0
INSTALL_HINT = "the digits experiment needs scikit-learn: pip install 'gpukern[data]'"


def available() -> bool:
    try:
        import sklearn.datasets  # noqa: F401
    except ImportError:
        return False
    return True


def digits_data(n_train: int, n_test: int | None = None):
    """(x_train, y_train, x_test, labels_train, labels_test) as described in the module."""
    from sklearn.datasets import load_digits

    d = load_digits()
    perm = np.random.default_rng(0).permutation(len(d.target))
    tr = perm[:n_train]
    te = perm[n_train:] if n_test is None else perm[n_train:n_train + n_test]
    mean, std = d.data[tr].mean(0), d.data[tr].std(0)
    scale = np.where(std > 0, std, 1.0)

    def prepare(rows):
        z = (d.data[rows] - mean) / scale
        return z * (np.sqrt(z.shape[1]) / np.linalg.norm(z, axis=1, keepdims=True))

    y = np.eye(CLASSES)[d.target[tr]] - 1.0 / CLASSES
    return prepare(tr), y, prepare(te), d.target[tr], d.target[te]


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Accuracy over the test axis (-2) of logits (..., N, C)."""
    return (np.argmax(logits, axis=-1) == labels).mean(axis=-1)


def _draw_accuracy(mean: np.ndarray, var: np.ndarray, labels: np.ndarray, seed: int,
                   draws: int = 200) -> np.ndarray:
    """Expected accuracy of one network as the GP predicts it: its outputs at a test point
    are N(mean, var I_C) (independent readouts share the variance), and accuracy is a
    per-point average, so marginal draws suffice. mean (R, N, C), var (R, N) -> (R,)."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((draws,) + mean.shape[1:])
    sd = np.sqrt(np.maximum(var, 0.0))
    return np.array([_accuracy(m + s[:, None] * noise, labels).mean()
                     for m, s in zip(mean, sd)])


def _ensemble(ctx: Context, net: gk.MLP, derivative: str, kernel: str, data, key: str) -> dict:
    """Train an ensemble and predict its GP; accuracies along the recorded steps."""
    sc = ctx.scale
    x, y, xs, _, labels = data
    lr = learning_rate(net, x, ("true", derivative))
    params = net.init(x.shape[1], sc.digits_width, ensemble=sc.digits_networks,
                      seed=ctx.seed_for("digits", key), n_out=CLASSES)
    res = gk.train(net, params, x, y, lr=lr, steps=sc.digits_steps, derivative=derivative,
                   x_eval=xs, record_every=max(1, sc.digits_steps // 10),
                   kernel_sides=("true", derivative),
                   checkpoint=ctx.checkpoint("digits", key), progress=ctx.progress)
    steps = [int(s) for s in res.steps]
    pred = gk.predict(net, x, y, xs, lr=lr, steps=steps, kernel=kernel, full_cov=False)
    gp_inf = gk.predict(net, x, y, xs, lr=lr, t=np.inf, kernel=kernel, full_cov=False)
    gp = gk.to_host(pred.mean)  # (R, N_test, C)
    gp_draw = _draw_accuracy(gp, gk.to_host(pred.var), labels, ctx.seed_for("digits-draws", key))
    outs = res.outputs  # (R, E, N_test, C)
    per_net = _accuracy(outs, labels)  # (R, E)
    ens = _accuracy(outs.mean(1), labels)  # (R,)
    agree = (np.argmax(outs[-1].mean(0), -1) == np.argmax(gp[-1], -1)).mean()
    agree_each = (np.argmax(outs[-1], -1) == np.argmax(gp[-1], -1)).mean(-1)
    return {
        "arrays": {f"{key}_steps": res.steps, f"{key}_net_accuracy": per_net,
                   f"{key}_gp_mean": gp, f"{key}_loss": res.loss,
                   f"{key}_ensemble_mean_last": outs[-1].mean(0)},
        "metrics": {
            "lr": lr, "steps": sc.digits_steps,
            "network_accuracy_mean": float(per_net[-1].mean()),
            "network_accuracy_std": float(per_net[-1].std(ddof=1)),
            f"{kernel}_gp_single_network_accuracy": float(gp_draw[-1]),
            "ensemble_mean_accuracy": float(ens[-1]),
            f"{kernel}_gp_accuracy_at_steps": float(_accuracy(gp[-1], labels)),
            f"{kernel}_gp_accuracy_t_inf": float(_accuracy(gk.to_host(gp_inf.mean[0]), labels)),
            "agreement_ensemble_vs_gp": float(agree),
            "agreement_network_vs_gp_mean": float(agree_each.mean()),
            "accuracy_curve": {"steps": steps, "ensemble_mean": ens.tolist(),
                               "gp": _accuracy(gp, labels).tolist(),
                               "gp_single_network": gp_draw.tolist(),
                               "networks_mean": per_net.mean(1).tolist()},
        },
        "gp_last": gp[-1],
    }


def run(ctx: Context) -> dict:
    if not available():
        raise ValueError(INSTALL_HINT)
    sc = ctx.scale
    data = digits_data(sc.digits_train, sc.digits_test)
    x, y, xs, _, labels = data
    sign = gk.MLP(DEPTH, gk.activations.sign(), gk.surrogates.erf(k=SURROGATE_K),
                  weight_std=WEIGHT_STD, bias_std=BIAS_STD)
    control = gk.MLP(DEPTH, gk.activations.erf(CONTROL_M), weight_std=WEIGHT_STD,
                     bias_std=BIAS_STD)
    sgl = _ensemble(ctx, sign, "surrogate", "sgntk", data, "sgl")
    gd = _ensemble(ctx, control, "true", "ntk", data, "gd")
    post = gk.nngp_posterior(sign, x, y, xs, full_cov=False,
                             ridge=1e-10 * float(np.abs(gk.to_host(sign.nngp_diagonal(x))).max()))
    order = np.argsort(labels, kind="stable")
    k_sorted = gk.to_host(sign.sgntk(xs[order]))
    metrics = {
        "n_train": len(x), "n_test": len(xs), "depth": DEPTH, "width": sc.digits_width,
        "networks": sc.digits_networks, "surrogate": f"erf(k={SURROGATE_K:g})",
        "control": f"erf(m={CONTROL_M:g}) trained by gradient descent",
        "sgl_sign": sgl["metrics"], "gd_erf_control": gd["metrics"],
        "nngp_posterior_accuracy": float(_accuracy(gk.to_host(post.mean[0]), labels)),
    }
    confusion = np.zeros((CLASSES, CLASSES), dtype=int)
    np.add.at(confusion, (labels, np.argmax(sgl["gp_last"], -1)), 1)
    save_npz(ctx.out / "digits" / "data.npz", **sgl["arrays"], **gd["arrays"],
             labels_test=labels, confusion=confusion, sgntk_sorted=k_sorted)
    _plot(ctx, metrics, confusion, k_sorted, labels[order])
    return metrics


def _plot(ctx: Context, metrics: dict, confusion: np.ndarray, k_sorted: np.ndarray,
          sorted_labels: np.ndarray) -> None:
    fig, axes = figure(1, 3, width=5.0, height=4.6)
    ax = axes[0, 0]
    for key, name, colour in (("sgl_sign", "sign, SGL", "tab:red"),
                              ("gd_erf_control", f"erf(m={CONTROL_M:g}), GD", "tab:blue")):
        curve = metrics[key]["accuracy_curve"]
        kernel = "SG-NTK" if key == "sgl_sign" else "NTK"
        ax.plot(curve["steps"], curve["gp"], color=colour, lw=2, label=f"{kernel} GP mean")
        ax.plot(curve["steps"], curve["ensemble_mean"], color=colour, ls="--", marker="o", ms=3,
                label=f"{name}: ensemble-mean outputs")
        ax.plot(curve["steps"], curve["networks_mean"], color=colour, ls=":", marker="x", ms=3,
                label=f"{name}: single networks (mean)")
        ax.plot(curve["steps"], curve["gp_single_network"], color=colour, lw=0.8,
                label=f"{kernel} GP: one network's expected accuracy")
    ax.axhline(metrics["nngp_posterior_accuracy"], color="tab:green", lw=1,
               label="NNGP posterior (sign)")
    ax.set_ylim(0, 1)
    ax.set_xlabel("training step")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{metrics['networks']} networks of width {metrics['width']}, "
                 f"{metrics['n_train']} training images", fontsize=9)
    ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    ax = axes[0, 1]
    ax.imshow(confusion, cmap="Blues")
    for i in range(CLASSES):
        for j in range(CLASSES):
            if confusion[i, j]:
                ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if confusion[i, j] > confusion.max() / 2 else "black")
    ax.set_xticks(range(CLASSES))
    ax.set_yticks(range(CLASSES))
    ax.set_xlabel("predicted class (SG-NTK GP mean)")
    ax.set_ylabel("true class")
    acc = metrics["sgl_sign"]["sgntk_gp_accuracy_at_steps"]
    ax.set_title(f"SG-NTK GP at step {metrics['sgl_sign']['steps']}: accuracy {acc:.3f}",
                 fontsize=9)
    ax = axes[0, 2]
    off = k_sorted[~np.eye(len(k_sorted), dtype=bool)]  # the diagonal would set the scale
    im = ax.imshow(k_sorted, cmap="viridis", vmin=np.percentile(off, 1),
                   vmax=np.percentile(off, 99))
    edges = np.flatnonzero(np.diff(sorted_labels)) + 0.5
    for e in edges:
        ax.axhline(e, color="white", lw=0.4)
        ax.axvline(e, color="white", lw=0.4)
    ticks = [np.mean(np.flatnonzero(sorted_labels == c)) for c in range(CLASSES)]
    ax.set_xticks(ticks, [str(c) for c in range(CLASSES)])
    ax.set_yticks(ticks, [str(c) for c in range(CLASSES)])
    ax.set_title("SG-NTK I(x, x') on the test images, sorted by class\n"
                 "(colour scale: 1-99 % of the off-diagonal entries)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle("scikit-learn digits: sign networks trained by SGL against the SG-NTK GP "
                 "(10 outputs, one-hot targets)", fontsize=10)
    save_figure(fig, ctx.out / "digits.png")
