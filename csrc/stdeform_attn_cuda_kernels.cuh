// STDeformAttn's CUDA kernels (forward and backward) and the host side that does not depend on how they
// are launched (outputs, empty cases, dtype dispatch, grid). stdeform_attn_cuda.cu launches them on the
// GPU; tests/cuda_emulation/ runs the same code on the CPU (one host thread per lane) where no GPU is
// present. The device code uses only __ldg, __[fd](add|mul)_rn, __shfl_xor_sync, __syncwarp, atomicAdd,
// __shared__, threadIdx and blockIdx of CUDA.
//
// Shapes (docs/design.md section 5):
//   value   (N, S, M, D)         S = sum_l T_l*H_l*W_l, level l's token (t, y, x) at start[l] + (t*H + y)*W + x
//   shapes  (L, 3) int64         rows (T, H, W), read on the device
//   start   (L,)   int64         read on the device
//   loc     (N, Q, M, L, K, 3)   normalised (x, y, t); pixel coordinate = coord * size - 0.5 (see locate)
//   weights (N, Q, M, L, K)
//   out     (N, Q, M*D)          sum_l sum_k weights * trilinear(value_l, loc), zero outside the volume
//
// Thread mapping (both kernels): one warp per item (n, q, m), kWarps items per block. The item's L*K
// points go in batches of 32: lane j locates point j of the batch once (loc, level size, corner
// offsets, trilinear weights) and publishes it in shared memory, then the whole warp works through
// the batch point by point. Each lane takes V consecutive channels at a time, d0 + V*(32*c + lane)
// + [0, V) for chunk c of a pass of kPass channels: V = 2 (one 8-byte load per float pair, and
// float2 atomics on sm_90) where D is even and the tensors are aligned for it, else V = 1; any D
// works (D = 48, V = 2: lanes 0-23 take one pair each) and the gathers of a corner are coalesced
// along d. Branches on a point read the same shared entry in every lane, so they are warp-uniform;
// only `d < D` differs between lanes.
//   forward:  each lane keeps its channels' accumulators; D > kPass takes several passes over the
//             points. Lane-owned outputs: no reduction.
//   backward: for each point, each lane loops over its channels, atomically adds a*w_corner*g into
//             grad_value (float32, or float64 for double) and accumulates its partial dot products
//             for d/d(weight) and d/d(x, y, t); warp_sum4 reduces the four with 6 shuffles into a
//             shared slot of the point, and after the batch lane j writes grad_weights and grad_loc
//             of point j (coalesced).
// On a frame centre (fractional pixel t == 0) the t1 corners have zero weight: the forward gathers 4
// corners, the backward gathers the t1 corners only for the one-sided d/dt (as grid_sample does).
// All offsets are int64_t; half types load/accumulate in float (at::acc_type).
#pragma once

#include "stdeform_attn.h"

#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <c10/util/Half.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <tuple>
#include <type_traits>

namespace visbench {
namespace stdeform_cuda {

constexpr int kWarpSize = 32;
constexpr int kWarps = 8;  // items (n, q, m) per block
constexpr int kThreads = kWarpSize * kWarps;
constexpr int kPass = 128;  // channels per pass over the points: D > 128 takes several passes

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

// V consecutive elements p[0..V-1] (p aligned to V elements), widened: one 2*sizeof(scalar_t)-byte
// load on the GPU for V = 2. Elsewhere (the CPU emulation) element by element.
template <int V, typename scalar_t, typename acc_t>
__device__ __forceinline__ void load_vec(const scalar_t* p, acc_t (&x)[V]) {
#ifdef __CUDA_ARCH__
  if constexpr (V == 2) {
    if constexpr (std::is_same_v<scalar_t, float>) {
      const float2 v = __ldg(reinterpret_cast<const float2*>(p));
      x[0] = v.x, x[1] = v.y;
    } else if constexpr (std::is_same_v<scalar_t, double>) {
      const double2 v = __ldg(reinterpret_cast<const double2*>(p));
      x[0] = v.x, x[1] = v.y;
    } else {  // Half, BFloat16: both halves of one 32-bit word, little-endian
      const unsigned int v = __ldg(reinterpret_cast<const unsigned int*>(p));
      x[0] = static_cast<float>(scalar_t(static_cast<unsigned short>(v & 0xffffu), scalar_t::from_bits()));
      x[1] = static_cast<float>(scalar_t(static_cast<unsigned short>(v >> 16), scalar_t::from_bits()));
    }
  } else
#endif
  {
#pragma unroll
    for (int i = 0; i < V; ++i) x[i] = load(p + i);
  }
}

// p[i] += x[i] atomically for i < V: one vector atomic for two floats on sm_90 and later.
template <int V, typename acc_t>
__device__ __forceinline__ void atomic_add_vec(acc_t* p, const acc_t (&x)[V]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if constexpr (V == 2 && std::is_same_v<acc_t, float>) {
    atomicAdd(reinterpret_cast<float2*>(p), make_float2(x[0], x[1]));
  } else
#endif
  {
#pragma unroll
    for (int i = 0; i < V; ++i) atomicAdd(p + i, x[i]);
  }
}

// Round-to-nearest add/multiply: never contracted into an FMA, even under --use_fast_math.
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float floor_acc(float x) { return floorf(x); }
__device__ __forceinline__ double floor_acc(double x) { return ::floor(x); }

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

