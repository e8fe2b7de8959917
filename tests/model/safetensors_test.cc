#include "tideserve/model/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <limits>

#include <gtest/gtest.h>

#include "model_test_util.h"

namespace tideserve {
namespace {

using test::f32_bytes;
using test::i64_bytes;
using test::raw_safetensors;
using test::safetensors_bytes;
using test::TempDir;
using test::TestTensor;
using test::u16_bytes;
using test::write_file;

bool inside(const SafetensorsFile& file, const uint8_t* p, size_t n) {
  const uint8_t* begin = file.mapping().data();
  const uint8_t* end = begin + file.mapping().size();
  return p >= begin && p + n <= end;
}

// ---- positive cases --------------------------------------------------------------------------

TEST(Safetensors, OpensF32TensorsAsViewsIntoTheMapping) {
  TempDir dir;
  const std::string path = dir.file("a.safetensors");
  write_file(path, safetensors_bytes({{"w", "F32", {2, 3}, f32_bytes({1, 2, 3, 4, 5, 6})},
                                      {"b", "F32", {3}, f32_bytes({-1, 0.5f, 7})}}));
  Result<SafetensorsFile> file = SafetensorsFile::open(path);
  ASSERT_TRUE(file.is_ok()) << file.status().to_string();
  ASSERT_EQ(file->tensors().size(), 2u);
  EXPECT_EQ(file->path(), path);

  const TensorView* w = file->find("w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->dtype, DType::kF32);
  EXPECT_EQ(w->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(w->numel(), 6);
  EXPECT_EQ(w->nbytes, 24u);
  EXPECT_TRUE(inside(*file, w->data, w->nbytes));
  float values[6];
  std::memcpy(values, w->data, sizeof(values));
  EXPECT_EQ(values[0], 1.0f);
  EXPECT_EQ(values[5], 6.0f);

  const TensorView* b = file->find("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->data, w->data + 24);  // back to back in the data region
  std::vector<float> converted;
  ASSERT_TRUE(convert_to_f32(*b, converted).is_ok());
  EXPECT_EQ(converted, (std::vector<float>{-1, 0.5f, 7}));

  EXPECT_EQ(file->find("missing"), nullptr);
}

TEST(Safetensors, MetadataEntryIsIgnored) {
  TempDir dir;
  const std::string path = dir.file("meta.safetensors");
  test::WriteOptions options;
  options.metadata_json = R"({"format":"pt","note":"hello"})";
  write_file(path, safetensors_bytes({{"x", "F32", {1}, f32_bytes({3})}}, options));
  Result<SafetensorsFile> file = SafetensorsFile::open(path);
  ASSERT_TRUE(file.is_ok()) << file.status().to_string();
  ASSERT_EQ(file->tensors().size(), 1u);
  EXPECT_EQ(file->tensors()[0].name, "x");
  EXPECT_EQ(file->find("__metadata__"), nullptr);
}

TEST(Safetensors, EmptyHeaderScalarAndZeroSizedTensors) {
  TempDir dir;
  const std::string empty = dir.file("empty.safetensors");
  write_file(empty, raw_safetensors("{}", ""));
  Result<SafetensorsFile> file = SafetensorsFile::open(empty);
  ASSERT_TRUE(file.is_ok()) << file.status().to_string();
  EXPECT_TRUE(file->tensors().empty());

  const std::string shapes = dir.file("shapes.safetensors");
  write_file(shapes, safetensors_bytes({{"scalar", "F32", {}, f32_bytes({2.5f})},
                                        {"none", "F32", {0, 4}, ""},
                                        {"after", "I64", {1}, i64_bytes({9})}}));
  file = SafetensorsFile::open(shapes);
  ASSERT_TRUE(file.is_ok()) << file.status().to_string();
  EXPECT_EQ(file->find("scalar")->numel(), 1);
  EXPECT_EQ(file->find("none")->numel(), 0);
  EXPECT_EQ(file->find("none")->nbytes, 0u);
  std::vector<float> out;
  ASSERT_TRUE(convert_to_f32(*file->find("scalar"), out).is_ok());
  EXPECT_EQ(out, std::vector<float>{2.5f});
}

TEST(Safetensors, HeaderWithTrailingSpacesAndEveryDTypeName) {
  TempDir dir;
  const std::string path = dir.file("dtypes.safetensors");
  std::vector<TestTensor> tensors = {
      {"f64", "F64", {1}, test::f64_bytes({1.5})}, {"f32", "F32", {1}, f32_bytes({2})},
      {"f16", "F16", {1}, u16_bytes({0x3c00})},    {"bf16", "BF16", {1}, u16_bytes({0x3f80})},
      {"i64", "I64", {1}, i64_bytes({-3})},        {"i32", "I32", {1}, std::string(4, '\1')},
      {"i16", "I16", {1}, std::string(2, '\1')},   {"i8", "I8", {1}, std::string(1, '\1')},
      {"u8", "U8", {1}, std::string(1, '\1')},     {"bool", "BOOL", {1}, std::string(1, '\1')},
  };
  test::WriteOptions options;
  options.data_offset_mod8 = 5;  // forces trailing spaces in the header
  write_file(path, safetensors_bytes(tensors, options));
  Result<SafetensorsFile> file = SafetensorsFile::open(path);
  ASSERT_TRUE(file.is_ok()) << file.status().to_string();
  ASSERT_EQ(file->tensors().size(), tensors.size());
  for (const TestTensor& t : tensors) {
    const TensorView* view = file->find(t.name);
    ASSERT_NE(view, nullptr) << t.name;
    EXPECT_STREQ(dtype_name(view->dtype), t.dtype.c_str());
    EXPECT_EQ(dtype_size(view->dtype), t.bytes.size());
  }
  std::vector<float> out;
  for (const char* name : {"f64", "f32", "f16", "bf16"}) {
    ASSERT_TRUE(convert_to_f32(*file->find(name), out).is_ok()) << name;
  }
  EXPECT_EQ(out, (std::vector<float>{1.5f, 2.0f, 1.0f, 1.0f}));
  for (const char* name : {"i64", "i32", "u8", "bool"}) {
    Status status = convert_to_f32(*file->find(name), out);
    EXPECT_FALSE(status.is_ok()) << name;
    EXPECT_NE(status.message().find("floating"), std::string::npos) << status.message();
  }
}

// The golden files of the engine tests: I64 token ids and F32 outputs in one safetensors file.
TEST(Safetensors, GoldenFileFormatWithI64AndF32) {
  TempDir dir;
  const std::string path = dir.file("golden.safetensors");
  test::WriteOptions options;
  options.metadata_json = R"({"model":"tiny","pooling":"cls"})";
  write_file(
      path,
      safetensors_bytes(
          {{"input_ids", "I64", {2, 3}, i64_bytes({101, 7, 102, 101, 8, 102})},
           {"cu_seqlens", "I64", {3}, i64_bytes({0, 3, 6})},
           {"last_hidden_state",
            "F32",
            {6, 2},
            f32_bytes({0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f, 0.9f, 1.0f, 1.1f, 1.2f})}},
          options));
  Result<SafetensorsFile> file = SafetensorsFile::open(path);
  ASSERT_TRUE(file.is_ok()) << file.status().to_string();
  const TensorView* ids = file->find("input_ids");
  ASSERT_NE(ids, nullptr);
  EXPECT_EQ(ids->dtype, DType::kI64);
  std::vector<int64_t> id_values(static_cast<size_t>(ids->numel()));
  std::memcpy(id_values.data(), ids->data, ids->nbytes);
  EXPECT_EQ(id_values, (std::vector<int64_t>{101, 7, 102, 101, 8, 102}));
  const TensorView* hidden = file->find("last_hidden_state");
  ASSERT_NE(hidden, nullptr);
  std::vector<float> values;
  ASSERT_TRUE(convert_to_f32(*hidden, values).is_ok());
  ASSERT_EQ(values.size(), 12u);
  EXPECT_EQ(values[11], 1.2f);
}

TEST(Safetensors, ConvertsUnalignedF32) {
  TempDir dir;
  const std::string path = dir.file("unaligned.safetensors");
  test::WriteOptions options;
  options.data_offset_mod8 = 2;
  write_file(path, safetensors_bytes({{"x", "F32", {3}, f32_bytes({1.25f, -2, 1e30f})}}, options));
  Result<SafetensorsFile> file = SafetensorsFile::open(path);
  ASSERT_TRUE(file.is_ok()) << file.status().to_string();
  EXPECT_NE(reinterpret_cast<uintptr_t>(file->find("x")->data) % 4, 0u);
  std::vector<float> out = {42};  // convert_to_f32 appends
  ASSERT_TRUE(convert_to_f32(*file->find("x"), out).is_ok());
  EXPECT_EQ(out, (std::vector<float>{42, 1.25f, -2, 1e30f}));
}

// ---- half precision ----------------------------------------------------------------------------

uint32_t bits_of(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof(b));
  return b;
}

TEST(HalfPrecision, F16KnownValues) {
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0xc000), -2.0f);
  EXPECT_EQ(f16_to_f32(0x3555), 0.333251953125f);
  EXPECT_EQ(f16_to_f32(0x7bff), 65504.0f);                  // largest finite
  EXPECT_EQ(f16_to_f32(0x0400), std::ldexp(1.0f, -14));     // smallest normal
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));     // smallest subnormal
  EXPECT_EQ(f16_to_f32(0x03ff), std::ldexp(1023.0f, -24));  // largest subnormal
  EXPECT_EQ(f16_to_f32(0x8001), -std::ldexp(1.0f, -24));
  EXPECT_EQ(f16_to_f32(0x0200), std::ldexp(1.0f, -15));
  EXPECT_EQ(f16_to_f32(0x7c00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(f16_to_f32(0xfc00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7e00)));
  EXPECT_TRUE(std::isnan(f16_to_f32(0xfc01)));
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7c01)));  // signalling payload stays a nan
  EXPECT_EQ(bits_of(f16_to_f32(0x0000)), 0x00000000u);
  EXPECT_EQ(bits_of(f16_to_f32(0x8000)), 0x80000000u);  // negative zero keeps its sign
}

