// STDeformAttn's CUDA kernels (forward and backward) and the host side that does not depend on how they
// are launched (outputs, empty cases, dtype dispatch, grid). stdeform_attn_cuda.cu launches them on the
// GPU; tests/cuda_emulation/ runs the same code on the CPU (one host thread per lane) where no GPU is
// present. The device code uses only __ldg, __[fd](add|mul)_rn, __shfl_xor_sync, atomicAdd, threadIdx
// and blockIdx of CUDA.
//
// Shapes (DESIGN.md section 5):
//   value   (N, S, M, D)         S = sum_l T_l*H_l*W_l, level l's token (t, y, x) at start[l] + (t*H + y)*W + x
//   shapes  (L, 3) int64         rows (T, H, W), read on the device
//   start   (L,)   int64         read on the device
//   loc     (N, Q, M, L, K, 3)   normalised (x, y, t); pixel coordinate = coord * size - 0.5 (see locate)
//   weights (N, Q, M, L, K)
//   out     (N, Q, M*D)          sum_l sum_k weights * trilinear(value_l, loc), zero outside the volume
//
// Thread mapping (both kernels): one warp per item (n, q, m), kWarps items per block; the 32 lanes
// stride over the D channels (d = lane, lane + 32, ...), so any D works (D = 48: lanes 0-15 take two
// channels, lanes 16-31 one) and the gathers of a corner are coalesced along d. Every lane computes
// the same point geometry (loads of loc/weights are warp-wide broadcasts), so all branches on a point
// are warp-uniform; only `d < D` differs between lanes.
//   forward:  each lane keeps kChunks accumulators (channels d0 + 32*c + lane) and loops over the
//             L*K points; D > 32*kChunks takes several passes. Lane-owned outputs: no reduction.
//   backward: for each point, each lane loops over its channels, atomically adds a*w_corner*g into
//             grad_value (float32, or float64 for double) and accumulates its partial dot products
//             for d/d(weight) and d/d(x, y, t); the four partial sums are reduced across the warp with
//             __shfl_xor_sync and lane 0 writes grad_weights and grad_loc of that point (it owns them).
// On a frame centre (fractional pixel t == 0) the t1 corners have zero weight: the forward gathers 4
// corners, the backward gathers the t1 corners only for the one-sided d/dt (as grid_sample does).
// All offsets are int64_t; half types load/accumulate in float (at::acc_type).
#pragma once

#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <c10/util/Half.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <tuple>

