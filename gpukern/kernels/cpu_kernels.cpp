// The compiled CPU kernels (cpu_fused.py beside this file builds them once per machine,
// with -I on the cuda/ folder of the shared headers):
//   g++ -O3 -march=native -mprefer-vector-width=512 -fopenmp -fno-math-errno
//       -fno-trapping-math -ffp-contract=off [-DGK_LIBMVEC ... -lmvec]
//
// 1. The fused analytic recursion: the same per-entry math as the GPU kernel
//    (gpukern/recursion.cuh, gaussian.cuh), restructured for a CPU core. Each thread takes
//    rows i; for a chunk of kChunk columns it computes the input Gram, then walks all
//    layers with every pair (left, right) dispatched once per chunk to a loop that has no
//    branch on the kinds, so that the compiler vectorises it (glibc's libmvec for
//    atan2/erf/exp/log/sin where GK_LIBMVEC is defined). Computed in double, written in the
//    output type. An entry's value does not depend on where it sits: every loop runs over
//    whole padded chunks of aligned buffers (no scalar prologue or epilogue that would
//    round differently).
// 2. Elementwise f(h) and (pre * scale) f(h) of finite networks; the Hadamard
//    accumulation of empirical kernels.
// 3. The whole SGL step of an ensemble (OpenMP over networks, the caller's BLAS).
#ifdef GK_LIBMVEC
// glibc declares its vector variants only under -ffast-math; declared here instead.
extern "C" {
#pragma omp declare simd notinbranch
double atan2(double, double) noexcept;
#pragma omp declare simd notinbranch
double erf(double) noexcept;
#pragma omp declare simd notinbranch
double erfc(double) noexcept;
#pragma omp declare simd notinbranch
double exp(double) noexcept;
#pragma omp declare simd notinbranch
double expm1(double) noexcept;
#pragma omp declare simd notinbranch
double log(double) noexcept;
#pragma omp declare simd notinbranch
double log1p(double) noexcept;
#pragma omp declare simd notinbranch
double sin(double) noexcept;
}
#endif

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <vector>

#include "gpukern/recursion.cuh"
#include "gpukern/tables.cuh"

namespace {

constexpr int kChunk = 256;  // columns per chunk (a multiple of every vector width)
constexpr int kAlign = 64;

struct alignas(kAlign) Buf {
  double v[kChunk];
};

// The n entries ix[i] of a chunk's arrays, gathered into contiguous ones (a loop with no
// calls: the math loops after it then vectorise with plain loads).
struct Gathered {
  alignas(kAlign) double h[kChunk], k[kChunk], rho[kChunk], s2[kChunk], out[kChunk];
};

constexpr int kLanes = 8;  // loops run over whole groups of this many entries (no scalar tail)

// Returns the count rounded up to whole groups; the padding entries are harmless values
// whose results are not used.
int gather(const int* ix, int n, const double* h, const double* k, const double* rho,
           const double* s2, Gathered& g) {
  for (int i = 0; i < n; ++i) {
    const int j = ix[i];
    g.h[i] = h[j];
    g.k[i] = k[j];
    g.rho[i] = rho[j];
    g.s2[i] = s2[j];
  }
  const int padded = (n + kLanes - 1) / kLanes * kLanes;
  for (int i = n; i < padded; ++i) {  // n > 0: the class of the others
    g.h[i] = g.k[i] = 0.0;
    g.rho[i] = g.rho[0];
    g.s2[i] = g.s2[0];
  }
  return padded;
}

// f(i) for i < n (a multiple of kLanes), in fixed-length vector groups
template <typename F>
inline void for_groups(int n, F f) {
  for (int b = 0; b < n; b += kLanes) {
#pragma omp simd
    for (int i = b; i < b + kLanes; ++i) f(i);
  }
}

// out[i] = P(X > h, Y > k) by Plackett's integral with N nodes: node by node over the
// entries (each loop vectorises), in the order of gk::bvn_middle
template <int N>
void plackett_class(int n, const double* __restrict h, const double* __restrict k,
                    const double* __restrict rho, const double* __restrict s2,
                    double* __restrict out) {
  alignas(kAlign) double hk[kChunk], hs[kChunk], asr[kChunk], acc[kChunk];
  for_groups(n, [&](int i) {
    const gk::Plackett<double> p = gk::plackett_prepare(h[i], k[i], rho[i], s2[i]);
    hk[i] = p.hk;
    hs[i] = p.hs;
    asr[i] = p.asr;
    acc[i] = 0.0;
  });
  for (int node = 0; node < N; ++node) {
    const double x = gk::gl_node<N>(node), w = gk::gl_weight<N>(node);
    for_groups(n, [&](int i) { acc[i] = acc[i] + gk::plackett_term({hk[i], hs[i], asr[i]}, x, w); });
  }
  for_groups(n, [&](int i) {
    out[i] = gk::clamp01(gk::plackett_finish({hk[i], hs[i], asr[i]}, h[i], k[i], acc[i]));
  });
}

// The same for the expansion about rho = +-1 (gk::bvn_by_class<3>)
void near_one_class(int n, const double* __restrict h, const double* __restrict k,
                    const double* __restrict rho, const double* __restrict s2,
                    double* __restrict out) {
  alignas(kAlign) double upper[kChunk], hk[kChunk], bs[kChunk], c[kChunk], d[kChunk],
      half[kChunk], total[kChunk], live[kChunk];
  for_groups(n, [&](int i) {
    const gk::NearOne<double> p = gk::near_one_prepare(h[i], rho[i] < 0.0 ? -k[i] : k[i], s2[i]);
    upper[i] = p.upper;
    hk[i] = p.hk;
    bs[i] = p.bs;
    c[i] = p.c;
    d[i] = p.d;
    half[i] = p.half;
    total[i] = p.total;
    live[i] = p.live ? 1.0 : 0.0;
  });
  auto at = [&](int i) {
    return gk::NearOne<double>{upper[i], hk[i], bs[i], c[i], d[i], half[i], total[i],
                               live[i] != 0.0};
  };
  for (int node = 0; node < 20; ++node) {
    const double x = gk::gl_node<20>(node), w = gk::gl_weight<20>(node);
    for_groups(n, [&](int i) { total[i] = total[i] + gk::near_one_term(at(i), x, w); });
  }
  for_groups(n, [&](int i) {
    const double near = gk::near_one_finish(at(i), total[i]);
    out[i] = gk::clamp01(rho[i] < 0.0 ? gk::ndtr(-h[i]) - near : near);
  });
}

// E[f(u - sf) g(v - sg)] of two erf/sign terms over one chunk: the orthant
// probability's arguments, then the probability scheme by scheme (bvn_class) over the
// entries gathered for it, node by node, so that every loop is branch-free and vectorises,
// then the combination (the numbers of gk::orthant_pair).
void orthant_chunk(const gk::Fn& f, const gk::Fn& g, double q, const double* __restrict qp,
                   const double* __restrict c, const double* __restrict det,
                   double* __restrict out) {
  alignas(kAlign) double h[kChunk], k[kChunk], rho[kChunk], s2[kChunk], orth[kChunk];
  alignas(kAlign) double live[kChunk];
  const gk::Fn ff = f, gg = g;
#pragma omp simd aligned(h, k, rho, s2, live : kAlign)
  for (int j = 0; j < kChunk; ++j) {
    gk::OrthantArgs<double> a;
    live[j] = gk::orthant_args(ff, gg, q, qp[j], c[j], det[j], a) ? 1.0 : 0.0;
    h[j] = a.h;
    k[j] = a.k;
    rho[j] = a.rho;
    s2[j] = a.s2 > 0.0 ? a.s2 : 0.0;
  }
  int idx[4][kChunk], cnt[4] = {0, 0, 0, 0};
  for (int j = 0; j < kChunk; ++j) {
    if (live[j] == 0.0 || std::isinf(h[j]) || std::isinf(k[j])) {
      orth[j] = live[j] != 0.0 ? gk::bvn_upper(h[j], k[j], rho[j], s2[j]) : 0.0;
      continue;
    }
    const int cls = gk::bvn_class(rho[j]);
    idx[cls][cnt[cls]++] = j;
  }
  Gathered gath;
  for (int cls = 0; cls < 4; ++cls) {
    if (cnt[cls] == 0) continue;
    const int n = gather(idx[cls], cnt[cls], h, k, rho, s2, gath);
    switch (cls) {
      case 0: plackett_class<6>(n, gath.h, gath.k, gath.rho, gath.s2, gath.out); break;
      case 1: plackett_class<12>(n, gath.h, gath.k, gath.rho, gath.s2, gath.out); break;
      case 2: plackett_class<20>(n, gath.h, gath.k, gath.rho, gath.s2, gath.out); break;
      default: near_one_class(n, gath.h, gath.k, gath.rho, gath.s2, gath.out);
    }
    for (int i = 0; i < cnt[cls]; ++i) orth[idx[cls][i]] = gath.out[i];
  }
#pragma omp simd aligned(h, k, orth, out : kAlign)
  for (int j = 0; j < kChunk; ++j) out[j] = gk::orthant_combine(ff, gg, h[j], k[j], orth[j]);
  for (int j = 0; j < kChunk; ++j)
    if (live[j] == 0.0) out[j] = gk::orthant_degenerate(ff, gg, q, qp[j]);
}

// out[j] = E[f(u_j) g(v_j)] over one chunk for two terms, the kinds of (f, g) as
// constants (their shifts decide the formula once, outside the loop).
struct PairChunk {
  const gk::Fn& f;
  const gk::Fn& g;
  double q;
  const double* __restrict qp;
  const double* __restrict c;
  const double* __restrict det;
  double* __restrict out;

