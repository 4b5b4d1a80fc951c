"""The experiments of ``gpukern reproduce`` (README.md), one module each.

``reproduce`` runs the selected ones in order. Each experiment writes its figure
(``<name>.png``), the arrays behind it (``<name>/data.npz``) and last its metrics
(``<name>/metrics.json``), which marks it finished: a rerun into the same folder skips
finished experiments, and ensembles interrupted mid-training resume from their
checkpoints (``checkpoints/``). ``force=True`` recomputes everything.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from . import kernel_convergence, ntk_divergence, sign_ensemble, surrogate_width
from .common import SCALES, Context, Task, circle_task, load_task, save_json

EXPERIMENTS: dict[str, Callable[[Context], dict]] = {
    "kernel_ntk": lambda ctx: kernel_convergence.run(ctx, "ntk"),
    "kernel_sgntk": lambda ctx: kernel_convergence.run(ctx, "sgntk"),
    "ntk_divergence": ntk_divergence.run,
    "sign_ensemble": sign_ensemble.run,
    "surrogate_width": surrogate_width.run,
}

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
    combined_path = out / "metrics.json"
    combined = json.loads(combined_path.read_text()) if combined_path.exists() and not force else {}
    import gpukern as gk

    combined["config"] = {"scale": scale, "seed": seed, "backend": gk.backend(),
                          "task": task.description, "gpukern": gk.__version__}
    for name in names:
        done = out / name / "metrics.json"
        if force:  # not done until it finishes again, also if this run is interrupted
            shutil.rmtree(out / "checkpoints" / name, ignore_errors=True)
            done.unlink(missing_ok=True)
        if done.exists() and not force:
            log(f"[{name}] already done, skipped (use --force to recompute)")
            combined[name] = json.loads(done.read_text())
            continue
        log(f"[{name}] running ...")
        t0 = time.perf_counter()
        metrics = EXPERIMENTS[name](ctx)
        metrics["seconds"] = round(time.perf_counter() - t0, 2)
        save_json(done, metrics)
        if not keep_checkpoints:
            shutil.rmtree(out / "checkpoints" / name, ignore_errors=True)
        combined[name] = metrics
        save_json(combined_path, combined)
        log(f"[{name}] done in {metrics['seconds']:.1f} s -> {out / (name + '.png')}")
    save_json(combined_path, combined)
    return combined
