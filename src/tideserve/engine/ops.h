// Small stateless CPU ops of the encoder. Each writes into an output argument; rows are
// independent, so each op parallelizes over rows with the engine's OpenMP thread count.
#pragma once

#include <cstdint>

namespace tideserve::engine {

// out[r] = LayerNorm(in[r]) * gamma + beta for `rows` rows of `cols` values; in may equal out.
void layer_norm(const float* in, const float* gamma, const float* beta, float eps, int64_t rows,
                int64_t cols, float* out, int threads);

// In-place numerically stable softmax of one row of `n` values, scaled by `scale` first.
void softmax_row(float* row, int64_t n, float scale);

// out[i] += in[i] for n values.
void add_inplace(float* out, const float* in, int64_t n);

}  // namespace tideserve::engine

namespace tideserve::engine {

// Asymmetric dynamic quantization of `n` values to u8 with one scale and zero point:
// x ~= scale * (q - zero_point). The range always includes 0, so 0 is exact.
struct QuantParams {
  float scale = 1.f;
  int32_t zero_point = 0;
};
QuantParams quantize_u8(const float* in, int64_t n, uint8_t* out);

// fp32 -> bfloat16 bit patterns, round to nearest even (NaN stays NaN).
uint16_t to_bf16(float x);
void convert_to_bf16(const float* in, int64_t n, uint16_t* out);

// softmax_row and quantize_u8 take an AVX2 path where the CPU has AVX2 and FMA, else these
// portable loops; they are named here so that the tests run them on every machine.
bool ops_use_avx2();
namespace portable {
void softmax_row(float* row, int64_t n, float scale);
// out[i] = round_half_even(clamp(in[i] * inv + zero, 0, 255)), a NaN landing on 0; the AVX2 path
// computes in[i] * inv + zero with one rounding (FMA), this one with two.
void quantize_values(const float* in, int64_t n, float inv, float zero, uint8_t* out);
}  // namespace portable

}  // namespace tideserve::engine
