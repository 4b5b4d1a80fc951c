"""Surrogate gradient learning (SGL) of network ensembles, with checkpoints.

Full-batch gradient descent on L = 1/2 sum_n (f(x_n) - y_n)^2 (a plain sum: no division
by the number of targets), for all E networks at once:

    theta <- theta - lr * J~(X)^T (f(X) - Y)

forward with the activation sigma, backward with ``derivative`` ("surrogate": sigma~,
SGL; "true": sigma', plain gradient descent). The update is fused into the backward
pass: the deltas are started at the residual r = f - Y instead of 1, so
dL/dW_l = delta^r_l^T (a_l z_{l-1}) and dL/db_l = b_s sum_n delta^r_l (the layer scales of
the parameterization, :mod:`gpukern.finite`), and
no per-network, per-example gradient is ever formed. Step k of the trainer is the
linearized prediction after k steps of size lr (``gk.predict(..., steps=k)``).

Training is deterministic given the initial parameters, so a run resumed from a
checkpoint is bit-identical to an uninterrupted one. Ctrl-C is deferred to the end of
the current step, which is then checkpointed.
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import _checks
from ._backend import BACKEND
from ._io import check_writable
from ._threads import parallel_map, single_threaded_blas
from .architecture import Architecture
from .checkpoints import CheckpointStore, State, fingerprint
from .finite import Params, empirical_kernel, forward, output_axis
from .functions import ScalarFunction
from .kernels import ops

Array = Any


@dataclass
class TrainResult:
    """What a run returns (all arrays on the host).

    ``steps`` (R,): the recorded steps; ``loss`` (R, E): L = 1/2 sum (f - y)^2 per
    network at each (summed over points and outputs); ``outputs`` (R, E, N_eval), or
    (R, E, N_eval, C) for C > 1 outputs: f on ``x_eval`` at each;
    ``kernels``: {step: (E, N, N) empirical kernel on the training inputs (of output 0
    for C > 1: ``net.empirical_kernel(res.params, x, blocks=True)`` gives all)};
    ``params``: the final parameters (on the backend).
    """

    params: Params
    steps: np.ndarray
    loss: np.ndarray
    outputs: np.ndarray
    kernels: dict[int, np.ndarray] = field(default_factory=dict)


def sgl_step(arch: Architecture, params: Params, x: Array, y: Array, lr: float,
             derivative: ScalarFunction) -> Array:
    """One SGL step of every network, in place; returns the outputs f before it ((E, N),
    or (E, N, C) for C outputs; y of the same trailing shape).

    On NumPy each network runs its whole step (forward, fused backward and update) at
    once, so that its weights are still in cache for the backward pass and the update;
    networks are shared out to one thread per core, each with single-threaded BLAS
    (multi-threaded BLAS on GEMMs of N = 16 rows costs more than it gains). A network's
    arithmetic is the same whichever thread runs it. The compiled CPU kernels do this in
    one call (cpu_fused.sgl_step: OpenMP over networks, scipy's BLAS); without them, or
    for functions without a descriptor, a Python loop over networks does the same with
    NumPy. Elsewhere (CuPy): batched over E.
    """
    if not ops.on_host():
        hs, zs = forward(arch, params, x)
        f = output_axis(hs[-1])
        _backward_update(arch, params, hs, zs, f - y, lr, derivative)
        return f
    f = ops.compiled_sgl_step(arch, params, x, y, lr, derivative)
    if f is not None:
        return f
    f = np.empty((params.ensemble,) + tuple(y.shape), dtype=params.dtype)

    def one(e: int) -> None:
        p = params[e]
        hs, zs = forward(arch, p, x)
        f[e] = output_axis(hs[-1])[0]
        _backward_update(arch, p, hs, zs, f[e:e + 1] - y, lr, derivative)

    _per_network(one, params.ensemble)
    return f


def outputs(arch: Architecture, params: Params, x: Array) -> Array:
    """Network outputs f(x), (E, N) or (E, N, C); on NumPy network by network like
    ``sgl_step``."""
    if not ops.on_host():
        return output_axis(forward(arch, params, x)[0][-1])
    extra = () if params.n_out == 1 else (params.n_out,)
    f = np.empty((params.ensemble, x.shape[0]) + extra, dtype=params.dtype)

    def one(e: int) -> None:
        f[e] = output_axis(forward(arch, params[e], x)[0][-1])[0]

    _per_network(one, params.ensemble)
    return f


def _per_network(fn, n: int) -> None:
    """fn(e) for e < n, shared out to one thread per core, BLAS single-threaded."""
    with single_threaded_blas():
        parallel_map(fn, range(n))


def _backward_update(arch: Architecture, params: Params, hs: list[Array], zs: list[Array],
                     resid: Array, lr: float, derivative: ScalarFunction) -> None:
    """The fused backward pass and update of ``params`` in place (resid = f - y, (E, N)
    or (E, N, C))."""
    xp = BACKEND.xp
    delta = resid[..., None] if resid.ndim == 2 else resid  # (E, N, C): delta^r_{L+1}
    for l in range(arch.depth, -1, -1):
        w = params.weights[l]
        scale = arch.weight_scale(w.shape[2])
        grad_b = arch.bias_scale * xp.sum(delta, axis=1)
        if l > 0:  # propagate with the old weights before they change
            nxt = ops.scaled_derivative(delta @ w, hs[l - 1], derivative, scale)
        ops.gemm_update(w, xp.ascontiguousarray(zs[l]), xp.ascontiguousarray(delta), -lr * scale)
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


def _steps_arg(name: str, values: Iterable[int] | None, steps: int) -> list[int]:
    if values is None:
        return []
    out = sorted({_checks.integer(name, int(v) if isinstance(v, np.integer) else v, 0)
                  for v in values})
    if out and out[-1] > steps:
        raise ValueError(f"{name} has step {out[-1]} > steps = {steps}")
    return out


@dataclass(frozen=True)
class _Run:
    """The validated arguments of one run."""

    params: Params
    x: Array
    y: Array
    x_eval: Array | None  # None: outputs are recorded on x
    lr: float
    steps: int
    derivative: ScalarFunction
    record: frozenset[int]
    kernel_steps: frozenset[int]
    kernel_sides: tuple[ScalarFunction, ScalarFunction]
    checkpoint_every: int
    on_divergence: str


def _run_arguments(net, params, x, y, lr, steps, derivative, record_every, record_steps,
                   x_eval, kernel_steps, kernel_sides, checkpoint_every, on_divergence) -> _Run:
    d = net.side("derivative", derivative)
    params, xa = net.validate(params, x)
    ya = _checks.targets("y", y, xa.shape[0], params.n_out).astype(params.dtype, copy=False)
    xe = None if x_eval is None else net.validate(params, x_eval, "x_eval")[1]
    lr = _checks.positive("lr", lr)
    steps = _checks.integer("steps", steps, 0)
    every = None if record_every is None else _checks.integer("record_every", record_every, 1)
    ck_every = _checks.integer("checkpoint_every", checkpoint_every, 1)
    record = set(_steps_arg("record_steps", record_steps, steps)) | {0, steps}
    if every:
        record |= set(range(0, steps + 1, every))
    if not (isinstance(kernel_sides, tuple | list) and len(kernel_sides) == 2):
        raise ValueError(f"kernel_sides must be a pair (left, right) of 'true'/'surrogate', "
                         f"got {kernel_sides!r}")
    sides = (net.side("left", kernel_sides[0]), net.side("right", kernel_sides[1]))
    _checks.choice("on_divergence", on_divergence, ("raise", "continue"))
    return _Run(params, xa, ya, xe, lr, steps, d, frozenset(record),
                frozenset(_steps_arg("kernel_steps", kernel_steps, steps)), sides, ck_every,
                on_divergence)


class DivergenceError(ValueError):
    """SGL diverged: a network's loss became non-finite or exploded."""


DIVERGENCE_FACTOR = 1e8
"""Loss beyond this multiple of max(the loss at the first step, 1/2 sum y^2) is divergence."""


def _losses(run: _Run, f: Array) -> np.ndarray:
    """1/2 sum (f - y)^2 per network (over points and outputs), (E,) on the host."""
    resid = f - run.y
    return BACKEND.to_host(0.5 * BACKEND.xp.sum(resid * resid, axis=tuple(range(1, resid.ndim))))


def _record(state: State, step: int, loss: np.ndarray, f: Array, f_eval: Array | None,
            bar) -> None:
    """Record loss and outputs of ``step`` (f on x, f_eval on x_eval, both taken before
    the step's update)."""
    state.rows.append((step, loss, BACKEND.to_host(f if f_eval is None else f_eval)))
    bar.set_postfix(loss=float(np.mean(loss)))


def _raise_if_diverged(run: _Run, loss: np.ndarray, limit: float, step: int) -> None:
    bad = ~np.isfinite(loss) | (loss > limit)
    if bad.any():
        e = int(np.flatnonzero(bad)[0])
        raise DivergenceError(
            f"SGL diverged at step {step} with lr = {run.lr:g}: network {e} has loss {loss[e]:.3g} "
            f"(non-finite, or above {DIVERGENCE_FACTOR:g} x the loss at the start); use a "
            "smaller lr (gk.predict warns when lr is too large for the kernel), or "
            "on_divergence='continue'. A checkpoint keeps the last state saved before it.")


def _loop(arch: Architecture, run: _Run, state: State, store: CheckpointStore | None,
          bar) -> None:
    """Steps from state.step to run.steps, in place; Ctrl-C stops at a step boundary
    (checkpointed, re-raised)."""
    limit = None
    try:
        with _DeferredInterrupt() as interrupt:
            while True:
                step, params = state.step, state.params
                if step in run.kernel_steps and step not in state.kernels:
                    state.kernels[step] = BACKEND.to_host(
                        empirical_kernel(arch, params, run.x, None, *run.kernel_sides))
                want = step in run.record and step not in {r[0] for r in state.rows}
                f_eval = (outputs(arch, params, run.x_eval)
                          if want and run.x_eval is not None else None)
                if step == run.steps:
                    f = outputs(arch, params, run.x)
                elif interrupt.requested:
                    raise KeyboardInterrupt
                else:  # outputs before the update, and the update
                    f = sgl_step(arch, params, run.x, run.y, run.lr, run.derivative)
                loss = _losses(run, f) if want or run.on_divergence == "raise" else None
                if run.on_divergence == "raise":
                    if limit is None:  # from the first step of this call
                        y2 = float(BACKEND.to_host(0.5 * BACKEND.xp.sum(run.y * run.y)))
                        scale = max(float(np.nanmax(np.where(np.isfinite(loss), loss, 0.0))), y2)
                        limit = DIVERGENCE_FACTOR * max(scale, np.finfo(float).tiny)
                    _raise_if_diverged(run, loss, limit, step)
                if want:
                    _record(state, step, loss, f, f_eval, bar)
                if step == run.steps:
                    return
                state.step += 1
                bar.update(1)
                if (store is not None and state.step % run.checkpoint_every == 0
                        and state.step != run.steps):
                    store.save(state)
    except KeyboardInterrupt:
        if store is not None:
            store.save(state)
        raise


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
    on_divergence: str = "raise",
) -> TrainResult:
    """Train every network of ``params`` by full-batch SGL for ``steps`` steps.

    x (N, n_in), y (N,) targets. Records loss and outputs on ``x_eval`` (default x) at
    step 0, every ``record_every`` steps, at ``record_steps`` and at the last step;
    empirical kernels J_left(X) J_right(X)^T (``kernel_sides``) at ``kernel_steps``.
    With ``checkpoint``, the state is written atomically every ``checkpoint_every``
    steps, at the end and on Ctrl-C; calling again with the same arguments resumes
    (bit-identical to an uninterrupted run); a checkpoint of another run is refused.
    ``progress=True`` shows a tqdm bar with the mean loss (needs tqdm).
    ``on_divergence="raise"`` (default) stops with a :class:`DivergenceError` naming the
    step and lr once a network's loss is non-finite or exceeds 1e8 x the larger of its
    loss at the first step and 1/2 sum y^2 (the parameters are then not checkpointed);
    ``"continue"`` trains on regardless.
    """
    run = _run_arguments(net, params, x, y, lr, steps, derivative, record_every, record_steps,
                         x_eval, kernel_steps, kernel_sides, checkpoint_every, on_divergence)
    store = None
    if checkpoint is not None:
        xe = run.x if run.x_eval is None else run.x_eval
        store = CheckpointStore(_checkpoint_path(checkpoint), fingerprint(
            net, run.params, run.x, run.y, run.lr, derivative, sorted(run.record),
            sorted(run.kernel_steps), tuple(kernel_sides), xe))
    state = State(0, _copy(run.params), [], {})  # trained in place: the caller's stay intact
    if store is not None and store.path.exists():
        state = store.load()
        if state.step > run.steps:
            raise ValueError(f"checkpoint {store.path} is at step {state.step} > "
                             f"steps = {run.steps}")
    with _progress(progress, run.steps, state.step) as bar:
        _loop(net.arch, run, state, store, bar)
    if store is not None:
        store.save(state)
    rows = sorted(state.rows, key=lambda r: r[0])
    return TrainResult(state.params, np.asarray([r[0] for r in rows], dtype=np.int64),
                       np.asarray([r[1] for r in rows]), np.asarray([r[2] for r in rows]),
                       dict(sorted(state.kernels.items())))