  // Bit c = 4*dt + 2*dy + dx set for each corner inside the volume. The t1 corners of a frame centre
  // (zero weight) count only `with_zero_t1`: the backward needs them for the one-sided d/dt, the
  // forward skips them (4 gathers instead of 8).
  __device__ __forceinline__ unsigned int inside(bool with_zero_t1) const {
    unsigned int mask = 0;
#pragma unroll
    for (int c = 0; c < 8; ++c) {
      const int dt = c >> 2, dy = (c >> 1) & 1, dx = c & 1;
      if (vt[dt] && vy[dy] && vx[dx] && (dt == 0 || t_full || with_zero_t1)) mask |= 1u << c;
    }
    return mask;
  }
};

// Where a point's corners lie in value[n, :, m, :]: corner c = 4*dt + 2*dy + dx at element offset
// base + dt*st + dy*sy + dx*MD (base: its level's start plus the (t0, y0, x0) corner, which may lie
// one step outside the volume; only corners in the mask are ever read).
struct CornerOffsets {
  int64_t base, sy, st;

  __device__ __forceinline__ int64_t at(int c, int64_t MD) const {
    return base + (c >> 2) * st + ((c >> 1) & 1) * sy + (c & 1) * MD;
  }
};

// A point of the forward as its lane publishes it to the warp.
template <typename acc_t>
struct ForwardPoint {
  acc_t w[8];  // weight * trilinear weight of corner c
  CornerOffsets offsets;
  unsigned int mask;  // corners gathered (0: the point lies outside the volume)
};

// A point of the backward as its lane publishes it to the warp.
template <typename acc_t>
struct BackwardPoint {
  acc_t wt[2], wy[2], wx[2], a;  // linear weights per axis, attention weight
  CornerOffsets offsets;
  unsigned int mask;  // corners inside the volume, t1 of a frame centre included
  bool t_full;
};

// Point p = l*K + k of item i: its level's size and loc, read by the one lane that owns the point.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ bool locate_point(Corners<acc_t>& g, CornerOffsets& offsets, int64_t p,
                                             const int64_t* shapes, const int64_t* start,
                                             const scalar_t* loc_i, int64_t K, int64_t MD, int64_t& T,
                                             int64_t& H, int64_t& W) {
  const int64_t l = p / K;
  T = __ldg(shapes + 3 * l), H = __ldg(shapes + 3 * l + 1), W = __ldg(shapes + 3 * l + 2);
  if (!g.init(load(loc_i + 3 * p), load(loc_i + 3 * p + 1), load(loc_i + 3 * p + 2), T, H, W, MD))
    return false;
  offsets.base = __ldg(start + l) * MD + g.ot[0] + g.oy[0] + g.ox[0];
  offsets.sy = W * MD;
  offsets.st = H * W * MD;
  return true;
}

