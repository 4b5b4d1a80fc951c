// Evaluation of the Gaussian-average tables (gpukern/tables.py builds them): a table is
// data, one array of Chebyshev coefficients per cell, and this is the one evaluation code
// for the host (the compiled CPU path) and the device.
#pragma once

#include "registry.cuh"

namespace gk {

// sum_{a,b < n} coef[a n + b] T_a(x) T_b(y), x, y in [-1, 1], n <= kMeanCheb: the basis
// values by the three-term recurrence, then a product per row (independent multiply-adds,
// not Clenshaw's chain of dependent ones).
GK_HD double cheb2d(const double* coef, int n, double x, double y) {
  double tx[kMeanCheb], ty[kMeanCheb];
  tx[0] = ty[0] = 1.0;
  if (n > 1) {
    tx[1] = x;
    ty[1] = y;
  }
  for (int k = 2; k < n; ++k) {
    tx[k] = 2.0 * x * tx[k - 1] - tx[k - 2];
    ty[k] = 2.0 * y * ty[k - 1] - ty[k - 2];
  }
  double total = 0.0;
  for (int a = 0; a < n; ++a) {
    const double* row = coef + a * n;
    double r = 0.0;
    for (int b = 0; b < n; ++b) r += row[b] * ty[b];
    total += tx[a] * r;
  }
  return total;
}

}  // namespace gk
