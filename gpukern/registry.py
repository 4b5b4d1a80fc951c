"""The registry of function kinds: the one source of kind numbers, capabilities and the
constants that Python, the compiled CPU path, CUDA and Numba share.

A scalar function that the compiled kernels know is sent to them as a descriptor: its
number of terms n, then ``(kind, a, b, c, shift)`` per term, the function being the sum
of the terms f_k(v - shift_k) (:meth:`gpukern.functions.ScalarFunction.descriptor`;
a threshold activation or a quantizer is such a sum, every other function one term). The
kind numbers, what each kind can do in closed form, and the table/recursion constants are
declared here once; ``cuda/gpukern/registry.cuh`` is generated from this module
(``python -m gpukern.registry cuda/gpukern/registry.cuh``) and a test checks that the
committed header is what this module generates.

Capabilities (looked up, never discovered by evaluating a function):

* ``closed_avg``: E[g(v)], v ~ N(0, s2), has a closed form (``gauss_avg``), so a Gaussian
  bump or a constant facing g gives a closed pair (the Gaussian tilt);
* ``self_pair``: E[f(u) g(v)] of two functions of this kind has a closed form;
* ``mean_avg``: E[g(m + s Z)] has a closed form for every mean m (``gauss_avg_mean``), so a
  delta or bump at a threshold facing g, or g itself shifted, gives a closed pair;
* ``mean_table``: E[g(m + s Z)] has no closed form but g is a width-parameter family
  rate * h(rate v), so one 2-D table of h's average serves every parameter
  (:mod:`gpukern.tables`);
* ``analytic``: g is analytic on a strip about the real axis (no kinks, no jumps), so its
  pairs with other such functions are Mehler series (:mod:`gpukern.hermite`) where the
  series converges within its term limit;
* ``det_gaps``: as an activation, the next layer's determinant q q' - c^2 has a formula
  without cancellation (``self_gaps``), so the recursion carries it from layer to layer;
  other activations get it as q q' - c^2 (an absolute error of eps q q').

A kind with neither still has a value (finite networks, Numba, the CPU map) and, facing a
bump or constant, a Chebyshev table of its average on the CPU path (``TABLE``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from enum import IntEnum


class Kind(IntEnum):
    """Function kinds; the meaning of (a, b, c) is the descriptor of each kind's class."""

    ERF_STEP = 0  # offset c + amp b erf(v / sqrt a); a = t = 1/m^2, a = 0: sign
    GAUSS_BUMP = 1  # weight b / sqrt(pi a) exp(-v^2 / a); a = 0: b delta(v)
    HEAVISIDE = 2  # scale b H(v), H(0) = 1/2
    RELU = 3  # max(v, 0)
    IDENTITY = 4  # v
    CONSTANT = 5  # b
    SIGMOID = 6  # scale b (a/2) sech^2(a v / 2)
    FAST_SIGMOID = 7  # scale b a / (1 + a |v|)^2
    ATAN = 8  # scale b a / (1 + (pi a v / 2)^2)
    BOXCAR = 9  # scale b / a on |v| < a
    TRIANGLE = 10  # scale b (2/a) max(0, 1 - |v|/a)
    TABLE = 11  # any g known by a table of its Gaussian average (CPU path only)


@dataclass(frozen=True)
class Capabilities:
    closed_avg: bool = False
    self_pair: bool = False
    det_gaps: bool = False
    mean_avg: bool = False
    mean_table: bool = False
    analytic: bool = False


