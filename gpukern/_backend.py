"""The array backend, chosen once at import.

``GPUKERN_BACKEND=numpy|cupy`` forces a backend; without it gpukern uses CuPy when a
CUDA device is usable and NumPy otherwise. Everything above this module is written
once against :data:`BACKEND` (its array module ``xp`` and special functions), never
with ``if gpu:`` branches.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

_CHOICES = ("numpy", "cupy")


class BackendUnavailableError(ImportError):
    """Raised at import when ``GPUKERN_BACKEND=cupy`` is forced but cannot run."""


@dataclass(frozen=True)
class Backend:
    """An array backend: the array module, its special functions, host transfer."""

    name: str
    xp: ModuleType
    special: ModuleType

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        """Move ``a`` to the backend's device (a copy only where needed)."""
        return self.xp.asarray(a, dtype=dtype)

    def ignore_fp_errors(self) -> contextlib.AbstractContextManager:
        """A block in which division by zero, invalid and overflow stay silent (inf/NaN
        results are intended there). CuPy never warns on them and has no errstate."""
        if self.name == "numpy":
            return np.errstate(divide="ignore", invalid="ignore", over="ignore")
        return contextlib.nullcontext()

    def to_host(self, a: Any) -> np.ndarray:
        """Return ``a`` as a NumPy array on the host."""
        if self.name == "cupy":
            return self.xp.asnumpy(a)
        return np.asarray(a)

    def available_bytes(self) -> int:
        """Memory free for new arrays on the backend's device, in bytes."""
        if self.name == "cupy":  # the device's free memory and what CuPy's pool holds unused
            free, _total = self.xp.cuda.runtime.memGetInfo()
            return int(free) + int(self.xp.get_default_memory_pool().free_bytes())
        return host_available_bytes()


def host_available_bytes() -> int:
    """Host memory available to a new allocation (``MemAvailable``; total RAM as fallback)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def _numpy_backend() -> Backend:
    import scipy.special

    return Backend("numpy", np, scipy.special)


def _cupy_backend() -> Backend:
    """Return the CuPy backend, or raise ``BackendUnavailableError`` saying why not."""
    try:
        import cupy
        import cupyx.scipy.special
    except Exception as exc:  # ImportError, or a broken CUDA install raising at import
        raise BackendUnavailableError(
            f"GPUKERN_BACKEND=cupy, but CuPy cannot be imported: {exc}"
        ) from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
        if count < 1:
            raise RuntimeError("no CUDA device found")
        cupy.zeros(1).sum().item()  # a real allocation and kernel launch
    except Exception as exc:
        raise BackendUnavailableError(
            f"GPUKERN_BACKEND=cupy, but no CUDA device is usable: {exc}"
        ) from exc
    return Backend("cupy", cupy, cupyx.scipy.special)


def choose_backend(requested: str | None) -> Backend:
    """Pick the backend: ``requested`` if given (``numpy``/``cupy``), else automatic."""
    if requested:
        name = requested.strip().lower()
        if name not in _CHOICES:
            raise ValueError(
                f"GPUKERN_BACKEND={requested!r} is not one of {', '.join(_CHOICES)}"
            )
        return _cupy_backend() if name == "cupy" else _numpy_backend()
    try:
        return _cupy_backend()
    except BackendUnavailableError:
        return _numpy_backend()


BACKEND: Backend = choose_backend(os.environ.get("GPUKERN_BACKEND"))


def to_host(a: Any) -> np.ndarray:
    """``a`` (an array of the backend, or anything array-like) as a NumPy array."""
    return BACKEND.to_host(a)


def backend() -> str:
    """Name of the backend chosen at import: ``"numpy"`` or ``"cupy"``."""
    return BACKEND.name
