#include "tideserve/engine/packed_gemm.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "tideserve/engine/avx2_math.h"

namespace tideserve::engine {

namespace {

constexpr int64_t kMr = 6;   // rows of the register tile
constexpr int64_t kNr = 16;  // columns of the register tile: one weight panel
// K block: one panel's block is 24 KiB, within L1. A K of at most kWholeK runs as one block
// instead: the output tiles are then written once, never read back between blocks, which
// measured faster (gemm_pair) for BERT-base's K = 768 though the panel then streams from L2.
constexpr int64_t kKc = 384;
constexpr int64_t kWholeK = 768;
// Row block: 144 rows of input per K block (216 KiB at K 384, 432 KiB at K 768), within L2.
constexpr int64_t kMc = 144;
// Below this many FLOPs a call runs on one thread: ~50 us of one core, about what waking the
// others costs.
constexpr double kMinParallelFlops = 4e6;

float* allocate(size_t count) {
  const size_t bytes = (count * sizeof(float) + 63) / 64 * 64;
  auto* p = static_cast<float*>(std::aligned_alloc(64, bytes > 0 ? bytes : 64));
  if (p == nullptr) throw std::bad_alloc();
  std::memset(p, 0, bytes);
  return p;
}

// How a tile's accumulators start.
enum class Start {
  kBias,        // the bias (the first K block)
  kBiasAndOut,  // the bias plus what `out` holds: the residual (the first K block)
  kOut,         // what `out` holds: the sum of the earlier K blocks
};

#if defined(__x86_64__)
// One 6 x 16 tile over a K block: c[r][0..16) for r < rows. `a` is a strip of 6 input rows,
// k-major ([kc][6], zero rows past `rows`), `b` the panel's K block ([kc][16], 32-byte aligned).
// On the last K block the activation is applied before the store.
__attribute__((target("avx2,fma"))) void tile(const float* a, const float* b, int64_t kc, float* c,
                                              int64_t ldc, int64_t rows, Start start,
                                              const float* bias, Epilogue activation) {
  __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
  if (start == Start::kOut) {
    c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
  } else {
    c00 = c10 = c20 = c30 = c40 = c50 = _mm256_loadu_ps(bias);
    c01 = c11 = c21 = c31 = c41 = c51 = _mm256_loadu_ps(bias + 8);
  }
  if (start != Start::kBias) {
#define TS_LOAD(r)                                                      \
  if (rows > r) {                                                       \
    c##r##0 = _mm256_add_ps(c##r##0, _mm256_loadu_ps(c + r * ldc));     \
    c##r##1 = _mm256_add_ps(c##r##1, _mm256_loadu_ps(c + r * ldc + 8)); \
  }
    TS_LOAD(0) TS_LOAD(1) TS_LOAD(2) TS_LOAD(3) TS_LOAD(4) TS_LOAD(5)
#undef TS_LOAD
  }
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_load_ps(b + kNr * k);
    const __m256 b1 = _mm256_load_ps(b + kNr * k + 8);
    _mm_prefetch(reinterpret_cast<const char*>(b + kNr * k + 384), _MM_HINT_T0);
    __m256 x;
#define TS_FMA(r)                            \
  x = _mm256_broadcast_ss(a + kMr * k + r);  \
  c##r##0 = _mm256_fmadd_ps(x, b0, c##r##0); \
  c##r##1 = _mm256_fmadd_ps(x, b1, c##r##1);
    TS_FMA(0) TS_FMA(1) TS_FMA(2) TS_FMA(3) TS_FMA(4) TS_FMA(5)
#undef TS_FMA
  }
  if (activation == Epilogue::kGeluErf) {
#define TS_ACT(r)                   \
  c##r##0 = gelu_erf_avx2(c##r##0); \
  c##r##1 = gelu_erf_avx2(c##r##1);
    TS_ACT(0) TS_ACT(1) TS_ACT(2) TS_ACT(3) TS_ACT(4) TS_ACT(5)
#undef TS_ACT
  } else if (activation == Epilogue::kGeluTanh) {
#define TS_ACT(r)                    \
  c##r##0 = gelu_tanh_avx2(c##r##0); \
  c##r##1 = gelu_tanh_avx2(c##r##1);
    TS_ACT(0) TS_ACT(1) TS_ACT(2) TS_ACT(3) TS_ACT(4) TS_ACT(5)
#undef TS_ACT
  }
#define TS_STORE(r)                             \
  if (rows > r) {                               \
    _mm256_storeu_ps(c + r * ldc, c##r##0);     \
    _mm256_storeu_ps(c + r * ldc + 8, c##r##1); \
  }
  TS_STORE(0) TS_STORE(1) TS_STORE(2) TS_STORE(3) TS_STORE(4) TS_STORE(5)
#undef TS_STORE
}
#endif

#if defined(__x86_64__)
// Rows [0, mc) and columns [0, kc) of `in` (rows `ld` apart) as 6-row strips, k-major, with
// zero rows past mc. Full strips go 8 values of K at a time through an 8 x 8 transpose (two
// zero rows), each column stored as 8 floats of which the next store overwrites the last 2:
// `strips` has 8 floats of slack past the block for the last one.
__attribute__((target("avx2,fma"))) void pack_strips(const float* in, int64_t ld, int64_t mc,
                                                     int64_t kc, float* strips) {
  for (int64_t i = 0; i < mc; i += kMr) {
    const int64_t r = std::min(kMr, mc - i);
    float* d = strips + i * kc;
    int64_t k = 0;
    if (r == kMr) {
      const float* row = in + i * ld;
      for (; k + 8 <= kc; k += 8) {
        const __m256 r0 = _mm256_loadu_ps(row + k), r1 = _mm256_loadu_ps(row + ld + k);
        const __m256 r2 = _mm256_loadu_ps(row + 2 * ld + k);
        const __m256 r3 = _mm256_loadu_ps(row + 3 * ld + k);
        const __m256 r4 = _mm256_loadu_ps(row + 4 * ld + k);
        const __m256 r5 = _mm256_loadu_ps(row + 5 * ld + k);
        const __m256 zero = _mm256_setzero_ps();
        // Pairs, then quads, then the 128-bit halves: column j of the 8 x 8 block in t[j].
        const __m256 a0 = _mm256_unpacklo_ps(r0, r1), a1 = _mm256_unpackhi_ps(r0, r1);
        const __m256 a2 = _mm256_unpacklo_ps(r2, r3), a3 = _mm256_unpackhi_ps(r2, r3);
        const __m256 a4 = _mm256_unpacklo_ps(r4, r5), a5 = _mm256_unpackhi_ps(r4, r5);
        const __m256 b0 = _mm256_shuffle_ps(a0, a2, 0x44), b1 = _mm256_shuffle_ps(a0, a2, 0xee);
        const __m256 b2 = _mm256_shuffle_ps(a1, a3, 0x44), b3 = _mm256_shuffle_ps(a1, a3, 0xee);
        const __m256 b4 = _mm256_shuffle_ps(a4, zero, 0x44), b5 = _mm256_shuffle_ps(a4, zero, 0xee);
        const __m256 b6 = _mm256_shuffle_ps(a5, zero, 0x44), b7 = _mm256_shuffle_ps(a5, zero, 0xee);
        const __m256 t[8] = {
            _mm256_permute2f128_ps(b0, b4, 0x20), _mm256_permute2f128_ps(b1, b5, 0x20),
            _mm256_permute2f128_ps(b2, b6, 0x20), _mm256_permute2f128_ps(b3, b7, 0x20),
            _mm256_permute2f128_ps(b0, b4, 0x31), _mm256_permute2f128_ps(b1, b5, 0x31),
            _mm256_permute2f128_ps(b2, b6, 0x31), _mm256_permute2f128_ps(b3, b7, 0x31)};
        for (int j = 0; j < 8; ++j) _mm256_storeu_ps(d + (k + j) * kMr, t[j]);
      }
    }
    for (; k < kc; ++k) {
      for (int64_t j = 0; j < r; ++j) d[k * kMr + j] = in[(i + j) * ld + k];
      for (int64_t j = r; j < kMr; ++j) d[k * kMr + j] = 0.f;
    }
  }
}
#endif

// The panels [first, last) of the product's `rows` rows.
void gemm_block(const float* in, int64_t rows, const PackedWeights& w, Epilogue epilogue,
                float* out, int64_t out_stride, int64_t first, int64_t last) {
#if defined(__x86_64__)
  const int64_t k = w.k(), n = w.n();
  thread_local std::vector<float> strips;
  const int64_t block = k <= kWholeK ? k : kKc;
  strips.resize(static_cast<size_t>((kMc + kMr - 1) / kMr * kMr * block + 8));
  float edge[kMr * kNr] = {};  // the last panel's tile when n is not a multiple of 16
  const Epilogue activation = epilogue == Epilogue::kGeluErf || epilogue == Epilogue::kGeluTanh
                                  ? epilogue
                                  : Epilogue::kNone;
  for (int64_t pc = 0; pc < k; pc += block) {
    const int64_t kc = std::min(block, k - pc);
    const Start start = pc > 0                            ? Start::kOut
                        : epilogue == Epilogue::kResidual ? Start::kBiasAndOut
                                                          : Start::kBias;
    const Epilogue act = pc + kc == k ? activation : Epilogue::kNone;  // on the last block
    for (int64_t ic = 0; ic < rows; ic += kMc) {
      const int64_t mc = std::min(kMc, rows - ic);
      pack_strips(in + ic * k + pc, k, mc, kc, strips.data());
      for (int64_t p = first; p < last; ++p) {
        const float* b = w.panel(p) + pc * kNr;
        const int64_t col = p * kNr;
        const int64_t width = std::min(kNr, n - col);
        for (int64_t i = 0; i < mc; i += kMr) {
          const int64_t r = std::min(kMr, mc - i);
          float* c = out + (ic + i) * out_stride + col;
          if (width == kNr) {
            tile(strips.data() + i * kc, b, kc, c, out_stride, r, start, w.bias(p), act);
            continue;
          }
          for (int64_t j = 0; j < r; ++j)
            std::memcpy(edge + j * kNr, c + j * out_stride, width * 4);
          tile(strips.data() + i * kc, b, kc, edge, kNr, r, start, w.bias(p), act);
          for (int64_t j = 0; j < r; ++j)
            std::memcpy(c + j * out_stride, edge + j * kNr, width * 4);
        }
      }
    }
  }
#else
  (void)in, (void)rows, (void)w, (void)epilogue, (void)out, (void)out_stride, (void)first,
      (void)last;
#endif
}

}  // namespace

bool packed_gemm_available() {
#if defined(__x86_64__)
  return has_avx2_fma();
#else
  return false;
#endif
}

void PackedWeights::Free::operator()(float* p) const {
  std::free(p);
}

PackedWeights::PackedWeights(const float* weight, const float* bias, int64_t n, int64_t k)
    : n_(n), k_(k) {
  const int64_t count = panels();
  data_.reset(allocate(static_cast<size_t>(count * kNr * k)));
  bias_.reset(allocate(static_cast<size_t>(count * kNr)));
  std::memcpy(bias_.get(), bias, static_cast<size_t>(n) * sizeof(float));
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < count; ++p) {
    float* d = data_.get() + p * kNr * k;
    const int64_t width = std::min(kNr, n - p * kNr);
    for (int64_t c = 0; c < width; ++c) {
      const float* row = weight + (p * kNr + c) * k;
      for (int64_t i = 0; i < k; ++i) d[i * kNr + c] = row[i];
    }
  }
}

void packed_gemm(const float* in, int64_t rows, const PackedWeights& weights, Epilogue epilogue,
                 float* out, int64_t out_stride) {
  if (rows <= 0) return;
  const int64_t panels = weights.panels();
  const double flops = 2.0 * static_cast<double>(rows) * weights.n() * weights.k();
  int threads = omp_in_parallel() || flops < kMinParallelFlops ? 1 : omp_get_max_threads();
  threads = static_cast<int>(std::min<int64_t>(threads, panels));
  if (threads <= 1) {
    gemm_block(in, rows, weights, epilogue, out, out_stride, 0, panels);
    return;
  }
  // Threads split the panels. Splitting the rows of a large batch instead (each thread copying
  // only its own rows into strips) measured slower in the encoder on 2 threads.
#pragma omp parallel num_threads(threads)
  {
    const int64_t t = omp_get_thread_num(), count = omp_get_num_threads();
    gemm_block(in, rows, weights, epilogue, out, out_stride, panels * t / count,
               panels * (t + 1) / count);
  }
}

}  // namespace tideserve::engine
