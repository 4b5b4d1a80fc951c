"""Write cupy_api.json: the names CuPy offers, from a real CuPy (no device needed).

    python -m venv /tmp/cp && /tmp/cp/bin/pip install "cupy-cuda12x==13.6.0" numpy scipy
    /tmp/cp/bin/python tests/cupy_standin/make_api.py

Run with the oldest CuPy the extras allow (13.6 today), so that the stand-in offers no
more than that. cupyx.scipy.linalg needs cuBLAS at import, which a driver-less machine
may lack: its names are read from the package's __init__.py instead.
"""

import ast
import importlib
import importlib.util
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# this folder holds the stand-in's own cupy/cupyx packages: the real ones are wanted here
sys.path = [p for p in sys.path if Path(p or ".").resolve() != HERE]
cupy = importlib.import_module("cupy")
importlib.import_module("cupy.linalg")
cupyx_special = importlib.import_module("cupyx.scipy.special")


def _public(module) -> list[str]:
    return sorted(n for n in dir(module) if not n.startswith("_"))


def _imported_names(package: str) -> list[str]:
    """The names a package's __init__.py imports (without importing it)."""
    top, *rest = package.split(".")
    path = Path(importlib.util.find_spec(top).origin).parent.joinpath(*rest, "__init__.py")
    names = {alias.asname or alias.name for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.ImportFrom) for alias in node.names}
    return sorted(n for n in names if not n.startswith("_") and n != "*")


def main() -> None:
    keep = ("__cuda_array_interface__", "__dlpack__", "__dlpack_device__")
    api = {
        "version": cupy.__version__,
        "cupy": _public(cupy),
        "cupy.linalg": _public(cupy.linalg),
        "cupyx.scipy.special": _public(cupyx_special),
        "cupyx.scipy.linalg": _imported_names("cupyx.scipy.linalg"),
        "ndarray": sorted(n for n in dir(cupy.ndarray) if not n.startswith("_") or n in keep),
    }
    out = HERE / "cupy_api.json"
    out.write_text(json.dumps(api, indent=0))
    print(f"{out}: CuPy {api['version']}, {len(api['cupy'])} names in cupy")


if __name__ == "__main__":
    main()
