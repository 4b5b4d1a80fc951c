"""What the math of an MLP needs, for the analytic and the finite-width code alike."""

from __future__ import annotations

from dataclasses import dataclass

from .functions import ScalarFunction
from .gaussian import DEFAULT_ORDER


@dataclass(frozen=True)
class Architecture:
    """``depth`` hidden layers of activation ``sigma``, weight and bias standard deviations
    (NTK parameterization), and the quadrature ``order`` of Gaussian averages without a
    closed form (analytic kernels only)."""

    depth: int
    sigma: ScalarFunction
    weight_std: float
    bias_std: float
    order: int = DEFAULT_ORDER

    @property
    def sw2(self) -> float:
        return self.weight_std**2

    @property
    def sb2(self) -> float:
        return self.bias_std**2