// Sums four values over the 32 lanes with 6 shuffles (a transposed butterfly): lanes 8q .. 8q+7 get
// the total of v[q]. All 32 lanes must call it.
template <typename acc_t>
__device__ __forceinline__ acc_t warp_sum4(acc_t v0, acc_t v1, acc_t v2, acc_t v3, int lane) {
  const bool hi = lane & 16, b3 = lane & 8;
  // Lanes 0-15 keep v0, v1 and lanes 16-31 v2, v3, each adding its partner's (lane ^ 16) copy.
  acc_t k0 = hi ? v2 : v0, k1 = hi ? v3 : v1;
  k0 += __shfl_xor_sync(0xffffffffu, hi ? v0 : v2, 16);
  k1 += __shfl_xor_sync(0xffffffffu, hi ? v1 : v3, 16);
  // Lanes with bit 3 clear keep k0, the others k1.
  acc_t k = b3 ? k1 : k0;
  k += __shfl_xor_sync(0xffffffffu, b3 ? k0 : k1, 8);
#pragma unroll
  for (int offset = 4; offset > 0; offset /= 2) k += __shfl_xor_sync(0xffffffffu, k, offset);
  return k;
}

// Forward: out[item, d] = sum over (l, k) of weights * trilinear sample, one warp per item; each lane
// takes V consecutive channels per chunk.
template <typename scalar_t, int V>
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
  constexpr int kChunks = kPass / (kWarpSize * V);  // this lane's channels per pass, V at a time
  __shared__ ForwardPoint<acc_t> shared_points[kWarps][kWarpSize];
  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  const int64_t item = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  if (item >= NQM) return;  // whole warps leave together
  const int64_t n = item / QM, m = item % M, MD = M * D, LK = L * K;
  const scalar_t* value_nm = value + n * S * MD + m * D;  // value[n, 0, m, 0]
  const scalar_t* loc_i = loc + item * LK * 3;            // loc[n, q, m]: (L, K, 3)
  const scalar_t* weights_i = weights + item * LK;        // weights[n, q, m]: (L, K)
  scalar_t* out_i = out + item * D;                        // out[n, q, m*D:(m+1)*D]
  ForwardPoint<acc_t>* points = shared_points[warp];

  for (int64_t d0 = 0; d0 < D; d0 += kPass) {
    acc_t acc[kChunks][V];
    bool active[kChunks];  // this lane's channels d0 + V*(32*c + lane) + [0, V) exist
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      active[c] = d0 + V * (c * kWarpSize + lane) < D;  // D is a multiple of V
#pragma unroll
      for (int i = 0; i < V; ++i) acc[c][i] = acc_t(0);
    }
    const scalar_t* value_lane = value_nm + d0 + V * lane;
    for (int64_t p0 = 0; p0 < LK; p0 += kWarpSize) {
      {  // lane j locates point p0 + j
        ForwardPoint<acc_t>& mine = points[lane];
        const int64_t p = p0 + lane;
        Corners<acc_t> g;
        int64_t T, H, W;
        mine.mask = 0;
        if (p < LK && locate_point(g, mine.offsets, p, shapes, start, loc_i, K, MD, T, H, W)) {
          mine.mask = g.inside(false);
          const acc_t a = load(weights_i + p);
#pragma unroll
          for (int c = 0; c < 8; ++c)
            mine.w[c] = a * g.wt[c >> 2] * g.wy[(c >> 1) & 1] * g.wx[c & 1];
        }
      }
      __syncwarp();
      const int count = static_cast<int>(LK - p0 < kWarpSize ? LK - p0 : kWarpSize);
#pragma unroll 2
      for (int j = 0; j < count; ++j) {
        const ForwardPoint<acc_t>& point = points[j];  // the same entry in every lane
        const unsigned int mask = point.mask;
#pragma unroll
        for (int c = 0; c < 8; ++c) {
          const bool inside = mask >> c & 1;  // warp-uniform
          const scalar_t* v = value_lane + (inside ? point.offsets.at(c, MD) : 0);
          const acc_t w = point.w[c];
#pragma unroll
          for (int chunk = 0; chunk < kChunks; ++chunk) {
            if (!inside || !active[chunk]) continue;
            acc_t x[V];
            load_vec<V>(v + chunk * kWarpSize * V, x);
#pragma unroll
            for (int i = 0; i < V; ++i) acc[chunk][i] += w * x[i];
          }
        }
      }
      __syncwarp();  // the points are read before the next batch overwrites them
    }
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      if (!active[c]) continue;
#pragma unroll
      for (int i = 0; i < V; ++i)
        out_i[d0 + V * (c * kWarpSize + lane) + i] = static_cast<scalar_t>(acc[c][i]);
    }
  }
}

