"""Surrogate gradient learning (SGL) of network ensembles, with checkpoints.

Full-batch gradient descent on L = 1/2 sum_n (f(x_n) - y_n)^2 (a plain sum: no division
by the number of targets), for all E networks at once:

    theta <- theta - lr * J~(X)^T (f(X) - Y)

forward with the activation sigma, backward with ``derivative`` ("surrogate": sigma~,
SGL; "true": sigma', plain gradient descent). The update is fused into the backward
pass: the deltas are started at the residual r = f - Y instead of 1, so
dL/dW_l = delta^r_l^T (sw/sqrt(n_{l-1}) z_{l-1}) and dL/db_l = sb sum_n delta^r_l, and
no per-network, per-example gradient is ever formed. Step k of the trainer is the
linearized prediction after k steps of size lr (``gk.predict(..., steps=k)``).

Training is deterministic given the initial parameters, so a run resumed from a
checkpoint is bit-identical to an uninterrupted one. Ctrl-C is deferred to the end of
the current step, which is then checkpointed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import _checks
from ._backend import BACKEND
from ._io import atomic_write
from ._threads import parallel_map, single_threaded_blas
from .finite import Params, empirical_kernel, forward
from .kernels import ops

Array = Any

_FORMAT = "gpukern-sgl-checkpoint-1"


@dataclass
class TrainResult:
    """What a run returns (all arrays on the host).

    ``steps`` (R,): the recorded steps; ``loss`` (R, E): L = 1/2 sum (f - y)^2 per
    network at each; ``outputs`` (R, E, N_eval): f on ``x_eval`` at each;
    ``kernels``: {step: (E, N, N) empirical kernel on the training inputs};
    ``params``: the final parameters (on the backend).
    """

    params: Params
    steps: np.ndarray
    loss: np.ndarray
    outputs: np.ndarray
    kernels: dict[int, np.ndarray] = field(default_factory=dict)


def _gemm_update(w: Array, z: Array, delta: Array, alpha: float) -> None:
    """In place, for every network e: W_e += alpha * delta_e^T z_e (z may be shared, 2-D).

    On NumPy one BLAS GEMM per network with beta = 1 writes straight into W (W_e^T is
    Fortran-ordered, so nothing is copied): the gradient is never stored. Elsewhere a
    batched matmul and an in-place add.
    """
    if BACKEND.name == "numpy" and w.dtype in (np.float32, np.float64) and w.flags.c_contiguous:
        from scipy.linalg import blas

        gemm = blas.dgemm if w.dtype == np.float64 else blas.sgemm
        for e in range(w.shape[0]):
            ze = z if z.ndim == 2 else z[e]  # layer 1 sees the shared inputs x (N, n0)
            gemm(alpha, ze, delta[e], beta=1.0, c=w[e].T, trans_a=True, overwrite_c=True)
        return
    ops.axpy(w, delta.swapaxes(-1, -2) @ z, alpha)


def sgl_step(arch, params: Params, x: Array, y: Array, lr: float, derivative) -> Array:
    """One SGL step of every network, in place; returns the outputs f (E, N) before it.

    On NumPy each network runs its whole step (forward, fused backward and update) at
    once, so that its weights are still in cache for the backward pass and the update;
    networks are shared out to one thread per core, each with single-threaded BLAS
    (multi-threaded BLAS on GEMMs of N = 16 rows costs more than it gains). A network's
    arithmetic is the same whichever thread runs it. The compiled CPU kernels do this in
    one call (cpu_fused.sgl_step: OpenMP over networks, scipy's BLAS); without them, or
    for functions without a descriptor, a Python loop over networks does the same with
    NumPy. Elsewhere (CuPy): batched over E.
    """
    if BACKEND.name != "numpy":
        hs, zs = forward(arch, params, x)
        f = hs[-1][..., 0]
        _backward_update(arch, params, hs, zs, f - y, lr, derivative)
        return f
    from .kernels import cpu_fused

    if cpu_fused.can_step(arch.sigma, derivative, params.weights, params.biases, x, y):
        with single_threaded_blas():
            return cpu_fused.sgl_step(arch.sigma, derivative, arch.weight_std, arch.bias_std,
                                      params.weights, params.biases, x, y, lr)
    f = np.empty((params.ensemble, x.shape[0]), dtype=params.dtype)

    def one(e: int) -> None:
        p = params[e]
        hs, zs = forward(arch, p, x)
        f[e] = hs[-1][0, :, 0]
        _backward_update(arch, p, hs, zs, f[e:e + 1] - y, lr, derivative)

    _per_network(one, params.ensemble)
    return f


def outputs(arch, params: Params, x: Array) -> Array:
    """Network outputs f(x), (E, N); on NumPy network by network like ``sgl_step``."""
    if BACKEND.name != "numpy":
        return forward(arch, params, x)[0][-1][..., 0]
    f = np.empty((params.ensemble, x.shape[0]), dtype=params.dtype)

    def one(e: int) -> None:
        f[e] = forward(arch, params[e], x)[0][-1][0, :, 0]

    _per_network(one, params.ensemble)
    return f


def _per_network(fn, n: int) -> None:
    """fn(e) for e < n, shared out to one thread per core, BLAS single-threaded."""
    with single_threaded_blas():
        parallel_map(fn, range(n))


def _backward_update(arch, params: Params, hs: list[Array], zs: list[Array], resid: Array,
                     lr: float, derivative) -> None:
    """The fused backward pass and update of ``params`` in place (resid = f - y, (E, N))."""
    sw, sb = arch.weight_std, arch.bias_std
    xp = BACKEND.xp
    delta = resid[..., None]  # (E, N, 1): delta^r_{L+1}
    for l in range(arch.depth, -1, -1):
        w = params.weights[l]
        scale = sw / math.sqrt(w.shape[2])
        grad_b = sb * xp.sum(delta, axis=1)
        if l > 0:  # propagate with the old weights before they change
            nxt = ops.scaled_derivative(delta @ w, hs[l - 1], derivative, scale)
        _gemm_update(w, xp.ascontiguousarray(zs[l]), xp.ascontiguousarray(delta), -lr * scale)
        params.biases[l][...] -= lr * grad_b
        if l > 0:
            delta = nxt


class _DeferredInterrupt:
    """Within the block, Ctrl-C only sets ``requested``; the loop stops at a step boundary.

    So an in-place update is never cut in half and the checkpoint written on Ctrl-C is
    a consistent (step, params) pair. Outside the main thread it does nothing.
    """

    def __init__(self) -> None:
        self.requested = False
        self._old = None

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            import signal

            signal.signal(signal.SIGINT, self._old)


def _fingerprint(net, params: Params, x: Array, y: Array, lr: float, derivative: str,
                 record: Sequence[int], kernel_steps: Sequence[int], kernel_sides: tuple,
                 x_eval: Array) -> str:
    """A hash of everything that determines the run's results."""
    h = hashlib.sha256()
    h.update(repr(net).encode())
    h.update(json.dumps([lr, derivative, list(record), list(kernel_steps),
                         list(kernel_sides)]).encode())
    for a in (*params.weights, *params.biases, x, y, x_eval):
        arr = np.ascontiguousarray(BACKEND.to_host(a))
        h.update(str(arr.shape).encode() + str(arr.dtype).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _save(path: Path, fingerprint: str, step: int, params: Params, rec: dict) -> None:
    """Write the state atomically (see gpukern._io.atomic_write)."""
    arrays = {f"w{i}": BACKEND.to_host(w) for i, w in enumerate(params.weights)}
    arrays |= {f"b{i}": BACKEND.to_host(b) for i, b in enumerate(params.biases)}
    rows = list(rec["rows"])
    arrays["rec_steps"] = np.asarray([r[0] for r in rows], dtype=np.int64)
    arrays["rec_loss"] = np.asarray([r[1] for r in rows])
    arrays["rec_outputs"] = np.asarray([r[2] for r in rows])
    for s, k in dict(rec["kernels"]).items():
        arrays[f"kernel_{s}"] = k
    meta = {"format": _FORMAT, "fingerprint": fingerprint, "step": step,
            "n_layers": len(params.weights)}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    atomic_write(path, lambda fh: np.savez(fh, **arrays))


def _load(path: Path, fingerprint: str) -> tuple[int, Params, dict]:
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(data["meta"].tobytes().decode())
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise ValueError(f"checkpoint {path} is not readable: {exc}") from exc
    if meta.get("format") != _FORMAT:
        raise ValueError(f"checkpoint {path} is not readable: not a gpukern SGL checkpoint")
    if meta["fingerprint"] != fingerprint:
        raise ValueError(
            f"checkpoint {path} belongs to another run (different network, initial "
            "parameters, data, lr, derivative, steps or record schedule); delete it or "
            "pass another checkpoint path")
    n = meta["n_layers"]
    params = Params(tuple(BACKEND.asarray(arrays[f"w{i}"]) for i in range(n)),
                    tuple(BACKEND.asarray(arrays[f"b{i}"]) for i in range(n)))
    rows = [(int(s), loss, out) for s, loss, out in
            zip(arrays["rec_steps"], arrays["rec_loss"], arrays["rec_outputs"])]
    kernels = {int(k[7:]): v for k, v in arrays.items() if k.startswith("kernel_")}
    return int(meta["step"]), params, {"rows": rows, "kernels": kernels}


def _steps_arg(name: str, values: Iterable[int] | None, steps: int) -> list[int]:
    if values is None:
        return []
    out = sorted({_checks.integer(name, int(v) if isinstance(v, np.integer) else v, 0)
                  for v in values})
    if out and out[-1] > steps:
        raise ValueError(f"{name} has step {out[-1]} > steps = {steps}")
    return out


def train(
    net,
    params: Params,
    x: Array,
    y: Array,
    *,
    lr: float,
    steps: int,
    derivative: str = "surrogate",
    record_every: int | None = None,
    record_steps: Iterable[int] | None = None,
    x_eval: Array | None = None,
    kernel_steps: Iterable[int] | None = None,
    kernel_sides: tuple[str, str] = ("true", "surrogate"),
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    progress: bool = False,
) -> TrainResult:
    """Train every network of ``params`` by full-batch SGL for ``steps`` steps.

    x (N, n_in), y (N,) targets. Records loss and outputs on ``x_eval`` (default x) at
    step 0, every ``record_every`` steps, at ``record_steps`` and at the last step;
    empirical kernels J_left(X) J_right(X)^T (``kernel_sides``) at ``kernel_steps``.
    With ``checkpoint``, the state is written atomically every ``checkpoint_every``
    steps, at the end and on Ctrl-C; calling again with the same arguments resumes
    (bit-identical to an uninterrupted run); a checkpoint of another run is refused.
    ``progress=True`` shows a tqdm bar with the mean loss (needs tqdm).
    """
    d = net._side("derivative", derivative)
    params, xa = net._params_and_x(params, x)
    ya = _checks.targets("y", y, xa.shape[0]).astype(params.dtype, copy=False)
    xe = xa if x_eval is None else net._params_and_x(params, x_eval, "x_eval")[1]
    lr = _checks.positive("lr", lr)
    steps = _checks.integer("steps", steps, 0)
    every = None if record_every is None else _checks.integer("record_every", record_every, 1)
    ck_every = _checks.integer("checkpoint_every", checkpoint_every, 1)
    record = set(_steps_arg("record_steps", record_steps, steps)) | {0, steps}
    if every:
        record |= set(range(0, steps + 1, every))
    kernel_set = set(_steps_arg("kernel_steps", kernel_steps, steps))
    ksteps = sorted(kernel_set)
    left, right = (net._side("left", kernel_sides[0]), net._side("right", kernel_sides[1]))

    path = None if checkpoint is None else Path(checkpoint)
    fp = (_fingerprint(net, params, xa, ya, lr, derivative, sorted(record), ksteps,
                       tuple(kernel_sides), xe)
          if path else "")
    step, params = 0, _copy(params)  # trained in place: the caller's arrays stay intact
    rec: dict = {"rows": [], "kernels": {}}  # rows: (step, loss, outputs)
    if path is not None and path.exists():
        step, params, rec = _load(path, fp)
        if step > steps:
            raise ValueError(f"checkpoint {path} is at step {step} > steps = {steps}")
    bar = _progress(progress, steps, step)
    try:
        with _DeferredInterrupt() as interrupt:
            while True:
                done = {r[0] for r in rec["rows"]}
                want = step in record and step not in done
                if step in kernel_set and step not in rec["kernels"]:
                    rec["kernels"][step] = BACKEND.to_host(
                        empirical_kernel(net._arch, params, xa, None, left, right))
                out_eval = (outputs(net._arch, params, xe)
                            if want and x_eval is not None else None)
                if step == steps:
                    f = outputs(net._arch, params, xa)
                elif interrupt.requested:
                    raise KeyboardInterrupt
                else:  # outputs before the update, and the update
                    f = sgl_step(net._arch, params, xa, ya, lr, d)
                if want:
                    resid = f - ya
                    loss = BACKEND.to_host(0.5 * BACKEND.xp.sum(resid * resid, axis=1))
                    rec["rows"].append((step, loss, BACKEND.to_host(f if out_eval is None
                                                                    else out_eval)))
                    if bar is not None:
                        bar.set_postfix(loss=float(np.mean(loss)))
                if step == steps:
                    break
                step += 1
                if bar is not None:
                    bar.update(1)
                if path is not None and step % ck_every == 0 and step != steps:
                    _save(path, fp, step, params, rec)
    except KeyboardInterrupt:
        if path is not None:
            _save(path, fp, step, params, rec)
        raise
    finally:
        if bar is not None:
            bar.close()
    if path is not None:
        _save(path, fp, step, params, rec)
    rows = sorted(rec["rows"], key=lambda r: r[0])
    return TrainResult(params, np.asarray([r[0] for r in rows], dtype=np.int64),
                       np.asarray([r[1] for r in rows]), np.asarray([r[2] for r in rows]),
                       dict(sorted(rec["kernels"].items())))


def _copy(params: Params) -> Params:
    xp = BACKEND.xp
    return Params(tuple(xp.array(w, order="C") for w in params.weights),
                  tuple(xp.array(b, order="C") for b in params.biases))


def _progress(enabled: bool, total: int, start: int):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError as exc:
        raise ImportError("progress=True needs tqdm: pip install 'gpukern[progress]'") from exc
    return tqdm(total=total, initial=start, desc="SGL", unit="step")
