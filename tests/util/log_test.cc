#include "tideserve/util/log.h"

#include <gtest/gtest.h>

namespace tideserve {
namespace {

TEST(LogTest, OneJsonObjectPerLineWithEscapedFields) {
  std::string line =
      format_log_line(LogLevel::kInfo, "model_loaded",
                      {{"model", "a\"b\n"}, {"duration_ms", 12.5}, {"layers", 2}, {"ok", true}});
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1);  // exactly one line
  EXPECT_NE(line.find("\"event\":\"model_loaded\""), std::string::npos);
  EXPECT_NE(line.find("\"model\":\"a\\\"b\\n\""), std::string::npos);
  EXPECT_NE(line.find("\"duration_ms\":12.500"), std::string::npos);
  EXPECT_NE(line.find("\"layers\":2"), std::string::npos);
  EXPECT_NE(line.find("\"ok\":true"), std::string::npos);
  EXPECT_EQ(line.rfind("{\"ts\":\"", 0), 0u);
}

TEST(LogTest, ControlCharactersAreEscaped) {
  std::string out;
  append_json_string(out, std::string_view("\x01x\t", 3));
  EXPECT_EQ(out, "\"\\u0001x\\t\"");
}

}  // namespace
}  // namespace tideserve

namespace tideserve {
namespace {

TEST(LogTest, LevelsParseAndFilter) {
  LogLevel level = LogLevel::kInfo;
  EXPECT_TRUE(parse_log_level("debug", level));
  EXPECT_EQ(level, LogLevel::kDebug);
  EXPECT_TRUE(parse_log_level("warning", level));
  EXPECT_EQ(level, LogLevel::kWarning);
  EXPECT_FALSE(parse_log_level("loud", level));
  set_log_level(LogLevel::kWarning);
  EXPECT_FALSE(log_enabled(LogLevel::kInfo));
  EXPECT_TRUE(log_enabled(LogLevel::kError));
  set_log_level(LogLevel::kInfo);
  EXPECT_TRUE(log_enabled(LogLevel::kInfo));
  EXPECT_FALSE(log_enabled(LogLevel::kDebug));
}

}  // namespace
}  // namespace tideserve