  template <int F, int G>
  bool run() {
    const gk::Fn ff = f, gg = g;
    const double qq = q;
    const double* __restrict qpv = qp;
    const double* __restrict cv = c;
    const double* __restrict detv = det;
    double* __restrict o = out;
    if (ff.shift == 0.0 && gg.shift == 0.0) {
      if constexpr (!gk::has_pair<F, G>()) {
        return false;
      } else {
#pragma omp simd aligned(qpv, cv, detv, o : kAlign)
        for (int j = 0; j < kChunk; ++j)
          o[j] = gk::pair_k<F, G, double>(ff, gg, qq, qpv[j], cv[j], detv[j]);
        return true;
      }
    }
    if constexpr (!gk::has_shifted_pair<F, G>()) {
      return false;
    } else if constexpr (F == gk::kErfStep && G == gk::kErfStep) {
      orthant_chunk(ff, gg, qq, qpv, cv, detv, o);
      return true;
    } else {
#pragma omp simd aligned(qpv, cv, detv, o : kAlign)
      for (int j = 0; j < kChunk; ++j)
        o[j] = gk::shifted_pair_k<F, G, double>(ff, gg, qq, qpv[j], cv[j], detv[j]);
      return true;
    }
  }
};

// A function as its terms (tables resolved).
using FnTerms = std::vector<gk::Fn>;

// out = E[f(u) g(v)] over one chunk: the sum over pairs of terms, f's outer (the order
// of gk::pair_terms); tmp is scratch.
bool pair_chunk(const FnTerms& f, const FnTerms& g, double q, const double* qp, const double* c,
                const double* det, double* __restrict out, double* __restrict tmp) {
  if (f.empty() || g.empty()) return false;  // a function known by its series only
  bool ok = true;
  for (size_t i = 0; i < f.size(); ++i)
    for (size_t j = 0; j < g.size(); ++j) {
      const bool first = i == 0 && j == 0;
      PairChunk op{f[i], g[j], q, qp, c, det, first ? out : tmp};
      ok = gk::dispatch_pair(f[i].kind, g[j].kind, op) && ok;
      if (!first)
#pragma omp simd aligned(out, tmp : kAlign)
        for (int k = 0; k < kChunk; ++k) out[k] = out[k] + tmp[k];
    }
  return ok;
}

// The terms of the descriptor at desc; a kTable term t (counted over all descriptors from
// first_term) reads its coefficients at tables + offsets[t].
FnTerms read_terms(const double* desc, int first_term, const double* tables,
                   const int64_t* offsets) {
  const gk::Terms t = gk::terms_at(desc);
  FnTerms out(t.n);
  for (int i = 0; i < t.n; ++i) {
    out[i] = t[i];
    if (out[i].kind == gk::kTable) out[i].coef = tables + offsets[first_term + i];
  }
  return out;
}

// out[j] = the next layer's determinant over one chunk (gk::next_det_k); false where
// sigma's kind has no gaps (the next layer then uses q q' - c^2).
struct NextDetChunk {
  const gk::Fn& sigma;
  double sw2, sb2, q;
  const double* __restrict qp;
  const double* __restrict c;
  const double* __restrict det;
  double* __restrict out;

