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

constexpr double kTablePanel = 0.25;
constexpr int kTableCheb = 21;
constexpr int kMaxPairs = 4;
constexpr int kExactDetMaxFeatures = 8;
constexpr double kWideDetRecheck = 0.0001;
constexpr double kNormGapTaylor = 0.0001;

}  // namespace gk