CAPABILITIES: dict[Kind, Capabilities] = {
    Kind.ERF_STEP: Capabilities(closed_avg=True, self_pair=True, det_gaps=True, mean_avg=True),
    Kind.GAUSS_BUMP: Capabilities(closed_avg=True, mean_avg=True),
    Kind.HEAVISIDE: Capabilities(closed_avg=True, self_pair=True, det_gaps=True,
                                 mean_avg=True),
    Kind.RELU: Capabilities(closed_avg=True, self_pair=True, det_gaps=True, mean_avg=True),
    Kind.IDENTITY: Capabilities(closed_avg=True, self_pair=True, det_gaps=True,
                                mean_avg=True),
    Kind.CONSTANT: Capabilities(closed_avg=True, det_gaps=True, mean_avg=True),
    Kind.SIGMOID: Capabilities(mean_table=True, analytic=True),
    Kind.FAST_SIGMOID: Capabilities(mean_table=True),
    Kind.ATAN: Capabilities(closed_avg=True, mean_table=True, analytic=True),
    Kind.BOXCAR: Capabilities(closed_avg=True, mean_avg=True),
    Kind.TRIANGLE: Capabilities(closed_avg=True, mean_avg=True),
    Kind.TABLE: Capabilities(closed_avg=True),
}


def closed_avg(kind: Kind | None) -> bool:
    """True when kind's Gaussian average has a closed form (None: a custom function)."""
    return kind is not None and CAPABILITIES[kind].closed_avg


def self_pair(kind: Kind | None) -> bool:
    """True when two functions of this kind have a closed pair expectation."""
    return kind is not None and CAPABILITIES[kind].self_pair


def mean_avg(kind: Kind | None) -> bool:
    """True when kind's Gaussian average with any mean has a closed form."""
    return kind is not None and CAPABILITIES[kind].mean_avg


def mean_table(kind: Kind | None) -> bool:
    """True when kind's Gaussian average with a mean is read from a 2-D table."""
    return kind is not None and CAPABILITIES[kind].mean_table


def analytic(kind: Kind | None) -> bool:
    """True when functions of this kind are analytic (Mehler series for their pairs)."""
    return kind is not None and CAPABILITIES[kind].analytic


def det_gaps(kind: Kind | None) -> bool:
    """True when an activation of this kind carries the determinant stably (``self_gaps``)."""
    return kind is not None and CAPABILITIES[kind].det_gaps


# Constants shared with the C++ headers (written into registry.cuh).
TABLE_PANEL = 0.25
"""Width of a panel of the Gaussian-average tables, in u = log s."""
TABLE_CHEB = 21
"""Chebyshev coefficients per table panel."""
MEAN_CHEB = 10
"""Chebyshev points per dimension of a cell of the 2-D (mean, s) tables."""
CORRELATION_DEGREE = 16
"""Chebyshev degree of a t panel of the tables in the correlation (and over variances)."""
VARIANCE_NODES = 32
"""Chebyshev nodes in log2 q per side of a cell of the tables over variances."""
MAX_PAIRS = 4
"""Kernels (left, right derivative pairs) one fused recursion computes at once."""
TERM_SIZE = 5
"""Doubles per term of a descriptor: kind, a, b, c, shift."""
BVN_NODES = (6, 12, 20)
"""Gauss–Legendre orders of the bivariate normal CDF's Plackett integral, by |rho|:"""
BVN_RHO_EDGES = (0.3, 0.75, 0.925)
"""|rho| below each edge takes the order of BVN_NODES at its place; from the last one on,
the expansion about rho = +-1."""
EXACT_DET_MAX_FEATURES = 8
"""Inputs with at most this many features get the layer-1 determinant by Lagrange's identity."""
WIDE_DET_RECHECK = 1e-4
"""Wider inputs: a layer-1 q q' - c^2 below this * q q' is recomputed from the inputs."""
NORM_GAP_TAYLOR = 1e-4
"""The erf family's norm gap takes its Taylor form where |delta| < this * (1 - x^2)."""

_CONSTANTS = (("kTablePanel", "double", TABLE_PANEL), ("kTableCheb", "int", TABLE_CHEB),
              ("kMeanCheb", "int", MEAN_CHEB),
              ("kCorrelationDegree", "int", CORRELATION_DEGREE),
              ("kVarianceNodes", "int", VARIANCE_NODES),
              ("kMaxPairs", "int", MAX_PAIRS), ("kTermSize", "int", TERM_SIZE),
              ("kBvnRho6", "double", BVN_RHO_EDGES[0]), ("kBvnRho12", "double", BVN_RHO_EDGES[1]),
              ("kBvnNearOne", "double", BVN_RHO_EDGES[2]),
              ("kExactDetMaxFeatures", "int", EXACT_DET_MAX_FEATURES),
              ("kWideDetRecheck", "double", WIDE_DET_RECHECK),
              ("kNormGapTaylor", "double", NORM_GAP_TAYLOR))


