"""Ready-made tasks for :func:`gpukern.distributed.run_sweep` (one configuration each)."""

from __future__ import annotations

import numpy as np

import gpukern as gk

from .common import circle_task, learning_rate
from .ensembles import distances


def sgl_sweep_task(depth: int, width: int, k: float, networks: int, steps: int, seed: int,
                   n_train: int = 8, n_test: int = 48) -> dict[str, float]:
    """init -> SGL -> distances to the SG-NTK GP, for sign networks on the circle task.

    A ready-made task for :func:`gpukern.distributed.run_sweep` (surrogate erf(k),
    bias_std 0.1).
    """
    task = circle_task(n_test, n_train)
    net = gk.MLP(depth, gk.activations.sign(), gk.surrogates.erf(k), bias_std=0.1)
    lr = learning_rate(net, task.x_train, ("true", "surrogate"))
    params = net.init(2, width, ensemble=networks, seed=seed)
    res = gk.train(net, params, task.x_train, task.y_train, lr=lr, steps=steps, x_eval=task.x_test)
    pred = gk.predict(net, task.x_train, task.y_train, task.x_test, lr=lr, steps=steps,
                      full_cov=False)
    d = distances(res.outputs[-1], pred, float(np.std(task.y_train)), seed=seed)
    return {"depth": depth, "width": width, "k": k, "networks": networks, "steps": steps,
            "seed": seed, "final_loss": float(res.loss[-1].mean()), **d}
