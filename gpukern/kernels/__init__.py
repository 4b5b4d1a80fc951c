"""The executors' implementations of the hot loops, and the one place that picks.

* :mod:`.ops`: the operations the rest of gpukern calls; each picks the executor for the
  backend chosen at import (the only place that looks at it), ``use_executor`` to force.
* :mod:`.cpu_fused`: the compiled CPU executor (``cpu_kernels.cpp``, built for the host):
  analytic recursions, elementwise maps, Hadamard accumulation, the SGL step.
* :mod:`.cupy_fused`: the fused analytic recursion as a CuPy RawModule compiled from
  ``cuda/analytic.cu`` (memoized per device), for closed-form pairs.
* :mod:`.numba_cuda`: Numba CUDA kernels for the elementwise steps of surrogate backprop,
  the empirical-kernel Hadamard accumulation and the SGL update; GEMMs stay in cuBLAS
  (``cupy.matmul``). Tested in the Numba CUDA simulator.
"""