def _camel(kind: Kind) -> str:
    special = {Kind.GAUSS_BUMP: "GaussBump", Kind.RELU: "ReLU"}
    return "k" + special.get(kind, kind.name.title().replace("_", ""))


def legendre(order: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Gauss–Legendre nodes and weights on [-1, 1] (NumPy's), as Python floats."""
    import numpy as np

    x, w = np.polynomial.legendre.leggauss(order)
    return tuple(float(v) for v in x), tuple(float(v) for v in w)


def _legendre_lines() -> list[str]:
    """gl_node<N>(i), gl_weight<N>(i) for the BVN orders (local arrays: valid on the device)."""
    lines = ["// Gauss–Legendre nodes and weights on [-1, 1] (numpy.polynomial.legendre.leggauss).",
             "template <int N>", "GK_HD double gl_node(int i);", "template <int N>",
             "GK_HD double gl_weight(int i);"]
    for n in BVN_NODES:
        x, w = legendre(n)
        for name, vals in (("gl_node", x), ("gl_weight", w)):
            body = ", ".join(repr(v) for v in vals)
            lines += ["template <>", f"GK_HD double {name}<{n}>(int i) {{",
                      f"  const double v[{n}] = {{{body}}};", "  return v[i];", "}"]
    return lines + [""]


def header() -> str:
    """The text of cuda/gpukern/registry.cuh."""
    b = lambda v: "true" if v else "false"  # noqa: E731
    lines = ["// Generated from gpukern/registry.py by `python -m gpukern.registry "
             "cuda/gpukern/registry.cuh`;",
             "// do not edit (tests/test_contract.py checks that it is current).",
             "#pragma once", "", '#include "common.cuh"', "", "namespace gk {", "",
             "enum Kind : int {"]
    lines += [f"  {_camel(k)} = {int(k)}," for k in Kind]
    lines += ["};", "", "// X(name) for every kind, in enum order (dispatch_kind's cases)",
              "#define GK_FOR_EACH_KIND(X) \\"]
    last = max(Kind)
    lines += [f"  X({_camel(k)})" + ("" if k == last else " \\") for k in Kind]
    lines += ["", "// Kinds whose Gaussian average has a closed form.", "template <int K>",
              "GK_HD constexpr bool has_avg() {", "  switch (K) {"]
    lines += [f"    case {_camel(k)}: return {b(CAPABILITIES[k].closed_avg)};" for k in Kind]
    lines += ["  }", "  return false;", "}", "",
              "// Kinds whose self pair E[f(u) g(v)] (both of this kind) has a closed form.",
              "template <int K>", "GK_HD constexpr bool has_self_pair() {", "  switch (K) {"]
    lines += [f"    case {_camel(k)}: return {b(CAPABILITIES[k].self_pair)};" for k in Kind]
    lines += ["  }", "  return false;", "}", "",
              "// Activation kinds that carry the determinant stably (gaps_k).",
              "template <int K>", "GK_HD constexpr bool has_det_gaps() {", "  switch (K) {"]
    lines += [f"    case {_camel(k)}: return {b(CAPABILITIES[k].det_gaps)};" for k in Kind]
    lines += ["  }", "  return false;", "}", "",
              "// Kinds whose Gaussian average with a mean has a closed form.",
              "template <int K>", "GK_HD constexpr bool has_mean_avg() {", "  switch (K) {"]
    lines += [f"    case {_camel(k)}: return {b(CAPABILITIES[k].mean_avg)};" for k in Kind]
    lines += ["  }", "  return false;", "}", ""]
    lines += _legendre_lines()
    lines += [f"constexpr {t} {name} = {v!r};" for name, t, v in _CONSTANTS]
    lines += ["", "}  // namespace gk", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    with open(sys.argv[1], "w") as fh:
        fh.write(header())
