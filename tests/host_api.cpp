// Test-only host build of the cuda/ headers (tests/conftest.py: g++ -O2 -ffp-contract=off -shared):
// C entry points that loop over arrays and call the very functions the GPU kernels call.
#include <cstdint>

#include "gpukern/recursion.cuh"

struct MeanAvgOp {
  const gk::Fn& g;
  double m, s2;
  bool& ok;
  template <int K>
  double run() {
    ok = gk::has_mean_avg<K>();
    return gk::gauss_avg_mean_k<K, double>(g, m, s2);
  }
};

extern "C" {

// fn: a descriptor {n, terms} (gk_gauss_avg, gk_mean_avg, gk_next_det: its first term)
void gk_value(const double* fn, const double* v, double* out, int64_t n) {
  const gk::Terms f = gk::terms_at(fn);
  for (int64_t i = 0; i < n; ++i) out[i] = gk::value(f, v[i]);
}

int gk_mean_avg(const double* fn, const double* m, const double* s2, double* out, int64_t n) {
  const gk::Fn f = gk::terms_at(fn)[0];
  bool ok = true;
  for (int64_t i = 0; i < n; ++i) {
    MeanAvgOp op{f, m[i], s2[i], ok};
    out[i] = gk::dispatch_kind(f.kind, op);
  }
  return ok;
}

void gk_bvn(const double* h, const double* k, const double* rho, const double* s2, double* out,
            int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = gk::bvn_upper(h[i], k[i], rho[i], s2[i]);
}

int gk_gauss_avg(const double* fn, const double* s2, double* out, int64_t n) {
  const gk::Fn f = gk::terms_at(fn)[0];
  bool ok = true;
  for (int64_t i = 0; i < n; ++i) out[i] = gk::gauss_avg(f, s2[i], ok);
  return ok;
}

int gk_pair(const double* fn_f, const double* fn_g, const double* q, const double* qp,
            const double* c, const double* det, double* out, int64_t n) {
  const gk::Terms f = gk::terms_at(fn_f), g = gk::terms_at(fn_g);
  bool ok = true, all = true;
  for (int64_t i = 0; i < n; ++i) {
    out[i] = gk::pair_terms(f, g, q[i], qp[i], c[i], det[i], ok);
    all = all && ok;
  }
  return all;
}

// The next layer's determinant from sigma's gaps (0 where its kind has none).
int gk_next_det(const double* fn, double sw2, double sb2, const double* q, const double* qp,
                const double* c, const double* det, double* out, int64_t n) {
  const gk::Fn f = gk::terms_at(fn)[0];
  bool ok = true, all = true;
  for (int64_t i = 0; i < n; ++i) {
    out[i] = gk::next_det(f, sw2, sb2, q[i], qp[i], c[i], det[i], ok);
    all = all && ok;
  }
  return all;
}

// A pair from its table over variances, entry by entry as a GPU thread would read it
// (gk::variance_basis on each side, then gk::variance_entry).
void gk_variance(const double* table, const double* q, const double* qp, const double* c,
                 const double* det, double* out, int64_t n) {
  double phi[gk::kVarianceNodes], psi[gk::kVarianceNodes];
  for (int64_t i = 0; i < n; ++i) {
    gk::variance_basis(table, 0, q[i], phi);
    gk::variance_basis(table, 1, qp[i], psi);
    out[i] = gk::variance_entry(table, phi, psi, q[i], qp[i], c[i], det[i]);
  }
}

// The fused recursion over a whole (n1, n2) block, as the GPU kernel does it.
int gk_recursion(int n1, int n2, int n0, const double* gram, const double* q1, const double* q2,
                 const int64_t* id1, const int64_t* id2, const double* x1, const double* x2,
                 int depth, double sw2, double sb2, const double* own, const double* fns,
                 int npairs, double* nngp, double* kout) {
  const gk::Terms sigma = gk::terms_at(fns);
  gk::Terms lefts[gk::kMaxPairs], rights[gk::kMaxPairs];
  const double* at = fns + gk::descriptor_size(fns);
  for (int p = 0; p < npairs; ++p) {
    lefts[p] = gk::terms_at(at);
    at += gk::descriptor_size(at);
    rights[p] = gk::terms_at(at);
    at += gk::descriptor_size(at);
  }
  bool all = true;
  for (int i = 0; i < n1; ++i)
    for (int j = 0; j < n2; ++j) {
      const int64_t idx = (int64_t)i * n2 + j;
      double k[gk::kMaxPairs];
      all = gk::recursion_entry<double>(depth, sw2, sb2, own, sigma, npairs, lefts, rights, gram[idx],
                                        q1 + i, n1, q2 + j, n2, id1[i] == id2[j],
                                        x1 + (int64_t)i * n0, x2 + (int64_t)j * n0, n0,
                                        &nngp[idx], k) && all;
      for (int p = 0; p < npairs; ++p) kout[(int64_t)p * n1 * n2 + idx] = k[p];
    }
  return all;
}
}