def _checkpoint_path(checkpoint: str | os.PathLike) -> Path:
    """The checkpoint's path, checked before any work: a file in a folder that exists (or
    can be made) and takes new files. Temporary files that an interrupted save left beside
    it (a killed process cannot remove them) are removed."""
    path = Path(checkpoint)
    try:
        check_writable(path)
    except OSError as exc:
        raise ValueError(f"checkpoint {str(path)!r} cannot be written: {exc}") from exc
    for stale in path.parent.glob(f"{glob.escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)
    return path


def _copy(params: Params) -> Params:
    xp = BACKEND.xp
    return Params(tuple(xp.array(w, order="C") for w in params.weights),
                  tuple(xp.array(b, order="C") for b in params.biases))


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def set_postfix(self, **kwargs: Any) -> None:
        pass


@contextlib.contextmanager
def _progress(enabled: bool, total: int, start: int):
    """A tqdm bar (closed at the end), or one that shows nothing."""
    if not enabled:
        yield _NoBar()
        return
    try:
        from tqdm.auto import tqdm
    except ImportError as exc:
        raise ImportError("progress=True needs tqdm: pip install 'gpukern[progress]'") from exc
    bar = tqdm(total=total, initial=start, desc="SGL", unit="step")
    try:
        yield bar
    finally:
        bar.close()
