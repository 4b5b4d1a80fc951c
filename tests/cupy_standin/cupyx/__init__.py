"""The strict CuPy stand-in's cupyx.scipy.special and cupyx.scipy.linalg."""

import sys
from types import ModuleType

from _standin import sp_linalg, special

scipy = ModuleType("cupyx.scipy")
scipy.special, scipy.linalg = special, sp_linalg
sys.modules.update({"cupyx.scipy": scipy, "cupyx.scipy.special": special,
                    "cupyx.scipy.linalg": sp_linalg})
