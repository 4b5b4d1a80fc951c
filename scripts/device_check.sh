#!/usr/bin/env bash
# One prepared check for a machine with an NVIDIA GPU, where cupy, numba-cuda, pytest and
# hypothesis are installed and nothing can be downloaded:
#   1. the test suite with GPUKERN_BACKEND=cupy (every kernel against its CPU reference),
#   2. the Numba CUDA kernels on the real device,
#   3. GPU timings of the hot paths (analytic kernels, empirical kernels, SGL steps).
# Usage: scripts/device_check.sh OUT_DIR   (writes OUT_DIR/device_check.log and .json)
# Meant to finish in under 5 minutes on an H200.
set -uo pipefail
out=${1:?usage: scripts/device_check.sh OUT_DIR}
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
log="$out/device_check.log"
{
  echo "== device"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  python3 -c "import cupy, numba; print('cupy', cupy.__version__, 'numba', numba.__version__)"
  echo "== tests: CuPy backend vs NumPy backend; Numba CUDA kernels on the device"
  timeout 240 python3 -m pytest -q -p no:cacheprovider tests/test_gpu_backend.py \
    tests/test_numba_cuda.py tests/test_backend.py
  echo "tests exit: $?"
  echo "== timings"
  GPUKERN_BACKEND=cupy timeout 120 python3 - "$out/device_check.json" <<'PY'
import json, sys, time
import numpy as np
import cupy
import gpukern as gk

def timed(fn, repeat=3):
    fn(); cupy.cuda.Device().synchronize()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter(); fn(); cupy.cuda.Device().synchronize()
        best = min(best, time.perf_counter() - t)
    return best

res = {"backend": gk.backend(), "device": cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()}
x = cupy.asarray(np.random.default_rng(0).normal(size=(4096, 16)))
erf = gk.MLP(3, gk.activations.erf(2.0), gk.surrogates.erf(1.0), bias_std=0.1)
sign_fs = gk.MLP(3, gk.activations.sign(), gk.surrogates.fast_sigmoid(5.0), bias_std=0.1)
res["analytic_nngp_ntk_erf_d3_N4096_s"] = timed(lambda: erf.kernels(x, which=("nngp", "ntk")))
res["analytic_sgntk_sign_erf_d3_N4096_s"] = timed(lambda: gk.MLP(3, gk.activations.sign(), gk.surrogates.erf(1.0), bias_std=0.1).sgntk(x))
res["analytic_sgntk_sign_fast_sigmoid_d3_N1024_s"] = timed(lambda: sign_fs.sgntk(x[:1024]), repeat=1)
ref = gk.MLP(3, gk.activations.erf(2.0), gk.surrogates.erf(1.0), bias_std=0.1)
x1 = x[:1024]
p = erf.init(16, 1024, ensemble=1, seed=0)
res["empirical_ntk_w1024_d3_N1024_s"] = timed(lambda: erf.empirical_kernel(p, x1, left="true", right="true"))
res["empirical_sgntk_w1024_d3_N1024_s"] = timed(lambda: erf.empirical_kernel(p, x1))
net = gk.MLP(2, gk.activations.sign(), gk.surrogates.erf(1.0), bias_std=0.1)
pe = net.init(16, 512, ensemble=100, seed=0)
xt, yt = x[:16], cupy.sin(x[:16, 0])
t = timed(lambda: gk.train(net, pe, xt, yt, lr=0.05, steps=50), repeat=1)
res["sgl_network_steps_per_s_E100_w512_d2"] = 100 * 50 / t
print(json.dumps(res, indent=2))
json.dump(res, open(sys.argv[1], "w"), indent=2)
PY
  echo "timings exit: $?"
} 2>&1 | tee "$log"