// Backward: grads of value (atomic, into acc_t), loc and weights (warp-reduced, written by the lane
// that owns the point); each lane takes V consecutive channels per chunk.
template <typename scalar_t, int V>
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
  constexpr int kChunks = kPass / (kWarpSize * V);  // this lane's channels per pass, V at a time
  __shared__ BackwardPoint<acc_t> shared_points[kWarps][kWarpSize];
  __shared__ acc_t shared_sums[kWarps][4][kWarpSize];  // per point: d/d(weight), d/d(x, y, t) sums
  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  const int64_t item = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  if (item >= NQM) return;  // whole warps leave together: the shuffles below see all 32 lanes
  const int64_t n = item / QM, m = item % M, MD = M * D, LK = L * K;
  const scalar_t* value_nm = value + n * S * MD + m * D;  // value[n, 0, m, 0]
  acc_t* grad_value_nm = grad_value + n * S * MD + m * D;
  const scalar_t* grad_out_i = grad_out + item * D;
  const scalar_t* loc_i = loc + item * LK * 3;
  const scalar_t* weights_i = weights + item * LK;
  scalar_t* grad_loc_i = grad_loc + item * LK * 3;
  scalar_t* grad_weights_i = grad_weights + item * LK;
  BackwardPoint<acc_t>* points = shared_points[warp];
  acc_t(*sums)[kWarpSize] = shared_sums[warp];

  for (int64_t p0 = 0; p0 < LK; p0 += kWarpSize) {
    const int64_t p = p0 + lane;  // this lane's point
    int64_t T = 0, H = 0, W = 0;
    {
      BackwardPoint<acc_t>& mine = points[lane];
      Corners<acc_t> g;
      mine.mask = 0;
      if (p < LK && locate_point(g, mine.offsets, p, shapes, start, loc_i, K, MD, T, H, W)) {
        mine.mask = g.inside(true);
        mine.t_full = g.t_full;
        mine.a = load(weights_i + p);
#pragma unroll
        for (int i = 0; i < 2; ++i) mine.wt[i] = g.wt[i], mine.wy[i] = g.wy[i], mine.wx[i] = g.wx[i];
      }
#pragma unroll
      for (int q = 0; q < 4; ++q) sums[q][lane] = acc_t(0);
    }
    __syncwarp();
    const int count = static_cast<int>(LK - p0 < kWarpSize ? LK - p0 : kWarpSize);
    for (int64_t d0 = 0; d0 < D; d0 += kPass) {
      acc_t go[kChunks][V];  // grad_out of this lane's channels d0 + V*(32*c + lane) + [0, V)
      bool active[kChunks];
#pragma unroll
      for (int c = 0; c < kChunks; ++c) {
        active[c] = d0 + V * (c * kWarpSize + lane) < D;  // D is a multiple of V
#pragma unroll
        for (int i = 0; i < V; ++i) go[c][i] = acc_t(0);
        if (active[c]) load_vec<V>(grad_out_i + d0 + V * (c * kWarpSize + lane), go[c]);
      }
      const int64_t lane_d = d0 + V * lane;
      for (int j = 0; j < count; ++j) {
        const BackwardPoint<acc_t>& point = points[j];  // the same entry in every lane
        const unsigned int mask = point.mask;
        if (mask == 0) continue;  // warp-uniform: outside the volume, no effect
        const acc_t a = point.a;
        const bool t_full = point.t_full;
        // This lane's partial sums over its channels d of g[d] * (sample, d sample/dx, /dy, /dt).
        acc_t s_w = 0, s_x = 0, s_y = 0, s_t = 0;
#pragma unroll
        for (int c = 0; c < 8; ++c) {
          if (!(mask >> c & 1)) continue;
          const int dt = c >> 2, dy = (c >> 1) & 1, dx = c & 1;
          const int64_t o = point.offsets.at(c, MD) + lane_d;
          const acc_t wt = point.wt[dt], wy = point.wy[dy], wx = point.wx[dx], wyx = wy * wx;
#pragma unroll
          for (int chunk = 0; chunk < kChunks; ++chunk) {
            if (!active[chunk]) continue;
            const int64_t oc = o + chunk * kWarpSize * V;
            acc_t x[V], scatter[V];
            load_vec<V>(value_nm + oc, x);
#pragma unroll
            for (int i = 0; i < V; ++i) {
              const acc_t gv = go[chunk][i] * x[i];
              s_t += (dt ? gv : -gv) * wyx;  // d wt/dt = -1 for t0, +1 for t1
              if (dt == 0 || t_full) {       // t1 of a frame centre: only enters d/dt
                s_w += wt * wyx * gv;
                s_x += (dx ? gv : -gv) * wt * wy;
                s_y += (dy ? gv : -gv) * wt * wx;
              }
              scatter[i] = a * go[chunk][i] * wt * wyx;
            }
            if (dt == 0 || t_full) atomic_add_vec<V>(grad_value_nm + oc, scatter);
          }
        }
        const acc_t total = warp_sum4(s_w, s_x, s_y, s_t, lane);
        if (lane % 8 == 0) sums[lane / 8][j] += total;  // one lane per quantity
      }
    }
    __syncwarp();
    if (p < LK) {  // lane j writes point p0 + j's gradients; d(pixel coord)/d(loc) = size
      const BackwardPoint<acc_t>& mine = points[lane];
      acc_t g_w = 0, g_x = 0, g_y = 0, g_t = 0;  // a point outside the volume has no effect
      if (mine.mask != 0) {
        g_w = sums[0][lane];
        g_x = mine.a * sums[1][lane] * static_cast<acc_t>(W);
        g_y = mine.a * sums[2][lane] * static_cast<acc_t>(H);
        g_t = mine.a * sums[3][lane] * static_cast<acc_t>(T);
      }
      grad_weights_i[p] = static_cast<scalar_t>(g_w);
      grad_loc_i[3 * p] = static_cast<scalar_t>(g_x);
      grad_loc_i[3 * p + 1] = static_cast<scalar_t>(g_y);
      grad_loc_i[3 * p + 2] = static_cast<scalar_t>(g_t);
    }
    __syncwarp();  // the points are read before the next batch overwrites them
  }
}

