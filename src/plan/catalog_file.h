// All catalogs together (GPUs, engines, tariffs) and overriding them from a JSON file:
//   { "as_of": "2026-12-01", "source": "our procurement sheet",
//     "gpus":    { "H100": { "memory_gib": 79.6 }, "MI355X": { "memory_gib": 288, "bandwidth_gbs": 8000,
//                                                             "fp8": true, "fp4": true } },
//     "engines": { "vllm": { "kv_factor": 1.35, "kv_factor_source": "measured 2026-12-01" } },
//     "tariffs": { "v4-flash": { "input": 0.14, "output": 0.28, "cached_input": 0.028 } } }
// Fields not given keep their built-in values; new names add entries (GPUs then need at least
// memory_gib and bandwidth_gbs). Every changed entry is re-dated with the file's as_of.
#pragma once
#include <string>
#include <vector>

#include "plan/catalog_engines.h"
#include "plan/catalog_gpus.h"

namespace v4::plan {

struct Catalog {
  std::vector<GpuSpec> gpus;
  std::vector<EngineSpec> engines;
  std::vector<Tariff> tariffs;
};

Catalog builtin_catalog();
// Throws InputError on unreadable files, bad JSON or bad values.
void apply_catalog_json(Catalog& c, const std::string& json_text, const std::string& origin);
void load_catalog_file(Catalog& c, const std::string& path);

}  // namespace v4::plan
