"""Checkpoints of SGL runs: the run's fingerprint, and a store that writes and reads
its state atomically (``.npz`` with a JSON ``meta`` entry; see gpukern._io.atomic_write).

A checkpoint holds the step reached, the parameters at that step and what was recorded
so far; it is accepted only by a run with the same fingerprint, a hash of everything that
determines the results (network, initial parameters, data, lr, derivative, schedules).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._backend import BACKEND
from ._io import atomic_write
from .finite import Params

FORMAT = "gpukern-sgl-checkpoint-2"


PROBE = np.concatenate([np.linspace(-8.0, 8.0, 257), [-1e-3, 1e-3, 0.5e-6, -2.5, 3.25]])
"""Where a custom function's values are taken for its fingerprint (the run's identity)."""


def describe_function(fn: Any) -> list:
    """A function by value: a built-in one's kind and exact parameters (hex floats); a
    custom one's name and a hash of its values on :data:`PROBE` (so that the same code
    resumes and a different function is refused, whatever object holds it)."""
    if fn is None:
        return [None]
    desc = fn.descriptor()
    if desc is not None:
        return [type(fn).__name__, *(float(v).hex() for v in desc)]
    values = np.asarray(BACKEND.to_host(fn(BACKEND.asarray(PROBE))), dtype=np.float64)
    return [type(fn).__name__, fn.name, str(values.shape),
            hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest()]


def describe_net(net: Any) -> list:
    """The network's identity for a fingerprint: exact stds, depth and its functions."""
    act = net.activation
    return [net.depth, float(net.weight_std).hex(), float(net.bias_std).hex(),
            net.parameterization,
            describe_function(act.function), describe_function(act.derivative),
            describe_function(net.surrogate),
            describe_function(None if net.surrogate is None else net.side("right", "surrogate"))]


def fingerprint(net: Any, params: Params, x: Any, y: Any, lr: float, derivative: str,
                record: list[int], kernel_steps: list[int], kernel_sides: tuple,
                x_eval: Any) -> str:
    """A hash of everything that determines the run's results, built from values: the
    network (:func:`describe_net`), the initial parameters, data, lr (exact), derivative
    and schedules."""
    h = hashlib.sha256()
    h.update(json.dumps([describe_net(net), float(lr).hex(), derivative, list(record),
                         list(kernel_steps), list(kernel_sides)]).encode())
    hash_arrays(h, (*params.weights, *params.biases, x, y, x_eval))
    return h.hexdigest()


def hash_arrays(h: Any, arrays: Any) -> None:
    """Feed arrays (host or device) into the hash ``h``: shape, dtype and bytes of each."""
    for a in arrays:
        arr = np.ascontiguousarray(BACKEND.to_host(a))
        h.update(str(arr.shape).encode() + str(arr.dtype).encode())
        h.update(arr.tobytes())


@dataclass
class State:
    """A run's state: the step reached, the parameters there, and the records so far
    (``rows``: (step, loss (E,), outputs (E, N_eval)); ``kernels``: {step: (E, N, N)})."""

    step: int
    params: Params
    rows: list
    kernels: dict


@dataclass(frozen=True)
class CheckpointStore:
    """The checkpoint file ``path`` of the run with ``fingerprint``."""

    path: Path
    fingerprint: str

    def save(self, state: State) -> None:
        """Write the state atomically."""
        params = state.params
        arrays = {f"w{i}": BACKEND.to_host(w) for i, w in enumerate(params.weights)}
        arrays |= {f"b{i}": BACKEND.to_host(b) for i, b in enumerate(params.biases)}
        rows = list(state.rows)
        arrays["rec_steps"] = np.asarray([r[0] for r in rows], dtype=np.int64)
        arrays["rec_loss"] = np.asarray([r[1] for r in rows])
        arrays["rec_outputs"] = np.asarray([r[2] for r in rows])
        for s, k in dict(state.kernels).items():
            arrays[f"kernel_{s}"] = k
        meta = {"format": FORMAT, "fingerprint": self.fingerprint, "step": state.step,
                "n_layers": len(params.weights)}
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        atomic_write(self.path, lambda fh: np.savez(fh, **arrays))

    def load(self) -> State:
        """The saved state; ValueError if unreadable or of another run."""
        path = self.path
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(data["meta"].tobytes().decode())
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"checkpoint {path} is not readable: {exc}") from exc
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else None
            raise ValueError(f"checkpoint {path} is not readable: not a {FORMAT} file (found "
                             f"{found!r}); delete it or pass another checkpoint path")
        if meta["fingerprint"] != self.fingerprint:
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
        return State(int(meta["step"]), params, rows, kernels)
