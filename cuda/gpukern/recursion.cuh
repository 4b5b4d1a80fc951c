// The layerwise Gram recursion for one (i, j) entry (gpukern/analytic.py), all layers in
// registers:
//   Sigma_1 = sw2 <x, x'>/n0 + sb2,  Sigma_{l+1} = sw2 E[s(u) s(v)] + sb2,
//   K_1 = Sigma_1,                   K_{l+1} = Sigma_{l+1} + sw2 E[a(u) b(v)] K_l  (0 * inf = 0)
// in the NTK parameterization; in general each layer's own term is own[2l] E_l + own[2l+1]
// with E_0 = <x, x'>/n0, E_l = E[s(u) s(v)] (standard parameterization: n_l E_l + 1;
// gpukern/architecture.py, Architecture.own_terms)
// with c = q exactly and det = 0 for coinciding inputs, the layer-1 determinant by
// Lagrange's identity for n0 <= 8 (wider: q q' - c^2, recomputed from the inputs where it
// is below kWideDetRecheck q q') and each next one from sigma's gaps (next_det), so
// that det = q q' - c^2 never suffers cancellation for (anti)collinear inputs (an
// activation with thresholds or several terms has no gaps: q q' - c^2).
#pragma once

#include "gaussian.cuh"
#include "tables.cuh"

namespace gk {

template <typename T>
GK_HD T mul0(T d, T k) {
  return (k == T(0) || d == T(0)) ? T(0) : d * k;
}

// a b - c d from exact products: (p1 - p2) + (e1 - e2), e = fma(a, b, -p) the rounding
// error of p = a b (analytic._two_product's number)
template <typename T>
GK_HD T cross_product(T a, T b, T c, T d) {
  const T p1 = a * b, p2 = c * d;
  return (p1 - p2) + (fma(a, b, -p1) - fma(c, d, -p2));
}

// det_1 = (sw2/n0)^2 sum_{i<j} (x_i y_j - x_j y_i)^2 + (sw2 sb2 / n0) |x - y|^2
template <typename T>
GK_HD T layer1_det(const T* x, const T* y, int n0, T sw2, T sb2) {
  T wedge = T(0);
  for (int i = 0; i < n0; ++i)
    for (int j = i + 1; j < n0; ++j) {
      const T cross = cross_product(x[i], y[j], x[j], y[i]);
      wedge += cross * cross;
    }
  T diff = T(0);
  if (sb2 > T(0))
    for (int i = 0; i < n0; ++i) {
      const T d = x[i] - y[i];
      diff += d * d;
    }
  return (sw2 / T(n0)) * (sw2 / T(n0)) * wedge + (sw2 * sb2 / T(n0)) * diff;
}

// y - (hi + lo) x with hi x an exact product
template <typename T>
GK_HD T residual(T hi, T lo, T x, T y) {
  const T p = hi * x;
  return ((y - p) - fma(hi, x, -p)) - lo * x;
}

// det_1 of wider inputs in O(n0): |x|^2 |y|^2 - <x, y>^2 = |x|^2 |y - lam x|^2,
// lam = hi + lo = <x, y>/|x|^2 + <x, r>/|x|^2 (analytic._residual_det)
template <typename T>
GK_HD T layer1_det_wide(const T* x, const T* y, int n0, T sw2, T sb2) {
  T xx = T(0), xy = T(0);
  for (int k = 0; k < n0; ++k) {
    xx += x[k] * x[k];
    xy += x[k] * y[k];
  }
  const T hi = xx > T(0) ? xy / xx : T(0);
  T xr = T(0);
  for (int k = 0; k < n0; ++k) xr += x[k] * residual(hi, T(0), x[k], y[k]);
  const T lo = xx > T(0) ? xr / xx : T(0);
  T rr = T(0), diff = T(0);
  for (int k = 0; k < n0; ++k) {
    const T r = residual(hi, lo, x[k], y[k]);
    rr += r * r;
    const T d = x[k] - y[k];
    diff += d * d;
  }
  return (sw2 / T(n0)) * (sw2 / T(n0)) * (xx * rr) + (sw2 * sb2 / T(n0)) * diff;
}

// One entry. q1[l * s1], q2[l * s2] are the layer-l diagonals of the two points; x, y
// their inputs; sigma and the pairs' sides are functions as terms (sums of thresholded
// terms: a quantizer's steps, deltas and surrogates). series (or null): the pairs summed
// by Mehler's series, the entry being (i, j) of its tile (a function known only by its
// series has no terms); corr (or null): the (pair, layer)s read from a table in the
// correlation, before any other route. Returns false if a pair has no closed form or a
// point no series.
template <typename T>
GK_HD bool recursion_entry(int depth, T sw2, T sb2, const double* own, const Terms& sigma,
                           int npairs, const Terms* lefts, const Terms* rights, T gram,
                           const T* q1, int s1, const T* q2, int s2, bool same, const T* x,
                           const T* y, int n0, T* nngp_out, T* k_out,
                           const SeriesTile* series = nullptr, int i = 0, int j = 0,
                           const CorrelationTile* corr = nullptr) {
  T sig = sw2 * gram + sb2;
  T k[kMaxPairs];
  const T own0 = T(own[0]) * gram + T(own[1]);
  for (int p = 0; p < npairs; ++p) k[p] = own0;
  bool ok = true, good = true, carried = false;
  T det_next = T(0);
  for (int l = 0; l < depth; ++l) {
    const T q = q1[l * s1], qp = q2[l * s2];
    const T c = same ? q : sig;
    T det;
    if (same) {
      det = T(0);
    } else if (l == 0 && n0 <= kExactDetMaxFeatures) {
      det = layer1_det(x, y, n0, sw2, sb2);
    } else if (carried) {
      det = det_next;
    } else {
      det = q * qp - c * c;
      det = det > T(0) ? det : T(0);
      if (l == 0 && det < T(kWideDetRecheck) * (q * qp)) det = layer1_det_wide(x, y, n0, sw2, sb2);
    }
    const double* table = corr ? corr->at(npairs, l, depth) : nullptr;
    const T avg = table ? T(correlation_entry(table, q, qp, c, det))
                  : series && series->on[npairs]
                      ? series_entry(*series, npairs, l, depth, i, j, q, qp, c, ok)
                      : pair_terms(sigma, sigma, q, qp, c, det, ok);
    const T next = sw2 * avg + sb2;
    const T own_l = T(own[2 * l + 2]) * avg + T(own[2 * l + 3]);
    good = good && ok;
    for (int p = 0; p < npairs; ++p) {
      const double* tp = corr ? corr->at(p, l, depth) : nullptr;
      const T d = tp ? T(correlation_entry(tp, q, qp, c, det))
                  : series && series->on[p]
                      ? series_entry(*series, p, l, depth, i, j, q, qp, c, ok)
                      : pair_terms(lefts[p], rights[p], q, qp, c, det, ok);
      good = good && ok;
      k[p] = own_l + sw2 * mul0(d, k[p]);
    }
    carried = false;  // thresholds and sums: q q' - c^2 (no gaps)
    if (l + 1 < depth && plain(sigma))
      det_next = gk::next_det(sigma[0], sw2, sb2, q, qp, c, det, carried);
    sig = next;
  }
  *nngp_out = sig;
  for (int p = 0; p < npairs; ++p) k_out[p] = k[p];
  return good;
}

}  // namespace gk