  template <int K>
  bool run() {
    if constexpr (!gk::has_det_gaps<K>()) {
      return false;
    } else {
      const gk::Fn s = sigma;
      const double qq = q, w2 = sw2, b2 = sb2;
      const double* __restrict qpv = qp;
      const double* __restrict cv = c;
      const double* __restrict detv = det;
      double* __restrict o = out;
      double amp, offset;
      if (gk::jump_at_zero(s, amp, offset)) {  // sign, step: no branch inside the loop
#pragma omp simd aligned(qpv, cv, detv, o : kAlign)
        for (int j = 0; j < kChunk; ++j)
          o[j] = gk::compose_det(gk::sign_family_gaps(amp, offset, qq, qpv[j], cv[j], detv[j]),
                                 w2, b2);
        return true;
      }
      if constexpr (K == gk::kErfStep) {  // t > 0 here
#pragma omp simd aligned(qpv, cv, detv, o : kAlign)
        for (int j = 0; j < kChunk; ++j)
          o[j] = gk::compose_det(gk::erf_noise_gaps(s.a, s.b, s.c, qq, qpv[j], cv[j], detv[j]),
                                 w2, b2);
        return true;
      }
#pragma omp simd aligned(qpv, cv, detv, o : kAlign)
      for (int j = 0; j < kChunk; ++j)
        o[j] = gk::next_det_k<K, double>(s, w2, b2, qq, qpv[j], cv[j], detv[j]);
      return true;
    }
  }
};

// Pairs summed by Mehler's series (gpukern/hermite.py), the kernels' pairs and then
// sigma's own pair as pair npairs (a function known only by its series has a descriptor
// without terms): for pair p (on[p] != 0) and
// layer l, point i of x1 has its Hermite coefficient row at coef + off1[(p depth + l) n1 + i]
// and its series length len1[...] (-1: not served); len2 likewise for x2. x2's rows are
// stored in blocks of kSeriesLanes points, term-major inside a block: term k of point j
// at coef + off2[p depth + l] + ((j / kSeriesLanes) width2[p depth + l] + k) kSeriesLanes
// + j % kSeriesLanes, width2 terms per point (the layer's longest series + 1), so that a
// group of columns reads its terms as one contiguous stream; the same again right after
// (from off2 + groups width2 kSeriesLanes) with each point's terms beyond its own
// length set to 0 — unless uniform2[p depth + l] != 0: every point of x2 has the same q
// there, and its one row is at coef + off2[p depth + l]. order (or null: as given): the
// loop's column j is point order[j] of
// x2 (its rows likewise when upper), points sorted so that a group's series are of
// similar lengths; x2's lengths and blocks are in that order, x1's by point.
constexpr int kSeriesLanes = 32;
struct SeriesPairs {
  const int* on = nullptr;
  const double* coef = nullptr;
  const int64_t* off1 = nullptr;
  const int64_t* len1 = nullptr;
  const int64_t* off2 = nullptr;
  const int64_t* width2 = nullptr;
  const int64_t* len2 = nullptr;
  const int64_t* order = nullptr;
  const int64_t* uniform2 = nullptr;
};

// acc[j] = acc[j] rho[j] + a[k] b[k kSeriesLanes + j] for k = from, ..., to (downwards).
inline void horner_lanes(double* __restrict acc, const double* __restrict rho,
                         const double* __restrict a, const double* __restrict b, int64_t from,
                         int64_t to) {
  for (int64_t k = from; k >= to; --k) {
    const double ak = a[k];
    const double* __restrict bk = b + k * kSeriesLanes;
#pragma omp simd
    for (int j = 0; j < kSeriesLanes; ++j) acc[j] = acc[j] * rho[j] + ak * bk[j];
  }
}

// A chunk of pair p's values at layer l by the series (NaN where a point is not served:
// the caller recomputes those rows on the array path); rho = c / sqrt(q q'), clipped;
// j0 a multiple of kSeriesLanes. Entry j sums terms n_j = max(len1, len2) down to 0 by
// Horner, the same expression in the same order as gk::mehler_series (so the same numbers
// as the array path). Columns go kSeriesLanes at a time, sums held in registers: terms
// above len1 from the zeroed rows (a point's terms beyond n_j add 0 to a sum still 0),
// the others from the full rows (every entry sums them). rho: kChunk scratch.
void series_chunk(const SeriesPairs& s, int p, int l, int depth, int64_t n1, int64_t n2,
                  int i, int j0, int len, double q, const double* qp, const double* c,
                  double* __restrict out, double* __restrict rho) {
  const int64_t layer = (int64_t)p * depth + l;
  const int64_t la = s.len1[layer * n1 + i];
  const double* __restrict ra = s.coef + s.off1[layer * n1 + i];
  const int64_t* lb = s.len2 + layer * n2 + j0;
  const int64_t width = s.width2[layer];
  const int64_t groups = (n2 + kSeriesLanes - 1) / kSeriesLanes;
  const double* full = s.coef + s.off2[layer] + (j0 / kSeriesLanes) * width * kSeriesLanes;
  const double* zeroed = full + groups * width * kSeriesLanes;
  bool served = la >= 0;
  for (int j = 0; j < kChunk; ++j) {
    served = served && (j >= len || lb[j] >= 0);
    const double r = j < len ? c[j] / std::sqrt(q * qp[j]) : 0.0;
    rho[j] = r > 1.0 ? 1.0 : (r < -1.0 ? -1.0 : r);
  }
  if (!served) {  // series_rows sends none; a guard against a silent wrong value
    for (int j = 0; j < len; ++j) out[j] = std::numeric_limits<double>::quiet_NaN();
    return;
  }
  if (s.uniform2[layer]) {  // one row for every column (one length): a_k b_k once per term
    const double* __restrict rb = s.coef + s.off2[layer];
    const int64_t top = la > lb[0] ? la : lb[0];
    for (int g0 = 0; g0 < len; g0 += kSeriesLanes) {
      const double* __restrict rg = rho + g0;
      double acc[kSeriesLanes] = {};
      for (int64_t k = top; k >= 0; --k) {
        const double prod = ra[k] * rb[k];
#pragma omp simd
        for (int j = 0; j < kSeriesLanes; ++j) acc[j] = acc[j] * rg[j] + prod;
      }
      for (int j = 0; j < kSeriesLanes; ++j) out[g0 + j] = acc[j];
    }
    return;
  }
  for (int g0 = 0; g0 < len; g0 += kSeriesLanes) {
    int64_t top = la;
    for (int j = g0; j < std::min(len, g0 + kSeriesLanes); ++j) top = lb[j] > top ? lb[j] : top;
    const int64_t at = (g0 / kSeriesLanes) * width * kSeriesLanes;
    double acc[kSeriesLanes] = {};
    horner_lanes(acc, rho + g0, ra, zeroed + at, top, la + 1);
    horner_lanes(acc, rho + g0, ra, full + at, la, 0);
    for (int j = 0; j < kSeriesLanes; ++j) out[g0 + j] = acc[j];
  }
}

// out[j] = gk::correlation_entry over one chunk (whole chunk: padding entries harmless):
// the panels first, then Clenshaw's steps term by term across the entries (a vector loop
// of gathers), the same operations in the same order.
void correlation_chunk(const double* __restrict table, double q, const double* __restrict qp,
                       const double* __restrict c, const double* __restrict det,
                       double* __restrict out) {
  alignas(kAlign) int64_t at[kChunk];
  alignas(kAlign) double x[kChunk], b1[kChunk], b2[kChunk];
#pragma omp simd
  for (int j = 0; j < kChunk; ++j) {
    at[j] = gk::correlation_panel(table, q, qp[j], c[j], det[j], x[j]);
    b1[j] = b2[j] = 0.0;
  }
  for (int k = (int)table[1]; k > 0; --k)
#pragma omp simd
    for (int j = 0; j < kChunk; ++j) gk::clenshaw_step(table[at[j] + 2 + k], x[j], b1[j], b2[j]);
#pragma omp simd
  for (int j = 0; j < kChunk; ++j) out[j] = table[at[j] + 2] + x[j] * b1[j] - b2[j];
}

// A table over variances (gpukern/variance.py) read row by row: a row's phi contracted
// into every panel's core once, H[panel, s, k] = sum_r phi_r G_rsk (r1 r2 (degree + 1)
// multiply-adds per panel); an entry is then sum_s psi_s H[panel, s, k] and Clenshaw,
// gk::variance_entry's sum in another order.
struct VarianceRow {
  const double* table;
  int r1, r2, m;
  long long stride, n_cells, half0, half1, panels0, panels;
  std::vector<double> phi, h;

  explicit VarianceRow(const double* t)
      : table(t), r1((int)t[3]), r2((int)t[4]), m((int)t[1] + 1), stride(gk::variance_stride(t)),
        n_cells(1LL << (int)t[0]), half0((long long)t[8]), half1((long long)t[9]),
        panels0((half1 - half0 - n_cells) / stride), panels((long long)t[10]) {
    phi.resize(r1);
    h.resize((size_t)(panels * r2 * m));
  }

  void contract(double q) {
    gk::variance_basis(table, 0, q, phi.data());
    const long long block = (long long)r2 * m;
    for (long long p = 0; p < panels; ++p) {
      const double* core = table + 2 + (p < panels0 ? half0 + n_cells + p * stride
                                                     : half1 + n_cells + (p - panels0) * stride);
      double* __restrict hp = h.data() + p * block;
      for (long long e = 0; e < block; ++e) hp[e] = 0.0;
      for (int r = 0; r < r1; ++r) {
        const double w = phi[r];
        const double* __restrict g = core + (long long)r * block;
#pragma omp simd
        for (long long e = 0; e < block; ++e) hp[e] += w * g[e];
      }
    }
  }

