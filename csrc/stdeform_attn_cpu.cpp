// STDeformAttn CPU kernels: forward and backward of visbench::stdeform_attn (docs/design.md section 5).
//
//   value   (N, S, M, D)           shapes (L, 3) rows (T, H, W)      start (L,)
//   loc     (N, Q, M, L, K, 3)     weights (N, Q, M, L, K)           out   (N, Q, M*D)
//
// Algorithm. A sampling point (n, q, m, l, k) becomes its (up to) 8 trilinear corners: the offset
// of each in-bounds corner's D-vector and its weight. Pixel coordinates are rounded exactly like
// at::grid_sampler_3d (grid = 2*loc - 1, then ((grid + 1) * size - 1) / 2), so a point on a pixel
// or frame centre lands on the same side of floor() as the reference and the one-sided
// derivatives there agree. When t lands exactly on a frame centre (zero fraction) the next frame's
// 4 corners have zero weight: the forward gathers 4 corners instead of 8, and the backward reads
// them only for d/dt (grid_sample's one-sided derivative v(t0 + 1) - v(t0) needs them).
//
// Corner lists. For each (n, q, m) the in-bounds corners of its L*K points are listed once, with
// no data-dependent branches (every corner is written, the count advances only for valid ones).
//
// Forward. out[n, q, m] = sum over the list of weight * trilinear weight * value_corner, in passes
// over the list of up to 8 SIMD vectors of channels (64 floats / 32 doubles) whose accumulators
// stay in registers: a contiguous, vectorised (AVX2/FMA) inner loop over D.
//
// Backward. One pass per corner (grad_out's channels held in registers) computes dot_c =
// value_c . grad_out and scatters grad_value_c += weight * a_c * grad_out; then per point
// grad_weights = sum_c a_c dot_c and grad_loc = weight * size * sum_c (da_c / dcoord) dot_c, so the
// three gradients share one read of every corner.
//
// Layout. When there are many samples per token and M > 1, value (and the grad_value buffer) are
// used as a per-head copy (N, M, S, D): one head's volume is contiguous, a thread working on one
// head keeps its S*D slab in cache, and the x-neighbours of a corner are adjacent in memory.
//
// Parallel decomposition (at::parallel_for, OpenMP).
//   forward:  tasks = (n, m, block of 32 queries); each task owns out[n, q-block, m*D:(m+1)*D].
//   backward: tasks = (n, m, chunk of Q). Each task owns grad_loc[n, q-chunk, m] and
//             grad_weights[n, q-chunk, m], and grad_value[n, :, m, :] of its chunk. With one chunk
//             (N*M >= threads) tasks write disjoint grad_value directly; with C > 1 chunks (N*M <
//             threads) every chunk has a private grad_value buffer, summed afterwards in chunk
//             order. No atomics, no races; results are bitwise deterministic for a thread count.
// All offsets are int64_t. float16 / bfloat16 inputs are computed in float32.
#include "stdeform_attn.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

