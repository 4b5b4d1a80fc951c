"""Compile the fused kernel with NVRTC exactly as CuPy's RawModule does, without a GPU.

    python scripts/nvrtc_report.py [sm_80 sm_90 ...]

The same source (gpukern.kernels.cupy_fused.source()), options (cupy_fused.options() as
CuPy assembles them, with its include paths and -ftz=true), name expression and NVRTC
program as ``cupy.RawModule(...).get_function(...)`` on a device of that architecture;
only CuPy's query of the device for the architecture is replaced by the architecture
asked for. Prints each cubin's size and the kernel's registers, stack and spills
(ptxas's report). Needs CuPy and the NVRTC wheel (``pip install
cupy-cuda12x nvidia-cuda-nvrtc-cu12``); tests/test_cuda_host.py runs ``compile_for``.
"""

from __future__ import annotations

import io
import re
import sys

from gpukern.kernels import cupy_fused


def compile_for(arch: str, verbose: bool = False) -> tuple[bytes, dict[str, str], str]:
    """(cubin, {name expression: mangled name}, NVRTC log) for ``arch`` ("sm_80", ...).
    ``verbose`` adds --ptxas-options=-v (registers, stack, spills in the log), which
    changes no code."""
    from cupy._core import core
    from cupy.cuda import compiler

    number = arch.removeprefix("sm_")
    # what CuPy picks for a device of this architecture (cubin where NVRTC supports it)
    saved = compiler._get_arch_for_options_for_nvrtc
    compiler._get_arch_for_options_for_nvrtc = lambda a=None: (f"-arch=sm_{number}", "cubin")
    log = io.StringIO()
    try:
        opts = core.assemble_cupy_compiler_options(cupy_fused.options()) + ("-ftz=true",)
        opts += ("--ptxas-options=-v",) if verbose else ()
        cubin, mapping = compiler.compile_using_nvrtc(
            cupy_fused.source(), opts, number, "analytic.cu", (cupy_fused.KERNEL,),
            log_stream=log)
    finally:
        compiler._get_arch_for_options_for_nvrtc = saved
    return cubin, mapping, log.getvalue()


def main(archs: list[str]) -> int:
    from cupy.cuda import compiler

    print(f"NVRTC {'.'.join(map(str, compiler._get_nvrtc_version()))}")
    for arch in archs or ["sm_80", "sm_90"]:
        cubin, mapping, log = compile_for(arch, verbose=True)
        usage = "; ".join(" ".join(ln.split()[2:]) for ln in log.splitlines()
                          if re.search(r"registers|spill", ln))
        print(f"{arch}: {cupy_fused.KERNEL} -> {mapping[cupy_fused.KERNEL]}, cubin "
              f"{len(cubin)} bytes; {usage}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
