// Closed-form pair expectations (gpukern/gaussian.py):
//   pair(f, g, q, qp, c, det)  E[f(u) g(v)], (u, v) ~ N(0, [[q, c], [c, qp]])
// through the Gaussian tilt (a bump or delta side: the other side's gauss_avg_k of
// functions.cuh), a constant side, or a closed self pair. Each formula is written once,
// for kinds known at compile time (pair_k<F, G>), so that a loop over entries of one pair
// has no branch on the kind and vectorises (the CPU path); pair dispatches on the runtime
// kinds and returns false through `ok` where no closed form exists (quadrature pairs run
// on the array path instead). The operation order follows the NumPy code, so
// that host builds with -ffp-contract=off agree with it to rounding.
//
// Terms at thresholds (f(u - theta), g(v - theta'): gaussian.py _shifted_pair) take
// shifted_pair_k: two bumps or deltas the bivariate normal density, a bump facing g the
// tilt with a mean, a constant facing g the average at -theta', two erf/sign terms an
// orthant probability (bivariate.cuh); pair_terms sums a pair over two functions' terms.
#pragma once

#include "bivariate.cuh"
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

// ----------------------------------------------------------------- terms at thresholds
// Kind pairs with a closed E[f(u - sf) g(v - sg)] for any shifts.
template <int F, int G>
GK_HD constexpr bool has_shifted_pair() {
  if (F == kGaussBump && G == kGaussBump) return true;
  if (F == kGaussBump || F == kConstant) return has_mean_avg<G>();
  if (G == kGaussBump || G == kConstant) return has_mean_avg<F>();
  return F == kErfStep && G == kErfStep;
}

// sqrt(q q') - sign c, as det / (sqrt(q q') + sign c) where that has no cancellation
template <typename T>
GK_HD T gap_to_collinear(T q, T qp, T c, T det, T sign) {
  const T cstar = sqrt(q * qp);
  const T sc = sign * c;
  return sc > T(0) ? det / (cstar + sc) : cstar - sc;
}

// (Q, Q', D) of u, v plus the N(0, t/2) noises of erf terms or bumps f, g: Q = q + t_f/2,
// Q' = q' + t_g/2, D = Q Q' - c^2 from det (gaussian.py _noisy_cov)
template <typename T>
GK_HD void noisy_cov(const Fn& f, const Fn& g, T q, T qp, T det, T& bq, T& bqp, T& bd) {
  bq = q + T(0.5) * T(f.a);
  bqp = qp + T(0.5) * T(g.a);
  bd = det + T(0.5) * (T(f.a) * qp + T(g.a) * q) + T(0.25) * T(f.a) * T(g.a);
}

// w_f w_g phi_2(sf, sg) of (u, v) plus N(0, t/2) noises (gaussian.py _bump_density)
template <typename T>
GK_HD T bump_density(const Fn f, const Fn g, T q, T qp, T c, T det) {
  const T sf = T(f.shift), sg = T(g.shift);
  T bq, bqp, bd;
  noisy_cov(f, g, q, qp, det, bq, bqp, bd);
  const T gap = gap_to_collinear(bq, bqp, c, bd, T(1));
  const T lin = sqrt(bqp) * sf - sqrt(bq) * sg;
  T n = lin * lin + T(2) * sf * sg * gap;
  n = n > T(0) ? n : T(0);
  const T dens = (T(f.b) * T(g.b) / (T(2) * T(kPi))) / sqrt(bd) * exp(-n / (T(2) * bd));
  return bd > T(0) ? dens : (n == T(0) ? T(GK_INF) : T(0));
}

// E[bump(u - sb) g(v - sg)] = w phi(sb; Q) E[g(m + s Z)] (gaussian.py _tilt_mean)
template <int G, typename T>
GK_HD T tilt_mean_k(const Fn bump, const Fn g, T q, T qp, T c, T det) {
  const T sb = T(bump.shift);
  const T bq = q + T(0.5) * T(bump.a);
  const bool live = bq > T(0);
  const T safe = live ? bq : T(1);
  const T pref = T(bump.b) * exp(-(sb * sb) / (T(2) * safe)) / sqrt(T(2) * T(kPi) * safe);
  const T m = (live ? c * sb / safe : T(0)) - T(g.shift);
  const T s2 = live ? (T(bump.a) * qp + T(2) * det) / (T(2) * safe) : qp;
  const T avg = gauss_avg_mean_k<G, T>(g, m, s2);
  return live ? pref * avg : (sb == T(0) ? T(GK_INF) : T(0));
}