  // out[j] for j < n <= kChunk (psi: n rows of r2): per entry its panel and its sum over
  // s, then Clenshaw's steps across the entries (one vector loop per step, instead of a
  // chain of dependent steps per entry), each entry's operations in gk::variance_entry's
  // order of k.
  void chunk(const double* psi, double q, const double* qp, const double* c, const double* det,
             int n, double* out) const {
    alignas(kAlign) double x[kChunk], b1[kChunk], b2[kChunk];
    alignas(kAlign) double d[(gk::kCorrelationDegree + 1) * kChunk];
    for (int j = 0; j < n; ++j) {
      long long index;
      gk::variance_panel(table, q, qp[j], c[j], det[j], x[j], index);
      const double* __restrict hp = h.data() + index * (long long)r2 * m;
      const double* __restrict ps = psi + (size_t)j * r2;
      constexpr int kM = gk::kCorrelationDegree + 1;  // = m: variance.DEGREE is the registry's
      double dj[kM] = {};
      for (int s = 0; s < r2; ++s) {
        const double w = ps[s];
#pragma omp simd
        for (int k = 0; k < kM; ++k) dj[k] += w * hp[s * kM + k];
      }
      for (int k = 0; k < kM; ++k) d[k * kChunk + j] = dj[k];
      b1[j] = b2[j] = 0.0;
    }
    for (int k = m - 1; k > 0; --k) {
      const double* __restrict dk = d + k * kChunk;
#pragma omp simd
      for (int j = 0; j < n; ++j) gk::clenshaw_step(dk[j], x[j], b1[j], b2[j]);
    }
#pragma omp simd
    for (int j = 0; j < n; ++j) out[j] = d[j] + x[j] * b1[j] - b2[j];
  }
};

// psi (n x r2) of a table over variances at the right side's variances q2.
std::vector<double> variance_columns(const double* table, const double* q2, int64_t n) {
  const int r2 = (int)table[4];
  std::vector<double> psi((size_t)n * r2);
  for (int64_t j = 0; j < n; ++j) gk::variance_basis(table, 1, q2[j], psi.data() + j * r2);
  return psi;
}

// Per-thread state: the chunk's buffers.
struct Work {
  Buf gram, sig, next, own, c, det, d, qp, same, shared, carry, tmp, rho;
  Buf k[gk::kMaxPairs];
};

template <typename Out>
int recursion(int n1, int n2, int n0, const double* x1, const double* x2, const double* q1,
              const double* q2, const int64_t* id1, const int64_t* id2, int depth, double sw2,
              double sb2, const double* own, const double* fns, const double* tables,
              const int64_t* offsets, int npairs, int upper, const SeriesPairs& series,
              const gk::CorrelationTile& corr, const gk::CorrelationTile& var, Out* nngp,
              Out* kout) {
  // the descriptors one after the other: sigma, then left/right per pair
  const double* at = fns;
  int first_term = 0;
  auto next_fn = [&]() {
    FnTerms f = read_terms(at, first_term, tables, offsets);
    first_term += static_cast<int>(f.size());
    at += gk::descriptor_size(at);
    return f;
  };
  const FnTerms sigma = next_fn();
  FnTerms lefts[gk::kMaxPairs], rights[gk::kMaxPairs];
  for (int p = 0; p < npairs; ++p) {
    lefts[p] = next_fn();
    rights[p] = next_fn();
  }
  auto plain = [](const FnTerms& f) { return f.size() == 1 && f[0].shift == 0.0; };
  // columns padded to whole chunks: x2 transposed (n0, m), q2 (depth, m), ids (m)
  const int64_t m = ((int64_t)n2 + kChunk - 1) / kChunk * kChunk + kChunk;
  std::vector<double> x2t((size_t)n0 * m, 0.0), q2p((size_t)depth * m, 1.0);
  std::vector<int64_t> id2p((size_t)m, -1);
  const int64_t* order = series.order;  // the loop's column j is point col(j) of x2
  auto col = [order](int64_t j) { return order ? order[j] : j; };
  for (int j = 0; j < n2; ++j) {
    const int64_t pj = col(j);
    for (int k = 0; k < n0; ++k) x2t[(size_t)k * m + j] = x2[pj * n0 + k];
    for (int l = 0; l < depth; ++l) q2p[(size_t)l * m + j] = q2[(int64_t)l * n2 + pj];
    id2p[j] = id2[pj];
  }
  // an erf-step sigma and a pair of bumps of the same width (erf's own derivative on
  // both sides: the NTK) share the root of their closed forms: one sqrt for both
  int twin = -1;
  for (int p = npairs - 1; p >= 0; --p)
    if (plain(sigma) && plain(lefts[p]) && plain(rights[p]) && sigma[0].kind == gk::kErfStep &&
        lefts[p][0].kind == gk::kGaussBump && rights[p][0].kind == gk::kGaussBump &&
        lefts[p][0].a == sigma[0].a && rights[p][0].a == sigma[0].a)
      twin = p;
  const bool exact_det = n0 <= gk::kExactDetMaxFeatures;
  const double inv_n0 = 1.0 / n0;
  int status = 1;
  // tables over variances: psi of every (padded) column per (pair, layer), once
  std::vector<std::vector<double>> psi((size_t)(npairs + 1) * depth);
  for (int p = 0; p <= npairs; ++p)
    for (int l = 0; l < depth; ++l)
      if (const double* vt = var.at(p, l, depth))
        psi[(size_t)p * depth + l] = variance_columns(vt, q2p.data() + (size_t)l * m, m);

#pragma omp parallel
  {
    Work* w = static_cast<Work*>(std::aligned_alloc(kAlign, sizeof(Work)));
    bool good = true;
    std::vector<VarianceRow> rows;  // per (pair, layer) with a table over variances
    std::vector<int> row_of((size_t)(npairs + 1) * depth, -1);
    for (int p = 0; p <= npairs; ++p)
      for (int l = 0; l < depth; ++l)
        if (const double* vt = var.at(p, l, depth)) {
          row_of[(size_t)p * depth + l] = (int)rows.size();
          rows.emplace_back(vt);
        }
#pragma omp for schedule(dynamic, 8)
    for (int ii = 0; ii < n1; ++ii) {
      const int i = upper ? static_cast<int>(col(ii)) : ii;  // upper: rows in column order
      const double* xi = x1 + (int64_t)i * n0;
      for (int p = 0; p <= npairs; ++p)
        for (int l = 0; l < depth; ++l)
          if (row_of[(size_t)p * depth + l] >= 0)
            rows[row_of[(size_t)p * depth + l]].contract(q1[(int64_t)l * n1 + i]);
      // F of (pair p, layer l) over this chunk from its table over variances
      auto variance_chunk = [&](int p, int l, double q, const double* qp, const double* c,
                                const double* det, int j0, double* out) {
        const VarianceRow& row = rows[row_of[(size_t)p * depth + l]];
        row.chunk(psi[(size_t)p * depth + l].data() + (size_t)j0 * row.r2, q, qp, c, det,
                  kChunk, out);
      };
      // from the diagonal's group of kSeriesLanes columns (the series reads whole groups;
      // the few entries left of the diagonal are overwritten by the mirror)
      for (int j0 = upper ? ii - ii % kSeriesLanes : 0; j0 < n2; j0 += kChunk) {
        const int len = std::min(kChunk, n2 - j0);
        double* __restrict g = w->gram.v;
        double* __restrict same = w->same.v;
        // <x_i, x_j>/n0 summed feature by feature (analytic.input_gram's order)
        {
          const double* xt = x2t.data() + j0;
          const double a0 = xi[0];
#pragma omp simd aligned(g : kAlign)
          for (int j = 0; j < kChunk; ++j) g[j] = a0 * xt[j];
          for (int k = 1; k < n0; ++k) {
            const double ak = xi[k];
            const double* col = xt + (size_t)k * m;
#pragma omp simd aligned(g : kAlign)
            for (int j = 0; j < kChunk; ++j) g[j] += ak * col[j];
          }
        }
        const int64_t idi = id1[i];
        for (int j = 0; j < kChunk; ++j) same[j] = id2p[j0 + j] == idi ? 1.0 : 0.0;
        double* __restrict sig = w->sig.v;
#pragma omp simd aligned(sig, g : kAlign)
        for (int j = 0; j < kChunk; ++j) sig[j] = sw2 * (g[j] * inv_n0) + sb2;
        double* __restrict own_l = w->own.v;  // the layer's own kernel term (Sigma_1 in NTK)
        const double alpha0 = own[0], beta0 = own[1];
#pragma omp simd aligned(own_l, g : kAlign)
        for (int j = 0; j < kChunk; ++j) own_l[j] = alpha0 * (g[j] * inv_n0) + beta0;
        for (int p = 0; p < npairs; ++p)
          std::copy(own_l, own_l + kChunk, w->k[p].v);

        bool carried = false;  // w->carry holds this layer's det (from the last one)
        for (int l = 0; l < depth; ++l) {
          const double q = q1[(int64_t)l * n1 + i];
          double* __restrict qp = w->qp.v;
          double* __restrict c = w->c.v;
          double* __restrict det = w->det.v;
          std::copy(q2p.data() + (size_t)l * m + j0, q2p.data() + (size_t)l * m + j0 + kChunk,
                    qp);
          const double* __restrict carry = w->carry.v;
#pragma omp simd aligned(qp, c, det, sig, same, carry : kAlign)
          for (int j = 0; j < kChunk; ++j) {
            c[j] = same[j] != 0.0 ? q : sig[j];
            const double r = q * qp[j] - c[j] * c[j];
            const double fresh = r > 0.0 ? r : 0.0;
            det[j] = same[j] != 0.0 ? 0.0 : (carried ? carry[j] : fresh);
          }
          if (l == 0 && exact_det)
            for (int j = 0; j < len; ++j)
              if (same[j] == 0.0)
                det[j] = gk::layer1_det(xi, x2 + col(j0 + j) * n0, n0, sw2, sb2);
          if (l == 0 && !exact_det)  // wide inputs: recompute the ill-conditioned entries
            for (int j = 0; j < len; ++j)
              if (same[j] == 0.0 && det[j] < gk::kWideDetRecheck * (q * qp[j]))
                det[j] = gk::layer1_det_wide(xi, x2 + col(j0 + j) * n0, n0, sw2, sb2);
          double* __restrict next = w->next.v;
          double* __restrict d = w->d.v;
          if (twin >= 0) {  // sigma's pair and the twin pair from one root
            double* __restrict dt = w->shared.v;
            const gk::Fn s = sigma[0], lf = lefts[twin][0], rg = rights[twin][0];
            const double t = s.a;
#pragma omp simd aligned(qp, c, det, next, dt : kAlign)
            for (int j = 0; j < kChunk; ++j) {
              const double root = gk::family_root(t, t, q, qp[j], det[j]);
              next[j] = gk::erf_pair(s, s, c[j], root);
              dt[j] = gk::bump_pair(lf, rg, root);
            }
          } else if (const double* table = corr.at(npairs, l, depth)) {
            correlation_chunk(table, q, qp, c, det, next);
          } else if (var.at(npairs, l, depth)) {
            variance_chunk(npairs, l, q, qp, c, det, j0, next);
          } else if (series.on && series.on[npairs]) {
            series_chunk(series, npairs, l, depth, n1, n2, i, j0, len, q, qp, c, next,
                         w->rho.v);
          } else {
            good = pair_chunk(sigma, sigma, q, qp, c, det, next, w->tmp.v) && good;
          }
          const double alpha = own[2 * l + 2], beta = own[2 * l + 3];
#pragma omp simd aligned(next, own_l : kAlign)
          for (int j = 0; j < kChunk; ++j) {
            own_l[j] = alpha * next[j] + beta;
            next[j] = sw2 * next[j] + sb2;
          }
          for (int p = 0; p < npairs; ++p) {
            double* __restrict dp = p == twin ? w->shared.v : d;
            if (const double* table = corr.at(p, l, depth))
              correlation_chunk(table, q, qp, c, det, d);
            else if (var.at(p, l, depth))
              variance_chunk(p, l, q, qp, c, det, j0, d);
            else if (series.on && series.on[p])
              series_chunk(series, p, l, depth, n1, n2, i, j0, len, q, qp, c, d, w->rho.v);
            else if (p != twin)
              good = pair_chunk(lefts[p], rights[p], q, qp, c, det, d, w->tmp.v) && good;
            double* __restrict kp = w->k[p].v;
#pragma omp simd aligned(kp, dp, own_l : kAlign)
            for (int j = 0; j < kChunk; ++j) kp[j] = own_l[j] + sw2 * gk::mul0(dp[j], kp[j]);
          }
          carried = false;  // thresholds and sums: q q' - c^2 (no gaps)
          if (l + 1 < depth && plain(sigma)) {
            NextDetChunk op{sigma[0], sw2, sb2, q, qp, c, det, w->carry.v};
            carried = gk::dispatch_kind(sigma[0].kind, op);
          }
          std::copy(next, next + kChunk, sig);
        }
        const int64_t row = (int64_t)i * n2;
        if (nngp)
          for (int j = 0; j < len; ++j) nngp[row + col(j0 + j)] = static_cast<Out>(sig[j]);
        for (int p = 0; p < npairs; ++p)
          for (int j = 0; j < len; ++j)
            kout[(int64_t)p * n1 * n2 + row + col(j0 + j)] = static_cast<Out>(w->k[p].v[j]);
      }
    }
    std::free(w);
    if (!good) {
#pragma omp atomic write
      status = 0;
    }
  }
  return status;
}

// out = f(h), or out = (pre * scale) * f(h) (surrogate backprop's step) when pre is given:
// f evaluated in double, the products in the array's type (as NumPy rounds them). out
// must not overlap h or pre. Large arrays are shared out to the OpenMP threads, unless
// the caller is one of them (the SGL step: parallel = false).
constexpr int64_t kParallelMin = 1 << 15;  // smaller arrays: one thread (SGL's N = 16)

// f(i) for i < n: shared out to the OpenMP threads, or a vector loop on this thread.
template <bool Parallel, typename F>
void for_each(int64_t n, F f) {
  if constexpr (Parallel) {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; ++i) f(i);
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) f(i);
  }
}

