#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "../common/chromium_check.h"
#include "report/html.h"
#include "report/svg_chart.h"

using namespace v4::report;

TEST(SvgChart, NiceTicks) {
  auto t = nice_ticks(0, 97);
  ASSERT_GE(t.size(), 4u);
  EXPECT_DOUBLE_EQ(t.front(), 0);
  EXPECT_GE(t.back(), 80);
  EXPECT_EQ(tick_label(25000), "25k");
  EXPECT_EQ(tick_label(0.25), "0.25");
}

TEST(SvgChart, SeriesAreDrawnWithTheirPointCounts) {
  ChartOptions o;
  o.title = "latency <CDF>";
  o.x.label = "ms";
  o.y.label = "fraction";
  auto cdf = cdf_series("ttft", {3, 1, 2, 4});
  ASSERT_EQ(cdf.points.size(), 4u);
  EXPECT_DOUBLE_EQ(cdf.points[0].first, 1);
  EXPECT_DOUBLE_EQ(cdf.points[0].second, 0.25);
  EXPECT_DOUBLE_EQ(cdf.points[3].second, 1.0);
  Series line;
  line.name = "tok/s";
  line.points = {{1, 10}, {4, 35}, {16, 80}, {64, std::nan("")}};
  line.markers = true;
  std::string svg = render_chart(o, {cdf, line});
  EXPECT_NE(svg.find("latency &lt;CDF&gt;"), std::string::npos);
  EXPECT_NE(svg.find("data-series=\"ttft\" data-points=\"4\""), std::string::npos);
  EXPECT_NE(svg.find("data-series=\"tok/s\" data-points=\"3\""), std::string::npos);  // NaN skipped
  o.x.log = true;
  std::string logsvg = render_chart(o, {line});
  EXPECT_NE(logsvg.find(">10<"), std::string::npos);  // a decade tick
}

TEST(HtmlPage, RendersInHeadlessChromiumWithoutScriptErrors) {
  HtmlPage page("Report <test>");
  page.heading("Summary");
  page.table({"metric", "value"}, {{Cell("ttft p99"), Cell("12.5", "ttft_p99")}, {Cell("tpot"), Cell("3.25", "tpot_mean", true, "bad")}});
  page.json_data("data", R"({"x":"</script><b>"})");
  ChartOptions o;
  o.title = "chart";
  page.begin_grid();
  page.raw(render_chart(o, {cdf_series("a", {1, 2, 3})}));
  Series b;
  b.name = "b";
  b.points = {{1, 1}, {2, 4}};
  page.raw(render_chart(o, {b}));
  page.end_grid();
  page.script("document.getElementById('data').setAttribute('data-parsed', JSON.parse(document.getElementById('data').textContent).x.length);");
  std::string html = page.render();
  EXPECT_EQ(html.find("</script><b>"), std::string::npos);  // JSON cannot break out of its script
  auto path = std::filesystem::temp_directory_path() / ("v4report-" + std::to_string(::getpid()) + ".html");
  page.write(path.string());
  auto r = v4::testing::open_in_chromium(path.string());
  std::filesystem::remove(path);
  if (!r.available) GTEST_SKIP() << r.message;
  EXPECT_EQ(r.script_errors, "");
  EXPECT_EQ(r.svg_total, 2);
  EXPECT_EQ(r.svg_rendered, 2);
  EXPECT_EQ(v4::testing::text_of_key(r.dom, "ttft_p99"), "12.5");
  EXPECT_NE(r.dom.find("data-parsed=\"12\""), std::string::npos);
}

TEST(HtmlPage, ChromiumCheckReportsScriptErrors) {
  HtmlPage page("broken");
  page.script("undefinedFunction();");
  auto path = std::filesystem::temp_directory_path() / ("v4report-bad-" + std::to_string(::getpid()) + ".html");
  page.write(path.string());
  auto r = v4::testing::open_in_chromium(path.string());
  std::filesystem::remove(path);
  if (!r.available) GTEST_SKIP() << r.message;
  EXPECT_NE(r.script_errors.find("undefinedFunction"), std::string::npos);
}
