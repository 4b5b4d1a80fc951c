// Fused analytic kernel: one thread per output entry (i, j) of a tile walks all layers in
// registers (cuda/gpukern/recursion.cuh). Inputs: the tile's Gram <x_i, x_j>/n0 (from
// cuBLAS), the per-layer diagonals q_l (depth x n, computed once), row ids (equal ids =
// identical inputs), the raw inputs (for the exact layer-1 determinant when n0 <= 8) and
// each layer's own kernel term (own: alpha_l, beta_l for l = 0..depth) and the function
// descriptors, one after the other: sigma, then left/right per pair (each
// {n, then kind, a, b, c, shift per term}; none for a function known by its series
// only), the pairs summed by Mehler's series (series_on, or all 0: see SeriesTile) and the
// (pair, layer)s read from a table in the correlation (corr_off, -1 where none: see
// CorrelationTile).
// Instantiated for double (CuPy RawModule name_expressions; the recursion runs in float64).
#include "gpukern/recursion.cuh"  // with tables.cuh: cheb2d, the series, host and device code

template <typename T>
__global__ void fused_recursion(int n1, int n2, int n0, const T* __restrict__ gram,
                                const T* __restrict__ q1, const T* __restrict__ q2,
                                const long long* __restrict__ id1,
                                const long long* __restrict__ id2, const T* __restrict__ x1,
                                const T* __restrict__ x2, int depth, T sw2, T sb2,
                                const double* __restrict__ own,
                                const double* __restrict__ fns, int npairs,
                                const int* __restrict__ series_on,
                                const double* __restrict__ series_coef,
                                const long long* __restrict__ series_base1,
                                const long long* __restrict__ series_base2,
                                const long long* __restrict__ series_len1,
                                const long long* __restrict__ series_len2,
                                const long long* __restrict__ corr_off,
                                const double* __restrict__ corr_data,
                                T* __restrict__ nngp, T* __restrict__ kout,
                                int* __restrict__ status) {
  const long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (idx >= (long long)n1 * n2) return;
  const int i = static_cast<int>(idx / n2), j = static_cast<int>(idx % n2);
  const gk::Terms sigma = gk::terms_at(fns);
  gk::Terms lefts[gk::kMaxPairs], rights[gk::kMaxPairs];
  const double* at = fns + gk::descriptor_size(fns);
  for (int p = 0; p < npairs; ++p) {
    lefts[p] = gk::terms_at(at);
    at += gk::descriptor_size(at);
    rights[p] = gk::terms_at(at);
    at += gk::descriptor_size(at);
  }
  const gk::SeriesTile series{series_on,   series_coef, series_base1, series_base2,
                              series_len1, series_len2, n1,           n2};
  const gk::CorrelationTile corr{corr_off, corr_data};
  T k[gk::kMaxPairs];
  T s;
  const bool ok = gk::recursion_entry<T>(depth, sw2, sb2, own, sigma, npairs, lefts, rights, gram[idx],
                                         q1 + i, n1, q2 + j, n2, id1[i] == id2[j],
                                         x1 + (long long)i * n0, x2 + (long long)j * n0, n0, &s, k,
                                         &series, i, j, &corr);
  nngp[idx] = s;
  for (int p = 0; p < npairs; ++p) kout[(long long)p * n1 * n2 + idx] = k[p];
  if (!ok) atomicExch(status, 1);
}

#ifdef GK_INSTANTIATE  // an explicit instance for offline nvcc builds (CuPy instantiates by name)
template __global__ void fused_recursion<double>(int, int, int, const double*, const double*,
                                                 const double*, const long long*,
                                                 const long long*, const double*, const double*,
                                                 int, double, double, const double*,
                                                 const double*, int, const int*,
                                                 const double*, const long long*,
                                                 const long long*, const long long*,
                                                 const long long*, const long long*,
                                                 const double*, double*, double*, int*);
#endif
