"""What the math of an MLP needs, for the analytic and the finite-width code alike."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .functions import ScalarFunction
from .gaussian import DEFAULT_ORDER

PARAMETERIZATIONS = ("ntk", "standard")


@dataclass(frozen=True)
class Architecture:
    """``depth`` hidden layers of activation ``sigma``, weight and bias standard deviations,
    the ``parameterization`` and the quadrature ``order`` of Gaussian averages without a
    closed form (analytic kernels only).

    A layer computes h = a(n) z W^T + b_s b from stored parameters W, b with
    a(n) = :meth:`weight_scale` (n: fan-in) and b_s = :meth:`bias_scale`:

    * ``"ntk"``: W, b ~ N(0, 1), a(n) = sw/sqrt(n), b_s = sb (neural-tangents' default);
    * ``"standard"``: W ~ N(0, sw^2/n), b ~ N(0, sb^2), a = b_s = 1 (PyTorch's
      ``nn.Linear``): the same functions, gradients taken with respect to W, b themselves.

    ``widths`` (n_1..n_L) are needed by the analytic NTK-type kernels of the standard
    parameterization only (:meth:`own_terms`).
    """

    depth: int
    sigma: ScalarFunction
    weight_std: float
    bias_std: float
    order: int = DEFAULT_ORDER
    parameterization: str = "ntk"
    widths: tuple[int, ...] | None = None

    @property
    def sw2(self) -> float:
        return self.weight_std**2

    @property
    def sb2(self) -> float:
        return self.bias_std**2

    @property
    def standard(self) -> bool:
        return self.parameterization == "standard"

    def weight_scale(self, fan_in: int) -> float:
        """a(n): the factor between the stored weights and the layer's effective ones."""
        return 1.0 if self.standard else self.weight_std / math.sqrt(fan_in)

    def weight_scale2(self, fan_in: int) -> float:
        """a(n)^2, the factor of a layer's input Gram in its kernel term (sw^2/n or 1)."""
        return 1.0 if self.standard else self.sw2 / fan_in

    @property
    def bias_scale(self) -> float:
        """b_s: the factor between the stored biases and the layer's effective ones."""
        return 1.0 if self.standard else self.bias_std

    def init_stds(self, fan_in: int) -> tuple[float, float]:
        """Standard deviations of the stored (W, b) at initialisation."""
        if self.standard:
            return self.weight_std / math.sqrt(fan_in), self.bias_std
        return 1.0, 1.0

    def own_terms(self, n0: int) -> tuple[tuple[float, float], ...]:
        """Each layer's own term of the NTK-type recursion, as coefficients (alpha_l, beta_l)
        of E_l = E[z_l z_l'] (E_0 = <x, x'>/n0, the input dimension n0):

            K_1 = alpha_0 E_0 + beta_0,   K_{l+1} = alpha_l E_l + beta_l + sw^2 E[a b] K_l

        * ntk: (sw^2, sb^2), i.e. Sigma_{l+1} (the gradients of sw/sqrt(n) W and sb b);
        * standard: (n_l, 1), the Gram of the layer's inputs plus the bias's 1, as
          neural-tangents' ``Dense(parameterization="standard")`` with its widths. It grows
          linearly in the widths (an infinitely wide standard network has no finite NTK);
          K / n converges as all widths grow in proportion.
        """
        if not self.standard:
            return ((self.sw2, self.sb2),) * (self.depth + 1)
        return tuple((float(n), 1.0) for n in (n0,) + tuple(self.widths))