template <typename V>
struct MapOp {
  const gk::Fn& f;
  int64_t n;
  const V* __restrict h;
  V* __restrict out;
  bool parallel;
  bool accumulate;  // out += f(h) (a later term of a sum)

  template <int K>
  bool run() {
    if constexpr (K == gk::kNoKind || K == gk::kTable) {
      return false;
    } else {
      const gk::Fn ff = f;
      const V* __restrict hv = h;
      V* __restrict o = out;
      auto value = [ff](V v) {
        return static_cast<V>(gk::value_k<K, double>(ff, static_cast<double>(v)));
      };
      auto plain = [=](int64_t i) { o[i] = value(hv[i]); };
      auto added = [=](int64_t i) { o[i] = o[i] + value(hv[i]); };
      const bool par = parallel && n > kParallelMin;
      if (accumulate)
        par ? for_each<true>(n, added) : for_each<false>(n, added);
      else
        par ? for_each<true>(n, plain) : for_each<false>(n, plain);
      return true;
    }
  }
};

// out = f(h), or (pre * scale) * f(h) when pre is given, for a function given as terms:
// the terms are added up in V (as NumPy adds a sum's parts), then multiplied by pre.
template <typename V>
bool apply(const gk::Terms& f, int64_t n, const V* h, const V* pre, V scale, V* out,
           bool parallel = true) {
  bool ok = true;
  for (int i = 0; i < f.n; ++i) {
    const gk::Fn term = f[i];
    MapOp<V> op{term, n, h, out, parallel, i > 0};
    ok = gk::dispatch_kind(term.kind, op) && ok;
  }
  if (pre != nullptr) {
    V* __restrict o = out;
    const V* __restrict pv = pre;
    auto times = [=](int64_t i) { o[i] = (pv[i] * scale) * o[i]; };
    parallel && n > kParallelMin ? for_each<true>(n, times) : for_each<false>(n, times);
  }
  return ok;
}

