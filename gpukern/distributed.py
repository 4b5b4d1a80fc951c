"""Beyond one machine: kernel matrices as Dask arrays of tiles, and resumable sweeps.

Needs the ``distributed`` extra (``pip install "gpukern[distributed]"``).

* :func:`kernel_array` builds a ``dask.array`` whose blocks are computed by the same
  per-tile code as ``net.kernels`` (:func:`gpukern.planner.compute_tile`). The plan and
  the prepared inputs (per-layer diagonals q_l(i), identical-row ids) are made once (one
  graph key, shipped once to each worker that needs it); an entry (i, j)
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

from . import _checks, planner
from ._backend import BACKEND
from ._io import atomic_write
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


def _block(request: planner.Plan, inputs: planner.Inputs, r0: int, r1: int, c0: int,
           c1: int):
    """One block, on a worker: the local per-tile code, returning a host array. The
    executor is picked here, for the worker's backend."""
    request = planner.plan(request.arch, list(request.pairs), request.want_nngp)
    sig, ks = planner.compute_tile(request, inputs, slice(r0, r1), slice(c0, c1))
    return BACKEND.to_host(sig if request.want_nngp else ks[0])


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
    a = _checks.inputs("x1", x1)
    b = None if x2 is None else _checks.inputs("x2", x2, n_features=a.shape[1])
    if b is not None and _checks.same_points(a, b):
        b = None  # K(x, x) is K(x): the symmetric (mirrored) tiles
    pairs = [] if which == "nngp" else [net.pair(*KERNEL_SIDES[which])]
    request = planner.plan(net.arch, pairs, want_nngp=which == "nngp")
    inputs = planner.prepare(net.arch, a, b).on_host()
    mirror = request.mirrored(inputs)
    # computed once; one graph key, shipped once to every worker that needs it
    inputs_f = dask.delayed(inputs, pure=True, traverse=False)
    task = dask.delayed(_block, pure=True)
    n1, n2 = inputs.shape
    rows = []
    for r0 in range(0, n1, r):
        r1 = min(r0 + r, n1)
        row = []
        for c0 in range(0, n2, c):
            c1 = min(c0 + c, n2)
            blk = task(request, inputs_f, r0, r1, c0, c1)
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