// The orthant probability's arguments for erf/sign terms at sf, sg: h = sf/sqrt Q,
// k = sg/sqrt Q', rho = c/sqrt(Q Q'), s2 = 1 - rho^2 = D/(Q Q') (U, V: u, v plus the
// terms' N(0, t/2) noises, variances Q, Q', determinant D); false where Q or Q' is 0.
template <typename T>
struct OrthantArgs {
  T h, k, rho, s2;
};

template <typename T>
GK_HD bool orthant_args(const Fn f, const Fn g, T q, T qp, T c, T det, OrthantArgs<T>& a) {
  T bq, bqp, bd;
  noisy_cov(f, g, q, qp, det, bq, bqp, bd);
  const bool live = bq > T(0) && bqp > T(0);
  const T sq = sqrt(live ? bq : T(1)), sqp = sqrt(live ? bqp : T(1));
  a.h = T(f.shift) / sq;
  a.k = T(g.shift) / sqp;
  const T rho = c / (sq * sqp);
  a.rho = rho < T(-1) ? T(-1) : (rho > T(1) ? T(1) : rho);
  a.s2 = bd / (sq * sq * sqp * sqp);
  return live;
}

// o o' - o a' erf(k/sqrt 2) - a o' erf(h/sqrt 2) + a a' (4 P - 2 Phi(-h) - 2 Phi(-k) + 1)
template <typename T>
GK_HD T orthant_combine(const Fn f, const Fn g, T h, T k, T orth) {
  const T both = T(4) * orth - T(2) * ndtr(-h) - T(2) * ndtr(-k) + T(1);
  const T mf = -erf(h / T(kSqrt2)), mg = -erf(k / T(kSqrt2));
  return T(f.c) * T(g.c) + T(f.c) * T(g.b) * mg + T(f.b) * T(g.c) * mf + T(f.b) * T(g.b) * both;
}

// A side without variance is a constant: its value times the other side's mean.
template <typename T>
GK_HD T orthant_degenerate(const Fn f, const Fn g, T q, T qp) {
  return gauss_avg_mean_k<kErfStep, T>(f, -T(f.shift), q) *
         gauss_avg_mean_k<kErfStep, T>(g, -T(g.shift), qp);
}

// E[f(u - sf) g(v - sg)] for erf/sign terms (gaussian.py _orthant)
template <typename T>
GK_HD T orthant_pair(const Fn f, const Fn g, T q, T qp, T c, T det) {
  OrthantArgs<T> a;
  if (!orthant_args(f, g, q, qp, c, det, a)) return orthant_degenerate(f, g, q, qp);
  return orthant_combine(f, g, a.h, a.k, bvn_upper(a.h, a.k, a.rho, a.s2));
}

template <int F, int G, typename T>
GK_HD T shifted_pair_k(const Fn f, const Fn g, T q, T qp, T c, T det) {
  if constexpr (F == kGaussBump && G == kGaussBump) {
    return bump_density(f, g, q, qp, c, det);
  } else if constexpr (F == kGaussBump) {
    return tilt_mean_k<G, T>(f, g, q, qp, c, det);
  } else if constexpr (G == kGaussBump) {
    return tilt_mean_k<F, T>(g, f, qp, q, c, det);
  } else if constexpr (F == kConstant) {
    return T(f.b) * gauss_avg_mean_k<G, T>(g, -T(g.shift), qp);
  } else if constexpr (G == kConstant) {
    return T(g.b) * gauss_avg_mean_k<F, T>(f, -T(f.shift), q);
  } else if constexpr (F == kErfStep && G == kErfStep) {
    return orthant_pair(f, g, q, qp, c, det);
  } else {
    return T(0);  // no closed form (has_shifted_pair<F, G>() is false)
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
    if (f.shift == 0.0 && g.shift == 0.0) {
      ok = has_pair<F, G>();
      return pair_k<F, G, T>(f, g, q, qp, c, det);
    }
    ok = has_shifted_pair<F, G>();
    return shifted_pair_k<F, G, T>(f, g, q, qp, c, det);
  }
};

template <typename T>
GK_HD T pair(const Fn& f, const Fn& g, T q, T qp, T c, T det, bool& ok) {
  PairOp<T> op{f, g, q, qp, c, det, ok};
  return dispatch_pair(f.kind, g.kind, op);
}

