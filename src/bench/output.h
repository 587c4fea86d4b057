// Result files and views of a bench run: the JSON document (provenance, config, per-point summary
// and every request's timings), CSV (one row per request), the terminal summary, and the
// self-contained HTML report with SVG charts.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace v4::bench {

using json = nlohmann::json;

// Terminal summary of one point (vLLM-style block plus the metric table with both names).
std::string terminal_summary(const json& point_summary, bool show_names = true);
// The metric definitions: our key, vLLM/SGLang name, AIPerf name, formula.
std::string metric_definitions_text();

void write_json(const json& doc, const std::string& path);   // throws InputError on I/O failure
void write_csv(const json& doc, const std::string& path);
void write_html(const json& doc, const std::string& path);
std::string render_html(const json& doc);

// Reads a result file written by write_json; throws InputError naming the file and problem.
json read_result(const std::string& path);

}  // namespace v4::bench
