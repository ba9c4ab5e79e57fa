// CUDA kernels of STDeformAttn (forward and backward), registered for the CUDA dispatch key: input
// checks, the device guard and the launch on the current stream. The kernels, their thread mapping and
// the rest of the host side are in stdeform_attn_cuda_kernels.cuh.
#include "stdeform_attn.h"
#include "stdeform_attn_cuda_kernels.cuh"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>  // not ATen/cuda/CUDAContext.h: that needs cuSPARSE/cuBLAS headers
#include <torch/library.h>

#include <tuple>

namespace visbench {

namespace {

// Launches kernel(args...) on <<<blocks, kThreads>>> on the current stream; a launch error raises.
struct LaunchOnCurrentStream {
  template <typename Kernel, typename... Args>
  void operator()(Kernel kernel, unsigned int blocks, Args... args) const {
    kernel<<<blocks, stdeform_cuda::kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(args...);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

}  // namespace

at::Tensor stdeform_attn_cuda(const at::Tensor& value, const at::Tensor& shapes, const at::Tensor& start,
                              const at::Tensor& loc, const at::Tensor& weights) {
  check_stdeform_inputs(value, shapes, start, loc, weights);
  TORCH_CHECK_VALUE(value.is_cuda(), "stdeform_attn: the CUDA kernel needs CUDA tensors, got ",
                    value.device());
  const c10::cuda::CUDAGuard guard(value.device());
  return stdeform_cuda::forward(value, shapes, start, loc, weights, LaunchOnCurrentStream{});
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> stdeform_attn_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& value, const at::Tensor& shapes, const at::Tensor& start,
    const at::Tensor& loc, const at::Tensor& weights) {
  check_stdeform_backward_inputs(grad_out, value, shapes, start, loc, weights);
  TORCH_CHECK_VALUE(value.is_cuda(), "stdeform_attn_backward: the CUDA kernel needs CUDA tensors, got ",
                    value.device());
  const c10::cuda::CUDAGuard guard(value.device());
  return stdeform_cuda::backward(grad_out, value, shapes, start, loc, weights, LaunchOnCurrentStream{});
}

}  // namespace visbench

TORCH_LIBRARY_IMPL(visbench, CUDA, m) {
  m.impl("stdeform_attn", &visbench::stdeform_attn_cuda);
  m.impl("stdeform_attn_backward", &visbench::stdeform_attn_backward_cuda);
}