#ifdef __FLT16_MAX__
// Every one of the 65536 bit patterns against the compiler's own _Float16 conversion.
TEST(HalfPrecision, F16ExhaustiveAgainstCompiler) {
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    _Float16 half;
    const uint16_t bits = static_cast<uint16_t>(h);
    std::memcpy(&half, &bits, sizeof(half));
    const float expected = static_cast<float>(half);
    const float actual = f16_to_f32(bits);
    if (std::isnan(expected)) {
      EXPECT_TRUE(std::isnan(actual)) << std::hex << h;
      EXPECT_EQ(std::signbit(actual), std::signbit(expected)) << std::hex << h;
    } else {
      ASSERT_EQ(bits_of(actual), bits_of(expected)) << std::hex << h;
    }
  }
}
#endif

TEST(HalfPrecision, BF16KnownValues) {
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
  EXPECT_EQ(bf16_to_f32(0xc000), -2.0f);
  EXPECT_EQ(bf16_to_f32(0x3eab), 0.333984375f);
  EXPECT_EQ(bf16_to_f32(0x7f7f), 3.3895313892515355e38f);  // largest finite
  EXPECT_EQ(bf16_to_f32(0x0080), std::numeric_limits<float>::min());
  EXPECT_EQ(bf16_to_f32(0x0001), std::ldexp(1.0f, -133));  // smallest subnormal
  EXPECT_EQ(bf16_to_f32(0x807f), -std::ldexp(127.0f, -133));
  EXPECT_EQ(bf16_to_f32(0x7f80), std::numeric_limits<float>::infinity());
  EXPECT_EQ(bf16_to_f32(0xff80), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(bf16_to_f32(0x7fc0)));
  EXPECT_TRUE(std::isnan(bf16_to_f32(0xff81)));
  EXPECT_EQ(bits_of(bf16_to_f32(0x0000)), 0x00000000u);
  EXPECT_EQ(bits_of(bf16_to_f32(0x8000)), 0x80000000u);
}

