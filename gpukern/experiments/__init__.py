"""The experiments of ``gpukern reproduce`` (README.md), one module each.

``reproduce`` runs the selected ones in order. Each experiment writes its figure
(``<name>.png``), the arrays behind it (``<name>/data.npz``) and last its metrics
(``<name>/metrics.json``), which marks it finished: a rerun into the same folder skips
finished experiments, and ensembles interrupted mid-training resume from their
checkpoints (``checkpoints/``). ``config.json`` records what the folder's results are
of (scale, seed, task): a rerun with another configuration is refused, naming the
difference. ``force=True`` recomputes the selected experiments (and, for another
configuration, drops the folder's earlier results).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..checkpoints import hash_arrays
from . import (
    digits,
    kernel_convergence,
    ntk_divergence,
    sign_ensemble,
    surrogate_family,
    surrogate_scale,
    surrogate_width,
    thresholds,
)
from .common import SCALES, Context, Task, circle_task, load_task, save_json

EXPERIMENTS: dict[str, Callable[[Context], dict]] = {
    "kernel_ntk": lambda ctx: kernel_convergence.run(ctx, "ntk"),
    "kernel_sgntk": lambda ctx: kernel_convergence.run(ctx, "sgntk"),
    "ntk_divergence": ntk_divergence.run,
    "sign_ensemble": sign_ensemble.run,
    "surrogate_width": surrogate_width.run,
    "surrogate_scale": surrogate_scale.run,
    "surrogate_family": surrogate_family.run,
    "digits": digits.run,
    "thresholds": thresholds.run,
}
OPTIONAL = {"digits": (digits.available, digits.INSTALL_HINT)}
"""Experiments that need an optional extra: (is it installed, how to install it)."""

__all__ = ["EXPERIMENTS", "SCALES", "reproduce", "circle_task", "load_task", "Task"]


def reproduce(out: str | Path, scale: str = "quick", only: Sequence[str] | None = None,
              seed: int = 0, force: bool = False, task: Task | None = None,
              progress: bool = True, log: Callable[[str], None] = print,
              keep_checkpoints: bool = False) -> dict:
    """Run the experiments into ``out``; returns the combined metrics (also metrics.json).

    A finished experiment's training checkpoints are removed unless ``keep_checkpoints``
    (they only serve to resume an interrupted run)."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    names = list(EXPERIMENTS) if not only else list(only)
    for n in names:
        if n not in EXPERIMENTS:
            raise ValueError(f"unknown experiment {n!r}; choose from {', '.join(EXPERIMENTS)}")
    for n, (installed, hint) in OPTIONAL.items():
        if n in names and not installed():
            if only:
                raise ValueError(hint)
            log(f"[{n}] skipped: {hint}")
            names.remove(n)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    task = task or circle_task(SCALES[scale].n_test)
    if progress:
        try:
            import tqdm  # noqa: F401
        except ImportError:
            log("(no progress bars: pip install tqdm to see them)")
            progress = False
    ctx = Context(out, SCALES[scale], task, seed, progress, log)
    config = configuration(scale, seed, task)
    stale = _check_configuration(out, config, force)
    combined_path = out / "metrics.json"
    combined = {} if force or stale else _read_json(combined_path, {})
    import gpukern as gk

    combined["config"] = config | {"backend": gk.backend(), "gpukern": gk.__version__}
    for name in names:
        done = out / name / "metrics.json"
        if force:  # not done until it finishes again, also if this run is interrupted
            shutil.rmtree(out / "checkpoints" / name, ignore_errors=True)
            done.unlink(missing_ok=True)
        if done.exists() and not force:
            log(f"[{name}] already done, skipped (use --force to recompute)")
            combined[name] = _read_json(done)
            continue
        log(f"[{name}] running ...")
        t0 = time.perf_counter()
        metrics = EXPERIMENTS[name](ctx)
        metrics["seconds"] = round(time.perf_counter() - t0, 2)
        save_json(done, metrics)
        if not keep_checkpoints:
            shutil.rmtree(out / "checkpoints" / name, ignore_errors=True)
            if (out / "checkpoints").is_dir() and not any((out / "checkpoints").iterdir()):
                (out / "checkpoints").rmdir()
        combined[name] = metrics
        save_json(combined_path, combined)
        log(f"[{name}] done in {metrics['seconds']:.1f} s -> {out / (name + '.png')}")
    save_json(combined_path, combined)
    return combined


def configuration(scale: str, seed: int, task: Task) -> dict:
    """What determines a run's results: scale, seed and the task (its data hashed)."""
    h = hashlib.sha256()
    hash_arrays(h, (task.x_train, task.y_train, task.x_test))
    return {"scale": scale, "seed": seed, "task": task.description,
            "task_sha256": h.hexdigest()[:16]}


def _check_configuration(out: Path, config: dict, force: bool) -> bool:
    """Refuse to mix runs: ``out`` holds the results of the configuration in its
    config.json. A different one is an error naming the difference, unless ``force``,
    which recomputes (returns True: every earlier result there is stale)."""
    path = out / "config.json"
    old = _read_json(path, None)
    differ = {} if old is None else {k: (old.get(k), v) for k, v in config.items()
                                     if old.get(k) != v}
    if old is None and any(out.glob("*/metrics.json")) and not force:
        differ = {"config.json": ("missing", "present")}
    if differ and not force:
        what = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in differ.items())
        raise ValueError(f"{out} holds results of another configuration ({what}); use another "
                         "--out, or --force to recompute them")
    if differ:
        for marker in out.glob("*/metrics.json"):
            marker.unlink()
    save_json(path, config)
    return bool(differ)


_MISSING = object()


def _read_json(path: Path, default=_MISSING):
    """A JSON file's content (``default`` if it does not exist); a clear error naming the
    file if it is not readable JSON."""
    if not path.exists() and default is not _MISSING:
        return default
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not readable JSON ({exc}); delete it, or use --force "
                         "or another --out") from exc
