#include "plan/check.h"

#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/safetensors.h"
#include "plan/units.h"

namespace v4::plan {

namespace fs = std::filesystem;

CheckRequest example_request() {
  CheckRequest r;
  r.model = "v4-flash";
  r.gpus = "2xH200";
  r.context = 131072;
  r.concurrency = 8;
  r.engine = "vllm";
  r.cost.tokens_per_month = 200e6;
  r.cost.gpu_hourly = 7.18;
  r.example = true;
  return r;
}

namespace {

void load_model(const CheckRequest& req, ModelConfig* m, WeightBytes* w) {
  if (req.model_dir.empty()) {
    *m = find_model(req.model);
    *w = weights_from_schema(*m);
    return;
  }
  const fs::path dir(req.model_dir);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw InputError("--model-dir: '" + req.model_dir + "' is not a directory");
  std::ifstream in(dir / "config.json");
  if (!in) throw InputError("--model-dir: no config.json in '" + req.model_dir + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  *m = model_config_from_json_text(ss.str(), (dir / "config.json").string());
  m->name = dir.filename().empty() ? dir.parent_path().filename().string() : dir.filename().string();
  m->description = "checkpoint in " + req.model_dir;
  bool has_shards = false;
  for (auto& e : fs::directory_iterator(dir, ec))
    if (e.path().extension() == ".safetensors") has_shards = true;
  if (!has_shards) {
    *w = weights_from_schema(*m);
    w->source = "no .safetensors shards in the directory: computed from config.json and the V4 tensor schema";
    return;
  }
  TensorStore store(req.model_dir);  // headers only are read; the data stays mapped, untouched
  // Expert format from the tensors (spec §8 item 6).
  if (const TensorView* t = store.find("layers.0.ffn.experts.0.w1.weight")) {
    m->expert_format = t->dtype == DType::I8 ? ExpertFormat::FP4 : ExpertFormat::FP8;
  }
  if (const TensorView* s = store.find("layers.0.attn.wq_a.scale")) m->scale_bytes = static_cast<int>(dtype_size(s->dtype));
  *w = weights_from_store(store, *m);
}

}  // namespace

CheckReport run_check(const CheckRequest& req) {
  CheckReport r;
  r.request = req;
  // Validate plain numbers first: these are the user's mistakes most likely to happen.
  if (req.concurrency < 1) throw InputError("--concurrency must be at least 1");
  if (req.cost.tokens_per_month < 0) throw InputError("--tokens-per-month cannot be negative");
  if (req.cost.input_share < 0 || req.cost.input_share > 1) throw InputError("--input-share must be between 0 and 1");
  if (req.cost.cached_share < 0 || req.cost.cached_share > 1) throw InputError("--cached-share must be between 0 and 1");
  if (req.cost.hours_per_month <= 0 || req.cost.hours_per_month > 745)
    throw InputError("--hours-per-month must be in (0, 745] (a 31-day month has 744 hours)");
  if (req.parallel != "auto" && req.parallel != "tp" && req.parallel != "dp")
    throw InputError("--parallel must be auto, tp or dp");

  Catalog cat = builtin_catalog();
  if (!req.catalog_file.empty()) load_catalog_file(cat, req.catalog_file);
  for (auto& s : req.gpu_specs) add_gpu_spec(cat.gpus, s);

  load_model(req, &r.model, &r.weights);
  CheckRequest& rq = r.request;
  if (!rq.context_given && rq.context > r.model.max_context) rq.context = r.model.max_context;
  if (rq.context < 1) throw InputError("--context must be at least 1 token");
  if (rq.context > r.model.max_context)
    throw InputError(fmt::format("--context {} is impossible: {} supports at most {} tokens ({})", fmt_int(rq.context),
                                 r.model.name, fmt_int(r.model.max_context), fmt_context(r.model.max_context)));
  r.gpus = parse_gpus(cat.gpus, req.gpus);
  r.engine = find_engine(cat.engines, req.engine);
  r.kv = find_kv_format(req.kv_dtype.empty() ? r.engine.default_kv_dtype : req.kv_dtype);

  FitInput& fi = r.fit_input;
  fi.model = r.model;
  fi.weights = r.weights;
  fi.gpus = r.gpus;
  fi.engine = r.engine;
  fi.kv = r.kv;
  fi.context = rq.context;
  fi.concurrency = req.concurrency;
  fi.parallel = req.parallel;
  fi.mtp = req.mtp;
  r.fit = compute_fit(fi);
  r.precision = check_precision(r.model, r.gpus.gpu, r.engine);
  r.recommended_model = r.model.name;
  if (!r.precision.recommended_model.empty() && req.model_dir.empty()) {
    FitInput alt = fi;
    alt.model = find_model(r.precision.recommended_model);
    alt.weights = weights_from_schema(alt.model);
    r.alt_fit = compute_fit(alt);
    if (r.precision.status == "unsupported" || r.alt_fit->fits) r.recommended_model = alt.model.name;
  }

  // Cost: prices from the flags, else from the dated tariff catalog.
  r.cost_input = req.cost;
  const Tariff* t = find_tariff(cat.tariffs, r.model.name);
  std::vector<std::string> from_catalog;
  if (r.cost_input.price_input < 0 || r.cost_input.price_output < 0) {
    if (!t)
      throw InputError("no hosted tariff known for " + r.model.name +
                       ": pass --price-input and --price-output (USD per million tokens)");
    if (r.cost_input.price_input < 0) { r.cost_input.price_input = t->input; from_catalog.push_back("input"); }
    if (r.cost_input.price_output < 0) { r.cost_input.price_output = t->output; from_catalog.push_back("output"); }
  }
  if (r.cost_input.price_cached_input < 0 && t && t->cached_input >= 0 && r.cost_input.cached_share > 0) {
    r.cost_input.price_cached_input = t->cached_input;
    from_catalog.push_back("cached input");
  }
  if (from_catalog.empty()) {
    r.tariff_note = "hosted prices given on the command line";
  } else {
    std::string which;
    for (auto& s : from_catalog) which += (which.empty() ? "" : ", ") + s;
    r.tariff_note = fmt::format("hosted {} price{} from the catalog, as of {}: {}", which,
                                from_catalog.size() > 1 ? "s" : "", t->as_of, t->source);
  }
  if (r.cost_input.cached_share > 0 && r.cost_input.price_cached_input < 0)
    r.tariff_note += "; no cache-hit price known, cached input charged at the input price";
  r.cost = compute_cost(r.cost_input, default_sweep_volumes());

  const FitResult& served_fit = (r.recommended_model != r.model.name && r.alt_fit) ? *r.alt_fit : r.fit;
  FitInput served_in = fi;
  if (r.recommended_model != r.model.name) {
    served_in.model = find_model(r.recommended_model);
    served_in.weights = weights_from_schema(served_in.model);
  }
  r.speed = speed_bound(served_in, served_fit, r.cost_input.hours_per_month);

  VerdictInput vi;
  vi.fit_in = &fi;
  vi.fit = &r.fit;
  vi.precision = &r.precision;
  if (r.alt_fit) {
    vi.alt_fit = &*r.alt_fit;
    vi.alt_model = r.precision.recommended_model;
  }
  vi.speed = &r.speed;
  vi.cost_in = &r.cost_input;
  vi.cost = &r.cost;
  vi.non_cost = req.non_cost;
  r.verdict = decide(vi);

  const std::string ref = req.model_dir.empty() ? served_in.model.hf_repo : req.model_dir;
  const int64_t ctx = served_fit.fits ? std::min<int64_t>(rq.context, served_fit.max_context_single)
                                      : std::max<int64_t>(served_fit.max_context_single, 1);
  const int64_t seqs = served_fit.fits ? std::min<int64_t>(req.concurrency, served_fit.max_concurrency) : 1;
  for (const char* e : {"v4host", "vllm", "sglang"}) {
    std::string model_ref = ref;
    if (std::string(e) == "v4host" && req.model_dir.empty())
      model_ref = "/path/to/" + served_in.model.hf_repo.substr(served_in.model.hf_repo.find('/') + 1);
    FitInput ein = served_in;
    ein.engine = find_engine(cat.engines, e);
    FitResult efit = std::string(e) == req.engine ? served_fit : compute_fit(ein);
    r.launch.push_back(launch_command(e, served_in.model, model_ref, efit, r.gpus, r.kv, ctx, seqs));
  }

  r.sweep_contexts = {8192, 32768, 131072, 262144, 524288, 1048576};
  r.sweep_concurrency = {1, 2, 4, 8, 16, 32, 64, 128};
  if (req.sweep) {
    for (int64_t c : r.sweep_contexts) {
      if (c > r.model.max_context) continue;
      FitInput s = served_in;
      s.context = c;
      s.concurrency = 1;
      FitResult one = compute_fit(s);
      r.sweep_max_concurrency.push_back(one.max_concurrency);
      for (int n : r.sweep_concurrency) {
        s.concurrency = n;
        FitResult fr = compute_fit(s);
        r.sweep.push_back({c, n, fr.meets_concurrency});
      }
    }
  }
  return r;
}

}  // namespace v4::plan
