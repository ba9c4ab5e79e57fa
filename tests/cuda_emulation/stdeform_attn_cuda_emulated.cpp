// The device code of STDeformAttn's CUDA kernels (csrc/stdeform_attn_cuda_kernels.cuh), compiled for
// the CPU, so that its index arithmetic, lane striding over D, forward passes over D > 128, branches
// (outside points, frame centres) and warp reductions are tested where no GPU exists.
//
// A launch of B blocks runs on 32 host threads, one per lane: thread `lane` executes that lane of
// every warp of every block in turn, so the 32 lanes of a warp meet at each __shfl_xor_sync (a
// barrier) in step. A shuffle that not all 32 lanes reach times out and raises instead of hanging.
// atomicAdd is std::atomic_ref::fetch_add; __ldg a plain load; the _rn intrinsics plain operations
// (compiled with -ffp-contract=off, so not contracted into FMAs either).
// The host side around the kernels (outputs, empty cases, dtype dispatch, grid) is the header's own;
// only the launch itself is replaced. Not emulated: the GPU's memory model and caches, warps running
// concurrently, launch limits, streams, the device guard and nvcc's own code generation.
#include <torch/extension.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <tuple>
#include <vector>

// ---- the CUDA names the device code uses ----
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static  // one warp runs at a time, and each warp uses only its own slots

namespace emulation {

constexpr int kLanes = 32;

struct Index {
  unsigned int x = 0;
};

// The 32 lanes of the warp being run: a reusable barrier with a timeout, and the shuffle slots.
class Warp {
 public:
  void wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    const long generation = generation_;
    if (++arrived_ == kLanes) {
      arrived_ = 0;
      ++generation_;
      changed_.notify_all();
      return;
    }
    if (!changed_.wait_for(lock, std::chrono::seconds(20), [&] { return generation_ != generation; }))
      throw std::runtime_error("not all 32 lanes of the warp reached the __shfl_xor_sync / __syncwarp");
  }
  double slots[kLanes];

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  int arrived_ = 0;
  long generation_ = 0;
};

inline thread_local Warp* warp = nullptr;

}  // namespace emulation

inline thread_local emulation::Index threadIdx, blockIdx;

template <typename T>
inline T __ldg(const T* p) {
  return *p;
}
inline float __fadd_rn(float a, float b) { return a + b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline double __dmul_rn(double a, double b) { return a * b; }

template <typename T>
T __shfl_xor_sync(unsigned int mask, T v, int lane_mask) {
  TORCH_CHECK(mask == 0xffffffffu, "__shfl_xor_sync: the emulation supports the full mask only");
  emulation::Warp& w = *emulation::warp;
  const int lane = threadIdx.x % emulation::kLanes;
  w.slots[lane] = static_cast<double>(v);  // exact for float and double
  w.wait();
  const T other = static_cast<T>(w.slots[lane ^ lane_mask]);
  w.wait();  // nobody overwrites a slot before every lane has read
  return other;
}

inline void __syncwarp() { emulation::warp->wait(); }

template <typename T>
T atomicAdd(T* address, T v) {
  return std::atomic_ref<T>(*address).fetch_add(v);
}

#include "stdeform_attn_cuda_kernels.cuh"

namespace {

// Runs kernel(args...) as <<<blocks, kWarps * 32>>>: host thread `lane` runs lane `lane` of each warp.
struct EmulatedLaunch {
  template <typename Kernel, typename... Args>
  void operator()(Kernel kernel, unsigned int blocks, Args... args) const {
    emulation::Warp warp;
    std::mutex error_mutex;
    std::exception_ptr error;
    std::vector<std::thread> lanes;
    for (int lane = 0; lane < emulation::kLanes; ++lane) {
      lanes.emplace_back([&, lane] {
        emulation::warp = &warp;
        try {
          for (unsigned int block = 0; block < blocks; ++block) {
            for (int w = 0; w < visbench::stdeform_cuda::kWarps; ++w) {
              blockIdx.x = block;
              threadIdx.x = w * emulation::kLanes + lane;
              kernel(args...);
            }
          }
        } catch (...) {
          const std::lock_guard<std::mutex> lock(error_mutex);
          if (!error) error = std::current_exception();
        }
      });
    }
    for (std::thread& t : lanes) t.join();
    if (error) std::rethrow_exception(error);
  }
};

// The host side of stdeform_attn_cuda.cu without its device guard and input checks (CPU tensors).
at::Tensor forward(const at::Tensor& value, const at::Tensor& shapes, const at::Tensor& start,
                   const at::Tensor& loc, const at::Tensor& weights) {
  return visbench::stdeform_cuda::forward(value, shapes, start, loc, weights, EmulatedLaunch{});
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(const at::Tensor& grad_out, const at::Tensor& value,
                                                        const at::Tensor& shapes, const at::Tensor& start,
                                                        const at::Tensor& loc, const at::Tensor& weights) {
  return visbench::stdeform_cuda::backward(grad_out, value, shapes, start, loc, weights, EmulatedLaunch{});
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "STDeformAttn's CUDA device code run on the CPU (one host thread per lane)";
  // named as the op's (torch.ops.visbench) so tests run either through the same helpers
  m.def("stdeform_attn", &forward, "stdeform_forward_kernel, emulated");
  m.def("stdeform_attn_backward", &backward, "stdeform_backward_kernel, emulated");
}
