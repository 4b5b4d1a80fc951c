"""A strict stand-in for CuPy on a machine without a GPU, for tests only.

Put ``tests/cupy_standin`` first on PYTHONPATH (with GPUKERN_BACKEND=cupy and
NUMBA_ENABLE_CUDASIM=1) and ``import cupy`` gets this: "device" arrays live in host
memory, but the API is what CuPy offers and no more:

* module functions and array attributes are only those of the oldest CuPy the extras
  allow (``cupy_api.json``, written from CuPy 13.6 by ``make_api.py``): no ``errstate``,
  no ``linalg.eigvals``, and so on;
* arrays refuse implicit host conversion as CuPy's do (``__array__`` raises TypeError:
  ``np.asarray(device_array)`` fails), CuPy functions and operators refuse NumPy arrays,
  NumPy functions dispatch to CuPy's where CuPy has one (NEP 18) and fail otherwise;
* ``RawModule`` builds the given source for the host (g++, the same headers, no FMA like
  ``--fmad=false``) and runs each kernel block by block, thread by thread, checking every
  argument against the kernel's parameter types (device pointers: C-contiguous arrays of
  the pointee type; values: NumPy scalars of exactly the parameter's type) — stricter
  than CuPy, which passes whatever it is given;
* ``__cuda_array_interface__`` points at the host buffer (the Numba simulator's device
  memory is host memory too).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import scipy.linalg
import scipy.special

API = json.loads((Path(__file__).resolve().parent / "cupy_api.json").read_text())
_HOST_INPUTS = {"asarray", "array", "asanyarray"}  # the functions that take host data


class ndarray:  # noqa: N801  (CuPy's name)
    """A "device" array: a NumPy array that only CuPy's API reaches."""

    __slots__ = ("_a",)

    def __init__(self, a: np.ndarray):
        self._a = a

    # --- what CuPy refuses
    def __array__(self, *args: Any, **kwargs: Any):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use "
                        "`.get()` to construct a NumPy array explicitly.")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if "out" in kwargs:
            kwargs["out"] = tuple(_device(o, "out") for o in kwargs["out"])
        return _wrap(getattr(ufunc, method)(*(_device(i, ufunc.__name__) for i in inputs),
                                            **kwargs))

    def __array_function__(self, func, types, args, kwargs):
        module = {"numpy": "cupy", "numpy.linalg": "cupy.linalg"}.get(func.__module__)
        if module is None or func.__name__ not in API[module]:
            raise TypeError(f"no implementation found for '{func.__module__}.{func.__name__}' "
                            "on cupy arrays (CuPy has none)")
        return _SUBMODULES[module].__getattr__(func.__name__)(*args, **kwargs)

    # --- indexing, conversions, attributes
    def __getitem__(self, key):
        return _wrap(self._a[_unwrap_index(key)])

    def __setitem__(self, key, value):
        self._a[_unwrap_index(key)] = value._a if isinstance(value, ndarray) else value

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self):
        return (_wrap(row) for row in self._a)

    def __bool__(self) -> bool:
        return bool(self._a)

    def __float__(self) -> float:
        return float(self._a)

    def __int__(self) -> int:
        return int(self._a)

    def __repr__(self) -> str:
        return f"stand-in cupy {self._a!r}"

    @property
    def __cuda_array_interface__(self) -> dict:
        a = self._a
        return {"shape": a.shape, "typestr": a.dtype.str, "data": (a.ctypes.data, False),
                "version": 3, "strides": None if a.flags.c_contiguous else a.strides,
                "stream": 1}

    def get(self, stream=None, order="C", out=None) -> np.ndarray:
        return np.array(self._a, order=order)

    def __getattr__(self, name: str):
        if name not in API["ndarray"]:
            raise AttributeError(f"'cupy.ndarray' object has no attribute {name!r}")
        value = getattr(self._a, name)
        if not callable(value):
            return _wrap(value) if isinstance(value, np.ndarray) else value
        return lambda *args, **kwargs: _wrap(value(*_strict(args, name),
                                                   **dict(zip(kwargs, _strict(kwargs.values(),
                                                                              name)))))


def _binary(op):
    def method(self, other):
        return _wrap(op(self._a, _device(other, op.__name__)))
    return method


