"""What the experiments share: sizes per scale, the task, seeds, plotting, saving."""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import gpukern as gk
from gpukern._io import atomic_write

DEPTH = 2
BIAS_STD = 0.1
WEIGHT_STD = 1.0


@dataclass(frozen=True)
class Scale:
    """Sizes of every experiment at one scale."""

    name: str
    n_test: int  # evaluation points (on the circle: angles)
    conv_ms: tuple[float, ...] = (2.0, 5.0, 20.0)
    conv_widths: tuple[int, ...] = (10, 100, 500, 1000)
    conv_networks: int = 10
    conv_steps: int = 100
    div_ms: tuple[float, ...] = tuple(10.0 ** np.arange(0, 4.01, 0.25))
    div_empirical_width: int = 500
    div_empirical_networks: int = 10
    ens_widths: tuple[int, ...] = (128, 512)
    ens_networks: int = 100
    ens_steps: int = 200
    sw_ks: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    sw_widths: tuple[int, ...] = (128, 512)
    sw_networks: int = 64
    sw_steps: int = 200
    ens_chunk: int = 0  # train ensembles in sub-ensembles of this many networks (0: one)
    ens_dtype: str = "float64"  # the networks' dtype (float32 halves memory and traffic)
    ens_checkpoint_every: int = 0  # steps between checkpoints (0: max(10, steps // 20))
    ss_scales: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    ss_width: int = 256
    ss_networks: int = 64
    ss_steps: int = 200
    sf_width: int = 256
    sf_networks: int = 64
    sf_steps: int = 200
    digits_train: int = 1000
    digits_test: int | None = None  # None: the other 797 images
    digits_width: int = 512
    digits_networks: int = 20
    digits_steps: int = 30
    th_width: int = 256
    th_networks: int = 64
    th_steps: int = 200


SCALES = {
    "quick": Scale("quick", n_test=72),
    "paper": Scale("paper", n_test=181, conv_steps=10000, ens_widths=(100, 500, 1000),
                   ens_networks=500, ens_steps=10000, sw_widths=(128, 256, 512, 1024, 2048),
                   sw_networks=200, sw_steps=2000, div_empirical_networks=100,
                   digits_width=1024, digits_networks=50, digits_steps=400, th_width=1024,
                   th_networks=200, th_steps=2000),
    # settles surrogate_width on a 2-core CPU (~35 min for it alone); others as quick
    "full": Scale("full", n_test=72, sw_ks=(0.5, 1.0, 2.0, 4.0, 8.0),
                  sw_widths=(256, 512, 1024, 2048), sw_networks=400, sw_steps=80,
                  ens_chunk=100, ens_dtype="float32", ens_checkpoint_every=40),
    # seconds, for the test suite only
    "tiny": Scale("tiny", n_test=12, conv_ms=(2.0, 5.0), conv_widths=(10, 40, 160),
                  conv_networks=3, conv_steps=5, div_ms=(1.0, 10.0, 100.0),
                  div_empirical_width=32, div_empirical_networks=3, ens_widths=(16, 32),
                  ens_networks=6, ens_steps=5, sw_ks=(1.0, 4.0), sw_widths=(16, 32),
                  sw_networks=6, sw_steps=5, ss_width=16, ss_networks=4, ss_steps=4,
                  sf_width=16, sf_networks=4, sf_steps=4, digits_train=150, digits_test=60,
                  digits_width=16, digits_networks=3, digits_steps=4, th_width=16,
                  th_networks=4, th_steps=4),
}


