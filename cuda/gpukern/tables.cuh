// Evaluation of the Gaussian-average tables (gpukern/tables.py builds them) and of Mehler
// series (gpukern/hermite.py): a table or a row of Hermite coefficients is data, and this
// is the one evaluation code for the host (the compiled CPU path) and the device.
#pragma once

#include "registry.cuh"

namespace gk {

// Mehler's formula truncated after term n[j]: out[j] = sum_{k <= n[j]} a[j][k] b[j][k] rho[j]^k
// for `count` <= G entries, by Horner from the highest term down (a[j], b[j]: the Hermite
// coefficients of entry j's two points). Each entry's chain is the same recurrence
// whatever G; G > 1 only interleaves independent chains (the host's throughput).
template <int G>
GK_HD void mehler_series(const double* const* a, const double* const* b, const long long* n,
                         const double* rho, int count, double* out) {
  double acc[G];
  long long top = -1;
  for (int j = 0; j < count; ++j) {
    acc[j] = 0.0;
    top = n[j] > top ? n[j] : top;
  }
  for (long long k = top; k >= 0; --k)
    for (int j = 0; j < count; ++j) {
      // a row beyond its entry's n is not read (it may be shorter)
      const double step = k <= n[j] ? acc[j] * rho[j] + a[j][k] * b[j][k] : acc[j];
      acc[j] = step;
    }
  for (int j = 0; j < count; ++j) out[j] = acc[j];
}

// A fused kernel tile's pairs summed by Mehler's series: pair p (the kernels' pairs, then
// sigma's own pair as p = npairs; on[p] != 0) at layer l has point i's coefficient k at
// coef[base1[p depth + l] + k n1 + i] (term-major: the entries of a row read consecutive
// addresses) and its series length at len1[(p depth + l) n1 + i] (-1: not served);
// likewise x2's with base2, len2, n2.
struct SeriesTile {
  const int* on;
  const double* coef;
  const long long* base1;
  const long long* base2;
  const long long* len1;
  const long long* len2;
  int n1, n2;
};

// Entry (i, j) of pair p at layer l: mehler_series' Horner recurrence for one entry,
// summed to max(len1, len2), rho = c / sqrt(q q') clipped (the compiled CPU loop's
// expression and order: the same number). ok = false where a point is not served.
template <typename T>
GK_HD T series_entry(const SeriesTile& s, int p, int l, int depth, int i, int j, T q, T qp,
                     T c, bool& ok) {
  const long long pl = (long long)p * depth + l;
  const long long la = s.len1[pl * s.n1 + i], lb = s.len2[pl * s.n2 + j];
  ok = la >= 0 && lb >= 0;
  if (!ok) return T(0);
  const T r = c / sqrt(q * qp);
  const T rho = r > T(1) ? T(1) : (r < T(-1) ? T(-1) : r);
  const double* a = s.coef + s.base1[pl] + i;
  const double* b = s.coef + s.base2[pl] + j;
  T acc = T(0);
  for (long long k = la > lb ? la : lb; k >= 0; --k)
    acc = acc * rho + T(a[k * s.n1]) * T(b[k * s.n2]);
  return acc;
}

// The t panel of an entry in a table with two halves (rho >= 0 at table + half0, rho < 0
// at table + half1), each a cell index (2^table[0] cells of t) followed by panel rows of
// ``stride`` doubles (lo, 2 / width, ...): rho = c / sqrt(q q') clipped,
// t = sqrt(1 - |rho|) with 1 - |rho| = det / (q q' (1 + |rho|)) where |rho| > 1/2 (no
// cancellation near +-1). Returns the panel row's offset from table; x = (t - lo) 2 / width
// - 1 in [-1, 1], and index the panel's number (those of the first half, then the second).
GK_HD long long table_panel(const double* table, long long half0, long long half1,
                            long long stride, double q, double qp, double c, double det,
                            double& x, long long& index) {
  const double r = c / sqrt(q * qp);
  const double rho = r > 1.0 ? 1.0 : (r < -1.0 ? -1.0 : r);
  const double a = fabs(rho);
  const double om = a > 0.5 ? det / ((q * qp) * (1.0 + a)) : 1.0 - a;
  const double t = sqrt(om > 0.0 ? om : 0.0);
  const long long n_cells = 1LL << (int)table[0];
  const long long half = rho >= 0.0 ? half0 : half1;
  long long cell = (long long)(t * (double)n_cells);
  cell = cell < n_cells - 1 ? cell : n_cells - 1;
  const long long panel = (long long)table[half + cell];
  index = panel + (rho >= 0.0 ? 0 : (half1 - half0 - n_cells) / stride);
  const long long at = half + n_cells + panel * stride;
  const double y = (t - table[at]) * table[at + 1] - 1.0;
  x = y > 1.0 ? 1.0 : (y < -1.0 ? -1.0 : y);
  return at;
}

// A pair at fixed variances (q, q') from its table in the correlation
// (gpukern/correlation.py, CorrelationTable.data): the halves at table + 3 and
// table + table[2], panel rows (lo, 2 / width, table[1] + 1 Chebyshev coefficients).
// Returns the panel row's offset from table and x in [-1, 1] (table_panel).
GK_HD long long correlation_panel(const double* table, double q, double qp, double c,
                                  double det, double& x) {
  long long index;
  return table_panel(table, 3, (long long)table[2], (long long)table[1] + 3, q, qp, c, det, x,
                     index);
}

// Clenshaw's recurrence for one step k of the panel's sum (b1, b2 carried):
// b_k = c_k + 2 x b_{k+1} - b_{k+2}; after k = 1, the value is c_0 + x b_1 - b_2.
GK_HD void clenshaw_step(double ck, double x, double& b1, double& b2) {
  const double b = ck + 2.0 * x * b1 - b2;
  b2 = b1;
  b1 = b;
}

// The pair's value at one entry: its panel (correlation_panel), then Clenshaw. The array
// path computes the same expression.
GK_HD double correlation_entry(const double* table, double q, double qp, double c, double det) {
  double x;
  const double* row = table + correlation_panel(table, q, qp, c, det, x);
  double b1 = 0.0, b2 = 0.0;
  for (int k = (int)table[1]; k > 0; --k) clenshaw_step(row[2 + k], x, b1, b2);
  return row[2] + x * b1 - b2;
}

// Pairs read from their tables in the correlation (a fused kernel tile's, or a compiled
// CPU call's): pair p (the kernels' pairs, then sigma's own pair as p = npairs) at layer
// l has its table at data + off[p depth + l], or off -1 (or no off at all) where it takes
// another route.
struct CorrelationTile {
  const long long* off;
  const double* data;