def _reflected(op):
    def method(self, other):
        return _wrap(op(_device(other, op.__name__), self._a))
    return method


def _inplace(op):
    def method(self, other):
        self._a = op(self._a, _device(other, op.__name__))
        return self
    return method


for _name, _op in {"add": np.add, "sub": np.subtract, "mul": np.multiply,
                   "truediv": np.true_divide, "floordiv": np.floor_divide, "mod": np.mod,
                   "pow": np.power, "matmul": np.matmul, "and": np.bitwise_and,
                   "or": np.bitwise_or, "xor": np.bitwise_xor}.items():
    setattr(ndarray, f"__{_name}__", _binary(_op))
    setattr(ndarray, f"__r{_name}__", _reflected(_op))
for _name, _op in {"add": np.add, "sub": np.subtract, "mul": np.multiply,
                   "truediv": np.true_divide, "pow": np.power, "and": np.bitwise_and,
                   "or": np.bitwise_or}.items():
    setattr(ndarray, f"__i{_name}__", _inplace(getattr(np.ndarray, f"__i{_name}__")))
for _name, _op in {"lt": np.less, "le": np.less_equal, "gt": np.greater,
                   "ge": np.greater_equal, "eq": np.equal, "ne": np.not_equal}.items():
    setattr(ndarray, f"__{_name}__", _binary(_op))
ndarray.__neg__ = lambda self: _wrap(-self._a)
ndarray.__pos__ = lambda self: _wrap(+self._a)
ndarray.__abs__ = lambda self: _wrap(abs(self._a))
ndarray.__invert__ = lambda self: _wrap(~self._a)
ndarray.__hash__ = None


def _device(x, where: str):
    """x as the NumPy array behind a device array; scalars pass; host arrays are refused."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, np.ndarray):
        raise TypeError(f"Unsupported type {type(x)} in {where}: a host (NumPy) array given "
                        "to CuPy")
    if isinstance(x, list | tuple):
        return type(x)(_device(i, where) for i in x)
    return x


def _strict(values, where: str) -> list:
    return [_device(v, where) for v in values]


def _unwrap_index(key):
    if isinstance(key, tuple):
        return tuple(_unwrap_index(k) for k in key)
    return key._a if isinstance(key, ndarray) else key


def _wrap(x):
    """NumPy results as device arrays (scalars as 0-d arrays, as CuPy's reductions give)."""
    if isinstance(x, np.ndarray):
        return ndarray(x)
    if isinstance(x, np.generic) and not isinstance(x, np.void):
        return ndarray(np.asarray(x))
    if isinstance(x, tuple):
        return tuple(_wrap(i) for i in x)
    if isinstance(x, list):
        return [_wrap(i) for i in x]
    return x


class _Namespace(ModuleType):
    """A module offering only the whitelisted names, each NumPy/SciPy's behind _wrap."""

    def __init__(self, name: str, backing: list, allowed: list[str], extra: dict | None = None):
        super().__init__(name)
        self._backing, self._allowed, self._extra = backing, set(allowed), extra or {}

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        if name in self._extra:
            return self._extra[name]
        if name not in self._allowed:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r} "
                                 "(CuPy 13.6 has none)")
        for mod in self._backing:
            if hasattr(mod, name):
                value = getattr(mod, name)
                break
        else:
            raise AttributeError(f"the stand-in does not implement {self.__name__}.{name}")
        if isinstance(value, type) or not callable(value):
            return value
        host_ok = name in _HOST_INPUTS

        def call(*args, **kwargs):
            from_host = host_ok and bool(args) and not isinstance(args[0], ndarray)
            if host_ok:
                args = [a._a if isinstance(a, ndarray) else a for a in args]
            else:
                args = _strict(args, f"{self.__name__}.{name}")
                kwargs = dict(zip(kwargs, _strict(kwargs.values(), f"{self.__name__}.{name}")))
            out = value(*args, **kwargs)
            # host data reaches the device as a copy: device memory is separate
            return _wrap(np.array(out, copy=True) if from_host or name == "array" else out)

        call.__name__ = name
        return call


# ------------------------------------------------------------------------------ cupy.cuda
class _Stream:
    ptr = 0

    def synchronize(self) -> None:
        pass


