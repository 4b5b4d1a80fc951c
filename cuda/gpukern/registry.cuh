// Generated from gpukern/registry.py by `python -m gpukern.registry cuda/gpukern/registry.cuh`;
// do not edit (tests/test_contract.py checks that it is current).
#pragma once

#include "common.cuh"

namespace gk {

enum Kind : int {
  kErfStep = 0,
  kGaussBump = 1,
  kHeaviside = 2,
  kReLU = 3,
  kIdentity = 4,
  kConstant = 5,
  kSigmoid = 6,
  kFastSigmoid = 7,
  kAtan = 8,
  kBoxcar = 9,
  kTriangle = 10,
  kTable = 11,
};

// X(name) for every kind, in enum order (dispatch_kind's cases)
#define GK_FOR_EACH_KIND(X) \
  X(kErfStep) \
  X(kGaussBump) \
  X(kHeaviside) \
  X(kReLU) \
  X(kIdentity) \
  X(kConstant) \
  X(kSigmoid) \
  X(kFastSigmoid) \
  X(kAtan) \
  X(kBoxcar) \
  X(kTriangle) \
  X(kTable)

// Kinds whose Gaussian average has a closed form.
template <int K>
GK_HD constexpr bool has_avg() {
  switch (K) {
    case kErfStep: return true;
    case kGaussBump: return true;
    case kHeaviside: return true;
    case kReLU: return true;
    case kIdentity: return true;
    case kConstant: return true;
    case kSigmoid: return false;
    case kFastSigmoid: return false;
    case kAtan: return true;
    case kBoxcar: return true;
    case kTriangle: return true;
    case kTable: return true;
  }
  return false;
}

// Kinds whose self pair E[f(u) g(v)] (both of this kind) has a closed form.
template <int K>
GK_HD constexpr bool has_self_pair() {
  switch (K) {
    case kErfStep: return true;
    case kGaussBump: return false;
    case kHeaviside: return true;
    case kReLU: return true;
    case kIdentity: return true;
    case kConstant: return false;
    case kSigmoid: return false;
    case kFastSigmoid: return false;
    case kAtan: return false;
    case kBoxcar: return false;
    case kTriangle: return false;
    case kTable: return false;
  }
  return false;
}

// Activation kinds that carry the determinant stably (gaps_k).
template <int K>
GK_HD constexpr bool has_det_gaps() {
  switch (K) {
    case kErfStep: return true;
    case kGaussBump: return false;
    case kHeaviside: return true;
    case kReLU: return true;
    case kIdentity: return true;
    case kConstant: return true;
    case kSigmoid: return false;
    case kFastSigmoid: return false;
    case kAtan: return false;
    case kBoxcar: return false;
    case kTriangle: return false;
    case kTable: return false;
  }
  return false;
}

// Kinds whose Gaussian average with a mean has a closed form.
template <int K>
GK_HD constexpr bool has_mean_avg() {
  switch (K) {
    case kErfStep: return true;
    case kGaussBump: return true;
    case kHeaviside: return true;
    case kReLU: return true;
    case kIdentity: return true;
    case kConstant: return true;
    case kSigmoid: return false;
    case kFastSigmoid: return false;
    case kAtan: return false;
    case kBoxcar: return true;
    case kTriangle: return true;
    case kTable: return false;
  }
  return false;
}

// Gauss–Legendre nodes and weights on [-1, 1] (numpy.polynomial.legendre.leggauss).
template <int N>
GK_HD double gl_node(int i);
template <int N>
GK_HD double gl_weight(int i);
template <>
GK_HD double gl_node<6>(int i) {
  const double v[6] = {-0.9324695142031519, -0.6612093864662645, -0.2386191860831969, 0.2386191860831969, 0.6612093864662645, 0.9324695142031519};
  return v[i];
}
template <>
GK_HD double gl_weight<6>(int i) {
  const double v[6] = {0.17132449237917027, 0.3607615730481387, 0.46791393457269104, 0.46791393457269104, 0.3607615730481387, 0.17132449237917027};
  return v[i];
}
template <>
GK_HD double gl_node<12>(int i) {
  const double v[12] = {-0.9815606342467192, -0.9041172563704748, -0.7699026741943047, -0.5873179542866175, -0.3678314989981802, -0.1252334085114689, 0.1252334085114689, 0.3678314989981802, 0.5873179542866175, 0.7699026741943047, 0.9041172563704748, 0.9815606342467192};
  return v[i];
}
template <>
GK_HD double gl_weight<12>(int i) {
  const double v[12] = {0.04717533638651141, 0.10693932599531907, 0.16007832854334642, 0.20316742672306573, 0.2334925365383546, 0.2491470458134027, 0.2491470458134027, 0.2334925365383546, 0.20316742672306573, 0.16007832854334642, 0.10693932599531907, 0.04717533638651141};
  return v[i];
}
template <>
GK_HD double gl_node<20>(int i) {
  const double v[20] = {-0.993128599185095, -0.9639719272779138, -0.912234428251326, -0.8391169718222188, -0.7463319064601508, -0.636053680726515, -0.5108670019508271, -0.37370608871541955, -0.22778585114164507, -0.07652652113349734, 0.07652652113349734, 0.22778585114164507, 0.37370608871541955, 0.5108670019508271, 0.636053680726515, 0.7463319064601508, 0.8391169718222188, 0.912234428251326, 0.9639719272779138, 0.993128599185095};
  return v[i];
}
template <>
GK_HD double gl_weight<20>(int i) {
  const double v[20] = {0.017614007139150893, 0.040601429800386446, 0.06267204833410879, 0.08327674157670471, 0.1019301198172407, 0.1181945319615186, 0.1316886384491769, 0.1420961093183824, 0.14917298647260424, 0.15275338713072628, 0.15275338713072628, 0.14917298647260424, 0.1420961093183824, 0.1316886384491769, 0.1181945319615186, 0.1019301198172407, 0.08327674157670471, 0.06267204833410879, 0.040601429800386446, 0.017614007139150893};
  return v[i];
}

constexpr double kTablePanel = 0.25;
constexpr int kTableCheb = 21;
constexpr int kMeanCheb = 10;
constexpr int kCorrelationDegree = 16;
constexpr int kVarianceNodes = 32;
constexpr int kMaxPairs = 4;
constexpr int kTermSize = 5;
constexpr double kBvnRho6 = 0.3;
constexpr double kBvnRho12 = 0.75;
constexpr double kBvnNearOne = 0.925;
constexpr int kExactDetMaxFeatures = 8;
constexpr double kWideDetRecheck = 0.0001;
constexpr double kNormGapTaylor = 0.0001;

}  // namespace gk
