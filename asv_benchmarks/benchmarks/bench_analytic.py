"""Analytic kernels over N and depth, closed-form and quadrature surrogates."""

import gpukern as gk

from .common import gpu_pool_bytes, inputs, sync


class AnalyticKernels:
    params = ([256, 1024], [1, 3], ["erf", "fast_sigmoid"])
    param_names = ["N", "depth", "surrogate"]

    def setup(self, n, depth, surrogate):
        self.x = inputs(n)
        sur = gk.surrogates.erf(2.0) if surrogate == "erf" else gk.surrogates.fast_sigmoid(5.0)
        self.erf_net = gk.MLP(depth, gk.activations.erf(2.0), sur, bias_std=0.1)
        self.sign_net = gk.MLP(depth, gk.activations.sign(), sur, bias_std=0.1)

    def time_erf_nngp_ntk(self, n, depth, surrogate):
        sync(self.erf_net.kernels(self.x, which=("nngp", "ntk")))

    def time_sign_sgntk(self, n, depth, surrogate):
        sync(self.sign_net.sgntk(self.x))


    def peakmem_sign_sgntk(self, n, depth, surrogate):
        self.sign_net.sgntk(self.x)


class GpuMemory:
    """CuPy memory pool after an SG-NTK (outputs + cached blocks). Skipped (setup raises
    NotImplementedError, asv's "not applicable") off the CuPy backend."""

    params = ([1024, 4096],)
    param_names = ["N"]

    def setup(self, n):
        gpu_pool_bytes()
        self.x = inputs(n)
        self.net = gk.MLP(3, gk.activations.sign(), gk.surrogates.erf(2.0), bias_std=0.1)

    def track_gpu_pool_bytes(self, n):
        sync(self.net.sgntk(self.x))
        return gpu_pool_bytes()

    track_gpu_pool_bytes.unit = "bytes"


# Names shown by `asv publish` (outside the functions: they do not change the benchmark
# versions, so the history stays one series).
AnalyticKernels.time_erf_nngp_ntk.pretty_name = (
    "analytic: erf network NNGP + NTK (closed forms), N x N, over depth")
AnalyticKernels.time_sign_sgntk.pretty_name = (
    "analytic: sign network SG-NTK (delta x surrogate; erf closed form, fast_sigmoid table)")
AnalyticKernels.peakmem_sign_sgntk.pretty_name = "analytic: sign SG-NTK peak memory"
GpuMemory.track_gpu_pool_bytes.pretty_name = "analytic: CuPy memory pool after an SG-NTK (GPU only)"
