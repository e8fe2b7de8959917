// Vector helpers shared by the engine's AVX2 loops. The build targets baseline x86-64, so every
// function here is compiled for AVX2 + FMA by its own attribute and called only where
// has_avx2_fma() says the CPU has both.
#pragma once

#if defined(__x86_64__)
#include <immintrin.h>

namespace tideserve::engine {

inline bool has_avx2_fma() {
  static const bool yes = [] {
    __builtin_cpu_init();  // safe whenever this first runs, static initialization included
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return yes;
}

// e^x for 8 floats: x = k ln2 + r with |r| <= ln2 / 2 (ln2 split in two constants so k ln2 is
// exact), e^r by a degree-7 polynomial (the classic Cephes expf coefficients, ~1 ulp), times
// 2^k built in the exponent bits. Below -87.3 (where 2^k would leave the normal range) the
// result is 0, above 88.3 it saturates.
__attribute__((target("avx2,fma"))) inline __m256 exp_avx2(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.3f);
  const __m256 in_range = _mm256_cmp_ps(x, lo, _CMP_GE_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, lo), _mm256_set1_ps(88.3f));
  const __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
  p = _mm256_add_ps(p, _mm256_set1_ps(1.f));
  const __m256i bits =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
  return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(bits)), in_range);
}

// GELU with erf, 0.5 x (1 + erf(x / sqrt 2)). erf(z) for z >= 0 is Abramowitz and Stegun's
// 7.1.26, 1 - t (a1 + t (a2 + ... a5)) e^(-z^2) with t = 1 / (1 + p z), absolute error below
// 1.5e-7; erf is odd. A NaN stays NaN.
__attribute__((target("avx2,fma"))) inline __m256 gelu_erf_avx2(__m256 x) {
  const __m256 sign_mask = _mm256_set1_ps(-0.f);
  const __m256 z = _mm256_mul_ps(_mm256_andnot_ps(sign_mask, x), _mm256_set1_ps(0.70710678f));
  const __m256 t = _mm256_div_ps(
      _mm256_set1_ps(1.f), _mm256_fmadd_ps(z, _mm256_set1_ps(0.3275911f), _mm256_set1_ps(1.f)));
  __m256 p = _mm256_set1_ps(1.061405429f);
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.453152027f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.284496736f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
  p = _mm256_mul_ps(p, t);
  const __m256 e = exp_avx2(_mm256_mul_ps(_mm256_xor_ps(z, sign_mask), z));
  __m256 erf = _mm256_fnmadd_ps(p, e, _mm256_set1_ps(1.f));
  erf = _mm256_or_ps(erf, _mm256_and_ps(x, sign_mask));  // erf(-z) = -erf(z)
  const __m256 half_x = _mm256_mul_ps(x, _mm256_set1_ps(0.5f));
  return _mm256_fmadd_ps(half_x, erf, half_x);
}

// GELU with tanh, 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))), where
// 1 + tanh(u) = 2 - 2 / (1 + e^(2u)); e^(2u) saturates or reaches 0 far from 0, so the large
// magnitudes land on x and 0 as they should.
__attribute__((target("avx2,fma"))) inline __m256 gelu_tanh_avx2(__m256 x) {
  const __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
  const __m256 u = _mm256_mul_ps(_mm256_fmadd_ps(x3, _mm256_set1_ps(0.044715f), x),
                                 _mm256_set1_ps(0.7978845608f));
  const __m256 e = exp_avx2(_mm256_add_ps(u, u));
  const __m256 one_plus_tanh =
      _mm256_sub_ps(_mm256_set1_ps(2.f),
                    _mm256_div_ps(_mm256_set1_ps(2.f), _mm256_add_ps(e, _mm256_set1_ps(1.f))));
  return _mm256_mul_ps(_mm256_mul_ps(x, _mm256_set1_ps(0.5f)), one_plus_tanh);
}

}  // namespace tideserve::engine
#endif
