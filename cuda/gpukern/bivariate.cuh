// The standard bivariate normal's upper orthant probability P(X > h, Y > k), correlation
// rho, with s2 = 1 - rho^2 given (gpukern/bivariate.py: the same scheme and operation
// order; Drezner–Wesolowsky as refined by Genz, written from its formulas):
//   |rho| < 0.925:  Phi(-h) Phi(-k) + (1/2pi) int_0^{asin rho} exp((hk sin t - (h^2+k^2)/2) / cos^2 t) dt
//                   by Gauss–Legendre with 6, 12 or 20 nodes;
//   rho >= 0.925:   Phi(-max(h, k)) - (1/2pi) int_0^sqrt(s2) e^{-(h-k)^2/(2x^2)} e^{-hk/(1+r_x)}/r_x dx,
//                   the integrand's series 1 + c x^2 + c d x^4 integrated exactly, the rest
//                   by 20-node Gauss–Legendre;
//   rho <= -0.925:  Phi(-h) - P(h, -k, -rho).
#pragma once

#include "registry.cuh"

namespace gk {

constexpr double kAsymptoticRho = 0.925;

template <int N, typename T>
GK_HD T plackett_sum(T hk, T hs, T asr) {
  T acc = T(0);
#if defined(__CUDACC__)
#pragma unroll
#else
#pragma GCC unroll 32  // fully unrolled: a loop over entries around it vectorises
#endif
  for (int i = 0; i < N; ++i) {
    const T sn = sin(asr * (T(0.5) * (T(gl_node<N>(i)) + T(1))));
    acc = acc + T(gl_weight<N>(i)) * exp((sn * hk - hs) / (T(1) - sn * sn));
  }
  return acc;
}

template <int N, typename T>
GK_HD T bvn_middle(T h, T k, T rho, T s2) {
  const T hk = h * k, hs = T(0.5) * (h * h + k * k);
  const T asr = atan2(rho, sqrt(s2));
  return ndtr(-h) * ndtr(-k) + plackett_sum<N>(hk, hs, asr) * asr * (T(0.5) / (T(2) * T(kPi)));
}

template <typename T>
GK_HD T bvn_near_one(T h, T k, T s2) {
  const T upper = ndtr(-(h > k ? h : k));
  const bool live = s2 > T(0);  // rho = 1: the upper probability alone
  s2 = live ? s2 : T(1);
  const T a = sqrt(s2);
  const T hk = h * k;
  const T bs = (h - k) * (h - k);
  const T b = sqrt(bs);
  const T c = (T(4) - hk) / T(8);
  const T d = (T(12) - hk) / T(16);
  const T asr = T(-0.5) * (bs / s2 + hk);
  const T series = a * exp(asr) * (T(1) - c * (bs - s2) * (T(1) - d * bs / T(5)) / T(3) +
                                   c * d * s2 * s2 / T(5));
  const T tail = hk > T(-100) ? exp(T(-0.5) * hk) * (sqrt(T(2) * T(kPi)) * ndtr(-b / a)) * b *
                                    (T(1) - c * bs * (T(1) - d * bs / T(5)) / T(3))
                              : T(0);
  T total = series - tail;
  const T half = T(0.5) * a;
#if defined(__CUDACC__)
#pragma unroll
#else
#pragma GCC unroll 32  // fully unrolled: a loop over entries around it vectorises
#endif
  for (int i = 0; i < 20; ++i) {
    const T xr = half * (T(gl_node<20>(i)) + T(1));
    const T xsq = xr * xr;
    const T rs = sqrt(T(1) - xsq);
    const T expo = T(-0.5) * (bs / xsq + hk);
    const T rest = exp(-hk * (T(1) - rs) / (T(2) * (T(1) + rs))) / rs -
                   (T(1) + c * xsq * (T(1) + d * xsq));
    total = total + (half * T(gl_weight<20>(i))) * exp(expo) * rest;
  }
  return upper - (live ? total : T(0)) / (T(2) * T(kPi));
}

// The scheme for finite h, k: 0, 1, 2 Plackett's integral with 6, 12, 20 nodes, 3 the
// expansion about rho = +-1.
template <typename T>
GK_HD int bvn_class(T rho) {
  const T a = fabs(rho);
  return a < T(0.3) ? 0 : (a < T(0.75) ? 1 : (a < T(kAsymptoticRho) ? 2 : 3));
}

// P(X > h, Y > k) for finite h, k by scheme C (bvn_class)
template <int C, typename T>
GK_HD T bvn_by_class(T h, T k, T rho, T s2) {
  T out;
  if constexpr (C == 0) {
    out = bvn_middle<6>(h, k, rho, s2);
  } else if constexpr (C == 1) {
    out = bvn_middle<12>(h, k, rho, s2);
  } else if constexpr (C == 2) {
    out = bvn_middle<20>(h, k, rho, s2);
  } else {
    const T near = bvn_near_one(h, rho < T(0) ? -k : k, s2);
    out = rho < T(0) ? ndtr(-h) - near : near;
  }
  return out < T(0) ? T(0) : (out > T(1) ? T(1) : out);
}

// P(X > h, Y > k); h, k may be +-inf
template <typename T>
GK_HD T bvn_upper(T h, T k, T rho, T s2) {
  s2 = s2 > T(0) ? s2 : T(0);
  if (isinf(h) || isinf(k)) {
    if (h == -T(GK_INF) && k == -T(GK_INF)) return T(1);
    if (h == -T(GK_INF)) return isinf(k) ? T(0) : ndtr(-k);
    if (k == -T(GK_INF)) return ndtr(-h);
    return T(0);
  }
  switch (bvn_class(rho)) {
    case 0: return bvn_by_class<0>(h, k, rho, s2);
    case 1: return bvn_by_class<1>(h, k, rho, s2);
    case 2: return bvn_by_class<2>(h, k, rho, s2);
    default: return bvn_by_class<3>(h, k, rho, s2);
  }
}

}  // namespace gk
