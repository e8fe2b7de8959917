#include "tideserve/model/safetensors.h"

#include <simdjson.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <unordered_set>
#include <utility>

#include <fmt/format.h>

namespace tideserve {
namespace {

// The reference implementation refuses headers above 100 MB; so do we (a header that large is
// corruption, and parsing it would cost memory before any real check).
constexpr uint64_t kMaxHeaderBytes = 100ull * 1024 * 1024;
constexpr size_t kHeaderLengthBytes = 8;

struct DTypeEntry {
  DType dtype;
  const char* name;
  size_t size;
};

constexpr DTypeEntry kDTypes[] = {
    {DType::kF64, "F64", 8},   {DType::kF32, "F32", 4}, {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2}, {DType::kI64, "I64", 8}, {DType::kI32, "I32", 4},
    {DType::kI16, "I16", 2},   {DType::kI8, "I8", 1},   {DType::kU8, "U8", 1},
    {DType::kBool, "BOOL", 1},
};

const DTypeEntry* find_dtype(std::string_view name) {
  for (const DTypeEntry& entry : kDTypes) {
    if (name == entry.name) return &entry;
  }
  return nullptr;
}

const DTypeEntry& dtype_entry(DType dtype) {
  for (const DTypeEntry& entry : kDTypes) {
    if (entry.dtype == dtype) return entry;
  }
  TS_CHECK(false && "unknown DType value");
  return kDTypes[0];
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Quotes a name for an error message, cutting very long (possibly binary) names short.
std::string quote_name(std::string_view name) {
  constexpr size_t kMax = 80;
  std::string out = "'";
  for (size_t i = 0; i < name.size() && i < kMax; ++i) {
    unsigned char c = static_cast<unsigned char>(name[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("\\x{:02x}", c);
    }
  }
  if (name.size() > kMax) out += "...";
  out += "'";
  return out;
}

// A JSON number that must be a non-negative integer (shape dims, offsets).
Result<uint64_t> non_negative_integer(simdjson::dom::element value) {
  switch (value.type()) {
    case simdjson::dom::element_type::UINT64:
      return value.get_uint64().value_unsafe();
    case simdjson::dom::element_type::INT64: {
      int64_t v = value.get_int64().value_unsafe();
      if (v < 0) return invalid_argument(fmt::format("negative value {}", v));
      return static_cast<uint64_t>(v);
    }
    case simdjson::dom::element_type::DOUBLE:
      return invalid_argument("a non-integer number");
    default:
      return invalid_argument("a value that is not a number");
  }
}

std::string shape_string(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

// Parses one tensor entry of the header into `view` (data pointer not yet set).
Status parse_entry(std::string_view name, simdjson::dom::element entry, TensorView& view,
                   uint64_t& begin, uint64_t& end) {
  const std::string q = quote_name(name);
  simdjson::dom::object obj;
  if (entry.get_object().get(obj) != simdjson::SUCCESS) {
    return invalid_argument(fmt::format("header entry {} is not a JSON object", q));
  }
  view.name = std::string(name);

  // dtype
  simdjson::dom::element dtype_el;
  if (obj.at_key("dtype").get(dtype_el) != simdjson::SUCCESS) {
    return invalid_argument(fmt::format("tensor {} has no \"dtype\"", q));
  }
  std::string_view dtype_str;
  if (dtype_el.get_string().get(dtype_str) != simdjson::SUCCESS) {
    return invalid_argument(fmt::format("tensor {}: \"dtype\" is not a string", q));
  }
  const DTypeEntry* dt = find_dtype(dtype_str);
  if (dt == nullptr) {
    return invalid_argument(fmt::format(
        "tensor {} has unsupported dtype {} (supported: F64, F32, F16, BF16, I64, I32, I16, I8, "
        "U8, BOOL)",
        q, quote_name(dtype_str)));
  }
  view.dtype = dt->dtype;

  // shape
  simdjson::dom::element shape_el;
  if (obj.at_key("shape").get(shape_el) != simdjson::SUCCESS) {
    return invalid_argument(fmt::format("tensor {} has no \"shape\"", q));
  }
  simdjson::dom::array shape_arr;
  if (shape_el.get_array().get(shape_arr) != simdjson::SUCCESS) {
    return invalid_argument(fmt::format("tensor {}: \"shape\" is not an array", q));
  }
  uint64_t numel = 1;
  bool numel_overflow = false;
  for (simdjson::dom::element dim_el : shape_arr) {
    Result<uint64_t> dim = non_negative_integer(dim_el);
    if (!dim.is_ok()) {
      return invalid_argument(
          fmt::format("tensor {}: \"shape\" holds {}", q, dim.status().message()));
    }
    if (*dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return invalid_argument(fmt::format("tensor {}: shape dimension {} is too large", q, *dim));
    }
    view.shape.push_back(static_cast<int64_t>(*dim));
    if (__builtin_mul_overflow(numel, *dim, &numel)) numel_overflow = true;
  }
  uint64_t expected_bytes = 0;
  if (numel_overflow || __builtin_mul_overflow(numel, dt->size, &expected_bytes) ||
      expected_bytes > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    // A zero dimension makes the product 0 even after an intermediate overflow; only a real
    // overflow of a non-empty tensor is an error.
    bool has_zero = std::find(view.shape.begin(), view.shape.end(), int64_t{0}) != view.shape.end();
    if (!has_zero) {
      return invalid_argument(
          fmt::format("tensor {}: shape {} is too large", q, shape_string(view.shape)));
    }
    expected_bytes = 0;
  }

  // data_offsets
  simdjson::dom::element offsets_el;
  if (obj.at_key("data_offsets").get(offsets_el) != simdjson::SUCCESS) {
    return invalid_argument(fmt::format("tensor {} has no \"data_offsets\"", q));
  }
  simdjson::dom::array offsets_arr;
  if (offsets_el.get_array().get(offsets_arr) != simdjson::SUCCESS || offsets_arr.size() != 2) {
    return invalid_argument(
        fmt::format("tensor {}: \"data_offsets\" is not an array of two integers", q));
  }
  uint64_t offsets[2] = {0, 0};
  size_t i = 0;
  for (simdjson::dom::element off_el : offsets_arr) {
    Result<uint64_t> off = non_negative_integer(off_el);
    if (!off.is_ok()) {
      return invalid_argument(
          fmt::format("tensor {}: \"data_offsets\" holds {}", q, off.status().message()));
    }
    offsets[i++] = *off;
  }
  begin = offsets[0];
  end = offsets[1];
  if (begin > end) {
    return invalid_argument(
        fmt::format("tensor {}: data_offsets begin {} > end {}", q, begin, end));
  }
  if (end - begin != expected_bytes) {
    return invalid_argument(fmt::format(
        "tensor {}: byte size {} (data_offsets [{}, {}]) != {} bytes for shape {} of {}", q,
        end - begin, begin, end, expected_bytes, shape_string(view.shape), dt->name));
  }
  view.nbytes = static_cast<size_t>(expected_bytes);
  return Status::ok();
}

}  // namespace

const char* dtype_name(DType dtype) {
  return dtype_entry(dtype).name;
}

size_t dtype_size(DType dtype) {
  return dtype_entry(dtype).size;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Result<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  Result<MappedFile> mapped = MappedFile::open(path);
  if (!mapped.is_ok()) return mapped.status();

  SafetensorsFile file;
  file.file_ = std::move(mapped).value();
  const uint8_t* base = file.file_.data();
  const size_t size = file.file_.size();
  auto error = [&](const std::string& problem) { return invalid_argument(path + ": " + problem); };

  if (size < kHeaderLengthBytes) {
    return error(fmt::format(
        "truncated safetensors file: {} bytes, fewer than the 8-byte header length", size));
  }
  const uint64_t header_len = read_u64_le(base);
  if (header_len > size - kHeaderLengthBytes) {
    return error(fmt::format(
        "truncated or corrupt safetensors file: header length {} exceeds the {} bytes after the "
        "length field",
        header_len, size - kHeaderLengthBytes));
  }
  if (header_len > kMaxHeaderBytes) {
    return error(fmt::format("safetensors header length {} exceeds the {} byte limit", header_len,
                             kMaxHeaderBytes));
  }
  const char* header = reinterpret_cast<const char*>(base + kHeaderLengthBytes);
  const uint8_t* data_start = base + kHeaderLengthBytes + header_len;
  const uint64_t data_size = size - kHeaderLengthBytes - header_len;

  simdjson::dom::parser parser;
  simdjson::dom::element root;
  simdjson::error_code err = parser.parse(header, static_cast<size_t>(header_len)).get(root);
  if (err != simdjson::SUCCESS) {
    return error(
        fmt::format("safetensors header is not valid JSON: {}", simdjson::error_message(err)));
  }
  simdjson::dom::object root_obj;
  if (root.get_object().get(root_obj) != simdjson::SUCCESS) {
    return error("safetensors header is not a JSON object");
  }

  struct Span {
    uint64_t begin, end;
    size_t index;
  };
  std::vector<Span> spans;
  std::unordered_set<std::string_view> seen;
  for (auto field : root_obj) {
    std::string_view name = field.key;
    if (!seen.insert(name).second) {
      return error(fmt::format("safetensors header names tensor {} twice", quote_name(name)));
    }
    if (name == "__metadata__") {
      if (!field.value.is_object()) return error("safetensors \"__metadata__\" is not an object");
      continue;
    }
    TensorView view;
    uint64_t begin = 0, end = 0;
    Status status = parse_entry(name, field.value, view, begin, end);
    if (!status.is_ok()) return error(status.message());
    if (end > data_size) {
      return error(fmt::format(
          "tensor {}: data_offsets [{}, {}] beyond the data region of {} bytes (file truncated?)",
          quote_name(name), begin, end, data_size));
    }
    view.data = data_start + begin;
    spans.push_back({begin, end, file.tensors_.size()});
    file.tensors_.push_back(std::move(view));
  }

  // No two non-empty tensors may share bytes.
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const Span* previous = nullptr;
  for (const Span& span : spans) {
    if (span.begin == span.end) continue;
    if (previous != nullptr && span.begin < previous->end) {
      return error(fmt::format("tensors {} [{}, {}] and {} [{}, {}] overlap",
                               quote_name(file.tensors_[previous->index].name), previous->begin,
                               previous->end, quote_name(file.tensors_[span.index].name),
                               span.begin, span.end));
    }
    previous = &span;
  }
  return file;
}

const TensorView* SafetensorsFile::find(std::string_view name) const {
  for (const TensorView& tensor : tensors_) {
    if (tensor.name == name) return &tensor;
  }
  return nullptr;
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t bits = 0;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);  // inf / nan (payload kept)
  } else if (exponent != 0) {
    bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;  // signed zero
  } else {
    // Subnormal half: value = mantissa * 2^-24. Normalize into an fp32 normal.
    int shift = 0;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      ++shift;
    }
    mantissa &= 0x3ffu;
    const uint32_t exp32 = static_cast<uint32_t>(127 - 15 + 1 - shift);
    bits = sign | (exp32 << 23) | (mantissa << 13);
  }
  float out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}

float bf16_to_f32(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}

Status convert_to_f32(const TensorView& tensor, std::vector<float>& out) {
  const int64_t n = tensor.numel();
  const uint8_t* p = tensor.data;
  if (n < 0 || static_cast<uint64_t>(n) * dtype_size(tensor.dtype) != tensor.nbytes) {
    return invalid_argument(fmt::format("tensor {}: byte size {} does not match its shape",
                                        quote_name(tensor.name), tensor.nbytes));
  }
  const size_t count = static_cast<size_t>(n);
  const size_t first = out.size();
  switch (tensor.dtype) {
    case DType::kF32:
      out.resize(first + count);
      if (count > 0) std::memcpy(out.data() + first, p, count * sizeof(float));
      return Status::ok();
    case DType::kF16:
    case DType::kBF16: {
      out.resize(first + count);
      const bool is_f16 = tensor.dtype == DType::kF16;
      for (size_t i = 0; i < count; ++i) {
        const uint16_t v = static_cast<uint16_t>(p[2 * i] | (p[2 * i + 1] << 8));
        out[first + i] = is_f16 ? f16_to_f32(v) : bf16_to_f32(v);
      }
      return Status::ok();
    }
    case DType::kF64: {
      out.resize(first + count);
      for (size_t i = 0; i < count; ++i) {
        double v;
        std::memcpy(&v, p + 8 * i, sizeof(v));
        out[first + i] = static_cast<float>(v);
      }
      return Status::ok();
    }
    default:
      return invalid_argument(fmt::format("tensor {} has dtype {}; expected a floating dtype",
                                          quote_name(tensor.name), dtype_name(tensor.dtype)));
  }
}

}  // namespace tideserve