TEST(HalfPrecision, ConvertF16AndBF16Tensors) {
  TempDir dir;
  const std::string path = dir.file("half.safetensors");
  const std::vector<uint16_t> f16 = {0x3c00, 0x0001, 0x8000, 0x7c00, 0xfc00, 0x7e00};
  const std::vector<uint16_t> bf16 = {0x3f80, 0x0001, 0x8000, 0x7f80, 0xff80, 0x7fc0};
  test::WriteOptions options;
  options.data_offset_mod8 = 1;  // odd addresses: the conversion reads bytes, not uint16_t
  write_file(path, safetensors_bytes(
                       {{"h", "F16", {2, 3}, u16_bytes(f16)}, {"b", "BF16", {6}, u16_bytes(bf16)}},
                       options));
  Result<SafetensorsFile> file = SafetensorsFile::open(path);
  ASSERT_TRUE(file.is_ok()) << file.status().to_string();
  for (const auto& [name, bits] : {std::pair{"h", f16}, std::pair{"b", bf16}}) {
    std::vector<float> out;
    ASSERT_TRUE(convert_to_f32(*file->find(name), out).is_ok());
    ASSERT_EQ(out.size(), 6u);
    EXPECT_EQ(out[0], 1.0f);
    EXPECT_GT(out[1], 0.0f);
    EXPECT_EQ(bits_of(out[2]), 0x80000000u);
    EXPECT_EQ(out[3], std::numeric_limits<float>::infinity());
    EXPECT_EQ(out[4], -std::numeric_limits<float>::infinity());
    EXPECT_TRUE(std::isnan(out[5]));
  }
}