namespace visbench {
namespace stdeform_cuda {

constexpr int kWarpSize = 32;
constexpr int kWarps = 8;  // items (n, q, m) per block
constexpr int kThreads = kWarpSize * kWarps;
constexpr int kChunks = 4;  // forward: channels per lane per pass (one pass covers D <= 128)

// Read-only (non-coherent cache) load of one element, widened to the accumulation type.
__device__ __forceinline__ float load(const float* p) { return __ldg(p); }
__device__ __forceinline__ double load(const double* p) { return __ldg(p); }
__device__ __forceinline__ float load(const c10::Half* p) {
  return static_cast<float>(
      c10::Half(__ldg(reinterpret_cast<const unsigned short*>(p)), c10::Half::from_bits()));
}
__device__ __forceinline__ float load(const c10::BFloat16* p) {
  return static_cast<float>(
      c10::BFloat16(__ldg(reinterpret_cast<const unsigned short*>(p)), c10::BFloat16::from_bits()));
}

// Round-to-nearest add/multiply: never contracted into an FMA, even under --use_fast_math.
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float floor_acc(float x) { return floorf(x); }
__device__ __forceinline__ double floor_acc(double x) { return ::floor(x); }

// Sum over the 32 lanes of a warp; every lane gets the total. All 32 lanes must call it.
template <typename acc_t>
__device__ __forceinline__ acc_t warp_sum(acc_t v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// One axis of a sampling point: pixel coordinate p = coord*size - 0.5, rounded step by step as
// at::grid_sampler_3d (and the CPU kernel) compute it, (((2*coord - 1) + 1) * size - 1) / 2, so a
// point on a pixel/frame centre lands on the same side of floor() and gets the same one-sided
// derivative. Lower corner i0 = floor(p); weights w0 = (i0 + 1) - p, w1 = p - i0. Returns false
// when both corners lie outside [0, size) (p < -1 or p >= size) or p is NaN; otherwise
// i0 is in [-1, size-1], so the int64 conversion is always defined.
template <typename acc_t>
__device__ __forceinline__ bool locate(acc_t coord, int64_t size, int64_t& i0, acc_t& w0, acc_t& w1) {
  const acc_t grid = add_rn(mul_rn(acc_t(2), coord), acc_t(-1));
  const acc_t p = mul_rn(add_rn(mul_rn(add_rn(grid, acc_t(1)), static_cast<acc_t>(size)), acc_t(-1)),
                         acc_t(0.5));
  if (!(p >= acc_t(-1) && p < static_cast<acc_t>(size))) return false;
  const acc_t lo = floor_acc(p);
  i0 = static_cast<int64_t>(lo);
  w0 = add_rn(lo, acc_t(1)) - p;
  w1 = p - lo;
  return true;
}

// Geometry of one point in one level: per axis, the two corners' element offsets (token offset times
// the token stride M*D), validity and linear weights. Corner (dt, dy, dx) sits at ot[dt]+oy[dy]+ox[dx]
// with weight wt[dt]*wy[dy]*wx[dx].
template <typename acc_t>
struct Corners {
  int64_t ot[2], oy[2], ox[2];
  bool vt[2], vy[2], vx[2];
  acc_t wt[2], wy[2], wx[2];
  bool t_full;  // false on a frame centre (ft == 0): the t1 corners have zero weight

  // cx, cy, ct: loc of the point (x, y, t); T, H, W: the level's size; MD: token stride M*D.
  __device__ __forceinline__ bool init(acc_t cx, acc_t cy, acc_t ct, int64_t T, int64_t H, int64_t W,
                                       int64_t MD) {
    int64_t x0, y0, t0;
    if (!locate(cx, W, x0, wx[0], wx[1]) || !locate(cy, H, y0, wy[0], wy[1]) ||
        !locate(ct, T, t0, wt[0], wt[1]))
      return false;
    t_full = wt[1] != acc_t(0);
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int64_t ti = t0 + i, yi = y0 + i, xi = x0 + i;  // each in [-1, size]
      vt[i] = ti >= 0 && ti < T;
      vy[i] = yi >= 0 && yi < H;
      vx[i] = xi >= 0 && xi < W;
      ot[i] = ti * H * W * MD;
      oy[i] = yi * W * MD;
      ox[i] = xi * MD;
    }
    return true;
  }

  // Calls visit(dt, dy, dx, offset) for each corner inside the volume, offset = ot[dt] + oy[dy] +
  // ox[dx]. The t1 corners of a frame centre (zero weight) are visited only `with_zero_t1`: the
  // backward needs them for the one-sided d/dt, the forward skips them (4 gathers instead of 8).
  template <typename Visit>
  __device__ __forceinline__ void for_each_corner(bool with_zero_t1, Visit&& visit) const {
#pragma unroll
    for (int dt = 0; dt < 2; ++dt) {
      if (!vt[dt] || (dt == 1 && !t_full && !with_zero_t1)) continue;
#pragma unroll
      for (int dy = 0; dy < 2; ++dy) {
        if (!vy[dy]) continue;
#pragma unroll
        for (int dx = 0; dx < 2; ++dx)
          if (vx[dx]) visit(dt, dy, dx, ot[dt] + oy[dy] + ox[dx]);
      }
    }
  }
};

// Forward: out[item, d] = sum over (l, k) of weights * trilinear sample, one warp per item.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    stdeform_forward_kernel(const scalar_t* __restrict__ value,    // (N, S, M, D)
                            const int64_t* __restrict__ shapes,    // (L, 3)
                            const int64_t* __restrict__ start,     // (L,)
                            const scalar_t* __restrict__ loc,      // (N, Q, M, L, K, 3)
                            const scalar_t* __restrict__ weights,  // (N, Q, M, L, K)
                            scalar_t* __restrict__ out,            // (N, Q, M*D)
                            int64_t NQM, int64_t QM, int64_t S, int64_t M, int64_t D, int64_t L,
                            int64_t K) {
  using acc_t = at::acc_type<scalar_t, true>;
  const int64_t item = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / kWarpSize;
  if (item >= NQM) return;  // whole warps leave together
  const int lane = threadIdx.x % kWarpSize;
  const int64_t n = item / QM, m = item % M, MD = M * D;
  const scalar_t* value_nm = value + n * S * MD + m * D;  // value[n, 0, m, 0]
  const scalar_t* loc_i = loc + item * L * K * 3;         // loc[n, q, m]: (L, K, 3)
  const scalar_t* weights_i = weights + item * L * K;     // weights[n, q, m]: (L, K)
  scalar_t* out_i = out + item * D;                        // out[n, q, m*D:(m+1)*D]

  for (int64_t d0 = 0; d0 < D; d0 += kWarpSize * kChunks) {
    acc_t acc[kChunks];
#pragma unroll
    for (int c = 0; c < kChunks; ++c) acc[c] = acc_t(0);

    for (int64_t l = 0; l < L; ++l) {
      const int64_t T = __ldg(shapes + 3 * l), H = __ldg(shapes + 3 * l + 1), W = __ldg(shapes + 3 * l + 2);
      const int64_t level = __ldg(start + l) * MD + d0 + lane;  // this lane's channel of token start[l]
      for (int64_t k = 0; k < K; ++k) {
        const int64_t p = l * K + k;
        Corners<acc_t> g;
        if (!g.init(load(loc_i + 3 * p), load(loc_i + 3 * p + 1), load(loc_i + 3 * p + 2), T, H, W, MD))
          continue;  // all 8 corners outside the volume
        const acc_t a = load(weights_i + p);
        g.for_each_corner(false, [&](int dt, int dy, int dx, int64_t offset) {
          const acc_t w = a * g.wt[dt] * g.wy[dy] * g.wx[dx];
          const scalar_t* v = value_nm + level + offset;
#pragma unroll
          for (int c = 0; c < kChunks; ++c)
            if (d0 + c * kWarpSize + lane < D) acc[c] += w * load(v + c * kWarpSize);
        });
      }
    }
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int64_t d = d0 + c * kWarpSize + lane;
      if (d < D) out_i[d] = static_cast<scalar_t>(acc[c]);
    }
  }
}

