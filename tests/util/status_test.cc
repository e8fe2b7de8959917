#include "tideserve/util/status.h"

#include <gtest/gtest.h>

namespace tideserve {
namespace {

Result<int> parse_positive(int v) {
  if (v <= 0) return invalid_argument("value must be positive");
  return v;
}

Status chain(int v) {
  TS_RETURN_IF_ERROR(parse_positive(v).status());
  return Status::ok();
}

TEST(StatusTest, ResultCarriesValueOrStatus) {
  Result<int> good = parse_positive(3);
  ASSERT_TRUE(good.is_ok());
  EXPECT_EQ(*good, 3);
  Result<int> bad = parse_positive(-1);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().to_string(), "invalid_argument: value must be positive");
}

TEST(StatusTest, ReturnIfErrorPropagates) {
  EXPECT_TRUE(chain(1).is_ok());
  EXPECT_EQ(chain(0).code(), StatusCode::kInvalidArgument);
}

TEST(StatusTest, ResultFromOkStatusIsAnError) {
  Result<int> r{Status::ok()};
  EXPECT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInternal);
}

}  // namespace
}  // namespace tideserve