template <typename V>
int map(const double* fn, int64_t n, const V* h, const V* pre, double scale, V* out) {
  return apply(gk::terms_at(fn), n, h, pre, static_cast<V>(scale), out);
}

// out (=, or += when accumulate) dd * (c * zz + b): one layer of an empirical kernel,
// in NumPy's operation order; zz (m entries) is shared by the n / m blocks of dd (the
// inputs' Gram, the same for every network).
template <typename V>
void hadamard(int64_t n, int64_t m, V* __restrict out, const V* __restrict dd,
              const V* __restrict zz, V c, V b, bool accumulate) {
  for (int64_t e0 = 0; e0 < n; e0 += m) {
    V* __restrict o = out + e0;
    const V* __restrict d = dd + e0;
    if (accumulate)
      for_each<true>(m, [=](int64_t i) { o[i] += d[i] * (c * zz[i] + b); });
    else
      for_each<true>(m, [=](int64_t i) { o[i] = d[i] * (c * zz[i] + b); });
  }
}

// ---------------------------------------------------------------------------- SGL step
// One full-batch SGL step of E networks (gpukern/training.py): for each network, forward
// (h_l = scale_l z_{l-1} W_l^T + sb b_l, z_l = sigma(h_l)), residual r = f - y (N x C
// outputs), then the
// fused backward pass and update, layer by layer from the readout:
//   grad_b = sb sum_n delta,  delta_prev = (delta W_l) scale_l * d(h_{l-1}) (old W_l),
//   W_l += -lr scale_l delta^T z_{l-1},  b_l -= lr grad_b.
// Networks are shared out to OpenMP threads; the GEMMs are the caller's BLAS (scipy's
// cython_blas sgemm/dgemm, Fortran interface, called single-threaded), on row-major
// arrays seen as column-major transposes.
template <typename V>
using Gemm = void (*)(const char*, const char*, const int*, const int*, const int*, const V*,
                      const V*, const int*, const V*, const int*, const V*, V*, const int*);

template <typename V>
int sgl_step(int n_nets, int n, int depth, const int* sizes, V* const* ws, V* const* bs,
             const V* x, const V* y, double lr, const double* scales, double sb,
             const double* sigma_d,
             const double* deriv_d, Gemm<V> gemm, V* f_out) {
  // Activations are kept feature-major (n_l x N, "transposed"): every GEMM is then of the
  // weight matrix as stored, the fastest BLAS case for N of a few dozen rows.
  const gk::Terms sigma = gk::terms_at(sigma_d), deriv = gk::terms_at(deriv_d);
  std::vector<V> xt((size_t)sizes[0] * n);
  for (int i = 0; i < n; ++i)
    for (int k = 0; k < sizes[0]; ++k) xt[(size_t)k * n + i] = x[(int64_t)i * sizes[0] + k];
  int status = 1;
#pragma omp parallel
  {
    // per thread: h_l^T (sizes[l+1] x n), z_l^T (sizes[l] x n) for l >= 1, two deltas^T
    std::vector<std::vector<V>> h(depth + 1), z(depth + 1);
    int widest = 1;
    for (int l = 0; l <= depth; ++l) {
      h[l].resize((size_t)n * sizes[l + 1]);
      if (l > 0) z[l].resize((size_t)n * sizes[l]);
      widest = std::max(widest, sizes[l + 1]);
    }
    std::vector<V> delta((size_t)n * widest), next((size_t)n * widest), pre((size_t)n * widest);
    bool good = true;
#pragma omp for schedule(dynamic, 1)
    for (int e = 0; e < n_nets; ++e) {
      const V zero = V(0), one = V(1);
      for (int l = 0; l <= depth; ++l) {  // forward: h^T = W z^T (col-major: z W^T)
        const int in = sizes[l], out = sizes[l + 1];
        const V* w = ws[l] + (int64_t)e * out * in;
        const V* b = bs[l] + (int64_t)e * out;
        const V* zin = l == 0 ? xt.data() : z[l].data();
        V* hl = h[l].data();
        const V scale = static_cast<V>(scales[l]);
        gemm("N", "N", &n, &out, &in, &one, zin, &n, w, &in, &zero, hl, &n);
        const V sbv = static_cast<V>(sb);
        for (int o = 0; o < out; ++o) {
          const V bias = sbv * b[o];
#pragma omp simd
          for (int i = 0; i < n; ++i) hl[(int64_t)o * n + i] = hl[(int64_t)o * n + i] * scale + bias;
        }
        if (l < depth)
          good = apply(sigma, (int64_t)n * out, hl, (const V*)nullptr, one, z[l + 1].data(),
                       false) && good;
      }
      V* d = delta.data();  // residual^T (C x n); f and y are row-major (n, C)
      const int n_out = sizes[depth + 1];
      for (int o = 0; o < n_out; ++o)
        for (int i = 0; i < n; ++i) {
          const V v = h[depth][(int64_t)o * n + i];
          f_out[((int64_t)e * n + i) * n_out + o] = v;
          d[(int64_t)o * n + i] = v - y[(int64_t)i * n_out + o];
        }
      for (int l = depth; l >= 0; --l) {  // backward and update
        const int in = sizes[l], out = sizes[l + 1];
        V* w = ws[l] + (int64_t)e * out * in;
        V* b = bs[l] + (int64_t)e * out;
        const V* zin = l == 0 ? xt.data() : z[l].data();
        const V scale = static_cast<V>(scales[l]);
        if (l > 0) {  // next^T = W^T delta^T, with the old weights, before they change
          gemm("N", "T", &n, &in, &out, &one, d, &n, w, &in, &zero, pre.data(), &n);
          good = apply(deriv, (int64_t)n * in, h[l - 1].data(), pre.data(), scale,
                       next.data(), false) && good;
        }
        const V alpha = static_cast<V>(-lr) * scale;  // W += alpha delta^T z
        gemm("T", "N", &in, &out, &n, &alpha, zin, &n, d, &n, &one, w, &in);
        const V sbv = static_cast<V>(sb), lrv = static_cast<V>(lr);
        for (int o = 0; o < out; ++o) {
          V sum = V(0);
          for (int i = 0; i < n; ++i) sum += d[(int64_t)o * n + i];
          b[o] -= lrv * (sbv * sum);
        }
        if (l > 0) std::swap(delta, next), d = delta.data();
      }
    }
    if (!good) {
#pragma omp atomic write
      status = 0;
    }
  }
  return status;
}

