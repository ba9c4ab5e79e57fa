// Spatio-temporal deformable attention (STDeformAttn): shared declarations.
//
// Semantics (docs/design.md section 5), for every implementation:
//   value   (N, S, M, D)        S = sum_l T_l*H_l*W_l; level l is a (T, H, W) volume, t-major, then y, then x
//   shapes  (L, 3) int64        rows (T, H, W)
//   start   (L,)   int64        offset of level l in S (exclusive cumulative sum of T*H*W)
//   loc     (N, Q, M, L, K, 3)  normalised (x, y, t) in [0, 1]
//   weights (N, Q, M, L, K)
//   out     (N, Q, M*D) = sum_l sum_k weights * trilinear(value_l, loc)
// pixel coordinate = coord * size - 0.5 (align_corners=False); corners outside the volume contribute 0.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <tuple>

namespace visbench {

// Integers and shapes ("[2, 3]") for error messages.
// Numbers in messages via std::to_string: never std::ostream's number formatting (see docs/tuning.md).
inline std::string text(int64_t v) { return std::to_string(v); }

inline std::string text(at::IntArrayRef values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) out += (i ? ", " : "") + std::to_string(values[i]);
  return out + "]";
}

// Raises ValueError (TORCH_CHECK_VALUE) naming the argument, what was expected and what was got,
// before any kernel runs. Reads `shapes` and `start` on the host (a tiny copy when they live on a GPU).
void check_stdeform_inputs(const at::Tensor& value, const at::Tensor& shapes, const at::Tensor& start,
                           const at::Tensor& loc, const at::Tensor& weights);

// Same checks for the backward op, plus grad_out (N, Q, M*D) with value's dtype and device.
void check_stdeform_backward_inputs(const at::Tensor& grad_out, const at::Tensor& value,
                                    const at::Tensor& shapes, const at::Tensor& start,
                                    const at::Tensor& loc, const at::Tensor& weights);

}  // namespace visbench
