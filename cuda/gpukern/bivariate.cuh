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

// Each scheme in pieces (prepare, one node's term, finish), so that the CPU loop can run
// node by node over many entries; the per-entry functions below compose the same pieces.

// Plackett's integral: the node term w exp((sn hk - hs)/(1 - sn^2)), sn = sin(asr (x + 1)/2)
template <typename T>
struct Plackett {
  T hk, hs, asr;
};

template <typename T>
GK_HD Plackett<T> plackett_prepare(T h, T k, T rho, T s2) {
  return {h * k, T(0.5) * (h * h + k * k), atan2(rho, sqrt(s2))};
}

template <typename T>
GK_HD T plackett_term(const Plackett<T>& p, T x, T w) {
  const T sn = sin(p.asr * (T(0.5) * (x + T(1))));
  return w * exp((sn * p.hk - p.hs) / (T(1) - sn * sn));
}

template <typename T>
GK_HD T plackett_finish(const Plackett<T>& p, T h, T k, T acc) {
  return ndtr(-h) * ndtr(-k) + acc * p.asr * (T(0.5) / (T(2) * T(kPi)));
}

template <int N, typename T>
GK_HD T bvn_middle(T h, T k, T rho, T s2) {
  const Plackett<T> p = plackett_prepare(h, k, rho, s2);
  T acc = T(0);
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int i = 0; i < N; ++i) acc = acc + plackett_term(p, T(gl_node<N>(i)), T(gl_weight<N>(i)));
  return plackett_finish(p, h, k, acc);
}

// The expansion about rho = 1: the series part exactly, then one node's term of the rest
template <typename T>
struct NearOne {
  T upper, hk, bs, c, d, half, total;
  bool live;
};

template <typename T>
GK_HD NearOne<T> near_one_prepare(T h, T k, T s2) {
  NearOne<T> n;
  n.upper = ndtr(-(h > k ? h : k));
  n.live = s2 > T(0);  // rho = 1: the upper probability alone
  s2 = n.live ? s2 : T(1);
  const T a = sqrt(s2);
  n.hk = h * k;
  n.bs = (h - k) * (h - k);
  const T b = sqrt(n.bs);
  n.c = (T(4) - n.hk) / T(8);
  n.d = (T(12) - n.hk) / T(16);
  const T asr = T(-0.5) * (n.bs / s2 + n.hk);
  const T series = a * exp(asr) * (T(1) - n.c * (n.bs - s2) * (T(1) - n.d * n.bs / T(5)) / T(3) +
                                   n.c * n.d * s2 * s2 / T(5));
  // computed unconditionally (loops vectorise), dropped where hk <= -100 (negligible there)
  const T tail_v = exp(T(-0.5) * n.hk) * (sqrt(T(2) * T(kPi)) * ndtr(-b / a)) * b *
                   (T(1) - n.c * n.bs * (T(1) - n.d * n.bs / T(5)) / T(3));
  const T tail = n.hk > T(-100) ? tail_v : T(0);
  n.total = series - tail;
  n.half = T(0.5) * a;
  return n;
}

template <typename T>
GK_HD T near_one_term(const NearOne<T>& n, T x, T w) {
  const T xr = n.half * (x + T(1));
  const T xsq = xr * xr;
  const T rs = sqrt(T(1) - xsq);
  const T expo = T(-0.5) * (n.bs / xsq + n.hk);
  const T rest = exp(-n.hk * (T(1) - rs) / (T(2) * (T(1) + rs))) / rs -
                 (T(1) + n.c * xsq * (T(1) + n.d * xsq));
  return (n.half * w) * exp(expo) * rest;
}

template <typename T>
GK_HD T near_one_finish(const NearOne<T>& n, T total) {
  return n.upper - (n.live ? total : T(0)) / (T(2) * T(kPi));
}

template <typename T>
GK_HD T bvn_near_one(T h, T k, T s2) {
  const NearOne<T> n = near_one_prepare(h, k, s2);
  T total = n.total;
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int i = 0; i < 20; ++i) total = total + near_one_term(n, T(gl_node<20>(i)), T(gl_weight<20>(i)));
  return near_one_finish(n, total);
}

// The scheme for finite h, k: 0, 1, 2 Plackett's integral with 6, 12, 20 nodes, 3 the
// expansion about rho = +-1.
template <typename T>
GK_HD int bvn_class(T rho) {
  const T a = fabs(rho);
  return a < T(kBvnRho6) ? 0 : (a < T(kBvnRho12) ? 1 : (a < T(kBvnNearOne) ? 2 : 3));
}

template <typename T>
GK_HD T clamp01(T p) {
  return p < T(0) ? T(0) : (p > T(1) ? T(1) : p);
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
  return clamp01(out);
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