namespace visbench {
namespace {

struct Level {
  int64_t T, H, W, start;  // volume (T, H, W) at token offset `start`
};

struct Sizes {
  int64_t N, S, M, D, Q, L, K;
  std::vector<Level> levels;
};

// Element offset of value[n, s, m, 0] = n * sn + m * sm + s * ss, for value or its per-head copy.
struct Layout {
  int64_t sn, sm, ss;
};

Sizes read_sizes(const at::Tensor& value, const at::Tensor& shapes, const at::Tensor& start,
                 const at::Tensor& loc) {
  Sizes z{value.size(0), value.size(1), value.size(2), value.size(3),
          loc.size(1),   loc.size(3),   loc.size(4),   {}};
  const at::Tensor sh = shapes.contiguous(), st = start.contiguous();  // CPU, checked int64
  const int64_t* sp = sh.data_ptr<int64_t>();
  const int64_t* tp = st.data_ptr<int64_t>();
  for (int64_t l = 0; l < z.L; ++l)
    z.levels.push_back({sp[3 * l], sp[3 * l + 1], sp[3 * l + 2], tp[l]});
  return z;
}

// Per-head copy (N, M, S, D) when M > 1 and each token's D-vector is gathered ~8+ times on average;
// otherwise value as is (the copy would cost more than it saves).
bool use_per_head(const Sizes& z) { return z.M > 1 && z.Q * z.L * z.K >= z.S; }

Layout layout_of(const Sizes& z, bool per_head) {
  return per_head ? Layout{z.M * z.S * z.D, z.S * z.D, z.D}   // (N, M, S, D)
                  : Layout{z.S * z.M * z.D, z.D, z.M * z.D};  // (N, S, M, D)
}

// Pixel coordinate of a normalised coordinate, rounded as at::grid_sampler_3d does (zeros padding,
// align_corners=False). The empty asm makes the product opaque, so the compiler cannot fuse
// (grid + 1) * size - 1 into one FMA, which rounds differently (2 * loc - 1 is safe: 2 * loc is
// exact); elsewhere a volatile round trip does the same, more slowly.
template <typename scalar_t>
inline scalar_t pixel_coord(scalar_t loc, scalar_t size) {
  const scalar_t grid = 2 * loc - 1;
  scalar_t scaled = (grid + 1) * size;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  asm("" : "+x"(scaled));
#elif defined(__GNUC__) && defined(__aarch64__)
  asm("" : "+w"(scaled));
#else
  scaled = *const_cast<volatile scalar_t*>(&scaled);
#endif
  return (scaled - 1) / 2;
}

// Geometry of one sampling point in its level, computed as grid_sample does.
template <typename scalar_t>
struct Point {
  int64_t token;                 // token index of the low corner (x0, y0, z0), may be outside
  scalar_t wx[2], wy[2], wz[2];  // weights of the low / high corner in each dim
  bool vx[2], vy[2], vz[2];      // whether the low / high corner is inside the volume
};

// Returns false when no corner is inside the volume (then nothing is sampled; NaN included).
// Levels are passed by value so that the compiler keeps them in registers.
template <typename scalar_t>
inline bool point_geometry(const scalar_t* p /* (x, y, t) */, const Level lv, Point<scalar_t>& g) {
  const scalar_t W = static_cast<scalar_t>(lv.W), H = static_cast<scalar_t>(lv.H),
                 T = static_cast<scalar_t>(lv.T);
  const scalar_t ix = pixel_coord(p[0], W), iy = pixel_coord(p[1], H), iz = pixel_coord(p[2], T);
  if (!(ix >= -1 && ix < W && iy >= -1 && iy < H && iz >= -1 && iz < T)) return false;
  const scalar_t fx = std::floor(ix), fy = std::floor(iy), fz = std::floor(iz);
  const int64_t x0 = static_cast<int64_t>(fx), y0 = static_cast<int64_t>(fy),
                z0 = static_cast<int64_t>(fz);
  g.token = lv.start + (z0 * lv.H + y0) * lv.W + x0;
  g.wx[0] = (fx + 1) - ix, g.wx[1] = ix - fx;
  g.wy[0] = (fy + 1) - iy, g.wy[1] = iy - fy;
  g.wz[0] = (fz + 1) - iz, g.wz[1] = iz - fz;
  // With -1 <= coord < size only the low corner can fall below 0 and only the high one reach size.
  g.vx[0] = x0 >= 0, g.vx[1] = x0 + 1 < lv.W;
  g.vy[0] = y0 >= 0, g.vy[1] = y0 + 1 < lv.H;
  g.vz[0] = z0 >= 0, g.vz[1] = z0 + 1 < lv.T;
  return true;
}

// The corners of all L*K points of one (n, q, m), as flat arrays.
template <typename scalar_t>
struct CornerList {
  std::vector<int64_t> off;    // element offset of the corner's D-vector (token index * Layout::ss)
  std::vector<scalar_t> cw;    // weight * trilinear weight (forward sum, grad_value scatter)
  std::vector<int64_t> point;  // backward: the corner's point, l * K + k
  std::vector<scalar_t> coef;  // backward: trilinear weight and its d/d(ix, iy, iz), 4 per corner
  std::vector<scalar_t> dot;   // backward: value_corner . grad_out
  int64_t n = 0;
  CornerList(int64_t capacity, bool grad) : off(capacity), cw(capacity) {
    if (grad) point.resize(capacity), coef.resize(4 * capacity), dot.resize(capacity);
  }
};

// Appends the in-bounds corners of frame z0 + dz of a point. Branch-free: all 4 corners are
// written and the count advances only for in-bounds ones (so the list needs 4 spare slots).
template <typename scalar_t, bool kGrad>
inline void append_frame(const Point<scalar_t>& g, int dz, const Level lv, int64_t ss, scalar_t w,
                         int64_t point, CornerList<scalar_t>& c) {
  int64_t n = c.n;
  int64_t* off = c.off.data();
  scalar_t* cw = c.cw.data();
  for (int dy = 0; dy < 2; ++dy) {
    const int64_t row = g.token + (dz * lv.H + dy) * lv.W;
    for (int dx = 0; dx < 2; ++dx) {
      const scalar_t a = g.wx[dx] * g.wy[dy] * g.wz[dz];
      off[n] = (row + dx) * ss;
      cw[n] = w * a;
      if (kGrad) {
        c.point[n] = point;
        scalar_t* coef = c.coef.data() + 4 * n;
        coef[0] = a;
        coef[1] = (dx ? 1 : -1) * g.wy[dy] * g.wz[dz];
        coef[2] = (dy ? 1 : -1) * g.wx[dx] * g.wz[dz];
        coef[3] = (dz ? 1 : -1) * g.wx[dx] * g.wy[dy];
      }
      n += g.vz[dz] & g.vy[dy] & g.vx[dx];
    }
  }
  c.n = n;
}

// A 32-byte SIMD vector (one AVX2 register) of scalar_t, via GCC/Clang vector extensions (the
// compiler splits it into two SSE registers without AVX). Unaligned loads/stores via memcpy.
template <typename scalar_t>
struct Simd {
  typedef scalar_t V __attribute__((vector_size(32)));
  static constexpr int64_t kWidth = 32 / sizeof(scalar_t);
  static V load(const scalar_t* p) {
    V v;
    std::memcpy(&v, p, sizeof(V));
    return v;
  }
  static void store(scalar_t* p, const V& v) { std::memcpy(p, &v, sizeof(V)); }
  static scalar_t sum(const V& v) {  // pairwise lane sum, in a fixed order
    scalar_t s[kWidth];
    std::memcpy(s, &v, sizeof(V));
    for (int64_t w = kWidth / 2; w > 0; w /= 2)
      for (int64_t j = 0; j < w; ++j) s[j] += s[j + w];
    return s[0];
  }
};

// Splits D channels into blocks of NV <= 8 SIMD vectors (64 floats / 32 doubles): calls
// f(std::integral_constant<int, NV>(), d) for each block starting at channel d, and returns where
// the scalar remainder (D % width channels) starts.
template <typename scalar_t, typename F>
inline int64_t for_each_block(int64_t D, F&& f) {
  constexpr int64_t W = Simd<scalar_t>::kWidth;
  int64_t d = 0;
  for (; D - d >= 8 * W; d += 8 * W) f(std::integral_constant<int, 8>(), d);
  switch ((D - d) / W) {
    case 7: f(std::integral_constant<int, 7>(), d); break;
    case 6: f(std::integral_constant<int, 6>(), d); break;
    case 5: f(std::integral_constant<int, 5>(), d); break;
    case 4: f(std::integral_constant<int, 4>(), d); break;
    case 3: f(std::integral_constant<int, 3>(), d); break;
    case 2: f(std::integral_constant<int, 2>(), d); break;
    case 1: f(std::integral_constant<int, 1>(), d); break;
    default: break;
  }
  return d + (D - d) / W * W;
}

// out[0:NV*W] = sum_i cw[i] * base[off[i] + 0:NV*W], with NV vector accumulators in registers.
template <typename scalar_t, int NV>
inline void gather_block(const scalar_t* __restrict__ base, const int64_t* __restrict__ off,
                         const scalar_t* __restrict__ cw, int64_t n, scalar_t* __restrict__ out) {
  using S = Simd<scalar_t>;
  typename S::V acc[NV] = {};
  for (int64_t i = 0; i < n; ++i) {
    const scalar_t* v = base + off[i];
    const scalar_t w = cw[i];
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) acc[j] += w * S::load(v + j * S::kWidth);
  }
#pragma GCC unroll 8
  for (int j = 0; j < NV; ++j) S::store(out + j * S::kWidth, acc[j]);
}

// Scalar version for the last D % W channels.
template <typename scalar_t>
inline void gather_scalar(const scalar_t* base, const int64_t* off, const scalar_t* cw, int64_t n,
                          scalar_t* out) {
  scalar_t acc = 0;
  for (int64_t i = 0; i < n; ++i) acc += cw[i] * base[off[i]];
  *out = acc;
}

// out[0:D] = sum_i cw[i] * base[off[i] + 0:D]: one pass over the corner list per block of
// channels, then the scalar remainder.
template <typename scalar_t>
inline void weighted_gather(const scalar_t* base, const int64_t* off, const scalar_t* cw, int64_t n,
                            int64_t D, scalar_t* out) {
  int64_t d = for_each_block<scalar_t>(D, [&](auto nv, int64_t d0) {
    gather_block<scalar_t, decltype(nv)::value>(base + d0, off, cw, n, out + d0);
  });
  for (; d < D; ++d) gather_scalar(base + d, off, cw, n, out + d);
}

// dot[i] += base[off[i] + 0:NV*W] . g[0:NV*W] for every corner i, and with kScatter also
// gbase[off[i] + 0:NV*W] += cw[i] * g. The NV vectors of g stay in registers. Fixed-order sums.
template <typename scalar_t, int NV, bool kScatter>
inline void dot_scatter_block(const scalar_t* __restrict__ base, scalar_t* __restrict__ gbase,
                              const scalar_t* __restrict__ g, const int64_t* __restrict__ off,
                              const scalar_t* __restrict__ cw, int64_t n,
                              scalar_t* __restrict__ dot) {
  using S = Simd<scalar_t>;
  typename S::V gr[NV];
#pragma GCC unroll 8
  for (int j = 0; j < NV; ++j) gr[j] = S::load(g + j * S::kWidth);
  for (int64_t i = 0; i < n; ++i) {
    const scalar_t* v = base + off[i];
    typename S::V part = S::load(v) * gr[0];
#pragma GCC unroll 8
    for (int j = 1; j < NV; ++j) part += S::load(v + j * S::kWidth) * gr[j];
    dot[i] += S::sum(part);
    if (kScatter) {
      scalar_t* gv = gbase + off[i];
      const scalar_t s = cw[i];
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j) {
        scalar_t* gvj = gv + j * S::kWidth;
        S::store(gvj, S::load(gvj) + s * gr[j]);
      }
    }
  }
}

