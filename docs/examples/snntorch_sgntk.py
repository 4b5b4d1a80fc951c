"""The SG-NTK of an snnTorch network, as a user writes it.

An ensemble of two-hidden-layer spiking networks (snnTorch ``Leaky`` neurons, threshold 1,
the default arctan surrogate gradient, one time step) is read into gpukern with
``gpukern.torch.from_torch`` and trained in PyTorch with plain SGD on 12 points of a circle.
The script prints and plots:

1. the quasi-Jacobian kernel J~(x) J~(x')^T of the networks at initialisation and after
   training (their empirical kernel, computed by gpukern without forming J~) against its
   infinite-width value at the networks' widths (the surrogate-surrogate kernel);
2. the analytic SG-NTK I(x, x') of the networks (standard parameterization, their widths),
   the kernel of SGL in the infinite-width limit;
3. the ensemble of torch-trained networks against the SG-NTK Gaussian process's prediction
   of that training (mean and std after the same steps of the same learning rate).

A finite spiking network's true Jacobian is its readout's only (a spike's derivative is 0
almost everywhere), so its own "SG-NTK" J(x) J~(x')^T is the readout term; the analytic
SG-NTK is what the many small spike flips of SGL add up to at large width, and (3) is its
test. Run: ``python docs/examples/snntorch_sgntk.py [--small] [--out DIR]`` (needs the
``torch`` extra; ``--small``: width 256, 8 networks, ~10 s).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import snntorch as snn
import torch
from snntorch import utils as snn_utils

import gpukern as gk
from gpukern.torch import from_torch

THETA = 1.0
WEIGHT_STD, BIAS_STD = 1.5, 0.1


def snntorch_network(width: int, seed: int) -> torch.nn.Sequential:
    """The user's network: Linear, Leaky, Linear, Leaky, Linear, in float64, with
    Gaussian initialisation std WEIGHT_STD / sqrt(fan_in) and BIAS_STD."""
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate([(2, width), (width, width), (width, 1)]):
        lin = torch.nn.Linear(a, b, dtype=torch.float64)
        torch.nn.init.normal_(lin.weight, std=WEIGHT_STD / math.sqrt(a))
        torch.nn.init.normal_(lin.bias, std=BIAS_STD)
        layers.append(lin)
        if i < 2:
            layers.append(snn.Leaky(beta=0.9, threshold=THETA, init_hidden=True))
    return torch.nn.Sequential(*layers)


def forward(module: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """One time step from rest; snnTorch's spikes are float32: cast for the next Linear."""
    snn_utils.reset(module)
    z = x
    for m in module:
        z = m(z)
        if isinstance(m, snn.Leaky):
            z = z.to(torch.float64)
    return z[:, 0]


