"""Compile the fused kernel with NVRTC exactly as CuPy's RawModule does, without a GPU.

    python scripts/nvrtc_report.py [sm_80 sm_90 ...]

The same source (gpukern.kernels.cupy_fused.source()), options (cupy_fused.options() as
CuPy assembles them, with its include paths and -ftz=true), name expression and NVRTC
program as ``cupy.RawModule(...).get_function(...)`` on a device of that architecture;
only CuPy's query of the device for the architecture is replaced by the architecture
asked for. Prints each cubin's size and the kernel's registers, stack and spills
(ptxas's report). Needs CuPy and the NVRTC wheel (``pip install
cupy-cuda12x nvidia-cuda-nvrtc-cu12``); tests/test_cuda_host.py runs ``compile_for``.

Every compile records its report in the cache folder (cpu_fused.cache_dir()/nvrtc), under a
key of the NVRTC version, architecture, options and source; this script prints a recorded
report where one exists (after the test suite, CI's case), so the ~40 s compile per
architecture runs once.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import sys
from pathlib import Path

from gpukern._io import atomic_write
from gpukern.kernels import cpu_fused, cupy_fused


def _options() -> tuple[str, ...]:
    """The options CuPy's RawModule passes to NVRTC, plus ptxas's resource
    report (--ptxas-options=-v: a log, no change to the code)."""
    from cupy._core import core

    return core.assemble_cupy_compiler_options(cupy_fused.options()) + (
        "-ftz=true", "--ptxas-options=-v")


def _record_path(arch: str, options: tuple[str, ...], source: str) -> Path:
    """The report's file for this NVRTC version, architecture, options and source."""
    from cupy.cuda import compiler

    parts = [str(compiler._get_nvrtc_version()), arch, *options, source]
    key = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
    return cpu_fused.cache_dir() / "nvrtc" / f"{arch}_{key}.json"


def compile_for(arch: str) -> tuple[bytes, dict[str, str], str]:
    """(cubin, {name expression: mangled name}, NVRTC log with ptxas's resource report) for
    ``arch`` ("sm_80", ...); the report is recorded for :func:`main`."""
    from cupy.cuda import compiler

    number = arch.removeprefix("sm_")
    # what CuPy picks for a device of this architecture (cubin where NVRTC supports it)
    saved = compiler._get_arch_for_options_for_nvrtc
    compiler._get_arch_for_options_for_nvrtc = lambda a=None: (f"-arch=sm_{number}", "cubin")
    log = io.StringIO()
    options, source = _options(), cupy_fused.source()
    try:
        cubin, mapping = compiler.compile_using_nvrtc(
            source, options, number, "analytic.cu", (cupy_fused.KERNEL,), log_stream=log)
    finally:
        compiler._get_arch_for_options_for_nvrtc = saved
    record = {"cubin_bytes": len(cubin), "mangled": mapping[cupy_fused.KERNEL],
              "usage": "; ".join(" ".join(ln.split()[2:]) for ln in log.getvalue().splitlines()
                                 if re.search(r"registers|spill", ln))}
    try:
        atomic_write(_record_path(arch, options, source),
                     lambda fh: fh.write(json.dumps(record).encode()))
    except OSError:  # an unwritable cache folder: the report compiles again
        pass
    return cubin, mapping, log.getvalue()


def main(archs: list[str]) -> int:
    from cupy.cuda import compiler

    print(f"NVRTC {'.'.join(map(str, compiler._get_nvrtc_version()))}")
    options, source = _options(), cupy_fused.source()
    for arch in archs or ["sm_80", "sm_90"]:
        path = _record_path(arch, options, source)
        if not path.exists():
            compile_for(arch)
        rec = json.loads(path.read_text())
        print(f"{arch}: {cupy_fused.KERNEL} -> {rec['mangled']}, cubin {rec['cubin_bytes']} "
              f"bytes; {rec['usage']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
