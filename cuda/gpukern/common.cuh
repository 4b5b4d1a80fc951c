// Shared helpers for gpukern's per-entry math, compiled by nvcc for the GPU and by a
// host C++ compiler for the CPU tests (the same source, no copy).
#pragma once

#ifndef __CUDACC_RTC__  // NVRTC (CuPy's RawModule) has no host headers
#include <cmath>
#endif

#ifdef __CUDACC__
#define GK_HD __host__ __device__ inline
#else
#define GK_HD inline
#endif

namespace gk {

#ifndef __CUDA_ARCH__
using std::atan2;
using std::erf;
using std::erfc;
using std::exp;
using std::expm1;
using std::fabs;
using std::floor;
using std::fma;
using std::isinf;
using std::log;
using std::log1p;
using std::sin;
using std::sqrt;
#endif

// NaN and +inf: <cmath>'s macros on the host, their bit patterns on the device (NVRTC
// defines neither NAN nor INFINITY).
#ifdef __CUDA_ARCH__
#define GK_NAN __longlong_as_double(0x7ff8000000000000LL)
#define GK_INF __longlong_as_double(0x7ff0000000000000LL)
#else
#define GK_NAN NAN
#define GK_INF INFINITY
#endif

constexpr double kPi = 3.141592653589793238462643383279502884;
constexpr double kSqrtPi = 1.772453850905516027298167483341145183;
constexpr double kInvSqrt2Pi = 0.398942280401432677939946059934381868;
constexpr double kSqrt2 = 1.414213562373095048801688724209698079;

// Standard normal CDF Phi(x) = erfc(-x / sqrt 2) / 2 (accurate in both tails).
template <typename T>
GK_HD T ndtr(T x) {
  return T(0.5) * erfc(-x / T(kSqrt2));
}

// Scaled complementary error function erfcx(z) = exp(z^2) erfc(z), z >= 0.
template <typename T>
GK_HD T erfcx_pos(T z) {
#ifdef __CUDA_ARCH__
  return erfcx(z);
#else
  if (z < T(26)) return std::exp(z * z) * std::erfc(z);
  // asymptotic series 1/(z sqrt pi) * sum_k (-1)^k (2k-1)!! / (2 z^2)^k, converged here
  const T inv = T(1) / (T(2) * z * z);
  T term = T(1), sum = T(1);
  for (int k = 1; k < 12; ++k) {
    term *= -T(2 * k - 1) * inv;
    sum += term;
  }
  return sum / (z * T(kSqrtPi));
#endif
}

}  // namespace gk