class Device:
    def __init__(self, device: int = 0):
        if device != 0:
            raise ValueError("the stand-in has one device, 0")
        self.id = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def synchronize(self) -> None:
        pass


class _MemoryPool:
    def used_bytes(self) -> int:
        return 0

    def total_bytes(self) -> int:
        return 0

    def free_bytes(self) -> int:
        return 0


class CUDARuntimeError(RuntimeError):
    pass


def _mem_get_info() -> tuple[int, int]:
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    with open("/proc/meminfo") as fh:
        free = next(int(ln.split()[1]) * 1024 for ln in fh if ln.startswith("MemAvailable"))
    return free, total


runtime = ModuleType("cupy.cuda.runtime")
runtime.getDeviceCount = lambda: 1
runtime.memGetInfo = _mem_get_info
runtime.getDeviceProperties = lambda device: {"name": b"cupy stand-in (host memory)"}
runtime.CUDARuntimeError = CUDARuntimeError
cuda = ModuleType("cupy.cuda")
cuda.runtime = runtime
cuda.Device = Device
cuda.Stream = _Stream
cuda.get_current_stream = lambda: _Stream()
_POOL = _MemoryPool()


# ---------------------------------------------------------------------------- RawModule
_PRELUDE = """// the stand-in's host shim for CUDA kernel syntax
#define __global__
#define __restrict__ __restrict
struct gk_standin_dim3 { unsigned x, y, z; };
static gk_standin_dim3 blockIdx, threadIdx, blockDim, gridDim;
template <typename T> T atomicExch(T* p, T v) { T old = *p; *p = v; return old; }
"""
_SCALARS = {"int": np.int32, "long long": np.int64, "float": np.float32, "double": np.float64,
            "unsigned int": np.uint32}


def _kernel_params(code: str, name: str) -> list[str]:
    """The parameter declarations of kernel ``name`` in ``code``."""
    m = re.search(r"__global__\s+void\s+" + re.escape(name) + r"\s*\(", code)
    if m is None:
        raise ValueError(f"stand-in RawModule: no __global__ function {name!r}")
    depth, i = 1, m.end()
    while depth:
        depth += {"(": 1, ")": -1}.get(code[i], 0)
        i += 1
    return [" ".join(p.split()) for p in code[m.end():i - 1].split(",")]


def _param_type(decl: str, template: dict[str, str]) -> str:
    ty = decl.rsplit(" ", 1)[0] if not decl.endswith("*") else decl
    ty = re.sub(r"\b__restrict__\b|\b__restrict\b", "", ty)
    for k, v in template.items():
        ty = re.sub(rf"\b{k}\b", v, ty)
    return " ".join(ty.replace("*", " * ").split()).replace(" *", "*")


class RawModule:
    """cupy.RawModule, built for the host (see the module docstring)."""

    def __init__(self, code: str, options: tuple = (), name_expressions: tuple = (), **kw):
        self.code, self.options = code, tuple(options)
        self.kernels: dict[str, list[str]] = {}
        launchers = []
        for k, expr in enumerate(name_expressions):
            base, _, targs = expr.partition("<")
            params = _kernel_params(code, base)
            template = {}
            if targs:
                names = re.findall(r"typename\s+(\w+)",
                                   code[:code.index("__global__ void " + base)].rsplit(
                                       "template", 1)[1])
                template = dict(zip(names, [t.strip() for t in targs.rstrip(">").split(",")]))
            types = [_param_type(p, template) for p in params]
            self.kernels[expr] = types
            call = ", ".join(f"*({t}*)args[{i}]" for i, t in enumerate(types))
            launchers.append(
                f'extern "C" void gk_standin_launch_{k}(unsigned gx, unsigned bx, void** args) {{\n'
                f"  gridDim = {{gx, 1, 1}}; blockDim = {{bx, 1, 1}};\n"
                f"  for (unsigned b = 0; b < gx; ++b) for (unsigned t = 0; t < bx; ++t) {{\n"
                f"    blockIdx = {{b, 0, 0}}; threadIdx = {{t, 0, 0}}; {expr}({call}); }}\n}}\n")
        self._lib = self._build(_PRELUDE + code + "\n" + "".join(launchers))
        self._names = list(name_expressions)

    def _build(self, source: str):
        includes = [o for o in self.options if o.startswith("-I")]
        cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
        key = hashlib.sha256((source + repr(includes)).encode()).hexdigest()[:16]
        cache = Path(tempfile.gettempdir()) / "gpukern-cupy-standin"
        cache.mkdir(exist_ok=True)
        lib = cache / f"raw_{key}.so"
        if not lib.exists():
            src = cache / f"raw_{key}.cpp"
            src.write_text(source)
            tmp = cache / f"raw_{key}.{os.getpid()}.so"
            subprocess.run([cxx, "-O1", "-std=c++17", "-ffp-contract=off", "-shared", "-fPIC",
                            *includes, str(src), "-o", str(tmp)], check=True)
            os.replace(tmp, lib)
        return ctypes.CDLL(str(lib))

    def get_function(self, name: str):
        if name not in self.kernels:
            raise KeyError(f"{name!r} is not among the name expressions {self._names}")
        launch = getattr(self._lib, f"gk_standin_launch_{self._names.index(name)}")
        return _HostKernel(name, self.kernels[name], launch)


