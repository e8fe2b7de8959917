#include "tideserve/engine/ops.h"

#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

#include "tideserve/engine/avx2_math.h"

namespace tideserve::engine {

void layer_norm(const float* in, const float* gamma, const float* beta, float eps, int64_t rows,
                int64_t cols, float* out, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (rows > 16)
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = in + r * cols;
    float* y = out + r * cols;
    float sum = 0.f;
    for (int64_t c = 0; c < cols; ++c) sum += x[c];
    const float mean = sum / static_cast<float>(cols);
    float sq = 0.f;
    for (int64_t c = 0; c < cols; ++c) {
      const float d = x[c] - mean;
      sq += d * d;
    }
    const float inv_std = 1.f / std::sqrt(sq / static_cast<float>(cols) + eps);
    for (int64_t c = 0; c < cols; ++c) y[c] = (x[c] - mean) * inv_std * gamma[c] + beta[c];
  }
}

namespace {

void softmax_scalar(float* row, int64_t n, float scale) {
  float max_value = row[0] * scale;
  for (int64_t i = 0; i < n; ++i) {
    row[i] *= scale;
    if (row[i] > max_value) max_value = row[i];
  }
  float sum = 0.f;
  for (int64_t i = 0; i < n; ++i) {
    row[i] = std::exp(row[i] - max_value);
    sum += row[i];
  }
  const float inv = 1.f / sum;
  for (int64_t i = 0; i < n; ++i) row[i] *= inv;
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) void softmax_avx2(float* row, int64_t n, float scale) {
  const __m256 vscale = _mm256_set1_ps(scale);
  __m256 vmax = _mm256_set1_ps(row[0] * scale);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(row + i), vscale);
    _mm256_storeu_ps(row + i, v);
    vmax = _mm256_max_ps(vmax, v);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, vmax);
  float max_value = lanes[0];
  for (int l = 1; l < 8; ++l) max_value = lanes[l] > max_value ? lanes[l] : max_value;
  for (int64_t j = i; j < n; ++j) {
    row[j] *= scale;
    if (row[j] > max_value) max_value = row[j];
  }
  const __m256 shift = _mm256_set1_ps(max_value);
  __m256 vsum = _mm256_setzero_ps();
  for (i = 0; i + 8 <= n; i += 8) {
    const __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(row + i), shift));
    _mm256_storeu_ps(row + i, e);
    vsum = _mm256_add_ps(vsum, e);
  }
  _mm256_store_ps(lanes, vsum);
  float sum = 0.f;
  for (float lane : lanes) sum += lane;
  for (int64_t j = i; j < n; ++j) {
    row[j] = std::exp(row[j] - max_value);
    sum += row[j];
  }
  const float inv = 1.f / sum;
  const __m256 vinv = _mm256_set1_ps(inv);
  for (i = 0; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(row + i, _mm256_mul_ps(_mm256_loadu_ps(row + i), vinv));
  }
  for (int64_t j = i; j < n; ++j) row[j] *= inv;
}
#endif

}  // namespace

void softmax_row(float* row, int64_t n, float scale) {
#if defined(__x86_64__)
  if (has_avx2_fma()) return softmax_avx2(row, n, scale);
#endif
  softmax_scalar(row, n, scale);
}

void add_inplace(float* out, const float* in, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] += in[i];
}

namespace {

// The range of `n` values, widened to include 0.
void range_scalar(const float* in, int64_t n, float& lo, float& hi) {
  for (int64_t i = 0; i < n; ++i) {
    lo = in[i] < lo ? in[i] : lo;
    hi = in[i] > hi ? in[i] : hi;
  }
}

// Clamp (a NaN lands on 0) and round half to even, as _mm256_cvtps_epi32 does.
void quantize_scalar(const float* in, int64_t n, float inv, float zero, uint8_t* out) {
  for (int64_t i = 0; i < n; ++i) {
    float v = in[i] * inv + zero;
    v = v > 0.f ? v : 0.f;
    v = v < 255.f ? v : 255.f;
    out[i] = static_cast<uint8_t>(std::nearbyint(v));
  }
}

#if defined(__x86_64__)
// The same two loops on AVX2; the build targets baseline x86-64, so they are compiled for AVX2
// separately and chosen at run time. They agree with the scalar loops except where the FMA's
// single rounding of x * inv + zero lands a value on the other side of a rounding tie.
__attribute__((target("avx2,fma"))) void range_avx2(const float* in, int64_t n, float& lo,
                                                    float& hi) {
  __m256 vlo = _mm256_setzero_ps(), vhi = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps(in + i);
    vlo = _mm256_min_ps(x, vlo);  // a NaN in x leaves vlo as it was
    vhi = _mm256_max_ps(x, vhi);
  }
  alignas(32) float l[8], h[8];
  _mm256_store_ps(l, vlo);
  _mm256_store_ps(h, vhi);
  for (int k = 0; k < 8; ++k) {
    lo = l[k] < lo ? l[k] : lo;
    hi = h[k] > hi ? h[k] : hi;
  }
  range_scalar(in + i, n - i, lo, hi);
}

