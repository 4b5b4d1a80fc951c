// The scalar functions of gpukern/functions.py as one tagged descriptor, so that a kernel
// receives any activation, derivative or surrogate as four numbers:
//   {kind, a, b, c}; the meaning of a, b, c per kind is written next to each enumerator
// and produced by ScalarFunction.cuda_descriptor() on the Python side.
#pragma once

#include "common.cuh"

namespace gk {

enum Kind : int {
  kErfStep = 0,      // offset c + amp b * erf(v / sqrt(a)); a = t = 1/m^2, a = 0: sign
  kGaussBump = 1,    // weight b / sqrt(pi a) exp(-v^2 / a); a = 0: b * delta(v)
  kHeaviside = 2,    // scale b * H(v), H(0) = 1/2
  kReLU = 3,         // max(v, 0)
  kIdentity = 4,     // v
  kConstant = 5,     // b
  kSigmoid = 6,      // scale b * (a/2) sech^2(a v / 2)
  kFastSigmoid = 7,  // scale b * a / (1 + a |v|)^2
  kAtan = 8,         // scale b * a / (1 + (pi a v / 2)^2)
  kBoxcar = 9,       // scale b / a on |v| < a
  kTriangle = 10,    // scale b * (2/a) max(0, 1 - |v|/a)
  kTable = 11,       // any g, known by its Gaussian average only: a table of G(s) =
                     // E_{N(0, s^2)}[g] (gaussian.py table_avg) at `coef`: a = first
                     // panel, b = panels, c = g(0). Built by the CPU path, never by
                     // ScalarFunction.cuda_descriptor().
};

struct Fn {
  int kind;
  double a, b, c;
  const double* coef;  // kTable: 21 Chebyshev coefficients per panel, else null
};

GK_HD Fn make_fn(const double* d) {
  Fn f;
  f.kind = static_cast<int>(d[0]);
  f.a = d[1];
  f.b = d[2];
  f.c = d[3];
  f.coef = nullptr;
  return f;
}

GK_HD bool is_delta(const Fn& f) { return f.kind == kGaussBump && f.a == 0.0; }

constexpr int kNoKind = -1;  // a kind index outside the enum (dispatch's default)

// Calls op.template run<K>() with the runtime kind k as a compile-time constant, so that
// a loop inside run<K> has no branch on the kind.
template <typename Op>
GK_HD auto dispatch_kind(int k, Op& op) {
  switch (k) {
    case kErfStep: return op.template run<kErfStep>();
    case kGaussBump: return op.template run<kGaussBump>();
    case kHeaviside: return op.template run<kHeaviside>();
    case kReLU: return op.template run<kReLU>();
    case kIdentity: return op.template run<kIdentity>();
    case kConstant: return op.template run<kConstant>();
    case kSigmoid: return op.template run<kSigmoid>();
    case kFastSigmoid: return op.template run<kFastSigmoid>();
    case kAtan: return op.template run<kAtan>();
    case kBoxcar: return op.template run<kBoxcar>();
    case kTriangle: return op.template run<kTriangle>();
    case kTable: return op.template run<kTable>();
  }
  return op.template run<kNoKind>();
}

// f(v) for a kind known at compile time. A delta evaluates to 0 (it is 0 almost
// everywhere); a table (known by its average only) to NaN.
template <int K, typename T>
GK_HD T value_k(const Fn f, T v) {
  const T a = T(f.a), b = T(f.b), c = T(f.c);
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
    return T(NAN);
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

}  // namespace gk