// The same for all D channels: one pass over the corner list per block, then the remainder.
template <typename scalar_t, bool kScatter>
inline void dot_scatter(const scalar_t* base, scalar_t* gbase, const scalar_t* g,
                        const int64_t* off, const scalar_t* cw, int64_t n, int64_t D,
                        scalar_t* dot) {
  std::fill(dot, dot + n, scalar_t(0));
  int64_t d = for_each_block<scalar_t>(D, [&](auto nv, int64_t d0) {
    dot_scatter_block<scalar_t, decltype(nv)::value, kScatter>(base + d0, gbase + d0, g + d0, off,
                                                               cw, n, dot);
  });
  for (; d < D; ++d) {
    for (int64_t i = 0; i < n; ++i) {
      dot[i] += base[off[i] + d] * g[d];
      if (kScatter) gbase[off[i] + d] += cw[i] * g[d];
    }
  }
}

constexpr int64_t kQueryBlock = 32;  // forward task granularity

template <typename scalar_t>
void forward_kernel(const Sizes& z, const Layout& lay, const scalar_t* value, const scalar_t* loc,
                    const scalar_t* weights, scalar_t* out) {
  const int64_t LK = z.L * z.K, qblocks = (z.Q + kQueryBlock - 1) / kQueryBlock;
  at::parallel_for(0, z.N * z.M * qblocks, 1, [&](int64_t begin, int64_t end) {
    CornerList<scalar_t> c(LK * 8 + 4, /*grad=*/false);
    Point<scalar_t> g;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / (z.M * qblocks), m = task / qblocks % z.M, qb = task % qblocks;
      const scalar_t* vbase = value + n * lay.sn + m * lay.sm;  // value[n, :, m, :]
      for (int64_t q = qb * kQueryBlock; q < std::min(z.Q, (qb + 1) * kQueryBlock); ++q) {
        const int64_t nqm = (n * z.Q + q) * z.M + m;
        const scalar_t* p = loc + nqm * LK * 3;  // loc[n, q, m]      (L, K, 3)
        const scalar_t* w = weights + nqm * LK;  // weights[n, q, m]  (L, K)
        c.n = 0;
        for (int64_t l = 0; l < z.L; ++l) {
          const Level lv = z.levels[l];
          for (int64_t k = 0; k < z.K; ++k) {
            const int64_t lk = l * z.K + k;
            if (!point_geometry(p + lk * 3, lv, g)) continue;
            append_frame<scalar_t, false>(g, 0, lv, lay.ss, w[lk], lk, c);
            // t on a frame centre: the next frame has weight exactly 0, skip its 4 corners.
            if (g.wz[1] != 0)
              append_frame<scalar_t, false>(g, 1, lv, lay.ss, w[lk], lk, c);
          }
        }
        // out[n, q, m*D:(m+1)*D]
        weighted_gather(vbase, c.off.data(), c.cw.data(), c.n, z.D, out + nqm * z.D);
      }
    }
  });
}

