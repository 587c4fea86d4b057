// The Prometheus registry behind the server's and the router's /metrics.
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "core/prometheus.h"

using v4::Metrics;

namespace {
bool has_line(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos || text.rfind(line + "\n", 0) == 0;
}
}  // namespace

TEST(Metrics, CountersAndGaugesByLabelSet) {
  Metrics m;
  m.describe("v4host_requests_total", "counter", "Requests by outcome.");
  m.describe("v4host_queue_depth", "gauge", "Waiting requests.");
  m.inc("v4host_requests_total", {{"outcome", "ok"}});
  m.inc("v4host_requests_total", {{"outcome", "ok"}}, 2.5);
  m.inc("v4host_requests_total", {{"outcome", "error"}});
  m.set("v4host_queue_depth", 7);
  m.set("v4host_queue_depth", 3);
  EXPECT_DOUBLE_EQ(m.value("v4host_requests_total", {{"outcome", "ok"}}), 3.5);
  EXPECT_DOUBLE_EQ(m.value("v4host_requests_total", {{"outcome", "error"}}), 1);
  EXPECT_DOUBLE_EQ(m.value("v4host_requests_total", {{"outcome", "timeout"}}), 0);
  EXPECT_DOUBLE_EQ(m.value("v4host_queue_depth"), 3);
  EXPECT_DOUBLE_EQ(m.value("v4host_unknown"), 0);
  const std::string r = m.render();
  EXPECT_TRUE(has_line(r, "# HELP v4host_requests_total Requests by outcome.")) << r;
  EXPECT_TRUE(has_line(r, "# TYPE v4host_requests_total counter")) << r;
  EXPECT_TRUE(has_line(r, "v4host_requests_total{outcome=\"ok\"} 3.5")) << r;
  EXPECT_TRUE(has_line(r, "v4host_requests_total{outcome=\"error\"} 1")) << r;
  EXPECT_TRUE(has_line(r, "# TYPE v4host_queue_depth gauge")) << r;
  EXPECT_TRUE(has_line(r, "v4host_queue_depth 3")) << r;
}

TEST(Metrics, HistogramBucketsAreCumulativeWithSumAndCount) {
  Metrics m;
  m.describe_histogram("v4host_ttft_seconds", "Time to first token.", {0.005, 0.1, 1});
  for (double v : {0.003, 0.05, 0.07, 0.5, 2.0}) m.observe("v4host_ttft_seconds", {{"route", "a"}}, v);
  m.observe("v4host_ttft_seconds", 0.2);
  EXPECT_DOUBLE_EQ(m.value("v4host_ttft_seconds", {{"route", "a"}}), 5);  // observation count
  EXPECT_DOUBLE_EQ(m.value("v4host_ttft_seconds"), 1);
  const std::string r = m.render();
  EXPECT_TRUE(has_line(r, "# TYPE v4host_ttft_seconds histogram")) << r;
  // Shortest round-trip numbers in the bounds.
  EXPECT_TRUE(has_line(r, "v4host_ttft_seconds_bucket{route=\"a\",le=\"0.005\"} 1")) << r;
  EXPECT_TRUE(has_line(r, "v4host_ttft_seconds_bucket{route=\"a\",le=\"0.1\"} 3")) << r;
  EXPECT_TRUE(has_line(r, "v4host_ttft_seconds_bucket{route=\"a\",le=\"1\"} 4")) << r;
  EXPECT_TRUE(has_line(r, "v4host_ttft_seconds_bucket{route=\"a\",le=\"+Inf\"} 5")) << r;
  EXPECT_TRUE(has_line(r, "v4host_ttft_seconds_sum{route=\"a\"} 2.623")) << r;
  EXPECT_TRUE(has_line(r, "v4host_ttft_seconds_count{route=\"a\"} 5")) << r;
  EXPECT_TRUE(has_line(r, "v4host_ttft_seconds_bucket{le=\"0.1\"} 0")) << r;
  EXPECT_TRUE(has_line(r, "v4host_ttft_seconds_bucket{le=\"1\"} 1")) << r;
  EXPECT_TRUE(has_line(r, "v4host_ttft_seconds_count 1")) << r;
}

TEST(Metrics, LabelValuesAreEscapedAndUndescribedFamiliesUntyped) {
  Metrics m;
  m.inc("v4host_odd_total", {{"key", "a\"b\\c\nd"}});
  const std::string r = m.render();
  EXPECT_TRUE(has_line(r, "# TYPE v4host_odd_total untyped")) << r;
  EXPECT_TRUE(has_line(r, "v4host_odd_total{key=\"a\\\"b\\\\c\\nd\"} 1")) << r;
  EXPECT_DOUBLE_EQ(m.value("v4host_odd_total", {{"key", "a\"b\\c\nd"}}), 1);
}

TEST(Metrics, ConcurrentUpdatesAreAllCounted) {
  Metrics m;
  m.describe_histogram("v4host_h", "h", {1});
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&m, t] {
      for (int i = 0; i < 2000; ++i) {
        m.inc("v4host_c_total", {{"t", std::to_string(t % 2)}});
        m.observe("v4host_h", 0.5);
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_DOUBLE_EQ(m.value("v4host_c_total", {{"t", "0"}}) + m.value("v4host_c_total", {{"t", "1"}}), 8000);
  EXPECT_DOUBLE_EQ(m.value("v4host_h"), 8000);
}
