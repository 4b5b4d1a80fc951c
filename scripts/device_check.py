"""The device check: one prepared run on a machine with an NVIDIA GPU (≤ 5 min on an H200).

    scripts/device_check.sh OUT_DIR            # on the GPU machine
    scripts/device_check.sh OUT_DIR --dry-run  # here: through the CuPy stand-in, small sizes

Steps, each with its pass/fail, exit code and seconds in OUT_DIR/device_check.json (written
after every step, so a killed run keeps what finished) and its output in
OUT_DIR/device_check.log:

1. ``device``: what the machine is (nvidia-smi; CuPy and Numba versions and devices);
2. ``tests``: the CuPy backend against NumPy references computed in their own process with
   GPUKERN_BACKEND=numpy (tests/test_gpu_backend.py), the Numba kernels on the device
   (tests/test_numba_cuda.py) and backend selection (tests/test_backend.py);
3. ``timings``: stream-synchronized GPU timings of the hot paths (analytic kernels,
   empirical kernels, SGL network-steps/s) and CuPy's memory pool, into the JSON.

``--dry-run`` runs the same steps without a GPU: the tests' stand-in parameter (less the two
long comparisons, which the test suite runs), and the timings (meaningless as numbers)
through tests/cupy_standin with the Numba simulator.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STANDIN = ROOT / "tests" / "cupy_standin"

TIMINGS = r"""
import json, sys, time
import numpy as np
import cupy
import gpukern as gk

small = sys.argv[2] == "dry"
n_big, n_mid, width, nets = (256, 64, 32, 4) if small else (4096, 1024, 1024, 100)

def timed(fn, repeat=3):
    fn(); cupy.cuda.get_current_stream().synchronize()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter(); fn(); cupy.cuda.get_current_stream().synchronize()
        best = min(best, time.perf_counter() - t)
    return best

res = {"backend": gk.backend(),
       "device": cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(), "sizes": {
           "N": n_big, "N_empirical": n_mid, "width": width, "networks": nets}}
x = cupy.asarray(np.random.default_rng(0).normal(size=(n_big, 16)))
erf = gk.MLP(3, gk.activations.erf(2.0), gk.surrogates.erf(1.0), bias_std=0.1)
sign = gk.MLP(3, gk.activations.sign(), gk.surrogates.erf(1.0), bias_std=0.1)
sign_fs = gk.MLP(3, gk.activations.sign(), gk.surrogates.fast_sigmoid(5.0), bias_std=0.1)
res["analytic_nngp_ntk_erf_d3_s"] = timed(lambda: erf.kernels(x, which=("nngp", "ntk")))
res["analytic_sgntk_sign_erf_d3_s"] = timed(lambda: sign.sgntk(x))
res["analytic_sgntk_sign_fast_sigmoid_d3_Nmid_s"] = timed(lambda: sign_fs.sgntk(x[:n_mid]), 1)
# Mehler series in the fused kernel (coefficient rows made on the host, kept after the
# first call) against the closed erf forms, at N_mid
sig = gk.MLP(3, gk.activations.sign(), gk.surrogates.sigmoid(2.0), bias_std=0.2)
sign2 = gk.MLP(3, gk.activations.sign(), gk.surrogates.erf(2.0), bias_std=0.2)
tanh = gk.MLP(3, gk.activations.custom(cupy.tanh, lambda v: 1.0 - cupy.tanh(v) ** 2),
              bias_std=0.2)
xm = x[:n_mid]
res["analytic_surrogate_sign_erf2_d3_Nmid_s"] = timed(
    lambda: sign2.kernel(xm, left="surrogate", right="surrogate"))
res["analytic_surrogate_sign_sigmoid2_d3_Nmid_s"] = timed(
    lambda: sig.kernel(xm, left="surrogate", right="surrogate"))
res["analytic_nngp_ntk_erf_d3_Nmid_s"] = timed(lambda: erf.kernels(xm, which=("nngp", "ntk")))
res["analytic_nngp_ntk_custom_tanh_d3_Nmid_s"] = timed(
    lambda: tanh.kernels(xm, which=("nngp", "ntk")))
# correlation tables in the fused kernel: inputs of one norm (every layer one variance),
# fast_sigmoid and atan surrogates against erf(2)'s closed form, at N_mid
xs = xm / cupy.linalg.norm(xm, axis=1, keepdims=True)
for name, sur in (("erf2", gk.surrogates.erf(2.0)), ("fast_sigmoid2", gk.surrogates.fast_sigmoid(2.0)),
                  ("atan2", gk.surrogates.atan(2.0))):
    unit = gk.MLP(3, gk.activations.sign(), sur, bias_std=0.2)
    res[f"analytic_surrogate_sign_{name}_unit_norm_d3_Nmid_s"] = timed(
        lambda unit=unit: unit.kernel(xs, left="surrogate", right="surrogate"))
