// CUDA kernels of STDeformAttn (forward and backward), registered for the CUDA dispatch key: the host
// side (checks, allocation, launch on the current stream). The device code and its thread mapping are
// in stdeform_attn_cuda_kernels.cuh.
#include "stdeform_attn.h"
#include "stdeform_attn_cuda_kernels.cuh"

#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>  // not ATen/cuda/CUDAContext.h: that needs cuSPARSE/cuBLAS headers
#include <torch/library.h>

#include <tuple>

namespace visbench {

using stdeform_cuda::kThreads;
using stdeform_cuda::num_blocks;

at::Tensor stdeform_attn_cuda(const at::Tensor& value, const at::Tensor& shapes, const at::Tensor& start,
                              const at::Tensor& loc, const at::Tensor& weights) {
  check_stdeform_inputs(value, shapes, start, loc, weights);
  TORCH_CHECK_VALUE(value.is_cuda(), "stdeform_attn: the CUDA kernel needs CUDA tensors, got ",
                    value.device());
  const c10::cuda::CUDAGuard guard(value.device());
  const int64_t N = value.size(0), S = value.size(1), M = value.size(2), D = value.size(3);
  const int64_t Q = loc.size(1), L = loc.size(3), K = loc.size(4);
  const int64_t NQM = N * Q * M;
  if (NQM == 0 || D == 0) return at::zeros({N, Q, M * D}, value.options());

  at::Tensor out = at::empty({N, Q, M * D}, value.options());  // every element is written
  const at::Tensor shapes_c = shapes.contiguous(), start_c = start.contiguous();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "stdeform_attn_cuda", [&] {
    stdeform_cuda::stdeform_forward_kernel<scalar_t><<<num_blocks(NQM), kThreads, 0, stream>>>(
        value.data_ptr<scalar_t>(), shapes_c.data_ptr<int64_t>(), start_c.data_ptr<int64_t>(),
        loc.data_ptr<scalar_t>(), weights.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), NQM, Q * M, S,
        M, D, L, K);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> stdeform_attn_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& value, const at::Tensor& shapes, const at::Tensor& start,
    const at::Tensor& loc, const at::Tensor& weights) {
  check_stdeform_backward_inputs(grad_out, value, shapes, start, loc, weights);
  TORCH_CHECK_VALUE(value.is_cuda(), "stdeform_attn_backward: the CUDA kernel needs CUDA tensors, got ",
                    value.device());
  const c10::cuda::CUDAGuard guard(value.device());
  const int64_t N = value.size(0), S = value.size(1), M = value.size(2), D = value.size(3);
  const int64_t Q = loc.size(1), L = loc.size(3), K = loc.size(4);
  const int64_t NQM = N * Q * M;
  if (NQM == 0) return {at::zeros_like(value), at::zeros_like(loc), at::zeros_like(weights)};

  // grad_value accumulates atomically in float32 (float64 for double), cast to value's dtype at the end.
  const auto acc_dtype = value.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor grad_value = at::zeros(value.sizes(), value.options().dtype(acc_dtype));
  at::Tensor grad_loc = at::empty(loc.sizes(), loc.options());              // every element is written
  at::Tensor grad_weights = at::empty(weights.sizes(), weights.options());  // every element is written
  const at::Tensor shapes_c = shapes.contiguous(), start_c = start.contiguous();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, value.scalar_type(), "stdeform_attn_backward_cuda", [&] {
        using acc_t = at::acc_type<scalar_t, true>;
        stdeform_cuda::stdeform_backward_kernel<scalar_t><<<num_blocks(NQM), kThreads, 0, stream>>>(
            grad_out.data_ptr<scalar_t>(), value.data_ptr<scalar_t>(), shapes_c.data_ptr<int64_t>(),
            start_c.data_ptr<int64_t>(), loc.data_ptr<scalar_t>(), weights.data_ptr<scalar_t>(),
            grad_value.data_ptr<acc_t>(), grad_loc.data_ptr<scalar_t>(),
            grad_weights.data_ptr<scalar_t>(), NQM, Q * M, S, M, D, L, K);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  if (grad_value.scalar_type() != value.scalar_type()) grad_value = grad_value.to(value.scalar_type());
  return {grad_value, grad_loc, grad_weights};
}

}  // namespace visbench

TORCH_LIBRARY_IMPL(visbench, CUDA, m) {
  m.impl("stdeform_attn", &visbench::stdeform_attn_cuda);
  m.impl("stdeform_attn_backward", &visbench::stdeform_attn_backward_cuda);
}