class _HostKernel:
    def __init__(self, name: str, types: list[str], launch):
        self.name, self.types, self.launch = name, types, launch

    def __call__(self, grid, block, args, **kw) -> None:
        grid = grid if isinstance(grid, tuple) else (grid,)
        block = block if isinstance(block, tuple) else (block,)
        if len(args) != len(self.types):
            raise TypeError(f"{self.name} takes {len(self.types)} arguments, got {len(args)}")
        keep, ptrs = [], (ctypes.c_void_p * len(args))()
        for i, (arg, ty) in enumerate(zip(args, self.types)):
            keep.append(self._argument(i, arg, ty))
            ptrs[i] = ctypes.cast(ctypes.pointer(keep[-1]), ctypes.c_void_p)
        if grid[0] == 0 or block[0] == 0:
            raise ValueError(f"{self.name}: a launch of {grid} blocks of {block} threads "
                             "(CUDA refuses empty launches)")
        self.launch(ctypes.c_uint(grid[0]), ctypes.c_uint(block[0]), ptrs)

    def _argument(self, i: int, arg, ty: str):
        where = f"{self.name} argument {i} ({ty})"
        if ty.endswith("*"):
            pointee = _SCALARS[ty.removeprefix("const ").rstrip("*").strip()]
            if not isinstance(arg, ndarray):
                raise TypeError(f"{where}: needs a device array, got {type(arg).__name__}")
            if arg._a.dtype != pointee or not arg._a.flags.c_contiguous:
                raise TypeError(f"{where}: needs a C-contiguous {np.dtype(pointee)} array, got "
                                f"{arg._a.dtype}, contiguous={arg._a.flags.c_contiguous}")
            return ctypes.c_void_p(arg._a.ctypes.data)
        want = _SCALARS[ty.removeprefix("const ").strip()]
        if not (isinstance(arg, np.generic) and arg.dtype == want):
            raise TypeError(f"{where}: needs a numpy.{np.dtype(want)} scalar, got {arg!r} "
                            f"({type(arg).__name__})")
        return np.ctypeslib.as_ctypes_type(want)(arg.item())


# --------------------------------------------------------------------------- namespaces
def _asnumpy(a, stream=None, order="C", out=None) -> np.ndarray:
    return a.get() if isinstance(a, ndarray) else np.asarray(a)


def _get_array_module(*args):
    import cupy

    return cupy if any(isinstance(a, ndarray) for a in args) else np


linalg = _Namespace("cupy.linalg", [np.linalg], API["cupy.linalg"])
special = _Namespace("cupyx.scipy.special", [scipy.special], API["cupyx.scipy.special"])
sp_linalg = _Namespace("cupyx.scipy.linalg", [scipy.linalg], API["cupyx.scipy.linalg"])
_SUBMODULES = {"cupy.linalg": linalg}
cupy_namespace = _Namespace("cupy", [np], API["cupy"], {
    "ndarray": ndarray, "asnumpy": _asnumpy, "cuda": cuda, "linalg": linalg,
    "RawModule": RawModule, "get_default_memory_pool": lambda: _POOL,
    "get_array_module": _get_array_module,
})
cupy_namespace.__version__ = API["version"] + "+standin"
_SUBMODULES["cupy"] = cupy_namespace