template <typename scalar_t>
void backward_kernel(const Sizes& z, const Layout& lay, int64_t chunks, const scalar_t* grad_out,
                     const scalar_t* value, const scalar_t* loc, const scalar_t* weights,
                     scalar_t* grad_value, scalar_t* grad_loc, scalar_t* grad_weights) {
  const int64_t LK = z.L * z.K, per_chunk = (z.Q + chunks - 1) / chunks;
  const int64_t chunk_numel = z.N * z.S * z.M * z.D;  // one private grad_value buffer
  at::parallel_for(0, z.N * z.M * chunks, 1, [&](int64_t begin, int64_t end) {
    // Corners that get the grad_value scatter, and those only read for d/dt: the next frame's
    // corners (weight exactly 0) when t is on a frame centre.
    CornerList<scalar_t> full(LK * 8 + 4, true), dot_only(LK * 4 + 4, true);
    std::vector<scalar_t> acc(LK * 4);  // per point: sampled . g and its d/d(ix, iy, iz)
    Point<scalar_t> pg;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / (z.M * chunks), m = task / chunks % z.M, chunk = task % chunks;
      const int64_t base = n * lay.sn + m * lay.sm;
      const scalar_t* vbase = value + base;                       // value[n, :, m, :]
      scalar_t* gbase = grad_value + chunk * chunk_numel + base;  // its gradient (this chunk)
      for (int64_t q = chunk * per_chunk; q < std::min(z.Q, (chunk + 1) * per_chunk); ++q) {
        const int64_t nqm = (n * z.Q + q) * z.M + m;
        const scalar_t* g = grad_out + nqm * z.D;  // grad_out[n, q, m*D:(m+1)*D]
        const scalar_t* p = loc + nqm * LK * 3;    // loc[n, q, m]      (L, K, 3)
        const scalar_t* w = weights + nqm * LK;    // weights[n, q, m]  (L, K)
        // 1. The corners of the L*K points.
        full.n = dot_only.n = 0;
        for (int64_t l = 0; l < z.L; ++l) {
          const Level lv = z.levels[l];
          for (int64_t k = 0; k < z.K; ++k) {
            const int64_t lk = l * z.K + k;
            if (!point_geometry(p + lk * 3, lv, pg)) continue;
            append_frame<scalar_t, true>(pg, 0, lv, lay.ss, w[lk], lk, full);
            append_frame<scalar_t, true>(pg, 1, lv, lay.ss, w[lk], lk,
                                         pg.wz[1] != 0 ? full : dot_only);
          }
        }
        // 2. dot = value_corner . g for every corner; grad_value_corner += w * a * g.
        dot_scatter<scalar_t, true>(vbase, gbase, g, full.off.data(), full.cw.data(), full.n, z.D,
                                    full.dot.data());
        dot_scatter<scalar_t, false>(vbase, gbase, g, dot_only.off.data(), dot_only.cw.data(),
                                     dot_only.n, z.D, dot_only.dot.data());
        // 3. Per point: grad_weights = sum_c a_c dot_c, grad_loc = w * size * sum_c da_c dot_c.
        std::fill(acc.begin(), acc.end(), scalar_t(0));
        for (const CornerList<scalar_t>* c : {&full, &dot_only}) {
          for (int64_t i = 0; i < c->n; ++i) {
            scalar_t* a = acc.data() + 4 * c->point[i];
            for (int j = 0; j < 4; ++j) a[j] += c->coef[4 * i + j] * c->dot[i];
          }
        }
        for (int64_t lk = 0; lk < LK; ++lk) {
          const Level& lv = z.levels[lk / z.K];
          const scalar_t* a = acc.data() + 4 * lk;
          grad_weights[nqm * LK + lk] = a[0];
          // d ix / d loc_x = W (grid = 2 loc - 1, ix = ((grid + 1) W - 1) / 2), likewise y, t.
          scalar_t* gl = grad_loc + (nqm * LK + lk) * 3;
          gl[0] = w[lk] * a[1] * static_cast<scalar_t>(lv.W);
          gl[1] = w[lk] * a[2] * static_cast<scalar_t>(lv.H);
          gl[2] = w[lk] * a[3] * static_cast<scalar_t>(lv.T);
        }
      }
    }
  });
}

