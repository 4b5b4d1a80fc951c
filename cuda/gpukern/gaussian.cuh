// Closed-form Gaussian expectations (gpukern/gaussian.py, gpukern/functions.py):
//   gauss_avg(g, s2)           E[g(v)], v ~ N(0, s2)
//   pair(f, g, q, qp, c, det)  E[f(u) g(v)], (u, v) ~ N(0, [[q, c], [c, qp]])
// Each formula is written once, for kinds known at compile time (gauss_avg_k<K>,
// pair_k<F, G>), so that a loop over entries of one pair has no branch on the kind and
// vectorises (the CPU path, cuda/cpu_kernels.cpp); gauss_avg and pair dispatch on the
// runtime kinds and return false through `ok` where no closed form exists (quadrature
// pairs run on the array path instead). The operation order follows the NumPy code, so
// that host builds with -ffp-contract=off agree with it to rounding.
#pragma once

#include "functions.cuh"

namespace gk {

// Kinds whose Gaussian average has a closed form.
template <int K>
GK_HD constexpr bool has_avg() {
  return K == kErfStep || K == kGaussBump || K == kHeaviside || K == kReLU ||
         K == kIdentity || K == kConstant || K == kAtan || K == kBoxcar || K == kTriangle ||
         K == kTable;
}

// Kind pairs (f, g) whose E[f(u) g(v)] has a closed form (the order of pair_k's cases).
template <int F, int G>
GK_HD constexpr bool has_pair() {
  if (F == kGaussBump) return has_avg<G>();
  if (G == kGaussBump) return has_avg<F>();
  if (F == kConstant) return has_avg<G>();
  if (G == kConstant) return has_avg<F>();
  return F == G && (F == kErfStep || F == kHeaviside || F == kReLU || F == kIdentity);
}

constexpr double kTablePanel = 0.25;  // panel width in u = log s (gaussian.py _PANEL)
constexpr int kTableCheb = 21;        // Chebyshev coefficients per panel (gaussian.py _CHEB)

// G(s) from the table: panel k = floor(u / 0.25), u = log(s2) / 2, x in [-1, 1] its
// local coordinate, Clenshaw's recurrence (the order of gaussian.py table_avg). NaN
// where the panel is not in the table (the caller computes such entries otherwise).
template <typename T>
GK_HD T table_avg(const double* coef, T first, T panels, T g0, T s2) {
  // selects of doubles only (no branch, no boolean logic), so that loops vectorise
  const T pos = (T(0.5) * log(s2 > T(0) ? s2 : T(1))) / T(kTablePanel);
  const T k = floor(pos);
  const T row = k - first;
  const T last = panels - T(1);
  const T clamped = row < T(0) ? T(0) : (row > last ? last : row);  // a valid panel always
  const int base = static_cast<int>(clamped) * kTableCheb;
  T x = T(2) * (pos - k) - T(1);
  x = x < T(-1) ? T(-1) : (x > T(1) ? T(1) : x);
  T b1 = T(0), b2 = T(0);
#if defined(__CUDACC__)
#pragma unroll
#else
#pragma GCC unroll 32  // fully unrolled: no inner loop, so the loop over entries vectorises
#endif
  for (int j = kTableCheb - 1; j > 0; --j) {
    const T t = T(2) * x * b1 - b2 + T(coef[base + j]);
    b2 = b1;
    b1 = t;
  }
  const T v = x * b1 - b2 + T(coef[base]);
  const T off_table = row == clamped ? T(0) : T(NAN);  // v + 0 = v; v + NaN = NaN
  return s2 > T(0) ? v + off_table : g0;
}

template <int K, typename T>
GK_HD T gauss_avg_k(const Fn g, T s2) {
  const T a = T(g.a), b = T(g.b), c = T(g.c);
  if constexpr (K == kErfStep) {
    return c;
  } else if constexpr (K == kGaussBump) {  // weight / sqrt(pi (t + 2 s2)); +inf: delta, s2 = 0
    return b / sqrt(T(kPi) * (a + T(2) * s2));
  } else if constexpr (K == kHeaviside) {
    return T(0.5) * b;
  } else if constexpr (K == kReLU) {
    return sqrt(s2) * T(kInvSqrt2Pi);
  } else if constexpr (K == kIdentity) {
    return T(0);
  } else if constexpr (K == kConstant) {
    return b;
  } else if constexpr (K == kAtan) {  // sqrt(pi) z erfcx(z), z = 1 / (sqrt 2 (pi alpha / 2) s)
    const T s = sqrt(s2);
    if (!(s > T(0))) return b * a;
    const T z = T(1) / (T(kSqrt2) * (T(kPi) * a / T(2)) * s);
    return (b * a) * (T(kSqrtPi) * z * erfcx_pos(z));
  } else if constexpr (K == kBoxcar) {  // (2 Phi(w/s) - 1) / w = erf(w / (sqrt 2 s)) / w
    const T s = sqrt(s2);
    if (!(s > T(0))) return b * (T(1) / a);
    return b * (erf(a / (T(kSqrt2) * s)) / a);
  } else if constexpr (K == kTable) {
    return table_avg(g.coef, a, b, c, s2);
  } else if constexpr (K == kTriangle) {  // (4/w)[erf(z/sqrt 2)/2 + (s/w) phi(0) expm1(-z^2/2)]
    const T s = sqrt(s2);
    if (!(s > T(0))) return b * (T(2) / a);
    const T z = a / s;
    return b * ((T(4) / a) * (T(0.5) * erf(z * (T(1) / T(kSqrt2))) +
                              (s / a) * T(kInvSqrt2Pi) * expm1(T(-0.5) * z * z)));
  } else {
    return T(0);  // no closed form (has_avg<K>() is false)
  }
}

// E[bump(u) g(v)] = pref * E_{N(0, s2)}[g], pref = weight / sqrt(pi (t + 2q)),
// s2 = (t q' + 2 det) / (t + 2q); +inf where pref is (a delta at q = 0).
template <int G, typename T>
GK_HD T tilted_k(const Fn bump, const Fn g, T q, T qp, T det) {
  const T t = T(bump.a);
  const T denom = t + T(2) * q;
  const T pref = T(bump.b) / sqrt(T(kPi) * denom);
  const T s2 = denom > T(0) ? (t * qp + T(2) * det) / denom : qp;
  const T avg = gauss_avg_k<G, T>(g, s2);
  const T value = pref * avg;  // a select, not a branch: loops over entries vectorise
  return isinf(pref) ? T(INFINITY) : value;
}

// The root that the erf x erf and bump x bump closed forms share:
// sqrt((t_f + 2q)(t_g + 2q') - 4c^2), written with det = q q' - c^2 (no cancellation).
template <typename T>
GK_HD T family_root(T tf, T tg, T q, T qp, T det) {
  return sqrt(tf * tg + T(2) * tf * qp + T(2) * tg * q + T(4) * det);
}

// E[erf-step f(u) erf-step g(v)] = c_f c_g + b_f b_g (2/pi) atan2(2c, root)
template <typename T>
GK_HD T erf_pair(const Fn f, const Fn g, T c, T root) {
  const T angle = atan2(T(2) * c, root);
  return T(f.c) * T(g.c) + T(f.b) * T(g.b) * (T(2) / T(kPi)) * angle;
}

// E[bump f(u) bump g(v)] = b_f b_g / (pi root): the tilt in one step; +inf where root = 0
// (deltas meeting det = 0 or q = 0), as the tilt gives
template <typename T>
GK_HD T bump_pair(const Fn f, const Fn g, T root) {
  return (T(f.b) * T(g.b) / T(kPi)) / root;
}

template <int F, int G, typename T>
GK_HD T pair_k(const Fn f, const Fn g, T q, T qp, T c, T det) {
  if constexpr (F == kGaussBump && G == kGaussBump) {
    return bump_pair(f, g, family_root(T(f.a), T(g.a), q, qp, det));
  } else if constexpr (F == kGaussBump) {
    return tilted_k<G, T>(f, g, q, qp, det);
  } else if constexpr (G == kGaussBump) {
    return tilted_k<F, T>(g, f, qp, q, det);
  } else if constexpr (F == kConstant) {
    return T(f.b) * gauss_avg_k<G, T>(g, qp);
  } else if constexpr (G == kConstant) {
    return T(g.b) * gauss_avg_k<F, T>(f, q);
  } else if constexpr (F == kErfStep && G == kErfStep) {
    return erf_pair(f, g, c, family_root(T(f.a), T(g.a), q, qp, det));
  } else if constexpr (F == kHeaviside && G == kHeaviside) {
    const T angle = atan2(c, sqrt(det));
    return T(f.b) * T(g.b) * (T(0.25) + angle * (T(0.5) / T(kPi)));
  } else if constexpr (F == kReLU && G == kReLU) {
    const T root = sqrt(det);
    const T theta = atan2(root, c);
    return (root + (T(kPi) - theta) * c) * (T(0.5) / T(kPi));
  } else if constexpr (F == kIdentity && G == kIdentity) {
    return c;
  } else {
    return T(0);  // no closed form (has_pair<F, G>() is false)
  }
}

// Calls op.template run<F, G>() with both runtime kinds as compile-time constants.
template <typename Op>
struct SecondKind {
  Op& op;
  template <int G>
  struct Bound {
    Op& op;
    template <int F>
    GK_HD auto run() { return op.template run<F, G>(); }
  };
  int kf;
  template <int G>
  GK_HD auto run() {
    Bound<G> b{op};
    return dispatch_kind(kf, b);
  }
};

template <typename Op>
GK_HD auto dispatch_pair(int kf, int kg, Op& op) {
  SecondKind<Op> second{op, kf};
  return dispatch_kind(kg, second);
}

template <typename T>
struct AvgOp {
  const Fn& g;
  T s2;
  bool& ok;
  template <int K>
  GK_HD T run() {
    ok = has_avg<K>();
    return gauss_avg_k<K, T>(g, s2);
  }
};

template <typename T>
GK_HD T gauss_avg(const Fn& g, T s2, bool& ok) {
  AvgOp<T> op{g, s2, ok};
  return dispatch_kind(g.kind, op);
}

template <typename T>
struct PairOp {
  const Fn& f;
  const Fn& g;
  T q, qp, c, det;
  bool& ok;
  template <int F, int G>
  GK_HD T run() {
    ok = has_pair<F, G>();
    return pair_k<F, G, T>(f, g, q, qp, c, det);
  }
};

template <typename T>
GK_HD T pair(const Fn& f, const Fn& g, T q, T qp, T c, T det, bool& ok) {
  PairOp<T> op{f, g, q, qp, c, det, ok};
  return dispatch_pair(f.kind, g.kind, op);
}

}  // namespace gk