// ---- bad files: each one error naming the file and the problem ---------------------------------

class BadSafetensors : public ::testing::Test {
 protected:
  // Writes `contents`, opens it and expects an error with `phrase` and the file's path.
  void expect_error(const std::string& contents, const std::string& phrase) {
    const std::string path = dir_.file("bad.safetensors");
    write_file(path, contents);
    Result<SafetensorsFile> file = SafetensorsFile::open(path);
    ASSERT_FALSE(file.is_ok()) << "expected an error with '" << phrase << "'";
    const std::string& message = file.status().message();
    EXPECT_NE(message.find(path), std::string::npos) << message;
    EXPECT_NE(message.find(phrase), std::string::npos) << "want '" << phrase << "' in: " << message;
  }
  // A one-tensor file whose entry is `entry` (JSON text) and whose data region is `data_bytes`.
  void expect_entry_error(const std::string& entry, size_t data_bytes, const std::string& phrase) {
    expect_error(raw_safetensors("{\"t\":" + entry + "}", std::string(data_bytes, '\0')), phrase);
  }

  TempDir dir_;
};

TEST_F(BadSafetensors, MissingFile) {
  const std::string path = dir_.file("nope.safetensors");
  Result<SafetensorsFile> file = SafetensorsFile::open(path);
  ASSERT_FALSE(file.is_ok());
  EXPECT_EQ(file.status().code(), StatusCode::kNotFound);
  EXPECT_NE(file.status().message().find(path), std::string::npos);
  EXPECT_NE(file.status().message().find("not found"), std::string::npos);
}

TEST_F(BadSafetensors, Directory) {
  Result<SafetensorsFile> file = SafetensorsFile::open(dir_.path());
  ASSERT_FALSE(file.is_ok());
  EXPECT_NE(file.status().message().find(dir_.path()), std::string::npos);
}