bool is_reduced(const at::Tensor& t) {
  return t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16;
}

}  // namespace

at::Tensor stdeform_attn_cpu(const at::Tensor& value, const at::Tensor& shapes,
                             const at::Tensor& start, const at::Tensor& loc,
                             const at::Tensor& weights) {
  check_stdeform_inputs(value, shapes, start, loc, weights);
  if (is_reduced(value)) {  // float16 / bfloat16: compute in float32
    return stdeform_attn_cpu(value.to(at::kFloat), shapes, start, loc.to(at::kFloat),
                             weights.to(at::kFloat))
        .to(value.scalar_type());
  }
  const Sizes z = read_sizes(value, shapes, start, loc);
  at::Tensor out = at::empty({z.N, z.Q, z.M * z.D}, value.options());  // (N, Q, M*D)
  if (out.numel() == 0) return out;
  const bool per_head = use_per_head(z);
  // (N, M, S, D) copy of value when per_head, else value itself (N, S, M, D).
  const at::Tensor v = per_head ? value.permute({0, 2, 1, 3}).contiguous() : value;
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "stdeform_attn_cpu", [&] {
    forward_kernel<scalar_t>(z, layout_of(z, per_head), v.data_ptr<scalar_t>(),
                             loc.data_ptr<scalar_t>(), weights.data_ptr<scalar_t>(),
                             out.data_ptr<scalar_t>());
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> stdeform_attn_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& value, const at::Tensor& shapes,
    const at::Tensor& start, const at::Tensor& loc, const at::Tensor& weights) {
  check_stdeform_backward_inputs(grad_out, value, shapes, start, loc, weights);
  if (is_reduced(value)) {  // float16 / bfloat16: compute in float32
    const auto f = [](const at::Tensor& t) { return t.to(at::kFloat); };
    auto [gv, gl, gw] =
        stdeform_attn_backward_cpu(f(grad_out), f(value), shapes, start, f(loc), f(weights));
    const auto dt = value.scalar_type();
    return {gv.to(dt), gl.to(dt), gw.to(dt)};
  }
  if (grad_out.numel() == 0 || loc.numel() == 0)
    return {at::zeros_like(value), at::zeros_like(loc), at::zeros_like(weights)};
  const Sizes z = read_sizes(value, shapes, start, loc);
  at::Tensor grad_loc = at::empty_like(loc);          // (N, Q, M, L, K, 3), all written
  at::Tensor grad_weights = at::empty_like(weights);  // (N, Q, M, L, K), all written

  // Split Q into `chunks` when there are fewer (n, m) pairs than threads; each chunk then
  // accumulates into its own grad_value buffer.
  const int64_t threads = at::get_num_threads(), pairs = z.N * z.M;
  const int64_t chunks = pairs >= threads ? 1 : std::min(z.Q, (threads + pairs - 1) / pairs);
  const bool per_head = use_per_head(z);
  const at::Tensor v = per_head ? value.permute({0, 2, 1, 3}).contiguous() : value;
  // grad_value buffers: (N, S, M, D), or (N, M, S, D) per head, with a leading chunk dim if C > 1.
  std::vector<int64_t> dims = {z.N, per_head ? z.M : z.S, per_head ? z.S : z.M, z.D};
  if (chunks > 1) dims.insert(dims.begin(), chunks);
  at::Tensor buffers = at::zeros(dims, value.options());
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "stdeform_attn_backward_cpu", [&] {
    backward_kernel<scalar_t>(z, layout_of(z, per_head), chunks, grad_out.data_ptr<scalar_t>(),
                              v.data_ptr<scalar_t>(), loc.data_ptr<scalar_t>(),
                              weights.data_ptr<scalar_t>(), buffers.data_ptr<scalar_t>(),
                              grad_loc.data_ptr<scalar_t>(), grad_weights.data_ptr<scalar_t>());
  });
  // Sum the chunks' buffers in a fixed order (deterministic), then undo the per-head layout.
  at::Tensor grad_value = chunks == 1 ? buffers : buffers[0] + buffers[1];
  for (int64_t i = 2; i < chunks; ++i) grad_value.add_(buffers[i]);
  if (per_head) grad_value = grad_value.permute({0, 2, 1, 3}).contiguous();  // (N, S, M, D)
  return {grad_value, grad_loc, grad_weights};
}

}  // namespace visbench

TORCH_LIBRARY_IMPL(visbench, CPU, m) {
  m.impl("stdeform_attn", &visbench::stdeform_attn_cpu);
  m.impl("stdeform_attn_backward", &visbench::stdeform_attn_backward_cpu);
}