@dataclass
class Task:
    """Regression data. On the circle ``alpha_*`` hold the angles, else None."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    alpha_train: np.ndarray | None = None
    alpha_test: np.ndarray | None = None
    description: str = ""

    @property
    def n_out(self) -> int:
        """Outputs C per point (targets y of shape (N,) or (N, C))."""
        return 1 if self.y_train.ndim == 1 else int(self.y_train.shape[1])

    @property
    def on_circle(self) -> bool:
        return self.alpha_test is not None

    def first_output(self, a: np.ndarray) -> np.ndarray:
        """What a figure shows of outputs (..., C): the first output (all of one)."""
        return a[..., 0] if self.n_out > 1 else a

    def test_target(self) -> np.ndarray | None:
        """The target function on the test inputs where it is known (the circle)."""
        return target(self.alpha_test) if self.on_circle else None

    def test_axis(self) -> tuple[np.ndarray, str]:
        if self.on_circle:
            return self.alpha_test, "input angle α (rad)"
        return np.arange(len(self.x_test)), "test point index"


def target(alpha: np.ndarray) -> np.ndarray:
    """The default target on the circle: y(α) = sin(2α) + cos(α)/2."""
    return np.sin(2 * alpha) + 0.5 * np.cos(alpha)


def circle_task(n_test: int, n_train: int = 8) -> Task:
    """x = (cos α, sin α): n_train training angles 2πi/n_train + 0.15; test angles: n_test
    evenly spaced in [0, 2π] plus the training angles (the kernels of jump activations
    have cusps at coinciding inputs, which a plot should not miss)."""
    a_tr = 2 * np.pi * np.arange(n_train) / n_train + 0.15
    a_te = np.union1d(np.linspace(0, 2 * np.pi, n_test), a_tr)
    circ = lambda a: np.stack([np.cos(a), np.sin(a)], axis=1)  # noqa: E731
    return Task(circ(a_tr), target(a_tr), circ(a_te), a_tr, a_te,
                f"unit circle, {n_train} training angles, target sin(2α) + cos(α)/2")


def load_task(path: str | os.PathLike) -> Task:
    """User data: .npz with arrays x (N, n0) and y (N,) or (N, C), or .csv/.txt (last
    column y)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"--train file {path} does not exist")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as d:
                if "x" not in d.files or "y" not in d.files:
                    raise ValueError(f"--train {path} must hold arrays 'x' and 'y', has {d.files}")
                x, y = np.asarray(d["x"], float), np.asarray(d["y"], float)
        else:
            data = np.loadtxt(path, delimiter="," if path.suffix == ".csv" else None, ndmin=2)
            x, y = data[:, :-1], data[:, -1]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"--train {path} cannot be read: {exc}") from exc
    if y.ndim == 2 and y.shape[1:] == (1,) and y.shape[0] == x.shape[0]:
        y = y[:, 0]  # one target per point, as the API accepts it
    if (x.ndim != 2 or y.ndim not in (1, 2) or y.shape[0] != x.shape[0] or x.shape[0] < 2
            or x.shape[1] < 1):
        raise ValueError(f"--train {path}: expected x of shape (N, n0) and y of shape (N,) or "
                         f"(N, C), N >= 2; got {x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError(f"--train {path} contains NaN or inf")
    return Task(x, y, x.copy(), description=f"user data from {path.name}: {x.shape[0]} points")


@dataclass
class Context:
    """One run of ``gpukern reproduce``."""

    out: Path
    scale: Scale
    task: Task
    seed: int = 0
    progress: bool = True
    log: Any = print

    def seed_for(self, *key: Any) -> int:
        """A reproducible seed per configuration (independent of the order they run in)."""
        return (self.seed * 1_000_003 + zlib.crc32(repr(key).encode())) % (2**31)

    def checkpoint(self, experiment: str, *key: Any) -> Path:
        name = "_".join(str(k) for k in key).replace(".", "p")
        return self.out / "checkpoints" / experiment / f"{name}.npz"

    def bar(self, iterable: Iterable, total: int, desc: str):
        if not self.progress:
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, leave=False)


def lambda_max(net: gk.MLP, x: np.ndarray, kernel: tuple[str, str]) -> float:
    """|lambda|_max of the (left, right) kernel on the training inputs."""
    k = gk.to_host(net.kernel(x, left=kernel[0], right=kernel[1]))
    return float(np.abs(np.linalg.eigvals(k)).max())


def learning_rate(net: gk.MLP, x: np.ndarray, kernel: tuple[str, str]) -> float:
    """lr = 0.5 / |lambda|_max of the kernel on the training inputs: stable GD steps."""
    return 0.5 / lambda_max(net, x, kernel)


def save_npz(path: Path, **arrays: Any) -> None:
    """Arrays (host or device) as a compressed .npz, written atomically."""
    host = {k: gk.to_host(v) for k, v in arrays.items()}
    atomic_write(path, lambda fh: np.savez_compressed(fh, **host))


def save_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda fh: fh.write(json.dumps(obj, indent=2, sort_keys=True).encode()))


def figure(nrows: int, ncols: int, width: float = 4.2, height: float = 3.2):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return fig, axes


def save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def loglog_slope(x: Iterable[float], y: Iterable[float]) -> float:
    """Least-squares slope of log y against log x."""
    lx, ly = np.log(np.asarray(list(x), float)), np.log(np.asarray(list(y), float))
    return float(np.polyfit(lx, ly, 1)[0])


def weighted_line(x: Iterable[float], y: Iterable[float], se: Iterable[float]
                  ) -> tuple[float, float]:
    """Weighted least-squares slope of y against x (weights 1/se^2) and its standard
    error (needs at least 3 points for an error)."""
    xa, ya = np.asarray(list(x), float), np.asarray(list(y), float)
    w = np.asarray(list(se), float) ** -2.0
    a = np.stack([np.ones_like(xa), xa], axis=1)
    cov = np.linalg.inv(a.T @ (w[:, None] * a))
    coef = cov @ (a.T @ (w * ya))
    return float(coef[1]), float(np.sqrt(cov[1, 1]))


def loglog_fit(x: Iterable[float], y: Iterable[float], se: Iterable[float]
               ) -> tuple[float, float]:
    """Weighted least-squares slope of log y against log x and its standard error, with
    the standard errors of log y = se / y."""
    ya = np.asarray(list(y), float)
    return weighted_line(np.log(np.asarray(list(x), float)), np.log(ya),
                         np.asarray(list(se), float) / ya)


def asinh_axis(ax, values: np.ndarray, linear_width: float = 0.5) -> None:
    """The paper's asinh y-axis: linear near 0, logarithmic beyond; ticks 0, ±1, ±10, ..."""
    from matplotlib.ticker import FuncFormatter, NullLocator

    ax.set_yscale("asinh", linear_width=linear_width)
    top = float(np.nanmax(np.abs(values))) if np.size(values) else 1.0
    kmax = max(0, int(np.ceil(np.log10(max(top, 1.0)))))
    pos = [10.0**k for k in range(0, kmax + 1)]
    ax.set_yticks([-p for p in reversed(pos)] + [0.0] + pos)
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
