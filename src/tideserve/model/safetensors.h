// safetensors reader: the file is memory-mapped and tensors are views into the mapping.
// Format: 8-byte little-endian header length N, N bytes of JSON header
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the data region; offsets are relative to the start of the data region.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tideserve/util/mapped_file.h"
#include "tideserve/util/status.h"

namespace tideserve {

enum class DType { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

const char* dtype_name(DType dtype);  // as spelled in the header: "F32", "BF16", ...
size_t dtype_size(DType dtype);       // bytes per element

struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // into the mapping; may be unaligned for the element type
  size_t nbytes = 0;

  int64_t numel() const;
};

class SafetensorsFile {
 public:
  // Maps and validates the whole header. Every problem is an error whose message names the file
  // and the problem: missing/truncated file, header length beyond the file, bad header JSON,
  // unknown dtype, shape/byte-size mismatch, offsets out of range or overlapping.
  static Result<SafetensorsFile> open(const std::string& path);

  const std::string& path() const { return file_.path(); }
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* find(std::string_view name) const;  // nullptr when absent
  // The whole mapping (tests use it to check that views point into the file).
  const MappedFile& mapping() const { return file_; }

 private:
  MappedFile file_;
  std::vector<TensorView> tensors_;
};

// Converts a floating tensor (F32, F16, BF16, F64) to fp32 values, appended to `out`.
// Errors for non-floating dtypes.
Status convert_to_f32(const TensorView& tensor, std::vector<float>& out);

// Half-precision helpers (exact conversions to fp32).
float f16_to_f32(uint16_t h);
float bf16_to_f32(uint16_t b);

}  // namespace tideserve