// Backward: grads of value (atomic, into acc_t), loc and weights (warp-reduced, owned by lane 0).
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    stdeform_backward_kernel(const scalar_t* __restrict__ grad_out,  // (N, Q, M*D)
                             const scalar_t* __restrict__ value,     // (N, S, M, D)
                             const int64_t* __restrict__ shapes,     // (L, 3)
                             const int64_t* __restrict__ start,      // (L,)
                             const scalar_t* __restrict__ loc,       // (N, Q, M, L, K, 3)
                             const scalar_t* __restrict__ weights,   // (N, Q, M, L, K)
                             at::acc_type<scalar_t, true>* __restrict__ grad_value,  // (N, S, M, D)
                             scalar_t* __restrict__ grad_loc,       // (N, Q, M, L, K, 3)
                             scalar_t* __restrict__ grad_weights,   // (N, Q, M, L, K)
                             int64_t NQM, int64_t QM, int64_t S, int64_t M, int64_t D, int64_t L,
                             int64_t K) {
  using acc_t = at::acc_type<scalar_t, true>;
  const int64_t item = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / kWarpSize;
  if (item >= NQM) return;  // whole warps leave together: the shuffles below see all 32 lanes
  const int lane = threadIdx.x % kWarpSize;
  const int64_t n = item / QM, m = item % M, MD = M * D;
  const scalar_t* value_nm = value + n * S * MD + m * D;  // value[n, 0, m, 0]
  acc_t* grad_value_nm = grad_value + n * S * MD + m * D;
  const scalar_t* grad_out_i = grad_out + item * D;
  const scalar_t* loc_i = loc + item * L * K * 3;
  const scalar_t* weights_i = weights + item * L * K;
  scalar_t* grad_loc_i = grad_loc + item * L * K * 3;
  scalar_t* grad_weights_i = grad_weights + item * L * K;

  for (int64_t l = 0; l < L; ++l) {
    const int64_t T = __ldg(shapes + 3 * l), H = __ldg(shapes + 3 * l + 1), W = __ldg(shapes + 3 * l + 2);
    const int64_t level = __ldg(start + l) * MD;
    for (int64_t k = 0; k < K; ++k) {
      const int64_t p = l * K + k;
      Corners<acc_t> g;
      if (!g.init(load(loc_i + 3 * p), load(loc_i + 3 * p + 1), load(loc_i + 3 * p + 2), T, H, W, MD)) {
        if (lane == 0) {  // outside the volume: the point has no effect
          grad_weights_i[p] = scalar_t(0);
          grad_loc_i[3 * p] = grad_loc_i[3 * p + 1] = grad_loc_i[3 * p + 2] = scalar_t(0);
        }
        continue;
      }
      const acc_t a = load(weights_i + p);
      // This lane's partial sums over its channels d of g[d] * (sample, d sample/dx, /dy, /dt).
      acc_t s_w = 0, s_x = 0, s_y = 0, s_t = 0;
      for (int64_t d = lane; d < D; d += kWarpSize) {
        const acc_t go = load(grad_out_i + d);
        const acc_t ago = a * go;
        g.for_each_corner(true, [&](int dt, int dy, int dx, int64_t offset) {
          const int64_t o = level + offset + d;
          const acc_t gv = go * load(value_nm + o);
          const acc_t wyx = g.wy[dy] * g.wx[dx];
          s_t += (dt ? gv : -gv) * wyx;  // d wt/dt = -1 for t0, +1 for t1
          if (dt == 0 || g.t_full) {     // t1 of a frame centre: only enters d/dt
            const acc_t wt = g.wt[dt];
            s_w += wt * wyx * gv;
            s_x += (dx ? gv : -gv) * wt * g.wy[dy];
            s_y += (dy ? gv : -gv) * wt * g.wx[dx];
            atomicAdd(grad_value_nm + o, ago * wt * wyx);
          }
        });
      }
      s_w = warp_sum(s_w);
      s_x = warp_sum(s_x);
      s_y = warp_sum(s_y);
      s_t = warp_sum(s_t);
      if (lane == 0) {  // d(pixel coord)/d(loc) = size
        grad_weights_i[p] = static_cast<scalar_t>(s_w);
        grad_loc_i[3 * p] = static_cast<scalar_t>(a * s_x * static_cast<acc_t>(W));
        grad_loc_i[3 * p + 1] = static_cast<scalar_t>(a * s_y * static_cast<acc_t>(H));
        grad_loc_i[3 * p + 2] = static_cast<scalar_t>(a * s_t * static_cast<acc_t>(T));
      }
    }
  }
}