// The computed triangle copied across the diagonal, in cache-sized blocks: entry (i, j)
// was computed where rank[i] <= rank[j] (rank: a point's place in the loop's order; null:
// the points in order, so the upper triangle).
template <typename Out>
void mirror(int n, Out* a, const int64_t* rank) {
  constexpr int kB = 64;
#pragma omp parallel for schedule(dynamic, 1)
  for (int bi = 0; bi < n; bi += kB)
    for (int bj = 0; bj <= bi; bj += kB)
      for (int i = bi; i < std::min(n, bi + kB); ++i)
        for (int j = bj; j < std::min(i, bj + kB); ++j) {
          const int64_t ij = (int64_t)i * n + j, ji = (int64_t)j * n + i;
          if (rank && rank[i] < rank[j])
            a[ji] = a[ij];
          else
            a[ij] = a[ji];
        }
}

template <typename Out>
int run(int n1, int n2, int n0, const double* x1, const double* x2, const double* q1,
        const double* q2, const int64_t* id1, const int64_t* id2, int depth, double sw2,
        double sb2, const double* own, const double* fns, const double* tables,
        const int64_t* offsets, int npairs, int upper, const SeriesPairs& series,
        const gk::CorrelationTile& corr, const gk::CorrelationTile& var, Out* nngp,
        Out* kout) {
  const int ok = recursion<Out>(n1, n2, n0, x1, x2, q1, q2, id1, id2, depth, sw2, sb2, own,
                                fns, tables, offsets, npairs, upper, series, corr, var, nngp,
                                kout);
  if (upper) {
    std::vector<int64_t> rank(series.order ? n1 : 0);
    for (int j = 0; j < (series.order ? n1 : 0); ++j) rank[series.order[j]] = j;
    const int64_t* r = series.order ? rank.data() : nullptr;
    if (nngp) mirror(n1, nngp, r);
    for (int p = 0; p < npairs; ++p) mirror(n1, kout + (int64_t)p * n1 * n1, r);
  }
  return ok;
}

}  // namespace

extern "C" {

// NNGP (nngp may be null) and npairs kernels (kout: npairs x n1 x n2) of x1 (n1, n0)
// against x2 (n2, n0); q1 (depth, n1), q2 (depth, n2) the layer diagonals; id1, id2 row
// ids (equal: identical inputs); own (depth + 1, 2): each layer's own kernel term
// alpha_l E_l + beta_l (Architecture.own_terms). fns: sigma's descriptor, then left/right per pair; a
// kTable term t reads its coefficients at tables + offsets[t]. upper != 0
// (x2 is x1, all kernels symmetric): the upper triangle is computed and mirrored. Returns
// 0 if a pair has no closed form; entries outside a table's panels are NaN. series_on
// (npairs + 1, sigma's pair last; or null): pairs summed by Mehler's series from the
// coefficient rows of series_coef (see SeriesPairs); NaN where a point's series is not
// served. corr_off ((npairs + 1) depth, or null) and corr_data: the (pair, layer)s read
// from a table in the correlation (see gk::CorrelationTile), before any other route;
// var_off and var_data likewise, those read from a table over variances (VarianceRow).
// fns holds the descriptors one after the other ({n, then kind, a, b, c, shift per term});
// offsets is indexed by term, counted over all of them.
int gk_cpu_recursion_f64(int n1, int n2, int n0, const double* x1, const double* x2,
                         const double* q1, const double* q2, const int64_t* id1,
                         const int64_t* id2, int depth, double sw2, double sb2,
                         const double* own, const double* fns, const double* tables,
                         const int64_t* offsets, int npairs, int upper,
                         const int* series_on, const double* series_coef,
                         const int64_t* series_off1, const int64_t* series_len1,
                         const int64_t* series_off2, const int64_t* series_width2,
                         const int64_t* series_len2, const int64_t* series_order,
                         const int64_t* series_uniform2, const long long* corr_off,
                         const double* corr_data, const long long* var_off,
                         const double* var_data, double* nngp, double* kout) {
  const SeriesPairs series{series_on,     series_coef,   series_off1, series_len1,
                           series_off2,   series_width2, series_len2, series_order,
                           series_uniform2};
  const gk::CorrelationTile corr{corr_off, corr_data}, var{var_off, var_data};
  return run<double>(n1, n2, n0, x1, x2, q1, q2, id1, id2, depth, sw2, sb2, own, fns, tables,
                 offsets, npairs, upper, series, corr, var, nngp, kout);
}

int gk_cpu_recursion_f32(int n1, int n2, int n0, const double* x1, const double* x2,
                         const double* q1, const double* q2, const int64_t* id1,
                         const int64_t* id2, int depth, double sw2, double sb2,
                         const double* own, const double* fns, const double* tables,
                         const int64_t* offsets, int npairs, int upper,
                         const int* series_on, const double* series_coef,
                         const int64_t* series_off1, const int64_t* series_len1,
                         const int64_t* series_off2, const int64_t* series_width2,
                         const int64_t* series_len2, const int64_t* series_order,
                         const int64_t* series_uniform2, const long long* corr_off,
                         const double* corr_data, const long long* var_off,
                         const double* var_data, float* nngp, float* kout) {
  const SeriesPairs series{series_on,     series_coef,   series_off1, series_len1,
                           series_off2,   series_width2, series_len2, series_order,
                           series_uniform2};
  const gk::CorrelationTile corr{corr_off, corr_data}, var{var_off, var_data};
  return run<float>(n1, n2, n0, x1, x2, q1, q2, id1, id2, depth, sw2, sb2, own, fns, tables,
                 offsets, npairs, upper, series, corr, var, nngp, kout);
}

// E[f(u) g(v)] of m entries by the reduced pair's outer rule (gpukern/gaussian.py,
// reduced_pair and gauss_quadrature, entry by entry): u ~ N(0, q), v | u ~ N(slope u, s2),
//   E = E_u[f(u) amp G_h(rate slope u, rate sqrt(s2))],
// G_h from h's 2-D table (g = amp h(rate v)); Gauss-Legendre panels (order nodes xi, wi)
// at every `step` sd over +-half_range sd and at the features' ladders centre +-
// scale 2^k, k = kmin.., both given per entry (feat_c, feat_s: n_feat x m; a non-finite
// one is no feature). NaN where a node falls off the table or into an unfilled cell:
// the caller computes those entries on the array path. Returns 0 if f has no value kind.
int gk_cpu_reduced_pair(int64_t m, const double* q, const double* slope, const double* s2,
                        const double* f_desc, int n_feat, const double* feat_c,
                        const double* feat_s, const double* xi, const double* wi, int order,
                        double step, int kmin, int kmax, double half_range,
                        const double* coef, const unsigned char* filled, int n_lam, int n_cols,
                        int offset, int even, int positive, double lam0, double cell,
                        double z0, double zeta_max, double amp, double rate, double* out) {
  const gk::Terms f = gk::terms_at(f_desc);
  const gk::MeanTableView table{coef, filled, n_lam, n_cols, offset, even, positive,
                                lam0, cell, z0, zeta_max};
  const double inv_sqrt_2pi = 0.3989422804014327;
  const int n_grid = static_cast<int>(std::floor(2.0 * half_range / step + 1e-9)) + 1;
#pragma omp parallel
  {
    std::vector<double> edges;
#pragma omp for schedule(dynamic, 16)
    for (int64_t e = 0; e < m; ++e) {
      const double sd = std::sqrt(q[e]), lo = -half_range * sd, hi = half_range * sd;
      edges.clear();
      for (int k = 0; k < n_grid; ++k) edges.push_back(sd * (-half_range + k * step));
      for (int ft = 0; ft < n_feat; ++ft) {
        double centre = feat_c[(int64_t)ft * m + e], scale = feat_s[(int64_t)ft * m + e];
        const bool known = std::isfinite(centre) && std::isfinite(scale);
        if (!known) centre = 0.0;  // the Gaussian's mean
        edges.push_back(centre);
        if (!(known && scale > 0.0)) continue;
        const double reach = std::max(std::fabs(lo - centre), std::fabs(hi - centre));
        const double ratio = std::max(reach / scale, 1e-300);
        const int top = std::min(kmax, std::max(kmin, (int)std::ceil(std::log2(ratio)) + 1));
        for (int k = kmin; k <= top; ++k) {
          const double rung = scale * std::ldexp(1.0, k);
          edges.push_back(centre + rung);
          edges.push_back(centre - rung);
        }
      }
      for (double& x : edges) x = std::min(std::max(x, lo), hi);
      std::sort(edges.begin(), edges.end());
      gk::MeanTableRow g_row(table, rate * std::sqrt(s2[e]));
      const double sl = slope[e];
      double acc = 0.0;
      for (size_t p = 0; p + 1 < edges.size(); ++p) {
        const double half = 0.5 * (edges[p + 1] - edges[p]);
        const double mid = 0.5 * (edges[p] + edges[p + 1]);
        double panel = 0.0;
        for (int i = 0; i < order; ++i) {
          const double u = mid + half * xi[i];
          const double z = u / sd;
          const double dens = std::exp(-0.5 * z * z) * (inv_sqrt_2pi / sd);
          const double inner = amp * g_row(rate * (sl * u));
          panel += (gk::value(f, u) * inner) * dens * (half * wi[i]);
        }
        acc += panel;
      }
      out[e] = acc;
    }
  }
  return 1;
}

// out[i] = cheb2d(coef + cell[i] n^2, n, x[i], y[i]): the 2-D Gaussian-average tables.
void gk_cpu_cheb2d(const double* coef, int n, const int64_t* cell, const double* x,
                   const double* y, int64_t p, double* out) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < p; ++i) out[i] = gk::cheb2d(coef + cell[i] * n * n, n, x[i], y[i]);
}