// E[f(u) g(v)] of two functions given as terms: the sum over pairs of terms, f's outer
// (gaussian.py expect_pair's order); ok = false if one pair has no closed form.
template <typename T>
GK_HD T pair_terms(const Terms& f, const Terms& g, T q, T qp, T c, T det, bool& ok) {
  T acc = T(0);
  ok = f.n > 0 && g.n > 0;  // none: a function known by its series only
  for (int i = 0; i < f.n; ++i)
    for (int j = 0; j < g.n; ++j) {
      bool one = true;
      const T v = pair(f[i], g[j], q, qp, c, det, one);
      acc = (i == 0 && j == 0) ? v : acc + v;
      ok = ok && one;
    }
  return acc;
}

// ------------------------------------------------------------------------------ gaps
// E[f(u)^2] = kappa + alpha, E[f(v)^2] = kappa + alphap, E[f(u) f(v)] = kappa + beta;
// gminus = sqrt(alpha alphap) - beta, gplus = sqrt(alpha alphap) + beta, each without
// cancellation (functions.Gaps and each class's self_gaps in gpukern/functions.py).
template <typename T>
struct Gaps {
  T kappa, alpha, alphap, gminus, gplus;
};


// sqrt(qt qt' - q q') for variances a, b, qt = q + t/2 (half = t/2)
template <typename T>
GK_HD T noise_width(T half, T a, T b) {
  return sqrt(half * (a + b) + half * half);
}

// N = sqrt(alpha alphap) - (2/pi) asin(x_m) >= 0 (functions._erf_norm_gap): for nearly
// equal variances (2/pi) F expm1(phi'' delta^2 / 2), phi(s) = log asin(e^s), else directly
template <typename T>
GK_HD T erf_norm_gap(T half, T q, T qp, T alpha, T alphap, T w) {
  const T cstar = sqrt(q * qp);
  const T big_f = atan2(cstar, w);
  const T direct = sqrt(alpha * alphap) - (T(2) / T(kPi)) * big_f;
  const T rt2 = (q + half) * (qp + half);
  const T r2 = w * w / rt2;
  const T delta = T(0.5) * log1p(half * (q - qp) / (qp * (q + half)));
  const T slope = cstar / (w * big_f);
  const T phi2 = slope * (rt2 / (w * w) - slope);
  const T taylor = (T(2) / T(kPi)) * big_f * expm1(T(0.5) * phi2 * delta * delta);
  const T n = fabs(delta) < T(kNormGapTaylor) * r2 ? taylor : direct;
  return n > T(0) ? n : T(0);
}

// offset + amp sign(v) (and scale H = scale/2 + (scale/2) sign): E[sign(u)^2] = 1 (0 at
// q = 0), gminus = (4/pi) atan((c* - c) / sqrt(det)) = (2/pi) theta
template <typename T>
GK_HD Gaps<T> sign_family_gaps(T amp, T offset, T q, T qp, T c, T det) {
  const T two_pi = T(2) / T(kPi);
  const T spread = sqrt(det);
  const T gm = (T(2) * two_pi) * atan2(gap_to_collinear(q, qp, c, det, T(1)), spread);
  const T gp = (T(2) * two_pi) * atan2(gap_to_collinear(q, qp, c, det, T(-1)), spread);
  const T a2 = amp * amp;
  return {offset * offset, a2 * (q > T(0) ? T(1) : T(0)), a2 * (qp > T(0) ? T(1) : T(0)),
          a2 * gm, a2 * gp};
}

// offset + amp erf(v / sqrt t) (t = 0: sign): the sign of v plus N(0, t/2) noise, so
// gminus = [sqrt(alpha alphap) - beta(c*)] + amp^2 (4/pi) atan((c* - c) / (w + sqrt(det + w^2)))
template <typename T>
GK_HD Gaps<T> erf_noise_gaps(T t, T amp, T offset, T q, T qp, T c, T det) {  // t > 0
  const T half = T(0.5) * t;
  const T two_pi = T(2) / T(kPi);
  const T alpha = two_pi * atan2(q, noise_width(half, q, q));
  const T alphap = two_pi * atan2(qp, noise_width(half, qp, qp));
  const T w = noise_width(half, q, qp);
  const T norm_gap = erf_norm_gap(half, q, qp, alpha, alphap, w);
  const T spread = w + sqrt(det + w * w);
  const T gm = norm_gap + (T(2) * two_pi) * atan2(gap_to_collinear(q, qp, c, det, T(1)), spread);
  const T gp = norm_gap + (T(2) * two_pi) * atan2(gap_to_collinear(q, qp, c, det, T(-1)), spread);
  const T a2 = amp * amp;
  return {offset * offset, a2 * alpha, a2 * alphap, a2 * gm, a2 * gp};
}

