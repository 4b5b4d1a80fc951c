"""Beyond one machine: kernel matrices as Dask arrays of tiles, and resumable sweeps.

Needs the ``distributed`` extra (``pip install "gpukern[distributed]"``).

* :func:`kernel_array` builds a ``dask.array`` whose blocks are computed by the same
  per-tile code as ``net.kernels`` (:func:`gpukern.analytic.compute_tile`). The
  inputs, the per-layer diagonals q_l(i) and the identical-row ids are computed once
  (one graph key each, shipped once to each worker that needs them); an entry (i, j)
  gets exactly the local float64 value whatever the block shape (for symmetric kernels
  the lower triangle is the mirrored upper one, as locally). Reduce it, slice it, or
  write it tile by tile (``to_zarr``, ``to_npy_stack``) when it does not fit in memory.
* :func:`run_sweep` submits one task per configuration as futures and persists each
  result (JSON, atomically) as it arrives: a cancelled sweep or a crashed worker loses
  only the tasks in flight, and a rerun computes only what is missing.

Client: pass a ``dask.distributed.Client``; without one, the default client is used, or a
``LocalCluster`` is started (one process per core). On GPU machines use
``dask_cuda.LocalCUDACluster`` (one worker per GPU) and set ``GPUKERN_BACKEND=cupy`` in the
workers' environment: each worker then runs the CuPy backend and returns host arrays.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from . import _checks
from ._backend import BACKEND
from ._io import atomic_write
from .analytic import Pair, _row_ids, compute_tile, layer_diagonals
from .network import KERNEL_SIDES

_LOCAL: dict[str, Any] = {}


def _require_dask():
    try:
        import dask.array  # noqa: F401
        import distributed
    except ImportError as exc:  # pragma: no cover - exercised without the extra
        raise ImportError("gpukern.distributed needs dask: pip install 'gpukern[distributed]'") from exc
    return distributed


def get_client(client=None):
    """``client`` if given (must be running), else the default client, else a LocalCluster."""
    distributed = _require_dask()
    if client is not None:
        if getattr(client, "status", "running") != "running":
            raise ValueError(f"client must be a running dask.distributed.Client, got status "
                             f"{client.status!r}")
        return client
    try:
        return distributed.get_client()
    except ValueError:
        if "client" not in _LOCAL:
            _LOCAL["client"] = distributed.Client(distributed.LocalCluster(processes=True))
        return _LOCAL["client"]


def _chunks(chunks: Any) -> tuple[int, int]:
    if isinstance(chunks, int | np.integer):
        chunks = (chunks, chunks)
    try:
        rows, cols = chunks
    except (TypeError, ValueError) as exc:
        raise TypeError(f"chunks must be an int or (rows, cols), got {chunks!r}") from exc
    return _checks.integer("chunks", rows, 1), _checks.integer("chunks", cols, 1)


def _block(rec, pairs, want_nngp, x1, x2, q1, q2, ids1, ids2, r0, r1, c0, c1):
    """One block, on a worker: the local per-tile code, returning a host array."""
    host = BACKEND.to_host
    sig, ks = compute_tile(rec, pairs, BACKEND.asarray(x1[r0:r1]), BACKEND.asarray(x2[c0:c1]),
                           [BACKEND.asarray(q[r0:r1]) for q in q1],
                           [BACKEND.asarray(q[c0:c1]) for q in q2],
                           BACKEND.asarray(ids1[r0:r1]), BACKEND.asarray(ids2[c0:c1]))
    return host(sig if want_nngp else ks[0])


def kernel_array(net, x1: Any, x2: Any = None, which: str = "sgntk", chunks: Any = 2048,
                 client=None, dtype: Any = np.float64):
    """The (N1, N2) kernel ``which`` ("nngp", "ntk", "sgntk", "surrogate") as a dask array.

    Blocks of ``chunks`` rows x columns, each one task; nothing is computed until the
    array (or a reduction of it) is computed, on ``client``'s cluster.
    """
    _require_dask()
    import dask
    import dask.array as da

    _checks.choice("which", which, ("nngp",) + tuple(KERNEL_SIDES))
    dt = _checks.float_dtype("dtype", dtype)
    r, c = _chunks(chunks)
    get_client(client)  # a running client (the array computes on it as the default)
    a = BACKEND.to_host(_checks.inputs("x1", x1))
    b = None if x2 is None else BACKEND.to_host(_checks.inputs("x2", x2, n_features=a.shape[1]))
    xb = a if b is None else b
    if which == "nngp":
        pairs, want_nngp = [], True
    else:
        left, right = KERNEL_SIDES[which]
        pairs = [Pair(net._side("left", left), net._side("right", right))]
        want_nngp = False
    rec = net._rec
    n0 = a.shape[1]
    q1 = [BACKEND.to_host(q) for q in layer_diagonals(rec, BACKEND.asarray(np.sum(a * a, 1)), n0)]
    q2 = q1 if b is None else [BACKEND.to_host(q) for q in
                               layer_diagonals(rec, BACKEND.asarray(np.sum(xb * xb, 1)), n0)]
    ids1, ids2 = _row_ids(a, b)
    # computed once; one graph key each, shipped once to every worker that needs it
    x1_f, x2_f, q1_f, q2_f, i1_f, i2_f = (dask.delayed(v, pure=True, traverse=False)
                                          for v in (a, xb, q1, q2, ids1, ids2))
    mirror = b is None and (want_nngp or pairs[0].symmetric)
    task = dask.delayed(_block, pure=True)
    rows = []
    for r0 in range(0, a.shape[0], r):
        r1 = min(r0 + r, a.shape[0])
        row = []
        for c0 in range(0, xb.shape[0], c):
            c1 = min(c0 + c, xb.shape[0])
            blk = task(rec, pairs, want_nngp, x1_f, x2_f, q1_f, q2_f, i1_f, i2_f,
                       r0, r1, c0, c1)
            row.append(da.from_delayed(blk, shape=(r1 - r0, c1 - c0), dtype=np.float64))
        rows.append(row)
    out = da.block(rows)
    if mirror:
        # as locally: below the diagonal, the mirrored upper value. Blocks entirely below
        # the diagonal are never computed (triu replaces them by zeros without reading them).
        out = da.triu(out) + da.triu(out, 1).T
    return out.astype(dt) if dt != np.float64 else out


def save_npy_stack(arr, path: str | os.PathLike) -> None:
    """Write a kernel array tile by tile as a folder of .npy files (``dask.array.to_npy_stack``)."""
    import dask.array as da

    da.to_npy_stack(str(path), arr, axis=0)


# ------------------------------------------------------------------------------ sweeps
def run_sweep(fn: Callable[..., Mapping], configs: Mapping[str, Mapping[str, Any]],
              out: str | os.PathLike, client=None, retries: int = 2) -> dict[str, Any]:
    """Run ``fn(**config)`` for every named config on the cluster; persist as results arrive.

    Each result (a JSON-serialisable mapping) is written to ``out/<name>.json`` the moment
    its future completes. Names already present in ``out`` are not submitted again, so a
    rerun after a crash or a cancel computes only what is missing. A task that fails is
    retried ``retries`` times by the scheduler (also when its worker dies); a task that
    still fails is reported with its name after the others have been persisted.
    """
    distributed = _require_dask()
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {fn!r}")
    retries = _checks.integer("retries", retries, 0)
    out = Path(out)
    for name in configs:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"config names must be plain file names, got {name!r}")
    client = get_client(client)
    out.mkdir(parents=True, exist_ok=True)
    results = {name: json.loads((out / f"{name}.json").read_text())
               for name in configs if (out / f"{name}.json").exists()}
    todo = {name: cfg for name, cfg in configs.items() if name not in results}
    futures = {client.submit(fn, **dict(cfg), key=f"gpukern-sweep-{name}-{os.getpid()}",
                             retries=retries, pure=False): name for name, cfg in todo.items()}
    failed = {}
    for fut in distributed.as_completed(futures):
        name = futures[fut]
        try:
            res = fut.result()
        except Exception as exc:  # persisted results stay; report the rest together
            failed[name] = repr(exc)
            continue
        atomic_write(out / f"{name}.json",
                     lambda fh, res=res: fh.write(json.dumps(res, indent=2, sort_keys=True).encode()))
        results[name] = res
    if failed:
        raise RuntimeError(f"{len(failed)} sweep task(s) failed after {retries} retries: {failed}")
    return results


def sgl_sweep_task(depth: int, width: int, k: float, networks: int, steps: int, seed: int,
                   n_train: int = 8, n_test: int = 48) -> dict[str, float]:
    """init -> SGL -> distances to the SG-NTK GP, for sign networks on the circle task.

    A ready-made task for :func:`run_sweep` (surrogate erf(k), bias_std 0.1).
    """
    import gpukern as gk

    from .experiments.common import circle_task, learning_rate
    from .experiments.ensembles import distances

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