TEST_F(BadSafetensors, FewerThanEightBytes) {
  expect_error("", "truncated");
  expect_error(std::string(7, '\0'), "truncated");
}

TEST_F(BadSafetensors, HeaderLengthBeyondFile) {
  std::string contents = raw_safetensors("{}", "");
  contents[0] = 3;  // claims 3 header bytes, only 2 follow
  expect_error(contents, "header length 3 exceeds");
  contents = std::string(8, '\xff') + "{}";
  expect_error(contents, "header length 18446744073709551615 exceeds");
}

TEST_F(BadSafetensors, HeaderLengthBeyondLimit) {
  // A sparse 150 MB file whose header length says 150 MB: refused before any parsing.
  const std::string path = dir_.file("bad.safetensors");
  const uint64_t n = 150ull * 1024 * 1024;
  std::string prefix(8, '\0');
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  write_file(path, prefix);
  ASSERT_EQ(truncate(path.c_str(), static_cast<off_t>(8 + n)), 0);
  Result<SafetensorsFile> file = SafetensorsFile::open(path);
  ASSERT_FALSE(file.is_ok());
  EXPECT_NE(file.status().message().find(path), std::string::npos);
  EXPECT_NE(file.status().message().find("byte limit"), std::string::npos)
      << file.status().message();
}

TEST_F(BadSafetensors, HeaderNotJson) {
  expect_error(raw_safetensors("not json at all", ""), "not valid JSON");
  expect_error(raw_safetensors("{\"t\":{\"dtype\":\"F32\"", ""), "not valid JSON");
  expect_error(raw_safetensors("", ""), "not valid JSON");
  expect_error(raw_safetensors(std::string("{\0}", 3), ""), "not valid JSON");
}

TEST_F(BadSafetensors, HeaderNotAnObject) {
  expect_error(raw_safetensors("[1,2,3]", ""), "not a JSON object");
  expect_error(raw_safetensors("\"text\"", ""), "not a JSON object");
  expect_error(raw_safetensors(R"({"t":[1,2]})", ""), "header entry 't' is not a JSON object");
  expect_error(raw_safetensors(R"({"__metadata__":[1]})", ""), "\"__metadata__\" is not an object");
}

TEST_F(BadSafetensors, EntryWithoutDtypeShapeOrOffsets) {
  expect_entry_error(R"({"shape":[1],"data_offsets":[0,4]})", 4, "tensor 't' has no \"dtype\"");
  expect_entry_error(R"({"dtype":"F32","data_offsets":[0,4]})", 4, "tensor 't' has no \"shape\"");
  expect_entry_error(R"({"dtype":"F32","shape":[1]})", 4, "tensor 't' has no \"data_offsets\"");
}

TEST_F(BadSafetensors, EntryWithWrongTypes) {
  expect_entry_error(R"({"dtype":32,"shape":[1],"data_offsets":[0,4]})", 4,
                     "\"dtype\" is not a string");
  expect_entry_error(R"({"dtype":"F32","shape":1,"data_offsets":[0,4]})", 4,
                     "\"shape\" is not an array");
  expect_entry_error(R"({"dtype":"F32","shape":["1"],"data_offsets":[0,4]})", 4,
                     "\"shape\" holds a value that is not a number");
  expect_entry_error(R"({"dtype":"F32","shape":[1.5],"data_offsets":[0,4]})", 4,
                     "\"shape\" holds a non-integer number");
  expect_entry_error(R"({"dtype":"F32","shape":[1],"data_offsets":"0,4"})", 4,
                     "\"data_offsets\" is not an array of two integers");
  expect_entry_error(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4,8]})", 8,
                     "\"data_offsets\" is not an array of two integers");
  expect_entry_error(R"({"dtype":"F32","shape":[1],"data_offsets":[0,null]})", 4,
                     "\"data_offsets\" holds a value that is not a number");
}

