"""Backend implementations of the hot loops.

* :mod:`.cupy_fused`: the fused analytic recursion as a CuPy RawKernel compiled from
  ``cuda/analytic.cu`` (memoized per device, float and double), for closed-form pairs.
* :mod:`.numba_cuda`: Numba CUDA kernels for the elementwise/fused steps of surrogate
  backprop, the empirical-kernel Hadamard accumulation and the SGL update; GEMMs stay in
  cuBLAS (``cupy.matmul``). Tested in the Numba CUDA simulator.
* :mod:`.ops`: the operations the rest of gpukern calls; each picks the implementation
  for the backend chosen at import (the only place that looks at it).
"""
