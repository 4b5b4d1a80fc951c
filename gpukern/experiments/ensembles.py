"""Helpers for the SGL-ensemble experiments: train, predict, and measure distances."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import gpukern as gk

from .common import Context, learning_rate


@dataclass
class EnsembleRun:
    lr: float
    steps: int
    outputs: np.ndarray  # (E, N_test) or (E, N_test, C) at the last step
    loss: np.ndarray  # (R, E)
    record_steps: np.ndarray


def train_sign_ensemble(ctx: Context, experiment: str, net: gk.MLP, width: int, networks: int,
                        steps: int, key: tuple, lr: float | None = None,
                        records: int = 10) -> EnsembleRun:
    """SGL of ``networks`` sign networks of ``width`` with ``lr`` (default
    0.5/lambda_max(SG-NTK_XX)), loss and outputs recorded ``records`` times. At scales with
    ``ens_chunk``, in independent sub-ensembles (own seeds and checkpoints) of that many
    networks, whose outputs are joined."""
    task, sc = ctx.task, ctx.scale
    if lr is None:
        lr = learning_rate(net, task.x_train, ("true", "surrogate"))
    chunk = sc.ens_chunk or networks
    outputs, losses, rec = [], [], None
    for part, start in enumerate(range(0, networks, chunk)):
        sub = (part,) if sc.ens_chunk else ()
        params = net.init(task.x_train.shape[1], width, ensemble=min(chunk, networks - start),
                          seed=ctx.seed_for(experiment, *key, *sub), n_out=task.n_out,
                          dtype=np.dtype(sc.ens_dtype))
        res = gk.train(net, params, task.x_train, task.y_train, lr=lr, steps=steps,
                       derivative="surrogate", x_eval=task.x_test,
                       record_every=max(1, steps // records),
                       checkpoint=ctx.checkpoint(experiment, *key, *sub),
                       checkpoint_every=sc.ens_checkpoint_every or max(10, steps // 20),
                       progress=ctx.progress)
        del params
        outputs.append(res.outputs[-1].astype(np.float64))
        losses.append(res.loss)
        rec = res.steps
    return EnsembleRun(lr, steps, np.concatenate(outputs), np.concatenate(losses, axis=1), rec)


def predictions(ctx: Context, net: gk.MLP, lr: float, steps: int) -> dict[str, gk.Prediction]:
    """SG-NTK and surrogate-surrogate GPs at ``steps``, and the NNGP posterior."""
    t = ctx.task
    out = {kind: gk.predict(net, t.x_train, t.y_train, t.x_test, lr=lr, steps=steps, kernel=kind,
                            full_cov=False)
           for kind in ("sgntk", "surrogate")}
    out["nngp"] = gk.nngp_posterior(net, t.x_train, t.y_train, t.x_test, full_cov=False,
                                    ridge=_nngp_ridge(net, t.x_train))
    return out


def test_rmse(outputs: np.ndarray, task, y_scale: float) -> float | None:
    """RMSE of the networks' outputs against the target function on the test inputs, over
    std(y); None where the target is not known (user data)."""
    y = task.test_target()
    if y is None:
        return None
    return float(np.sqrt(np.mean((outputs - (y if outputs.ndim == 2 else y[:, None])) ** 2))
                 / y_scale)


def plot_ensemble_vs_gp(ax, task, outputs: np.ndarray, gp_mean: np.ndarray,
                        gp_std: np.ndarray, gp: str = "SG-NTK GP", ms: float = 5) -> None:
    """The ensemble's mean and ±1.96 std against the GP's mean and 95 % band, on the test
    axis (first output), with the training points on the circle."""
    axis, label = task.test_axis()
    out, gm = task.first_output(outputs), task.first_output(gp_mean)
    ax.fill_between(axis, gm - 1.96 * gp_std, gm + 1.96 * gp_std, color="tab:blue", alpha=0.25,
                    label=f"{gp} 95 % band")
    ax.plot(axis, gm, color="tab:blue", lw=2, label=f"{gp} mean")
    em, es = out.mean(0), out.std(0, ddof=1)
    ax.plot(axis, em, color="tab:red", lw=1.5, label="ensemble mean")
    ax.plot(axis, em - 1.96 * es, color="tab:red", ls="--", lw=1, label="ensemble ±1.96 std")
    ax.plot(axis, em + 1.96 * es, color="tab:red", ls="--", lw=1)
    if task.on_circle:
        ax.plot(task.alpha_train, task.y_train, "ko", ms=ms, label="training points")
    ax.set_xlabel(label)


def gp_loss_curve(net: gk.MLP, task, lr: float, steps: list[int], kernel: str) -> np.ndarray:
    """The GP's expected training loss E[1/2 sum (f_k(X) - y)^2] = 1/2 sum ((m - y)^2 + v) at
    each step k (v shared by the outputs)."""
    pred = gk.predict(net, task.x_train, task.y_train, task.x_train, lr=lr, steps=steps,
                      kernel=kernel, full_cov=False)
    mean, var = gk.to_host(pred.mean), np.maximum(gk.to_host(pred.var), 0.0)
    resid = mean - task.y_train
    sq = resid * resid if resid.ndim == 2 else np.sum(resid * resid, axis=-1)
    return 0.5 * np.sum(sq + task.n_out * var, axis=1)


def _nngp_ridge(net: gk.MLP, x: np.ndarray) -> float:
    """Noiseless NNGP posterior, with 1e-10 * max eigenvalue as jitter only if it is singular."""
    ev = np.linalg.eigvalsh(gk.to_host(net.nngp(x)))
    return 0.0 if ev.min() > 1e-10 * ev.max() else 1e-10 * ev.max()


def distances(outputs: np.ndarray, pred: gk.Prediction, y_scale: float, boot: int = 200,
              seed: int = 0) -> dict[str, float]:
    """RMSE over test points (and outputs) between ensemble mean / std and the GP's, over
    std(y) (the GP's variance is shared by the outputs).

    Standard errors from a bootstrap over networks; ``noise_floor_mean`` is the RMSE of
    the mean expected from ensemble noise alone (sqrt(mean of SE(mean)^2) / std(y)).
    """
    mean_gp, std_gp = gk.to_host(pred.mean[0]), gk.to_host(pred.std[0])
    if outputs.ndim == 3:
        std_gp = std_gp[:, None]
    e = outputs.shape[0]

    def stats(o):
        return (np.sqrt(np.mean((o.mean(0) - mean_gp) ** 2)) / y_scale,
                np.sqrt(np.mean((o.std(0, ddof=1) - std_gp) ** 2)) / y_scale)

    rm, rs = stats(outputs)
    rng = np.random.default_rng(seed)
    bs = np.array([stats(outputs[rng.integers(0, e, e)]) for _ in range(boot)])
    floor = np.sqrt(np.mean(outputs.var(0, ddof=1) / e)) / y_scale
    return {"rmse_mean": float(rm), "rmse_mean_se": float(bs[:, 0].std(ddof=1)),
            "rmse_std": float(rs), "rmse_std_se": float(bs[:, 1].std(ddof=1)),
            "noise_floor_mean": float(floor)}


def gap_position(outputs: np.ndarray, start: np.ndarray, end: np.ndarray,
                 y_scale: float = 1.0) -> dict[str, float]:
    """Where the ensemble mean lies on the line from one GP mean to another.

    With d = end - start (over test points and outputs), each network's projection
    p_n = <f_n - start, d> / <d, d>; t = mean p_n (0: at ``start``, 1: at ``end``) with
    its standard error std(p_n) / sqrt(E). The ensemble noise along the gap is
    t_se * rms(d): the noise that decides between the two descriptions (the RMSE's noise
    floor counts every direction of the test set). ``gap`` = rms(d) and ``off_line`` =
    rms(mean - start - t d), the part of the mean off the line, over ``y_scale``.
    """
    f = outputs.reshape(outputs.shape[0], -1)
    a, d = np.ravel(start), np.ravel(end) - np.ravel(start)
    dd = float(d @ d)
    if f.shape[0] < 2 or f.shape[1] != d.size or dd == 0.0:
        raise ValueError(f"gap_position needs >= 2 networks with {d.size} outputs each and "
                         f"distinct GP means; got outputs {outputs.shape}, |end - start|^2 = {dd}")
    p = (f - a) @ d / dd
    t = float(p.mean())
    return {"t": t, "t_se": float(p.std(ddof=1) / np.sqrt(p.size)),
            "gap": float(np.sqrt(dd / d.size)) / y_scale,
            "off_line": float(np.sqrt(np.mean((f.mean(0) - a - t * d) ** 2))) / y_scale}
