#include "tideserve/server/json_writer.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

namespace tideserve::server {
namespace {

TEST(JsonWriterTest, FloatsRoundTripAndNonFiniteIsNull) {
  std::string out;
  std::vector<float> v = {0.1f, -2.5f, 1e-8f, 3.0f};
  append_json_floats(out, v);
  EXPECT_EQ(out, "[0.1,-2.5,1e-08,3]");
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    out.clear();
    append_json_float(out, bad);
    EXPECT_EQ(out, "null") << bad;
  }
  out.clear();
  append_json_floats(out, std::vector<float>{1.f, -std::numeric_limits<float>::infinity(), 2.f});
  EXPECT_EQ(out, "[1,null,2]");
  JsonWriter w;
  w.begin_array().value(std::numeric_limits<double>::infinity()).value(-0.0).end_array();
  EXPECT_EQ(std::move(w).take(), "[null,-0]");
}

TEST(JsonWriterTest, PythonNestedListMatchesPythonRepr) {
  // Python: str([[float(np.float32(0.1)), -2.5, 1e-05, 3.0, 1e16]])
  std::vector<float> v = {0.1f, -2.5f, 1e-5f, 3.0f, 1e16f};
  EXPECT_EQ(python_nested_list(v),
            "[[0.10000000149011612, -2.5, 9.999999747378752e-06, 3.0, 1.0000000272564224e+16]]");
  EXPECT_EQ(python_nested_list({}), "[[]]");
}

TEST(JsonWriterTest, Base64OfRawBytes) {
  auto b64 = [](std::string s) {
    return base64_encode(
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
  };
  EXPECT_EQ(b64(""), "");
  EXPECT_EQ(b64("f"), "Zg==");
  EXPECT_EQ(b64("fo"), "Zm8=");
  EXPECT_EQ(b64("foo"), "Zm9v");
  EXPECT_EQ(b64("foobar"), "Zm9vYmFy");
  float one = 1.0f;
  uint8_t bytes[4];
  std::memcpy(bytes, &one, 4);
  EXPECT_EQ(base64_encode(bytes), "AACAPw==");
}

TEST(JsonWriterTest, ObjectsAndArraysGetTheirCommasAndQuotes) {
  JsonWriter w;
  w.begin_object().field("a", 1).field("s", "x\"y").key("empty").begin_array().end_array();
  w.key("list").begin_array().value(true).null().value(int64_t{-3}).value(0.5).end_array();
  w.key("nested").begin_object().field("n", size_t{7}).end_object();
  w.key("v").floats(std::vector<float>{1.5f, -2.f}).key("raw").raw("12.345");
  w.end_object();
  EXPECT_EQ(std::move(w).take(),
            R"({"a":1,"s":"x\"y","empty":[],"list":[true,null,-3,0.5],"nested":{"n":7},)"
            R"("v":[1.5,-2],"raw":12.345})");
  JsonWriter rows;
  rows.begin_array();
  for (int i = 0; i < 3; ++i) rows.begin_array().value(i).end_array();
  rows.end_array();
  EXPECT_EQ(std::move(rows).take(), "[[0],[1],[2]]");
}

}  // namespace
}  // namespace tideserve::server
