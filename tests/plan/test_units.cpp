#include <gtest/gtest.h>

#include "core/error.h"
#include "plan/units.h"

using namespace v4::plan;

TEST(PlanUnits, ContextSuffixesAreBinary) {
  EXPECT_EQ(parse_context("131072", "--context"), 131072);
  EXPECT_EQ(parse_context("128k", "--context"), 131072);
  EXPECT_EQ(parse_context("128K", "--context"), 131072);
  EXPECT_EQ(parse_context("1M", "--context"), 1048576);
  EXPECT_EQ(parse_context("0.5M", "--context"), 524288);
  EXPECT_THROW(parse_context("0", "--context"), v4::InputError);
  EXPECT_THROW(parse_context("-5k", "--context"), v4::InputError);
  EXPECT_THROW(parse_context("12q", "--context"), v4::InputError);
  EXPECT_THROW(parse_context("", "--context"), v4::InputError);
}

TEST(PlanUnits, VolumeSuffixesAreDecimal) {
  EXPECT_DOUBLE_EQ(parse_volume("200M", "--tokens-per-month"), 200e6);
  EXPECT_DOUBLE_EQ(parse_volume("1.5B", "--tokens-per-month"), 1.5e9);
  EXPECT_DOUBLE_EQ(parse_volume("10k", "--tokens-per-month"), 10e3);
  EXPECT_DOUBLE_EQ(parse_volume("5000000", "--tokens-per-month"), 5e6);
  EXPECT_DOUBLE_EQ(parse_volume("0", "--tokens-per-month"), 0);
  EXPECT_THROW(parse_volume("-5M", "--tokens-per-month"), v4::InputError);
  EXPECT_THROW(parse_volume("lots", "--tokens-per-month"), v4::InputError);
  EXPECT_THROW(parse_volume("nan", "--tokens-per-month"), v4::InputError);
}

TEST(PlanUnits, FractionsAndPrices) {
  EXPECT_DOUBLE_EQ(parse_fraction("0.75", "--input-share"), 0.75);
  EXPECT_THROW(parse_fraction("1.2", "--input-share"), v4::InputError);
  EXPECT_THROW(parse_nonneg("-0.1", "--price-input"), v4::InputError);
  EXPECT_THROW(parse_nonneg("1M", "--price-input"), v4::InputError);
}

TEST(PlanUnits, Formatting) {
  EXPECT_EQ(fmt_usd(5169.6), "$5,169.60");
  EXPECT_EQ(fmt_usd(0.004), "$0.00");
  EXPECT_EQ(fmt_tokens(1.5e9), "1.5B");
  EXPECT_EQ(fmt_tokens(200e6), "200M");
  EXPECT_EQ(fmt_context(1048576), "1M");
  EXPECT_EQ(fmt_context(131072), "128K");
  EXPECT_EQ(fmt_context(100000), "100,000");
  EXPECT_EQ(fmt_int(1048576), "1,048,576");
}
