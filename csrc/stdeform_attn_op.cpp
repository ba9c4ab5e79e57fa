// Operator schema of visbench::stdeform_attn and its backward, and the input checks every
// kernel shares. The CPU and CUDA kernels register themselves with TORCH_LIBRARY_IMPL in their
// own files; autograd and the fake (meta) kernels are registered from Python
// (attention/stdeform_op.py) with torch.library.register_autograd / register_fake.
#include "stdeform_attn.h"

#include <ATen/ATen.h>
#include <torch/library.h>

#include <string>

namespace visbench {
namespace {

void check_float(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(at::isFloatingType(t.scalar_type()), "stdeform_attn: ", name,
                    " must be a floating-point tensor, got dtype ", t.scalar_type());
}

void check_contiguous(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.is_contiguous(), "stdeform_attn: ", name,
                    " must be contiguous (call .contiguous()), got strides ", text(t.strides()),
                    " for sizes ", text(t.sizes()));
}

}  // namespace

void check_stdeform_inputs(const at::Tensor& value, const at::Tensor& shapes, const at::Tensor& start,
                           const at::Tensor& loc, const at::Tensor& weights) {
  // Ranks.
  TORCH_CHECK_VALUE(value.dim() == 4, "stdeform_attn: value must be 4-D (N, S, M, D), got shape ",
                    text(value.sizes()));
  TORCH_CHECK_VALUE(shapes.dim() == 2 && shapes.size(1) == 3,
                    "stdeform_attn: shapes must be (L, 3) with rows (T, H, W), got shape ",
                    text(shapes.sizes()));
  TORCH_CHECK_VALUE(start.dim() == 1, "stdeform_attn: start must be 1-D (L,), got shape ",
                    text(start.sizes()));
  TORCH_CHECK_VALUE(loc.dim() == 6, "stdeform_attn: loc must be 6-D (N, Q, M, L, K, 3), got shape ",
                    text(loc.sizes()));
  TORCH_CHECK_VALUE(loc.size(5) == 3,
                    "stdeform_attn: the last dim of loc must be 3 (x, y, t), got ", text(loc.size(5)));
  TORCH_CHECK_VALUE(weights.dim() == 5, "stdeform_attn: weights must be 5-D (N, Q, M, L, K), got shape ",
                    text(weights.sizes()));

  // Matching sizes.
  const int64_t N = value.size(0), M = value.size(2), L = shapes.size(0);
  TORCH_CHECK_VALUE(start.size(0) == L, "stdeform_attn: start must have L=", text(L),
                    " entries (one per row of shapes), got ", text(start.size(0)));
  TORCH_CHECK_VALUE(loc.size(0) == N, "stdeform_attn: loc batch size N must equal value's (", text(N),
                    "), got ", text(loc.size(0)));
  TORCH_CHECK_VALUE(loc.size(2) == M, "stdeform_attn: loc heads M must equal value's (", text(M),
                    "), got ", text(loc.size(2)));
  TORCH_CHECK_VALUE(loc.size(3) == L, "stdeform_attn: loc levels L must equal shapes' rows (", text(L),
                    "), got ", text(loc.size(3)));
  const std::vector<int64_t> expect_w = {loc.size(0), loc.size(1), loc.size(2), loc.size(3), loc.size(4)};
  TORCH_CHECK_VALUE(weights.sizes() == at::IntArrayRef(expect_w),
                    "stdeform_attn: weights must be (N, Q, M, L, K) = ", text(expect_w),
                    " to match loc, got ", text(weights.sizes()));

  // Dtypes.
  TORCH_CHECK_VALUE(shapes.scalar_type() == at::kLong, "stdeform_attn: shapes must be int64, got ",
                    shapes.scalar_type());
  TORCH_CHECK_VALUE(start.scalar_type() == at::kLong, "stdeform_attn: start must be int64, got ",
                    start.scalar_type());
  check_float(value, "value");
  check_float(loc, "loc");
  check_float(weights, "weights");
  TORCH_CHECK_VALUE(loc.scalar_type() == value.scalar_type() &&
                        weights.scalar_type() == value.scalar_type(),
                    "stdeform_attn: value, loc and weights must share one dtype, got value ",
                    value.scalar_type(), ", loc ", loc.scalar_type(), ", weights ",
                    weights.scalar_type());

  // Devices.
  const auto device = value.device();
  TORCH_CHECK_VALUE(shapes.device() == device && start.device() == device &&
                        loc.device() == device && weights.device() == device,
                    "stdeform_attn: all tensors must be on one device, got value ", device,
                    ", shapes ", shapes.device(), ", start ", start.device(), ", loc ", loc.device(),
                    ", weights ", weights.device());

  // Layout.
  check_contiguous(value, "value");
  check_contiguous(loc, "loc");
  check_contiguous(weights, "weights");

  // Values of shapes and start: S must equal sum of T*H*W and start its exclusive cumulative sum.
  // Checked arithmetic: a T*H*W or a sum past int64 would wrap and let the kernels index anywhere.
  const at::Tensor shapes_h = shapes.to(at::kCPU).contiguous();
  const at::Tensor start_h = start.to(at::kCPU).contiguous();
  const int64_t* sp = shapes_h.data_ptr<int64_t>();
  const int64_t* st = start_h.data_ptr<int64_t>();
  int64_t total = 0;
  for (int64_t l = 0; l < L; ++l) {
    const int64_t T = sp[3 * l], H = sp[3 * l + 1], W = sp[3 * l + 2];
    const std::string level = "shapes[" + text(l) + "]";
    const std::string thw = "(" + text(T) + ", " + text(H) + ", " + text(W) + ")";
    TORCH_CHECK_VALUE(T > 0 && H > 0 && W > 0, "stdeform_attn: ", level,
                      " must be positive (T, H, W), got ", thw);
    TORCH_CHECK_VALUE(st[l] == total, "stdeform_attn: start[", text(l), "] must be ", text(total),
                      " (the sum of T*H*W over the levels before it), got ", text(st[l]));
    int64_t size = 0;
    TORCH_CHECK_VALUE(!__builtin_mul_overflow(T, H, &size) && !__builtin_mul_overflow(size, W, &size),
                      "stdeform_attn: ", level, " = ", thw, " has T*H*W beyond int64");
    TORCH_CHECK_VALUE(!__builtin_add_overflow(total, size, &total), "stdeform_attn: sum(T*H*W) over ",
                      "shapes[0..", text(l), "] is beyond int64 (at ", level, " = ", thw, ")");
  }
  TORCH_CHECK_VALUE(value.size(1) == total, "stdeform_attn: value has S=", text(value.size(1)),
                    " tokens but shapes describe sum(T*H*W)=", text(total));
}

