#include "plan/catalog_file.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"

namespace v4::plan {

Catalog builtin_catalog() { return Catalog{builtin_gpus(), builtin_engines(), builtin_tariffs()}; }

namespace {

using nlohmann::json;

double num(const json& o, const char* key, double current, const std::string& where, bool allow_negative = false) {
  if (!o.contains(key)) return current;
  const json& v = o[key];
  if (!v.is_number() || !std::isfinite(v.get<double>()) || (!allow_negative && v.get<double>() < 0))
    throw InputError(where + "." + key + " must be a non-negative number");
  return v.get<double>();
}
bool flag(const json& o, const char* key, bool current, const std::string& where) {
  if (!o.contains(key)) return current;
  if (!o[key].is_boolean()) throw InputError(where + "." + key + " must be true or false");
  return o[key].get<bool>();
}
std::string str(const json& o, const char* key, const std::string& current, const std::string& where) {
  if (!o.contains(key)) return current;
  if (!o[key].is_string()) throw InputError(where + "." + key + " must be a string");
  return o[key].get<std::string>();
}

}  // namespace

void apply_catalog_json(Catalog& c, const std::string& text, const std::string& origin) {
  json j;
  try {
    j = json::parse(text);
  } catch (const std::exception& e) {
    throw InputError(origin + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw InputError(origin + ": expected a JSON object with gpus / engines / tariffs");
  const std::string as_of = str(j, "as_of", "from " + origin, origin);
  const std::string source = str(j, "source", origin, origin);
  if (j.contains("gpus")) {
    if (!j["gpus"].is_object()) throw InputError(origin + ": 'gpus' must be an object keyed by GPU name");
    for (auto& [name, o] : j["gpus"].items()) {
      const std::string where = origin + ": gpus." + name;
      if (!o.is_object()) throw InputError(where + " must be an object");
      GpuSpec* g = nullptr;
      try {
        const GpuSpec& found = find_gpu(c.gpus, name);
        for (auto& x : c.gpus)
          if (&x == &found) g = &x;
      } catch (const InputError&) {
        c.gpus.push_back(GpuSpec{});
        g = &c.gpus.back();
        g->name = name;
        g->arch = "custom";
        g->description = name + " (from " + origin + ")";
        if (!o.contains("memory_gib") || !o.contains("bandwidth_gbs"))
          throw InputError(where + ": a new GPU needs memory_gib and bandwidth_gbs");
      }
      g->memory_gib = num(o, "memory_gib", g->memory_gib, where);
      g->bandwidth_gbs = num(o, "bandwidth_gbs", g->bandwidth_gbs, where);
      g->interconnect_gbs = num(o, "interconnect_gbs", g->interconnect_gbs, where);
      g->max_per_node = static_cast<int>(num(o, "max_per_node", g->max_per_node, where));
      g->fp8 = flag(o, "fp8", g->fp8, where);
      g->fp4 = flag(o, "fp4", g->fp4, where);
      g->interconnect = str(o, "interconnect", g->interconnect, where);
      g->description = str(o, "description", g->description, where);
      g->arch = str(o, "arch", g->arch, where);
      g->platform = str(o, "platform", g->platform, where);
      if (g->memory_gib <= 0 || g->bandwidth_gbs <= 0 || g->max_per_node < 1)
        throw InputError(where + ": memory_gib, bandwidth_gbs and max_per_node must be positive");
      g->as_of = str(o, "as_of", as_of, where);
      g->source = str(o, "source", source, where);
    }
  }
  if (j.contains("engines")) {
    if (!j["engines"].is_object()) throw InputError(origin + ": 'engines' must be an object keyed by engine name");
    for (auto& [name, o] : j["engines"].items()) {
      const std::string where = origin + ": engines." + name;
      if (!o.is_object()) throw InputError(where + " must be an object");
      EngineSpec* e = nullptr;
      for (auto& x : c.engines)
        if (x.name == name) e = &x;
      if (!e) throw InputError(where + ": unknown engine (known: v4host, vllm, sglang)");
      e->kv_factor = num(o, "kv_factor", e->kv_factor, where);
      if (e->kv_factor < 1.0)
        throw InputError(where + ".kv_factor must be >= 1 (the formula is the floor)");
      e->overhead_gib = num(o, "overhead_gib", e->overhead_gib, where);
      e->mem_fraction = num(o, "mem_fraction", e->mem_fraction, where);
      if (e->mem_fraction <= 0 || e->mem_fraction > 1) throw InputError(where + ".mem_fraction must be in (0, 1]");
      e->kv_factor_source = str(o, "kv_factor_source", "set in " + origin, where);
      e->as_of = str(o, "as_of", as_of, where);
    }
  }
  if (j.contains("tariffs")) {
    if (!j["tariffs"].is_object()) throw InputError(origin + ": 'tariffs' must be an object keyed by model name");
    for (auto& [name, o] : j["tariffs"].items()) {
      const std::string where = origin + ": tariffs." + name;
      if (!o.is_object()) throw InputError(where + " must be an object");
      Tariff* t = nullptr;
      for (auto& x : c.tariffs)
        if (x.model == name) t = &x;
      if (!t) {
        c.tariffs.push_back(Tariff{});
        t = &c.tariffs.back();
        t->model = name;
      }
      t->input = num(o, "input", t->input, where);
      t->output = num(o, "output", t->output, where);
      t->cached_input = num(o, "cached_input", t->cached_input, where, true);
      t->as_of = str(o, "as_of", as_of, where);
      t->source = str(o, "source", source, where);
    }
  }
}

void load_catalog_file(Catalog& c, const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError("--catalog: cannot read '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  apply_catalog_json(c, ss.str(), path);
}

}  // namespace v4::plan
