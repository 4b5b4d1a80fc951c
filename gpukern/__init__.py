"""gpukern: kernels of surrogate gradient learning (NNGP, NTK, SG-NTK), fast.

Implements Eilers, Memmesheimer & Goedeke, "A generalized neural tangent kernel for
surrogate gradient learning" (NeurIPS 2024, arXiv:2405.15539).
"""

from . import activations, surrogates
from ._backend import BackendUnavailableError, backend, to_host
from ._checks import InsufficientMemoryError
from .network import MLP
from .prediction import Prediction, nngp_posterior, predict
from .training import DivergenceError, TrainResult, train

__all__ = [
    "MLP",
    "activations",
    "surrogates",
    "backend",
    "to_host",
    "BackendUnavailableError",
    "InsufficientMemoryError",
    "train",
    "DivergenceError",
    "TrainResult",
    "predict",
    "nngp_posterior",
    "Prediction",
]
__version__ = "0.1.0"