template <typename T>
GK_HD Gaps<T> erf_family_gaps(T t, T amp, T offset, T q, T qp, T c, T det) {
  return t == T(0) ? sign_family_gaps(amp, offset, q, qp, c, det)
                   : erf_noise_gaps(t, amp, offset, q, qp, c, det);
}

// sin(theta) - theta cos(theta) = sum_{k=1..10} (-1)^(k+1) 2k theta^(2k+1)/(2k+1)!, theta < 1
GK_HD constexpr double swing_coef(int k) {
  double fact = 1.0;
  for (int i = 2; i <= 2 * k + 1; ++i) fact *= i;  // exact: odd parts below 2^53
  return ((k % 2 == 1 ? 1.0 : -1.0) * 2.0) * k / fact;
}

template <typename T>
GK_HD T swing_series(T theta) {
  const T t2 = theta * theta;
  T series = T(0);
  for (int k = 10; k >= 1; --k) series = series * t2 + T(swing_coef(k));
  return series * t2 * theta;
}

template <int K, typename T>
GK_HD Gaps<T> gaps_k(const Fn f, T q, T qp, T c, T det) {
  if constexpr (K == kErfStep) {
    return erf_family_gaps(T(f.a), T(f.b), T(f.c), q, qp, c, det);
  } else if constexpr (K == kHeaviside) {
    return erf_family_gaps(T(0), T(0.5) * T(f.b), T(0.5) * T(f.b), q, qp, c, det);
  } else if constexpr (K == kReLU) {  // 2 pi gminus = pi (c* - c) - c* (sin - theta cos)
    const T cstar = sqrt(q * qp);
    const T root = sqrt(det);
    const T theta = atan2(root, c);
    const T swing = theta < T(1) ? cstar * swing_series(theta) : root - theta * c;
    const T gm = (T(kPi) * gap_to_collinear(q, qp, c, det, T(1)) - swing) * (T(0.5) / T(kPi));
    const T gp = T(0.5) * cstar + (root + (T(kPi) - theta) * c) * (T(0.5) / T(kPi));
    return {T(0), T(0.5) * q, T(0.5) * qp, gm > T(0) ? gm : T(0), gp};
  } else if constexpr (K == kIdentity) {
    return {T(0), q, qp, gap_to_collinear(q, qp, c, det, T(1)),
            gap_to_collinear(q, qp, c, det, T(-1))};
  } else if constexpr (K == kConstant) {
    return {T(f.b) * T(f.b), T(0), T(0), T(0), T(0)};
  } else {
    return {T(0), T(0), T(0), T(0), T(0)};  // no gaps (has_det_gaps<K>() is false)
  }
}

// det_{l+1} = Q Q' - C^2 = sw2^2 gminus gplus + sw2 S ((sqrt alpha - sqrt alphap)^2 + 2 gminus),
// S = sw2 kappa + sb2 (analytic.next_det)
template <typename T>
GK_HD T compose_det(const Gaps<T>& g, T sw2, T sb2) {
  const T s = sw2 * g.kappa + sb2;
  const T d = sqrt(g.alpha) - sqrt(g.alphap);
  return (sw2 * sw2) * (g.gminus * g.gplus) + (sw2 * s) * (d * d + T(2) * g.gminus);
}

template <int K, typename T>
GK_HD T next_det_k(const Fn sigma, T sw2, T sb2, T q, T qp, T c, T det) {
  return compose_det(gaps_k<K, T>(sigma, q, qp, c, det), sw2, sb2);
}

// A jump at 0 (sign, step): its (amp, offset), for a loop that skips erf's general form
GK_HD bool jump_at_zero(const Fn& f, double& amp, double& offset) {
  if (f.kind == kHeaviside) {
    amp = offset = 0.5 * f.b;
    return true;
  }
  amp = f.b;
  offset = f.c;
  return f.kind == kErfStep && f.a == 0.0;
}

template <typename T>
struct NextDetOp {
  const Fn& sigma;
  T sw2, sb2, q, qp, c, det;
  bool& ok;
  template <int K>
  GK_HD T run() {
    ok = has_det_gaps<K>();
    return next_det_k<K, T>(sigma, sw2, sb2, q, qp, c, det);
  }
};

// The next layer's determinant; ok = false where sigma's kind has no gaps.
template <typename T>
GK_HD T next_det(const Fn& sigma, T sw2, T sb2, T q, T qp, T c, T det, bool& ok) {
  NextDetOp<T> op{sigma, sw2, sb2, q, qp, c, det, ok};
  return dispatch_kind(sigma.kind, op);
}

}  // namespace gk