// out[e] = sum_{k <= terms[e]} a[ia[e], k] b[ib[e], k] rho[e]^k (gk::mehler_series, 8
// entries interleaved): the pairs of analytic functions (gpukern/hermite.py).
// out (n1 x n2, row-major) = F(q1_i, q2_j, c_ij, det_ij) from a table over variances:
// psi of every column once, each row's contraction (VarianceRow) once.
void gk_cpu_variance_block(int64_t n1, int64_t n2, const double* table,
                           const double* q1, const double* q2, const double* c,
                           const double* det, double* out) {
  const std::vector<double> psi = variance_columns(table, q2, n2);
  const int r2 = (int)table[4];
#pragma omp parallel
  {
    VarianceRow row(table);
#pragma omp for schedule(dynamic, 4)
    for (int64_t i = 0; i < n1; ++i) {
      row.contract(q1[i]);
      for (int64_t j0 = 0; j0 < n2; j0 += kChunk) {
        const int64_t e = i * n2 + j0;
        row.chunk(psi.data() + j0 * r2, q1[i], q2 + j0, c + e, det + e,
                  (int)std::min<int64_t>(kChunk, n2 - j0), out + e);
      }
    }
  }
}

void gk_cpu_mehler_series(int64_t m, const double* a, const double* b, int64_t stride,
                          const int64_t* ia, const int64_t* ib, const int64_t* terms,
                          const double* rho, double* out) {
  constexpr int kGroup = 8;
#pragma omp parallel for schedule(dynamic, 64)
  for (int64_t e0 = 0; e0 < m; e0 += kGroup) {
    const int count = static_cast<int>(std::min<int64_t>(kGroup, m - e0));
    const double* ra[kGroup];
    const double* rb[kGroup];
    long long n[kGroup];
    for (int j = 0; j < count; ++j) {
      ra[j] = a + ia[e0 + j] * stride;
      rb[j] = b + ib[e0 + j] * stride;
      n[j] = terms[e0 + j];
    }
    gk::mehler_series<kGroup>(ra, rb, n, rho + e0, count, out + e0);
  }
}

// out[p, n] = sum_k w[p, k] h[k, n], p < n_points, n < n_terms: Hermite coefficients from
// weighted function values (gpukern/hermite.py). Each out[p, n] adds its k in order, so a
// point's coefficients do not depend on the others; points go 8 at a time through h.
void gk_cpu_hermite_coefficients(int64_t n_points, int64_t n_nodes, int64_t n_terms,
                                 const double* w, const double* h, double* out) {
  constexpr int64_t kGroup = 8;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t p0 = 0; p0 < n_points; p0 += kGroup) {
    const int64_t p1 = std::min(n_points, p0 + kGroup);
    for (int64_t p = p0; p < p1; ++p) std::fill(out + p * n_terms, out + (p + 1) * n_terms, 0.0);
    for (int64_t k = 0; k < n_nodes; ++k) {
      const double* row = h + k * n_terms;
      for (int64_t p = p0; p < p1; ++p) {
        const double wk = w[p * n_nodes + k];
        double* o = out + p * n_terms;
        for (int64_t n = 0; n < n_terms; ++n) o[n] += wk * row[n];
      }
    }
  }
}

// out = f(h) (pre null) or (pre * scale) * f(h), n entries; 0 for a kind without value.
int gk_cpu_map_f64(const double* fn, int64_t n, const double* h, const double* pre,
                   double scale, double* out) {
  return map<double>(fn, n, h, pre, scale, out);
}

int gk_cpu_map_f32(const double* fn, int64_t n, const float* h, const float* pre, double scale,
                   float* out) {
  return map<float>(fn, n, h, pre, scale, out);
}

// One SGL step of n_nets networks in place (see sgl_step); f_out (n_nets, n, C): the
// outputs before it. gemm: a Fortran-interface sgemm/dgemm. Returns 0 if sigma or the
// derivative has no value kind.
int gk_cpu_sgl_step_f64(int n_nets, int n, int depth, const int* sizes, double* const* ws,
                        double* const* bs, const double* x, const double* y, double lr,
                        const double* scales, double sb, const double* sigma,
                        const double* deriv, void* gemm, double* f_out) {
  return sgl_step<double>(n_nets, n, depth, sizes, ws, bs, x, y, lr, scales, sb, sigma, deriv,
                          reinterpret_cast<Gemm<double>>(gemm), f_out);
}

int gk_cpu_sgl_step_f32(int n_nets, int n, int depth, const int* sizes, float* const* ws,
                        float* const* bs, const float* x, const float* y, double lr,
                        const double* scales, double sb, const double* sigma,
                        const double* deriv, void* gemm, float* f_out) {
  return sgl_step<float>(n_nets, n, depth, sizes, ws, bs, x, y, lr, scales, sb, sigma, deriv,
                         reinterpret_cast<Gemm<float>>(gemm), f_out);
}

// out (=, or += when accumulate) dd * (c * zz + b); dd, out n entries, zz m (m divides n).
void gk_cpu_hadamard_f64(int64_t n, int64_t m, double* out, const double* dd, const double* zz,
                         double c, double b, int accumulate) {
  hadamard<double>(n, m, out, dd, zz, c, b, accumulate != 0);
}

void gk_cpu_hadamard_f32(int64_t n, int64_t m, float* out, const float* dd, const float* zz,
                         double c, double b, int accumulate) {
  hadamard<float>(n, m, out, dd, zz, static_cast<float>(c), static_cast<float>(b),
                  accumulate != 0);
}

int gk_cpu_threads() { return omp_get_max_threads(); }
}