  GK_HD const double* at(int p, int l, int depth) const {
    if (!off) return nullptr;
    const long long o = off[(long long)p * depth + l];
    return o >= 0 ? data + o : nullptr;
  }
};

// A pair over varying variances from its table (gpukern/variance.py, VarianceTable.data):
// header [max level, degree, nodes, r1, r2, lo1, lo2, span, half0, half1, panels], then u1
// (nodes x r1) and u2 (nodes x r2), then per half its cell index and panel rows (lo,
// 2 / width, core r1 x r2 x (degree + 1)). F = sum_{r,s} phi_r(q) psi_s(q') G_rs(t).
constexpr int kVarianceHeader = 11;

GK_HD long long variance_stride(const double* table) {
  return 2 + (long long)table[3] * (long long)table[4] * ((long long)table[1] + 1);
}

// phi_r(q) = sum_a T_a(x) u[a, r] (side 0: u1 and lo1; side 1: u2 and lo2),
// x = (log2 q - lo) 2 / span - 1 clipped to [-1, 1].
GK_HD void variance_basis(const double* table, int side, double q, double* phi) {
  const int n = (int)table[2], r1 = (int)table[3], r = (int)table[3 + side];
  const double* u = table + kVarianceHeader + (side ? (long long)n * r1 : 0);
  double x = (log2(q) - table[5 + side]) * (2.0 / table[7]) - 1.0;
  x = x > 1.0 ? 1.0 : (x < -1.0 ? -1.0 : x);
  for (int k = 0; k < r; ++k) phi[k] = 0.0;
  double prev = 1.0, ta = 1.0;
  for (int a = 0; a < n; ++a) {
    if (a == 1) {
      ta = x;
    } else if (a > 1) {
      const double next = 2.0 * x * ta - prev;
      prev = ta;
      ta = next;
    }
    for (int k = 0; k < r; ++k) phi[k] += ta * u[(long long)a * r + k];
  }
}

// The entry's panel (table_panel over the two halves).
GK_HD long long variance_panel(const double* table, double q, double qp, double c, double det,
                               double& x, long long& index) {
  return table_panel(table, (long long)table[8], (long long)table[9], variance_stride(table),
                     q, qp, c, det, x, index);
}

// F at one entry from its bases phi (r1) and psi (r2): d_k = sum_{r,s} phi_r psi_s G_rsk
// in the entry's panel, then Clenshaw in x.
GK_HD double variance_entry(const double* table, const double* phi, const double* psi,
                            double q, double qp, double c, double det) {
  double x;
  long long index;
  const double* core = table + variance_panel(table, q, qp, c, det, x, index) + 2;
  const int r1 = (int)table[3], r2 = (int)table[4], m = (int)table[1] + 1;
  double d[kCorrelationDegree + 1];
  for (int k = 0; k < m; ++k) d[k] = 0.0;
  for (int r = 0; r < r1; ++r)
    for (int s = 0; s < r2; ++s) {
      const double w = phi[r] * psi[s];
      const double* g = core + ((long long)r * r2 + s) * m;
      for (int k = 0; k < m; ++k) d[k] += w * g[k];
    }
  double b1 = 0.0, b2 = 0.0;
  for (int k = m - 1; k > 0; --k) clenshaw_step(d[k], x, b1, b2);
  return d[0] + x * b1 - b2;
}

// sum_{a,b < n} coef[a n + b] T_a(x) T_b(y), x, y in [-1, 1], n <= kMeanCheb: the basis
// values by the three-term recurrence, then a product per row (independent multiply-adds,
// not Clenshaw's chain of dependent ones).
GK_HD double cheb2d(const double* coef, int n, double x, double y) {
  double tx[kMeanCheb], ty[kMeanCheb];
  tx[0] = ty[0] = 1.0;
  if (n > 1) {
    tx[1] = x;
    ty[1] = y;
  }
  for (int k = 2; k < n; ++k) {
    tx[k] = 2.0 * x * tx[k - 1] - tx[k - 2];
    ty[k] = 2.0 * y * ty[k - 1] - ty[k - 2];
  }
  double total = 0.0;
  for (int a = 0; a < n; ++a) {
    const double* row = coef + a * n;
    double r = 0.0;
    for (int b = 0; b < n; ++b) r += row[b] * ty[b];
    total += tx[a] * r;
  }
  return total;
}

// A 2-D table of G(mu, sigma) / P(sigma) = E[h(mu + sigma Z)] / P(sigma) of a unit function h
// (gpukern/tables.py, MeanTable): cells of CELL x CELL in lambda = log sigma (from lam0, n_lam
// rows) and zeta = z0 asinh(mu / (z0 sigma)) (n_cols columns, column j + offset for zeta cell
// j; an even h has only zeta >= 0), each kMeanCheb^2 coefficients; filled[cell] says which
// cells hold them. P = 1/sqrt(1 + sigma^2) for a positive h, else 1.
struct MeanTableView {
  const double* coef;
  const unsigned char* filled;
  int n_lam, n_cols, offset, even, positive;
  double lam0, cell, z0, zeta_max;
};

// G(mu, sigma) along one row of a table: sigma fixed (one lambda row, its Chebyshev basis
// in lambda and P(sigma) computed once), mu varying. The row's contraction with the lambda
// basis is kept for the last cell read (a quadrature rule's nodes in increasing mu read
// each cell several times in a row): a value then costs its zeta, the zeta basis and
// kMeanCheb multiply-adds.
struct MeanTableRow {
  const MeanTableView* t;
  double sigma, peak, tx[kMeanCheb], r[kMeanCheb];
  long long row = -1, cached = -1;  // row: -1 when sigma is off the lattice or 0

