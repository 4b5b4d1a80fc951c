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


class Thresholds:
    """NNGP + SG-NTK of jumps at thresholds against sign's (the ratio is the cost of the
    bivariate normal orthant probabilities: n thresholds give n^2 pairs of terms)."""

    params = ([1024], ["sign", "step(1)", "quantizer(2 bits)"])
    param_names = ["N", "activation"]

    def setup(self, n, activation):
        self.x = inputs(n)
        act = {"sign": gk.activations.sign(), "step(1)": gk.activations.step(1.0),
               "quantizer(2 bits)": gk.activations.uniform_quantizer(2)}[activation]
        self.net = gk.MLP(3, act, gk.surrogates.erf(2.0), weight_std=1.5, bias_std=0.2)

    def time_nngp_sgntk(self, n, activation):
        sync(self.net.kernels(self.x, which=("nngp", "sgntk")))


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
Thresholds.time_nngp_sgntk.pretty_name = (
    "analytic: NNGP + SG-NTK of sign, step at 1 and a 2-bit quantizer, depth 3")
GpuMemory.track_gpu_pool_bytes.pretty_name = "analytic: CuPy memory pool after an SG-NTK (GPU only)"


class ReducedPairs:
    """Kernels without a closed form (Mehler series of analytic pairs; pairs reduced to 1-D
    with tables of E[g(m + s Z)]) against the closed-form erf ones, depth 3, N = 128
    (fast_sigmoid's reduced pair costs ~10^3 x a closed form per entry: N = 1024 would take
    ~30 s per call). ``coefficients``: the series' rows kept from the setup call, or
    cleared before each call (then computed in it)."""

    params = ([128], ["erf", "sigmoid", "fast_sigmoid", "atan", "custom(tanh)"],
              ["kept", "cleared"])
    param_names = ["N", "function", "coefficients"]

    def setup(self, n, function, coefficients):
        import numpy as np

        self.x = inputs(n)
        if function == "custom(tanh)":
            act = gk.activations.custom(np.tanh, lambda v: 1.0 - np.tanh(v) ** 2)
            self.net = gk.MLP(3, act, bias_std=0.2)
            self.which = ("nngp", "ntk")
        else:
            sur = {"erf": gk.surrogates.erf(2.0), "sigmoid": gk.surrogates.sigmoid(2.0),
                   "fast_sigmoid": gk.surrogates.fast_sigmoid(2.0),
                   "atan": gk.surrogates.atan(2.0)}[function]
            self.net = gk.MLP(3, gk.activations.sign(), sur, bias_std=0.2)
            self.which = ("surrogate",)
        self.net.kernels(self.x, which=self.which)  # fills the tables, keeps the coefficients

    def time_kernels(self, n, function, coefficients):
        if coefficients == "cleared":
            gk.hermite.clear_cache()
        sync(self.net.kernels(self.x, which=self.which))


class SeriesTargets:
    """Issue 15's targets at their size (depth 3, N = 1024): the surrogate x surrogate
    kernel of sigmoid(2) (Mehler series in the compiled loop) against erf(2)'s closed
    form, and NNGP + NTK of custom(tanh) (series for both pairs) against the closed erf
    activation's; the series' coefficients kept from the setup call."""

    params = ([1024], ["erf surrogate", "sigmoid surrogate", "erf activation",
                       "custom(tanh) activation"])
    param_names = ["N", "kernel"]

    def setup(self, n, kernel):
        import numpy as np

        self.x = inputs(n)
        name, role = kernel.split(" ")
        if role == "surrogate":
            sur = {"erf": gk.surrogates.erf(2.0), "sigmoid": gk.surrogates.sigmoid(2.0)}[name]
            self.net = gk.MLP(3, gk.activations.sign(), sur, bias_std=0.2)
            self.which = ("surrogate",)
        else:
            act = (gk.activations.erf(1.0) if name == "erf" else
                   gk.activations.custom(np.tanh, lambda v: 1.0 - np.tanh(v) ** 2))
            self.net = gk.MLP(3, act, bias_std=0.2)
            self.which = ("nngp", "ntk")
        self.net.kernels(self.x, which=self.which)  # computes and keeps the coefficients

    def time_kernels(self, n, kernel):
        sync(self.net.kernels(self.x, which=self.which))


class CorrelationTables:
    """Issue 15's surrogate x surrogate targets on inputs of one norm (depth 3, N = 1024,
    sign): every layer's variances are one value, so the pairs without a closed form
    (fast_sigmoid's kink, atan's long series) are read from their tables in the
    correlation; erf(2)'s closed form is the baseline. Tables built in the setup call."""

    params = ([1024], ["erf", "sigmoid", "fast_sigmoid", "atan"])
    param_names = ["N", "surrogate"]

    def setup(self, n, surrogate):
        import numpy as np

        x = inputs(n)
        self.x = x / np.linalg.norm(x, axis=1, keepdims=True)
        sur = getattr(gk.surrogates, surrogate)(2.0)
        self.net = gk.MLP(3, gk.activations.sign(), sur, bias_std=0.2)
        self.net.kernels(self.x, which=("surrogate",))

    def time_kernels(self, n, surrogate):
        sync(self.net.kernels(self.x, which=("surrogate",)))


class VarianceTables:
    """Issue 15's surrogate x surrogate targets on inputs of different norms (N(0, I_3),
    depth 3, N = 1024, sign): the first layer's variances differ from point to point, so
    fast_sigmoid and atan are read there from their tables over variances, and after it
    from their tables in the correlation; erf(2)'s closed form is the baseline. Tables
    built in the setup call (~1 min each: the timeout)."""

    params = ([1024], ["erf", "fast_sigmoid", "atan"])
    param_names = ["N", "surrogate"]
    timeout = 300

    def setup(self, n, surrogate):
        self.x = inputs(n, 3)
        sur = getattr(gk.surrogates, surrogate)(2.0)
        self.net = gk.MLP(3, gk.activations.sign(), sur, bias_std=0.2)
        self.net.kernels(self.x, which=("surrogate",))

    def time_kernels(self, n, surrogate):
        sync(self.net.kernels(self.x, which=("surrogate",)))


class SameInputs:
    """kernels(x, x) takes the symmetric path of kernels(x) (erf NNGP + NTK)."""

    params = ([2048], ["x", "x, x", "x, copy"])
    param_names = ["N", "call"]

    def setup(self, n, call):
        self.x = inputs(n)
        self.x2 = {"x": None, "x, x": self.x, "x, copy": self.x.copy()}[call]
        self.net = gk.MLP(3, gk.activations.erf(1.0), gk.surrogates.erf(1.0), bias_std=0.2)

    def time_kernels(self, n, call):
        sync(self.net.kernels(self.x, self.x2, which=("nngp", "ntk")))


ReducedPairs.time_kernels.pretty_name = (
    "analytic: kernels without closed forms (tables, pairs reduced to 1-D), depth 3")
SameInputs.time_kernels.pretty_name = "analytic: erf NNGP+NTK as kernels(x), (x, x), (x, copy)"
VarianceTables.time_kernels.pretty_name = (
    "analytic: surrogate x surrogate on N(0, I_3) inputs (tables over variances), depth 3")
