// Test-only host build of the cuda/ headers (tests/conftest.py: g++ -O2 -ffp-contract=off -shared):
// C entry points that loop over arrays and call the very functions the GPU kernels call.
#include <cstdint>

#include "gpukern/recursion.cuh"

extern "C" {

void gk_value(const double* fn, const double* v, double* out, int64_t n) {
  const gk::Fn f = gk::make_fn(fn);
  for (int64_t i = 0; i < n; ++i) out[i] = gk::value(f, v[i]);
}

int gk_gauss_avg(const double* fn, const double* s2, double* out, int64_t n) {
  const gk::Fn f = gk::make_fn(fn);
  bool ok = true;
  for (int64_t i = 0; i < n; ++i) out[i] = gk::gauss_avg(f, s2[i], ok);
  return ok;
}

int gk_pair(const double* fn_f, const double* fn_g, const double* q, const double* qp,
            const double* c, const double* det, double* out, int64_t n) {
  const gk::Fn f = gk::make_fn(fn_f), g = gk::make_fn(fn_g);
  bool ok = true, all = true;
  for (int64_t i = 0; i < n; ++i) {
    out[i] = gk::pair(f, g, q[i], qp[i], c[i], det[i], ok);
    all = all && ok;
  }
  return all;
}

// The next layer's determinant from sigma's gaps (0 where its kind has none).
int gk_next_det(const double* fn, double sw2, double sb2, const double* q, const double* qp,
                const double* c, const double* det, double* out, int64_t n) {
  const gk::Fn f = gk::make_fn(fn);
  bool ok = true, all = true;
  for (int64_t i = 0; i < n; ++i) {
    out[i] = gk::next_det(f, sw2, sb2, q[i], qp[i], c[i], det[i], ok);
    all = all && ok;
  }
  return all;
}

// The fused recursion over a whole (n1, n2) block, as the GPU kernel does it.
int gk_recursion(int n1, int n2, int n0, const double* gram, const double* q1, const double* q2,
                 const int64_t* id1, const int64_t* id2, const double* x1, const double* x2,
                 int depth, double sw2, double sb2, const double* fns, int npairs, double* nngp,
                 double* kout) {
  const gk::Fn sigma = gk::make_fn(fns);
  gk::Fn lefts[gk::kMaxPairs], rights[gk::kMaxPairs];
  for (int p = 0; p < npairs; ++p) {
    lefts[p] = gk::make_fn(fns + 4 * (1 + 2 * p));
    rights[p] = gk::make_fn(fns + 4 * (2 + 2 * p));
  }
  bool all = true;
  for (int i = 0; i < n1; ++i)
    for (int j = 0; j < n2; ++j) {
      const int64_t idx = (int64_t)i * n2 + j;
      double k[gk::kMaxPairs];
      all = gk::recursion_entry<double>(depth, sw2, sb2, sigma, npairs, lefts, rights, gram[idx],
                                        q1 + i, n1, q2 + j, n2, id1[i] == id2[j],
                                        x1 + (int64_t)i * n0, x2 + (int64_t)j * n0, n0,
                                        &nngp[idx], k) && all;
      for (int p = 0; p < npairs; ++p) kout[(int64_t)p * n1 * n2 + idx] = k[p];
    }
  return all;
}
}
