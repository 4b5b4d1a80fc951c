"""Argument checks: each error names the argument, the value received and what was expected."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from ._backend import BACKEND


class InsufficientMemoryError(MemoryError, ValueError):
    """A requested result would not fit in the memory available to the backend."""


def real(name: str, value: Any) -> float:
    """``value`` as a Python float; TypeError unless it is a real number, ValueError if NaN."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{name} must be a number, got nan")
    return value


def positive(name: str, value: Any, allow_inf: bool = False) -> float:
    """A real number > 0 (finite unless ``allow_inf``)."""
    v = real(name, value)
    if not v > 0 or (math.isinf(v) and not allow_inf):
        bound = "> 0" if allow_inf else "> 0 and finite"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return v


def squarable(name: str, value: float) -> float:
    """``value`` whose square and inverse square are finite, nonzero floats (the kernels
    use value^2 and 1/value^2): |value| within about 1e-154 .. 1e154."""
    sq = value * value
    if value != 0 and not (math.isfinite(sq) and sq > 0 and math.isfinite(1.0 / sq)):
        raise ValueError(f"{name} = {value!r} is out of range: its square must be a finite, "
                         "nonzero float (|value| within about 1e-154 .. 1e154)")
    return value


def vectorised(name: str, fn: Any) -> Any:
    """A user function of backend arrays: callable, giving finite values of the input's
    shape on a probe array (checked once, where it is given, not deep in a kernel)."""
    if not callable(fn):
        raise TypeError(f"{name} must be callable, got {fn!r}")
    probe = BACKEND.xp.linspace(-3.0, 3.0, 13)
    try:
        with BACKEND.ignore_fp_errors():  # a NaN or inf is reported below, by name
            out = BACKEND.xp.asarray(fn(probe))
    except Exception as exc:
        raise ValueError(f"{name} must take an array of the backend and return one of the "
                         f"same shape; on a probe array it raised {exc!r}") from exc
    if tuple(out.shape) != tuple(probe.shape):
        raise ValueError(f"{name} must return an array of the input's shape: for an input of "
                         f"shape {tuple(probe.shape)} it returned shape {tuple(out.shape)}")
    if not bool(BACKEND.xp.isfinite(out).all()):
        raise ValueError(f"{name} returned NaN or inf on the probe points -3 .. 3")
    return fn


def nonnegative(name: str, value: Any) -> float:
    """A finite real number >= 0."""
    v = real(name, value)
    if not (v >= 0 and math.isfinite(v)):
        raise ValueError(f"{name} must be >= 0 and finite, got {value!r}")
    return v


def integer(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    """An int >= minimum (and <= maximum)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return int(value)


def widths(name: str, value: Any, depth: int) -> tuple[int, ...]:
    """Hidden widths: one int >= 1 for every layer, or ``depth`` of them."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return (integer(name, value, 1),) * depth
    try:
        values = tuple(value)
    except TypeError as exc:
        raise TypeError(f"{name} must be an int or {depth} ints (one per hidden layer), "
                        f"got {value!r}") from exc
    if len(values) != depth:
        raise ValueError(f"{name} must be an int or {depth} ints (one per hidden layer), "
                         f"got {len(values)}")
    return tuple(integer(name, w, 1) for w in values)


def choice(name: str, value: Any, options: tuple[str, ...]) -> str:
    """One of ``options`` (strings)."""
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}")
    return value


def float_dtype(name: str, value: Any) -> np.dtype:
    """float32 or float64."""
    try:
        dt = np.dtype(value)
    except TypeError as exc:
        raise TypeError(f"{name} must be float32 or float64, got {value!r}") from exc
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"{name} must be float32 or float64, got {dt}")
    return dt


def same_points(a: Any, b: Any) -> bool:
    """True when ``b`` holds exactly ``a``'s points (the same array, or equal shape and
    values: O(N n0), against the O(N^2) kernel): K(a, b) is then the symmetric K(a)."""
    return b is a or (a.shape == b.shape and bool(BACKEND.xp.array_equal(a, b)))


def inputs(name: str, x: Any, n_features: int | None = None) -> Any:
    """``x`` as a (N, n0) float64 array on the backend: 2-D, non-empty, finite.

    The caller's array is never modified (a float64 copy is made where needed).
    """
    if x is None:
        raise TypeError(f"{name} must be an array of shape (N, n_features), got None")
    try:
        arr = backend_array(x)
    except Exception as exc:
        raise TypeError(f"{name} must be an array of shape (N, n_features): {exc}") from exc
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D of shape (N, n_features), got shape {tuple(arr.shape)}"
        )
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{name} must have at least one row and one column, got {tuple(arr.shape)}")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(
            f"{name} has {arr.shape[1]} features but {n_features} were expected "
            f"(the other input's n_features)"
        )
    arr = arr.astype(BACKEND.xp.float64, copy=False)
    bad = ~BACKEND.xp.isfinite(arr)
    if bool(bad.any()):
        row = int(BACKEND.xp.nonzero(bad.any(axis=1))[0][0])
        raise ValueError(f"{name} contains NaN or inf (first in row {row})")
    return arr


def backend_array(x: Any) -> Any:
    """``x`` as an array of the backend: a tensor of another library (PyTorch, JAX, ...)
    through DLPack without a copy where the devices agree, anything else by asarray."""
    xp = BACKEND.xp
    if hasattr(x, "__dlpack__") and not isinstance(x, np.ndarray | xp.ndarray):
        if callable(getattr(x, "detach", None)):  # a torch tensor that requires grad
            x = x.detach()
        try:
            return xp.from_dlpack(x)
        except (TypeError, ValueError, RuntimeError, BufferError):
            pass  # e.g. another device than the backend's: copied below
        if callable(getattr(x, "cpu", None)):
            x = x.cpu()
    return xp.asarray(x)


def targets(name: str, y: Any, n: int, n_out: int | None = None) -> Any:
    """``y`` as float64 on the backend: (n,) for one output ((n, 1) accepted), (n, C) for
    C > 1; ``n_out`` (the networks' outputs), when given, must match."""
    arr = backend_array(y)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim not in (1, 2) or arr.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) or ({n}, C) (targets per input), "
                         f"got {tuple(arr.shape)}")
    c = 1 if arr.ndim == 1 else int(arr.shape[1])
    if n_out is not None and c != n_out:
        want = f"({n},)" if n_out == 1 else f"({n}, {n_out})"
        raise ValueError(f"{name} has shape {tuple(arr.shape)} but the networks have "
                         f"{n_out} output(s): expected {want}")
    if not bool(BACKEND.xp.isfinite(arr).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return arr.astype(BACKEND.xp.float64, copy=False)


def fits_in_memory(what: str, need_bytes: int) -> None:
    """Raise InsufficientMemoryError if ``need_bytes`` exceeds what the backend has free."""
    have = BACKEND.available_bytes()
    if need_bytes > have:
        raise InsufficientMemoryError(
            f"{what} needs about {need_bytes / 2**30:.2f} GiB, but only "
            f"{have / 2**30:.2f} GiB is available on the {BACKEND.name} backend; "
            "use fewer points, float32, or compute blocks of x1 / x2 separately"
        )
