// Each function kind's formulas, written once for host and device: its value (value_k),
// its Gaussian average E[g(v)], v ~ N(0, s2) (gauss_avg_k, where closed) and the average
// with a mean E[g(m + s Z)] (gauss_avg_mean_k, where closed). A kernel receives any
// activation, derivative or surrogate as a descriptor: n, then n terms
// {kind, a, b, c, shift}, the function being sum_k f_k(v - shift_k)
// (ScalarFunction.descriptor() in gpukern/functions.py); the kinds and their capabilities
// are gpukern/registry.py's, generated into registry.cuh.
#pragma once

#include "registry.cuh"

namespace gk {

// One term: f(v - shift) for a function f of the kind.
struct Fn {
  int kind;
  double a, b, c, shift;
  const double* coef;  // kTable: kTableCheb Chebyshev coefficients per panel, else null
};

// The term whose kTermSize doubles start at d.
GK_HD Fn make_fn(const double* d) {
  Fn f;
  f.kind = static_cast<int>(d[0]);
  f.a = d[1];
  f.b = d[2];
  f.c = d[3];
  f.shift = d[4];
  f.coef = nullptr;
  return f;
}

// A function: n terms, read from a descriptor {n, term, term, ...}.
struct Terms {
  const double* d;
  int n;
  GK_HD Fn operator[](int i) const { return make_fn(d + kTermSize * i); }
};

GK_HD Terms terms_at(const double* desc) { return {desc + 1, static_cast<int>(desc[0])}; }

// Doubles of the descriptor at desc (the next one starts there).
GK_HD int descriptor_size(const double* desc) {
  return 1 + kTermSize * static_cast<int>(desc[0]);
}

// One term at shift 0: the kind as it is (carried determinants, closed self pairs).
GK_HD bool plain(const Terms& t) { return t.n == 1 && t.d[4] == 0.0; }

GK_HD bool is_delta(const Fn& f) { return f.kind == kGaussBump && f.a == 0.0; }

constexpr int kNoKind = -1;  // a kind index outside the enum (dispatch's default)

// Calls op.template run<K>() with the runtime kind k as a compile-time constant, so that
// a loop inside run<K> has no branch on the kind.
template <typename Op>
GK_HD auto dispatch_kind(int k, Op& op) {
  switch (k) {
#define GK_CASE(K) \
  case K:          \
    return op.template run<K>();
    GK_FOR_EACH_KIND(GK_CASE)
#undef GK_CASE
  }
  return op.template run<kNoKind>();
}

// f(v) for a kind known at compile time. A delta evaluates to 0 (it is 0 almost
// everywhere); a table (known by its average only) to NaN.
template <int K, typename T>
GK_HD T value_k(const Fn f, T v) {
  const T a = T(f.a), b = T(f.b), c = T(f.c);
  v = v - T(f.shift);  // exact at shift 0
  if constexpr (K == kErfStep) {
    return c + b * (a == T(0) ? (v > T(0) ? T(1) : (v < T(0) ? T(-1) : T(0)))
                              : erf(v * (T(1) / sqrt(a))));
  } else if constexpr (K == kGaussBump) {
    return a == T(0) ? T(0) : (b / sqrt(T(kPi) * a)) * exp(v * v * (T(-1) / a));
  } else if constexpr (K == kHeaviside) {
    return b * T(0.5) * (T(1) + (v > T(0) ? T(1) : (v < T(0) ? T(-1) : T(0))));
  } else if constexpr (K == kReLU) {
    return v > T(0) ? v : T(0);
  } else if constexpr (K == kIdentity) {
    return v;
  } else if constexpr (K == kConstant) {
    return b;
  } else if constexpr (K == kSigmoid) {
    const T e = exp(-a * fabs(v));
    return (b * T(2) * a) * e / ((T(1) + e) * (T(1) + e));
  } else if constexpr (K == kFastSigmoid) {
    const T d = T(1) + a * fabs(v);
    return (b * a) / (d * d);
  } else if constexpr (K == kAtan) {
    const T x = T(kPi) * a / T(2) * v;
    return (b * a) / (T(1) + x * x);
  } else if constexpr (K == kBoxcar) {
    return fabs(v) < a ? b / a : T(0);
  } else if constexpr (K == kTriangle) {
    const T r = T(1) - fabs(v) * (T(1) / a);
    return (b * T(2) / a) * (r > T(0) ? r : T(0));
  } else {
    return T(GK_NAN);
  }
}

// G(s) from the table: panel k = floor(u / kTablePanel), u = log(s2) / 2, x in [-1, 1] its
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
  const T off_table = row == clamped ? T(0) : T(GK_NAN);  // v + 0 = v; v + NaN = NaN
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

// E[max(m + s Z, 0)] = m Phi(m/s) + s phi(m/s) (max(m, 0) at s = 0)
template <typename T>
GK_HD T ramp_avg(T m, T s2) {
  const T s = sqrt(s2);
  const T z = s > T(0) ? m / s : T(0);
  const T val = m * ndtr(z) + s * (T(kInvSqrt2Pi) * exp(T(-0.5) * z * z));
  return s > T(0) ? val : (m > T(0) ? m : T(0));
}

// E[g(m + s Z)], s^2 = s2, for kinds with a closed form (has_mean_avg; functions.py's
// gauss_avg_mean); the shift of g is the caller's (m already includes -shift).
template <int K, typename T>
GK_HD T gauss_avg_mean_k(const Fn g, T m, T s2) {
  const T a = T(g.a), b = T(g.b), c = T(g.c);
  if constexpr (K == kErfStep) {  // offset + amp erf(m / sqrt(t + 2 s2))
    const T width = a + T(2) * s2;
    const T sgn = m > T(0) ? T(1) : (m < T(0) ? T(-1) : T(0));
    const T e = erf(m / sqrt(width > T(0) ? width : T(1)));  // unconditional: loops vectorise
    return c + b * (width > T(0) ? e : sgn);
  } else if constexpr (K == kGaussBump) {  // weight exp(-m^2 / D) / sqrt(pi D), D = t + 2 s2
    const T width = a + T(2) * s2;
    const T dens = b / sqrt(T(kPi) * width) * exp(-(m * m) / width);
    return width > T(0) ? dens : (m == T(0) ? T(GK_INF) : T(0));
  } else if constexpr (K == kHeaviside) {  // scale Phi(m / s)
    const T s = sqrt(s2);
    const T sgn = m > T(0) ? T(1) : (m < T(0) ? T(-1) : T(0));
    const T p = ndtr(m / (s > T(0) ? s : T(1)));
    return b * (s > T(0) ? p : T(0.5) * (T(1) + sgn));
  } else if constexpr (K == kReLU) {
    return ramp_avg(m, s2);
  } else if constexpr (K == kIdentity) {
    return m;
  } else if constexpr (K == kConstant) {
    return b;
  } else if constexpr (K == kBoxcar) {  // (scale/2w) [erf((w - m)/(sqrt 2 s)) + erf((w + m)/(sqrt 2 s))]
    const T s = sqrt(s2);
    const T r = T(1) / (T(kSqrt2) * s);
    const T val = (T(0.5) / a) * (erf((a - m) * r) + erf((a + m) * r));
    return b * (s > T(0) ? val : (fabs(m) < a ? T(1) / a : T(0)));
  } else if constexpr (K == kTriangle) {  // (2 scale/w^2) [R(m + w) - 2 R(m) + R(m - w)]
    const T val = (T(2) / (a * a)) * (ramp_avg(m + a, s2) - T(2) * ramp_avg(m, s2) +
                                      ramp_avg(m - a, s2));
    const T r = T(1) - fabs(m) * (T(1) / a);
    const T out = b * (s2 > T(0) ? val : (T(2) / a) * (r > T(0) ? r : T(0)));
    return m == T(0) ? gauss_avg_k<kTriangle, T>(g, s2) : out;  // no cancellation at m = 0
  } else {
    return T(0);  // no closed form (has_mean_avg<K>() is false)
  }
}

template <typename T>
struct ValueOp {
  const Fn& f;
  T v;
  template <int K>
  GK_HD T run() { return value_k<K, T>(f, v); }
};

// f(v), dispatched on the runtime kind.
template <typename T>
GK_HD T value(const Fn& f, T v) {
  ValueOp<T> op{f, v};
  return dispatch_kind(f.kind, op);
}

// sum_k f_k(v - shift_k)
template <typename T>
GK_HD T value(const Terms& f, T v) {
  T acc = value(f[0], v);
  for (int i = 1; i < f.n; ++i) acc += value(f[i], v);
  return acc;
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

}  // namespace gk
