"""Is the offset of SGL ensembles from the SG-NTK GP at k = 1 a learning-rate (or float32) effect?

    python scripts/surrogate_width_lr_check.py OUT.json

Sign networks as in `gpukern reproduce --scale full --only surrogate_width` (depth 2, erf(k=1)
surrogate, the unit-circle task), width 512, 1600 networks per run (16 sub-ensembles of 100,
float32), trained to the same time lr * steps with three learning rates: 2 lr (40 steps),
lr (80 steps), lr / 2 (160 steps), lr = 0.5 / lambda_max(SG-NTK_XX), and lr in float64
from the same seeds. Prints and writes each
run's position t between the SG-NTK GP's mean (t = 0) and the surrogate-surrogate GP's
(t = 1) with its standard error (docs/findings.md). ~4 minutes on 2 cores.
"""

import json
import sys
import time

import numpy as np

import gpukern as gk
from gpukern.experiments.common import BIAS_STD, DEPTH, WEIGHT_STD, circle_task, learning_rate
from gpukern.experiments.ensembles import gap_position


def main(path: str) -> None:
    task = circle_task(72)
    y_scale = float(np.std(task.y_train))
    net = gk.MLP(DEPTH, gk.activations.sign(), gk.surrogates.erf(k=1.0), weight_std=WEIGHT_STD,
                 bias_std=BIAS_STD)
    lr0 = learning_rate(net, task.x_train, ("true", "surrogate"))
    out = {}
    for name, lr, steps, dtype in [("2 lr, 40 steps", 2 * lr0, 40, np.float32),
                                   ("lr, 80 steps", lr0, 80, np.float32),
                                   ("lr/2, 160 steps", lr0 / 2, 160, np.float32),
                                   ("lr, 80 steps, float64", lr0, 80, np.float64)]:
        t0 = time.time()
        outputs = []
        for part in range(16):
            params = net.init(2, 512, ensemble=100, seed=2000 + part, dtype=dtype)
            res = gk.train(net, params, task.x_train, task.y_train, lr=lr, steps=steps,
                           x_eval=task.x_test, record_every=steps)
            outputs.append(np.asarray(res.outputs[-1], dtype=np.float64))
        o = np.concatenate(outputs)
        means = {kind: gk.to_host(gk.predict(net, task.x_train, task.y_train, task.x_test, lr=lr,
                                             steps=steps, kernel=kind, full_cov=False).mean[0])
                 for kind in ("sgntk", "surrogate")}
        pos = gap_position(o, means["sgntk"], means["surrogate"], y_scale)
        out[name] = dict(pos, lr=lr, steps=steps, networks=len(o), dtype=np.dtype(dtype).name)
        print(name, {k: round(v, 4) for k, v in pos.items()}, f"{time.time() - t0:.0f} s",
              flush=True)
    with open(path, "w") as fh:
        json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
