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

}  // namespace tideserve::engine
