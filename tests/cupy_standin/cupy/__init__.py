"""The strict CuPy stand-in (tests/cupy_standin/_standin.py) under CuPy's import names."""

import sys

from _standin import cuda, cupy_namespace, linalg, runtime

sys.modules.update({"cupy": cupy_namespace, "cupy.cuda": cuda, "cupy.cuda.runtime": runtime,
                    "cupy.linalg": linalg})
