"""Empirical kernels over width and N; ensemble SGL steps; GP prediction."""

import numpy as np

import gpukern as gk

from .common import inputs, sync


class EmpiricalKernels:
    params = ([256, 1024], [256, 1024])
    param_names = ["width", "N"]

    def setup(self, width, n):
        self.x = inputs(n)
        self.net = gk.MLP(3, gk.activations.erf(2.0), gk.surrogates.erf(1.0), bias_std=0.1)
        self.params = self.net.init(self.x.shape[1], width, ensemble=1, seed=0)

    def time_ntk(self, width, n):
        sync(self.net.empirical_kernel(self.params, self.x, left="true", right="true"))

    def time_sgntk(self, width, n):
        sync(self.net.empirical_kernel(self.params, self.x, left="true", right="surrogate"))

    def peakmem_sgntk(self, width, n):
        self.net.empirical_kernel(self.params, self.x, left="true", right="surrogate")


class EnsembleSGL:
    """100 sign networks, 2 hidden layers of width 512, 16 training points (RESULTS.md's
    setting)."""

    params = ([np.float32, np.float64],)
    param_names = ["dtype"]
    timeout = 300

    def setup(self, dtype):
        self.x = inputs(16)
        self.y = np.sin(self.x[:, 0])
        self.net = gk.MLP(2, gk.activations.sign(), gk.surrogates.erf(1.0), bias_std=0.1)
        self.params = self.net.init(16, 512, ensemble=100, seed=0, dtype=dtype)

    def time_10_steps(self, dtype):
        sync(gk.train(self.net, self.params, self.x, self.y, lr=0.01, steps=10).params.weights[0])

    def track_network_steps_per_second(self, dtype):
        import time

        t = time.perf_counter()
        gk.train(self.net, self.params, self.x, self.y, lr=0.01, steps=10)
        return 100 * 10 / (time.perf_counter() - t)

    track_network_steps_per_second.unit = "network-steps/s"


class Prediction:
    params = ([16, 128],)
    param_names = ["n_train"]

    def setup(self, n_train):
        self.x = inputs(n_train)
        self.y = np.sin(self.x[:, 0])
        self.xs = inputs(512, seed=1)
        self.net = gk.MLP(2, gk.activations.sign(), gk.surrogates.erf(1.0), bias_std=0.1)

    def time_sgntk_gp_discrete(self, n_train):
        gk.predict(self.net, self.x, self.y, self.xs, lr=0.01, steps=[10, 100, 1000],
                   full_cov=False)

    def time_sgntk_gp_continuous(self, n_train):
        gk.predict(self.net, self.x, self.y, self.xs, lr=0.01, t=[10.0, 100.0], full_cov=False)


# Names shown by `asv publish` (outside the functions: they do not change the benchmark
# versions, so the history stays one series).
EmpiricalKernels.time_ntk.pretty_name = "empirical: NTK of one erf network, depth 3, over width and N"
EmpiricalKernels.time_sgntk.pretty_name = (
    "empirical: SG-NTK (quasi-Jacobian Gram) of one erf network, over width and N")
EmpiricalKernels.peakmem_sgntk.pretty_name = "empirical: SG-NTK peak memory"
EnsembleSGL.time_10_steps.pretty_name = "SGL: 10 steps of 100 sign networks, width 512, 16 points"
EnsembleSGL.track_network_steps_per_second.pretty_name = "SGL: network-steps per second (E=100)"
Prediction.time_sgntk_gp_discrete.pretty_name = "prediction: SG-NTK GP after 10/100/1000 steps"
Prediction.time_sgntk_gp_continuous.pretty_name = "prediction: SG-NTK GP at t = 10, 100"