// Blocks for NQM items, kWarps per block; the grid's x dimension holds up to 2^31 - 1 blocks.
inline unsigned int num_blocks(int64_t NQM) {
  const int64_t blocks = (NQM + kWarps - 1) / kWarps;
  TORCH_CHECK(blocks <= std::numeric_limits<int32_t>::max(), "stdeform_attn: N*Q*M=", NQM,
              " items need more CUDA blocks than one grid holds");
  return static_cast<unsigned int>(blocks);
}

// Host side, given launch(kernel, blocks, args...) that runs kernel(args...) on a grid of `blocks`
// blocks of kThreads threads. Inputs are already checked (check_stdeform_inputs) and on one device.
template <typename Launch>
at::Tensor forward(const at::Tensor& value, const at::Tensor& shapes, const at::Tensor& start,
                   const at::Tensor& loc, const at::Tensor& weights, const Launch& launch) {
  const int64_t N = value.size(0), S = value.size(1), M = value.size(2), D = value.size(3);
  const int64_t Q = loc.size(1), L = loc.size(3), K = loc.size(4);
  const int64_t NQM = N * Q * M;
  if (NQM == 0 || D == 0) return at::zeros({N, Q, M * D}, value.options());

  at::Tensor out = at::empty({N, Q, M * D}, value.options());  // every element is written
  const at::Tensor shapes_c = shapes.contiguous(), start_c = start.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "stdeform_attn_cuda", [&] {
    launch(stdeform_forward_kernel<scalar_t>, num_blocks(NQM), value.data_ptr<scalar_t>(),
           shapes_c.data_ptr<int64_t>(), start_c.data_ptr<int64_t>(), loc.data_ptr<scalar_t>(),
           weights.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), NQM, Q * M, S, M, D, L, K);
  });
  return out;
}

template <typename Launch>
std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(const at::Tensor& grad_out, const at::Tensor& value,
                                                        const at::Tensor& shapes, const at::Tensor& start,
                                                        const at::Tensor& loc, const at::Tensor& weights,
                                                        const Launch& launch) {
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
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, value.scalar_type(), "stdeform_attn_backward_cuda", [&] {
        using acc_t = at::acc_type<scalar_t, true>;
        launch(stdeform_backward_kernel<scalar_t>, num_blocks(NQM), grad_out.data_ptr<scalar_t>(),
               value.data_ptr<scalar_t>(), shapes_c.data_ptr<int64_t>(), start_c.data_ptr<int64_t>(),
               loc.data_ptr<scalar_t>(), weights.data_ptr<scalar_t>(), grad_value.data_ptr<acc_t>(),
               grad_loc.data_ptr<scalar_t>(), grad_weights.data_ptr<scalar_t>(), NQM, Q * M, S, M, D, L,
               K);
      });
  if (grad_value.scalar_type() != value.scalar_type()) grad_value = grad_value.to(value.scalar_type());
  return {grad_value, grad_loc, grad_weights};
}

}  // namespace stdeform_cuda
}  // namespace visbench