TEST_F(BadSafetensors, NegativeNumbers) {
  expect_entry_error(R"({"dtype":"F32","shape":[-1],"data_offsets":[0,4]})", 4,
                     "\"shape\" holds negative value -1");
  expect_entry_error(R"({"dtype":"F32","shape":[1],"data_offsets":[-4,0]})", 4,
                     "\"data_offsets\" holds negative value -4");
}

TEST_F(BadSafetensors, HugeNumbers) {
  // Beyond uint64: simdjson refuses the number itself.
  expect_entry_error(R"({"dtype":"F32","shape":[99999999999999999999999],"data_offsets":[0,4]})", 4,
                     "not valid JSON");
  // Fits uint64 but not int64.
  expect_entry_error(R"({"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,4]})", 4,
                     "too large");
  // Each dimension fits, the element count overflows.
  expect_entry_error(R"({"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]})",
                     4, "is too large");
  // The byte count overflows (numel fits in 64 bits, numel * 4 does not).
  expect_entry_error(R"({"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,4]})", 4,
                     "is too large");
  // Offsets near 2^64.
  expect_entry_error(
      R"({"dtype":"U8","shape":[4],"data_offsets":[18446744073709551610,18446744073709551614]})", 4,
      "beyond the data region");
}

TEST_F(BadSafetensors, OffsetsOutOfRange) {
  expect_entry_error(R"({"dtype":"F32","shape":[2],"data_offsets":[4,12]})", 8,
                     "data_offsets [4, 12] beyond the data region of 8 bytes");
}

TEST_F(BadSafetensors, DataRegionTruncated) {
  std::string contents = safetensors_bytes(
      {{"a", "F32", {4}, f32_bytes({1, 2, 3, 4})}, {"b", "F32", {2}, f32_bytes({5, 6})}});
  contents.resize(contents.size() - 1);
  expect_error(contents, "tensor 'b': data_offsets [16, 24] beyond the data region of 23 bytes");
  expect_error(contents, "truncated");
}

TEST_F(BadSafetensors, BeginAfterEnd) {
  expect_entry_error(R"({"dtype":"F32","shape":[1],"data_offsets":[8,4]})", 8,
                     "data_offsets begin 8 > end 4");
}

TEST_F(BadSafetensors, ByteSizeMismatch) {
  expect_entry_error(R"({"dtype":"F32","shape":[2,3],"data_offsets":[0,20]})", 24,
                     "byte size 20 (data_offsets [0, 20]) != 24 bytes for shape [2, 3] of F32");
  expect_entry_error(R"({"dtype":"BF16","shape":[0],"data_offsets":[0,2]})", 2, "byte size 2");
}

TEST_F(BadSafetensors, OverlappingTensors) {
  expect_error(raw_safetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                               R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                               std::string(12, '\0')),
               "overlap");
  expect_error(raw_safetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                               R"("b":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})",
                               std::string(8, '\0')),
               "tensors 'a' [0, 8] and 'b' [0, 8] overlap");
}

TEST_F(BadSafetensors, UnsupportedDtype) {
  expect_entry_error(R"({"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]})", 4,
                     "tensor 't' has unsupported dtype 'F8_E4M3'");
  expect_entry_error(R"({"dtype":"Q4","shape":[4],"data_offsets":[0,2]})", 2,
                     "unsupported dtype 'Q4'");
  expect_entry_error(R"({"dtype":"f32","shape":[1],"data_offsets":[0,4]})", 4,
                     "unsupported dtype 'f32'");
}

TEST_F(BadSafetensors, DuplicateTensorName) {
  expect_error(raw_safetensors(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                               R"("a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                               std::string(2, '\0')),
               "names tensor 'a' twice");
}

TEST_F(BadSafetensors, BinaryNamesAreEscapedInMessages) {
  expect_error(
      raw_safetensors("{\"\xc3\xa9\":{\"dtype\":\"X\",\"shape\":[],\"data_offsets\":[0,0]}}", ""),
      "tensor '\\xc3\\xa9' has unsupported dtype 'X'");
}

}  // namespace
}  // namespace tideserve