// Blocks for NQM items, kWarps per block; the grid's x dimension holds up to 2^31 - 1 blocks.
inline unsigned int num_blocks(int64_t NQM) {
  const int64_t blocks = (NQM + kWarps - 1) / kWarps;
  TORCH_CHECK(blocks <= std::numeric_limits<int32_t>::max(), "stdeform_attn: N*Q*M=", text(NQM),
              " items need more CUDA blocks than one grid holds");
  return static_cast<unsigned int>(blocks);
}

// Channels per lane: 2 (vector loads, and vector atomics on sm_90) where D is even and the tensors
// read by channel start on a 2-element boundary, else 1.
inline int channels_per_lane(int64_t D, std::initializer_list<const at::Tensor*> read_by_channel) {
  if (D % 2 != 0) return 1;
  for (const at::Tensor* t : read_by_channel)
    if (reinterpret_cast<uintptr_t>(t->data_ptr()) % (2 * t->element_size()) != 0) return 1;
  return 2;
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
    const auto kernel = channels_per_lane(D, {&value}) == 2 ? stdeform_forward_kernel<scalar_t, 2>
                                                            : stdeform_forward_kernel<scalar_t, 1>;
    launch(kernel, num_blocks(NQM), value.data_ptr<scalar_t>(),
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
        const auto kernel = channels_per_lane(D, {&value, &grad_out}) == 2
                                ? stdeform_backward_kernel<scalar_t, 2>
                                : stdeform_backward_kernel<scalar_t, 1>;
        launch(kernel, num_blocks(NQM), grad_out.data_ptr<scalar_t>(),
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