res["gpu_pool_bytes_after"] = int(cupy.get_default_memory_pool().total_bytes())
x1 = x[:n_mid]
p = erf.init(16, width, ensemble=1, seed=0)
res["empirical_ntk_d3_s"] = timed(lambda: erf.empirical_kernel(p, x1, left="true", right="true"))
res["empirical_sgntk_d3_s"] = timed(lambda: erf.empirical_kernel(p, x1))
net = gk.MLP(2, gk.activations.sign(), gk.surrogates.erf(1.0), bias_std=0.1)
pe = net.init(16, width // 2, ensemble=nets, seed=0)
xt, yt = x[:16], cupy.sin(x[:16, 0])
steps = 5 if small else 50
t = timed(lambda: gk.train(net, pe, xt, yt, lr=0.05, steps=steps), repeat=1)
res["sgl_network_steps_per_s_d2"] = nets * steps / t
json.dump(res, open(sys.argv[1], "w"), indent=2)
print(json.dumps(res, indent=2))
"""


def _env(dry: bool) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    path = [str(ROOT)] + ([str(STANDIN)] if dry else [])
    env["PYTHONPATH"] = os.pathsep.join(path + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if dry:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    return env


def _steps(out: Path, dry: bool) -> list[tuple[str, list[str], dict, int]]:
    py = sys.executable
    device = ("import cupy, numba; from numba import cuda; print('cupy', cupy.__version__, "
              "'numba', numba.__version__, 'devices', cupy.cuda.runtime.getDeviceCount(), "
              "cupy.cuda.runtime.getDeviceProperties(0)['name'])")
    # a dry run checks this script's steps; the stand-in's two long comparisons (~3 min)
    # already ran in the README's test command, so it keeps the short one
    select = (["-k", "standin and not cupy_equals_numpy and not reproduce"] if dry
              else ["-k", "device"])
    tests = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_gpu_backend.py",
             *select]
    numba_tests = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_numba_cuda.py",
                   "tests/test_backend.py"]
    cupy_env = {"GPUKERN_BACKEND": "cupy"}
    # limits in seconds: on the device, the ≤ 5 min budget; a dry run only guards against a
    # hang, since the simulator runs a Python thread per CUDA thread on a shared machine
    slack = 3 if dry else 1
    return [
        ("device", ["bash", "-c", f"nvidia-smi --query-gpu=name,memory.total,driver_version "
                    f"--format=csv || true; {py} -c \"{device}\""], cupy_env, 60 * slack),
        # the test processes themselves (the references) on NumPy, pinned
        ("tests_cupy_vs_numpy", tests, {"GPUKERN_BACKEND": "numpy"}, 200 * slack),
        ("tests_numba_and_backend", numba_tests, {"GPUKERN_BACKEND": "numpy"}, 100 * slack),
        ("timings", [py, "-c", TIMINGS, str(out / "timings.json"), "dry" if dry else "gpu"],
         cupy_env, 120 * slack),
    ]


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        sys.exit("usage: scripts/device_check.sh OUT_DIR [--dry-run]")
    out, dry = Path(argv[0]).resolve(), "--dry-run" in argv[1:]
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"dry_run": dry, "steps": {}}
    with open(out / "device_check.log", "w") as log:
        for name, cmd, extra, timeout in _steps(out, dry):
            log.write(f"== {name}: {' '.join(cmd)[:200]}\n")
            log.flush()
            t0 = time.perf_counter()
            try:
                rc = subprocess.run(cmd, cwd=ROOT, env=_env(dry) | extra, stdout=log,
                                    stderr=subprocess.STDOUT, timeout=timeout).returncode
            except subprocess.TimeoutExpired:
                rc = 124
            seconds = round(time.perf_counter() - t0, 1)
            report["steps"][name] = {"ok": rc == 0, "exit": rc, "seconds": seconds}
            if name == "timings" and (out / "timings.json").exists():
                report["timings"] = json.loads((out / "timings.json").read_text())
            (out / "device_check.json").write_text(json.dumps(report, indent=2))
            print(f"{name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in {seconds} s",
                  flush=True)
    return 0 if all(s["ok"] for s in report["steps"].values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