void check_stdeform_backward_inputs(const at::Tensor& grad_out, const at::Tensor& value,
                                    const at::Tensor& shapes, const at::Tensor& start,
                                    const at::Tensor& loc, const at::Tensor& weights) {
  check_stdeform_inputs(value, shapes, start, loc, weights);
  const std::vector<int64_t> expect = {value.size(0), loc.size(1), value.size(2) * value.size(3)};
  TORCH_CHECK_VALUE(grad_out.sizes() == at::IntArrayRef(expect),
                    "stdeform_attn_backward: grad_out must be (N, Q, M*D) = ", text(expect),
                    ", got ", text(grad_out.sizes()));
  TORCH_CHECK_VALUE(grad_out.scalar_type() == value.scalar_type(),
                    "stdeform_attn_backward: grad_out dtype must equal value's (", value.scalar_type(),
                    "), got ", grad_out.scalar_type());
  TORCH_CHECK_VALUE(grad_out.device() == value.device(),
                    "stdeform_attn_backward: grad_out must be on ", value.device(), ", got ",
                    grad_out.device());
  check_contiguous(grad_out, "grad_out");
}

}  // namespace visbench

TORCH_LIBRARY(visbench, m) {
  m.def("stdeform_attn(Tensor value, Tensor shapes, Tensor start, Tensor loc, Tensor weights) -> Tensor");
  m.def(
      "stdeform_attn_backward(Tensor grad_out, Tensor value, Tensor shapes, Tensor start, Tensor loc, "
      "Tensor weights) -> (Tensor, Tensor, Tensor)");
}