def circle(angles: np.ndarray, radius: float = 2.0) -> np.ndarray:
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="width 256, 8 networks (CI)")
    ap.add_argument("--out", default="snntorch-sgntk", help="folder for the figure")
    args = ap.parse_args()
    width, n_nets, steps = (256, 8, 150) if args.small else (2048, 32, 300)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    train_angles = np.linspace(-np.pi, np.pi, 12, endpoint=False) + 0.1
    angles = np.linspace(-np.pi, np.pi, 121)
    x, xs, x0 = circle(train_angles), circle(angles), circle(np.zeros(1))
    y = np.sin(2 * train_angles)

    modules = [snntorch_network(width, seed) for seed in range(n_nets)]
    net, _ = from_torch(modules[0], weight_std=WEIGHT_STD, bias_std=BIAS_STD)
    print(f"from_torch: {net}")

    # the analytic kernels at these widths, and the learning rate from the SG-NTK's scale
    sgntk_xx = gk.to_host(net.sgntk(x))
    lr = 0.5 / float(np.abs(np.linalg.eigvals(sgntk_xx)).max())
    sgntk_row = gk.to_host(net.sgntk(x0, xs))[0]
    surr = gk.to_host(net.kernel(x0, xs, "surrogate", "surrogate"))[0]
    pred = gk.predict(net, x, y, xs, lr=lr, steps=steps, kernel="sgntk")

    # the finite networks: quasi-Jacobian kernels at init, torch SGD, after training
    def quasi_kernel_row(module: torch.nn.Sequential) -> np.ndarray:
        n, p = from_torch(module, weight_std=WEIGHT_STD, bias_std=BIAS_STD)
        return gk.to_host(n.empirical_kernel(p, x0, xs, "surrogate", "surrogate"))[0, 0]

    k_init = np.stack([quasi_kernel_row(m) for m in modules])
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for m in modules:
        opt = torch.optim.SGD(m.parameters(), lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            (0.5 * ((forward(m, xt) - yt) ** 2).sum()).backward()
            opt.step()
    k_trained = np.stack([quasi_kernel_row(m) for m in modules])
    with torch.no_grad():
        f = np.stack([forward(m, torch.from_numpy(xs)).numpy() for m in modules])

    def rel(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.linalg.norm(a - b) / np.linalg.norm(b))

    gp_mean, gp_std = gk.to_host(pred.mean)[-1], gk.to_host(pred.std)[-1]
    z = (f.mean(0) - gp_mean) / (gp_std / math.sqrt(n_nets))
    rmse = float(np.sqrt(np.mean((f.mean(0) - gp_mean) ** 2)))
    noise = float(np.sqrt(np.mean(gp_std**2 / n_nets)))
    print(f"width {width}, {n_nets} networks, {steps} SGD steps of lr {lr:.3g} (torch, snnTorch "
          f"atan surrogate)")
    print(f"quasi-Jacobian kernel vs its infinite-width value: relative distance "
          f"{rel(k_init.mean(0), surr):.3f} (init, ensemble mean), "
          f"{np.mean([rel(k, surr) for k in k_init]):.3f} (init, one network), "
          f"{np.mean([rel(k, surr) for k in k_trained]):.3f} (trained, one network)")
    print(f"kernel change in training: {np.mean([rel(a, b) for a, b in zip(k_trained, k_init)]):.3f}")
    print(f"ensemble mean vs SG-NTK GP mean: RMSE {rmse:.4f}, noise floor (GP std / sqrt(E)) "
          f"{noise:.4f}, max |z| {np.abs(z).max():.2f} over {z.size} test points; "
          f"ensemble std / GP std {float(np.mean(f.std(0, ddof=1) / gp_std)):.3f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    ax.plot(angles, surr, "k", lw=2, label=f"analytic (widths {width})")
    ax.plot(angles, k_init.mean(0), "C0--", label=f"empirical, init (mean of {n_nets})")
    ax.plot(angles, k_trained.mean(0), "C1:", label="empirical, trained")
    ax.set(title="quasi-Jacobian kernel J~(x0) J~(x)^T", xlabel="angle of x (rad), x0 at 0",
           ylabel="kernel")
    ax.legend(fontsize=8)
    ax = axes[1]
    ax.plot(angles, sgntk_row, "k", lw=2)
    ax.set(title="analytic SG-NTK I(x0, x) (standard param.)", xlabel="angle of x (rad)",
           ylabel="kernel")
    ax = axes[2]
    ax.fill_between(angles, gp_mean - 2 * gp_std, gp_mean + 2 * gp_std, color="0.85",
                    label="SG-NTK GP ± 2 std")
    ax.plot(angles, gp_mean, "k", lw=2, label="SG-NTK GP mean")
    ax.plot(angles, f.mean(0), "C3", label="torch ensemble mean")
    ax.fill_between(angles, f.mean(0) - 2 * f.std(0), f.mean(0) + 2 * f.std(0), color="C3",
                    alpha=0.2, label="torch ensemble ± 2 std")
    ax.plot(train_angles, y, "ko", ms=4, label="training targets")
    ax.set(title=f"after {steps} SGD steps: RMSE {rmse:.3f} (noise floor {noise:.3f})",
           xlabel="angle of x (rad)", ylabel="f(x)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "snntorch_sgntk.png", dpi=110)
    print(f"figure: {out / 'snntorch_sgntk.png'}")


if __name__ == "__main__":
    main()