  GK_HD MeanTableRow(const MeanTableView& table, double s) : t(&table), sigma(s), peak(1.0) {
    if (!(s > 0.0)) return;
    const double lam = log(s);
    if (!(lam >= table.lam0 && lam < table.lam0 + table.n_lam * table.cell)) return;
    const double a = (lam - table.lam0) / table.cell, i = floor(a);
    const double x = fmin(fmax(2.0 * (a - i) - 1.0, -1.0), 1.0);
    tx[0] = 1.0;
    tx[1] = x;
    for (int k = 2; k < kMeanCheb; ++k) tx[k] = 2.0 * x * tx[k - 1] - tx[k - 2];
    peak = table.positive ? 1.0 / sqrt(1.0 + s * s) : 1.0;
    row = (long long)i;
  }

  // G(mu, sigma), or NaN off the lattice or in an unfilled cell
  GK_HD double operator()(double mu) {
    const double nan = 0.0 / 0.0;
    if (row < 0) return nan;
    double zeta = t->z0 * asinh(mu / (t->z0 * sigma));
    if (t->even) zeta = fabs(zeta);
    if (!(fabs(zeta) < t->zeta_max)) return nan;
    const double b = zeta / t->cell, j = floor(b);
    const long long flat = row * t->n_cols + ((long long)j + t->offset);
    if (flat != cached) {
      if (!t->filled[flat]) return nan;
      const double* c = t->coef + flat * kMeanCheb * kMeanCheb;
      for (int q = 0; q < kMeanCheb; ++q) r[q] = 0.0;
      for (int p = 0; p < kMeanCheb; ++p)
        for (int q = 0; q < kMeanCheb; ++q) r[q] += tx[p] * c[p * kMeanCheb + q];
      cached = flat;
    }
    const double y = fmin(fmax(2.0 * (b - j) - 1.0, -1.0), 1.0);
    double t0 = 1.0, t1 = y, total = r[0] + r[1] * y;
    for (int q = 2; q < kMeanCheb; ++q) {
      const double t2 = 2.0 * y * t1 - t0;
      total += r[q] * t2;
      t0 = t1;
      t1 = t2;
    }
    return total * peak;
  }
};

}  // namespace gk
