// Closed-form Gaussian expectations (gpukern/gaussian.py, gpukern/functions.py):
//   gauss_avg(g, s2)           E[g(v)], v ~ N(0, s2)
//   pair(f, g, q, qp, c, det)  E[f(u) g(v)], (u, v) ~ N(0, [[q, c], [c, qp]])
// Each returns false through `ok` where no closed form exists (quadrature pairs run on
// the array path instead). The operation order follows the NumPy code, so that host
// builds with -ffp-contract=off agree with it to rounding.
#pragma once

#include "functions.cuh"

namespace gk {

template <typename T>
GK_HD T gauss_avg(const Fn& g, T s2, bool& ok) {
  ok = true;
  const T a = T(g.a), b = T(g.b), c = T(g.c);
  switch (g.kind) {
    case kErfStep:
      return c;
    case kGaussBump:  // weight / sqrt(pi (t + 2 s2)); +inf for a delta at s2 = 0
      return b / sqrt(T(kPi) * (a + T(2) * s2));
    case kHeaviside:
      return T(0.5) * b;
    case kReLU:
      return sqrt(s2) * T(kInvSqrt2Pi);
    case kIdentity:
      return T(0);
    case kConstant:
      return b;
    case kAtan: {  // sqrt(pi) z erfcx(z), z = 1 / (sqrt 2 (pi alpha / 2) s)
      const T s = sqrt(s2);
      if (!(s > T(0))) return b * a;
      const T z = T(1) / (T(kSqrt2) * (T(kPi) * a / T(2)) * s);
      return (b * a) * (T(kSqrtPi) * z * erfcx_pos(z));
    }
    case kBoxcar: {  // (2 Phi(w/s) - 1) / w = erf(w / (sqrt 2 s)) / w
      const T s = sqrt(s2);
      if (!(s > T(0))) return b * (T(1) / a);
      return b * (erf(a / (T(kSqrt2) * s)) / a);
    }
    case kTriangle: {  // (4/w)[erf(z/sqrt 2)/2 + (s/w) phi(0) expm1(-z^2/2)], z = w/s
      const T s = sqrt(s2);
      if (!(s > T(0))) return b * (T(2) / a);
      const T z = a / s;
      return b * ((T(4) / a) * (T(0.5) * erf(z * (T(1) / T(kSqrt2))) +
                                (s / a) * T(kInvSqrt2Pi) * expm1(T(-0.5) * z * z)));
    }
  }
  ok = false;
  return T(0);
}

// E[bump(u) g(v)] = pref * E_{N(0, s2)}[g], pref = weight / sqrt(pi (t + 2q)),
// s2 = (t q' + 2 det) / (t + 2q); +inf where pref is (a delta at q = 0).
template <typename T>
GK_HD T tilted(const Fn& bump, const Fn& g, T q, T qp, T det, bool& ok) {
  const T t = T(bump.a);
  const T denom = t + T(2) * q;
  const T pref = T(bump.b) / sqrt(T(kPi) * denom);
  const T s2 = denom > T(0) ? (t * qp + T(2) * det) / denom : qp;
  const T avg = gauss_avg(g, s2, ok);
  if (isinf(pref)) return T(INFINITY);
  return pref * avg;
}

template <typename T>
GK_HD T pair(const Fn& f, const Fn& g, T q, T qp, T c, T det, bool& ok) {
  ok = true;
  if (f.kind == kGaussBump) return tilted(f, g, q, qp, det, ok);
  if (g.kind == kGaussBump) return tilted(g, f, qp, q, det, ok);
  if (f.kind == kConstant) return T(f.b) * gauss_avg(g, qp, ok);
  if (g.kind == kConstant) return T(g.b) * gauss_avg(f, q, ok);
  if (f.kind == kErfStep && g.kind == kErfStep) {
    const T t1 = T(f.a), t2 = T(g.a);
    const T rest = t1 * t2 + T(2) * t1 * qp + T(2) * t2 * q + T(4) * det;
    const T angle = atan2(T(2) * c, sqrt(rest));
    return T(f.c) * T(g.c) + T(f.b) * T(g.b) * (T(2) / T(kPi)) * angle;
  }
  if (f.kind == kHeaviside && g.kind == kHeaviside) {
    const T angle = atan2(c, sqrt(det));
    return T(f.b) * T(g.b) * (T(0.25) + angle * (T(0.5) / T(kPi)));
  }
  if (f.kind == kReLU && g.kind == kReLU) {
    const T root = sqrt(det);
    const T theta = atan2(root, c);
    return (root + (T(kPi) - theta) * c) * (T(0.5) / T(kPi));
  }
  if (f.kind == kIdentity && g.kind == kIdentity) return c;
  ok = false;
  return T(0);
}

}  // namespace gk
