// Closed-form pair expectations (gpukern/gaussian.py):
//   pair(f, g, q, qp, c, det)  E[f(u) g(v)], (u, v) ~ N(0, [[q, c], [c, qp]])
// through the Gaussian tilt (a bump or delta side: the other side's gauss_avg_k of
// functions.cuh), a constant side, or a closed self pair. Each formula is written once,
// for kinds known at compile time (pair_k<F, G>), so that a loop over entries of one pair
// has no branch on the kind and vectorises (the CPU path); pair dispatches on the runtime
// kinds and returns false through `ok` where no closed form exists (quadrature pairs run
// on the array path instead). The operation order follows the NumPy code, so
// that host builds with -ffp-contract=off agree with it to rounding.
#pragma once

#include "functions.cuh"

namespace gk {

// Kind pairs (f, g) whose E[f(u) g(v)] has a closed form (the order of pair_k's cases).
template <int F, int G>
GK_HD constexpr bool has_pair() {
  if (F == kGaussBump) return has_avg<G>();
  if (G == kGaussBump) return has_avg<F>();
  if (F == kConstant) return has_avg<G>();
  if (G == kConstant) return has_avg<F>();
  return F == G && has_self_pair<F>();
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
  return isinf(pref) ? T(GK_INF) : value;
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