// 8 values to int32 in [0, 255]: clamp (max(NaN, 0) = 0), round half to even.
__attribute__((target("avx2,fma"))) inline __m256i quantize8_avx2(const float* p, __m256 inv,
                                                                  __m256 zero) {
  __m256 v = _mm256_fmadd_ps(_mm256_loadu_ps(p), inv, zero);
  v = _mm256_min_ps(_mm256_max_ps(v, _mm256_setzero_ps()), _mm256_set1_ps(255.f));
  return _mm256_cvtps_epi32(v);
}

__attribute__((target("avx2,fma"))) void quantize_avx2(const float* in, int64_t n, float inv,
                                                       float zero, uint8_t* out) {
  const __m256 vinv = _mm256_set1_ps(inv), vzero = _mm256_set1_ps(zero);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i ab = _mm256_packus_epi32(quantize8_avx2(in + i, vinv, vzero),
                                           quantize8_avx2(in + i + 8, vinv, vzero));
    const __m256i cd = _mm256_packus_epi32(quantize8_avx2(in + i + 16, vinv, vzero),
                                           quantize8_avx2(in + i + 24, vinv, vzero));
    const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(ab, cd), order);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), bytes);
  }
  quantize_scalar(in + i, n - i, inv, zero, out + i);
}
#endif

void value_range(const float* in, int64_t n, float& lo, float& hi) {
#if defined(__x86_64__)
  if (has_avx2_fma()) return range_avx2(in, n, lo, hi);
#endif
  range_scalar(in, n, lo, hi);
}

void quantize_values(const float* in, int64_t n, float inv, float zero, uint8_t* out) {
#if defined(__x86_64__)
  if (has_avx2_fma()) return quantize_avx2(in, n, inv, zero, out);
#endif
  quantize_scalar(in, n, inv, zero, out);
}

// Work split for the two passes: one chunk per thread, none below 64 KiB of floats.
constexpr int64_t kMinChunk = 16384;

}  // namespace

QuantParams quantize_u8(const float* in, int64_t n, uint8_t* out) {
  const int threads =
      static_cast<int>(std::clamp<int64_t>(n / kMinChunk, 1, omp_get_max_threads()));
  const int64_t chunk = (n + threads - 1) / threads;
  float lo = 0.f, hi = 0.f;
#pragma omp parallel for num_threads(threads) reduction(min                 \
                                                        : lo) reduction(max \
                                                                        : hi) if (threads > 1)
  for (int t = 0; t < threads; ++t) {
    const int64_t begin = t * chunk, end = std::min(n, begin + chunk);
    if (begin < end) value_range(in + begin, end - begin, lo, hi);
  }
  QuantParams q;
  // A range too narrow for a normal scale (or not finite) keeps scale 1: every value lands on the
  // zero point, and scale products stay normal (the int8 path divides the bias by them).
  const float range = hi - lo;
  if (std::isfinite(range) && range >= 255.f * std::numeric_limits<float>::min() * 1e6f) {
    q.scale = range / 255.f;
  }
  q.zero_point = static_cast<int32_t>(std::clamp(std::nearbyint(-lo / q.scale), 0.f, 255.f));
  const float inv = 1.f / q.scale;
  const float zero = static_cast<float>(q.zero_point);
#pragma omp parallel for num_threads(threads) if (threads > 1)
  for (int t = 0; t < threads; ++t) {
    const int64_t begin = t * chunk, end = std::min(n, begin + chunk);
    if (begin < end) quantize_values(in + begin, end - begin, inv, zero, out + begin);
  }
  return q;
}

uint16_t to_bf16(float x) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  if (std::isnan(x)) return static_cast<uint16_t>((bits >> 16) | 0x40);
  const uint32_t rounding = 0x7fff + ((bits >> 16) & 1);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

void convert_to_bf16(const float* in, int64_t n, uint16_t* out) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) out[i] = to_bf16(in[i]);
}

bool ops_use_avx2() {
#if defined(__x86_64__)
  return has_avx2_fma();
#else
  return false;
#endif
}

namespace portable {

void softmax_row(float* row, int64_t n, float scale) {
  softmax_scalar(row, n, scale);
}

void quantize_values(const float* in, int64_t n, float inv, float zero, uint8_t* out) {
  quantize_scalar(in, n, inv, zero, out);
}

}  // namespace portable

}  // namespace tideserve::engine
