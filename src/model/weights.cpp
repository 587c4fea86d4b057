#include "model/weights.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <set>

#include "core/error.h"
#include "core/float_formats.h"
#include "core/memory.h"
#include "core/progress.h"

namespace v4 {

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

class Loader {
 public:
  explicit Loader(const TensorStore& st) : st_(st) {}

  const TensorView& get(const std::string& name) {
    const TensorView* t = st_.find(name);
    if (!t) throw CheckpointError("missing tensor '" + name + "' in checkpoint " + st_.dir());
    used_.insert(name);
    return *t;
  }
  bool used(const std::string& name) const { return used_.count(name) > 0; }
  bool has(const std::string& name) const { return st_.find(name) != nullptr; }

  [[noreturn]] void fail(const TensorView& t, const std::string& why) {
    throw CheckpointError("tensor '" + t.name + "' in " + t.file + ": " + why);
  }
  void expect_shape(const TensorView& t, const std::vector<int64_t>& shape) {
    if (t.shape != shape) fail(t, "expected shape " + shape_str(shape) + ", found " + t.shape_str());
  }

  // A projection [N, K]: FP8 + block scale, packed FP4 + 1x32 scale (experts), or BF16/F32.
  LinearWeight linear(const std::string& prefix, int N, int K, bool allow_fp4 = false) {
    const TensorView& t = get(prefix + ".weight");
    LinearWeight w;
    w.name = t.name;
    w.rows = N;
    w.cols = K;
    w.data = t.data;
    auto scale = [&](const std::vector<int64_t>& shape) {
      const TensorView& s = get(prefix + ".scale");
      expect_shape(s, shape);
      if (s.dtype == DType::F8_E8M0) w.scale_format = ScaleFormat::E8M0;
      else if (s.dtype == DType::F32) w.scale_format = ScaleFormat::F32;
      else fail(s, std::string("scale dtype must be F8_E8M0 or F32, found ") + dtype_name(s.dtype));
      w.scale = s.data;
    };
    switch (t.dtype) {
      case DType::F8_E4M3:
        expect_shape(t, {N, K});
        w.format = WFormat::FP8;
        scale({(N + 127) / 128, (K + 127) / 128});
        break;
      case DType::I8:
      case DType::U8:
        if (!allow_fp4) fail(t, "packed FP4 (I8) is only valid for routed experts");
        if (K % 32 != 0) fail(t, "FP4 weights need an input dimension divisible by 32, got " + std::to_string(K));
        expect_shape(t, {N, K / 2});
        w.format = WFormat::FP4;
        scale({N, K / 32});
        break;
      case DType::BF16:
        expect_shape(t, {N, K});
        w.format = WFormat::BF16;
        break;
      case DType::F32:
        expect_shape(t, {N, K});
        w.format = WFormat::F32;
        break;
      default:
        fail(t, std::string("unsupported dtype ") + dtype_name(t.dtype) + " for a projection");
    }
    return w;
  }

  // A float matrix kept as-is (F32 or BF16), e.g. hc_*_fn, embeddings, head.
  LinearWeight matrix(const std::string& name, int N, int K) {
    const TensorView& t = get(name);
    expect_shape(t, {N, K});
    LinearWeight w;
    w.name = name;
    w.rows = N;
    w.cols = K;
    w.data = t.data;
    if (t.dtype == DType::F32) w.format = WFormat::F32;
    else if (t.dtype == DType::BF16) w.format = WFormat::BF16;
    else fail(t, std::string("expected F32 or BF16, found ") + dtype_name(t.dtype));
    return w;
  }

  std::vector<float> vec(const std::string& name, const std::vector<int64_t>& shape) {
    const TensorView& t = get(name);
    expect_shape(t, shape);
    std::vector<float> v(static_cast<size_t>(t.numel()));
    if (t.dtype == DType::F32) {
      std::memcpy(v.data(), t.data, v.size() * 4);
    } else if (t.dtype == DType::BF16) {
      const uint16_t* p = reinterpret_cast<const uint16_t*>(t.data);
      for (size_t i = 0; i < v.size(); ++i) v[i] = bf16_to_f32(p[i]);
    } else {
      fail(t, std::string("expected F32 or BF16, found ") + dtype_name(t.dtype));
    }
    for (float x : v)
      if (!std::isfinite(x)) fail(t, "contains a non-finite value");
    return v;
  }

  std::vector<int32_t> index_table(const std::string& name, int rows, int cols, int limit) {
    const TensorView& t = get(name);
    expect_shape(t, {rows, cols});
    std::vector<int32_t> v(static_cast<size_t>(t.numel()));
    for (size_t i = 0; i < v.size(); ++i) {
      int64_t x;
      if (t.dtype == DType::I64) std::memcpy(&x, t.data + 8 * i, 8);
      else if (t.dtype == DType::I32) {
        int32_t y;
        std::memcpy(&y, t.data + 4 * i, 4);
        x = y;
      } else {
        fail(t, std::string("expected I64 or I32, found ") + dtype_name(t.dtype));
      }
      if (x < 0 || x >= limit)
        fail(t, "entry " + std::to_string(i) + " = " + std::to_string(x) + " is outside [0, " + std::to_string(limit) + ")");
      v[i] = static_cast<int32_t>(x);
    }
    return v;
  }

 private:
  const TensorStore& st_;
  std::set<std::string> used_;
};

CompressorWeights load_compressor(Loader& L, const std::string& p, const ModelConfig& c, int ratio, int d) {
  CompressorWeights w;
  w.ratio = ratio;
  w.dim = d;
  w.overlap = ratio == 4;
  const int coff = w.overlap ? 2 : 1;
  w.wkv = L.matrix(p + ".wkv.weight", coff * d, c.dim);
  w.wgate = L.matrix(p + ".wgate.weight", coff * d, c.dim);
  w.ape = L.vec(p + ".ape", {ratio, coff * d});
  w.norm = L.vec(p + ".norm.weight", {d});
  return w;
}

HcWeights load_hc(Loader& L, const std::string& p, const ModelConfig& c) {
  HcWeights h;
  const int mix = c.hc_mix();
  h.fn = L.matrix(p + "_fn", mix, c.hc_mult * c.dim);
  h.base = L.vec(p + "_base", {mix});
  h.scale = L.vec(p + "_scale", {3});
  return h;
}

ExpertWeights load_expert(Loader& L, const std::string& p, const ModelConfig& c, bool routed) {
  ExpertWeights e;
  e.w1 = L.linear(p + ".w1", c.moe_inter, c.dim, routed);
  e.w3 = L.linear(p + ".w3", c.moe_inter, c.dim, routed);
  e.w2 = L.linear(p + ".w2", c.dim, c.moe_inter, routed);
  return e;
}

BlockWeights load_block(Loader& L, const std::string& p, const ModelConfig& c, int layer_id) {
  BlockWeights b;
  b.layer_id = layer_id;
  b.ratio = c.ratio(layer_id);
  b.attn_norm = L.vec(p + ".attn_norm.weight", {c.dim});
  b.ffn_norm = L.vec(p + ".ffn_norm.weight", {c.dim});
  b.hc_attn = load_hc(L, p + ".hc_attn", c);
  b.hc_ffn = load_hc(L, p + ".hc_ffn", c);
  AttentionWeights& a = b.attn;
  const std::string ap = p + ".attn";
  a.wq_a = L.linear(ap + ".wq_a", c.q_lora_rank, c.dim);
  a.q_norm = L.vec(ap + ".q_norm.weight", {c.q_lora_rank});
  a.wq_b = L.linear(ap + ".wq_b", c.n_heads * c.head_dim, c.q_lora_rank);
  a.wkv = L.linear(ap + ".wkv", c.head_dim, c.dim);
  a.kv_norm = L.vec(ap + ".kv_norm.weight", {c.head_dim});
  a.wo_a = L.linear(ap + ".wo_a", c.o_groups * c.o_lora_rank, c.n_heads * c.head_dim / c.o_groups);
  a.wo_b = L.linear(ap + ".wo_b", c.dim, c.o_groups * c.o_lora_rank);
  a.sink = L.vec(ap + ".attn_sink", {c.n_heads});
  if (b.ratio > 0) {
    a.comp = load_compressor(L, ap + ".compressor", c, b.ratio, c.head_dim);
    if (b.ratio == 4) {
      IndexerWeights ix;
      ix.wq_b = L.linear(ap + ".indexer.wq_b", c.index_n_heads * c.index_head_dim, c.q_lora_rank);
      ix.weights_proj = L.matrix(ap + ".indexer.weights_proj.weight", c.index_n_heads, c.dim);
      ix.comp = load_compressor(L, ap + ".indexer.compressor", c, 4, c.index_head_dim);
      a.indexer = std::move(ix);
    }
  }
  FfnWeights& f = b.ffn;
  const std::string fp = p + ".ffn";
  f.gate = L.matrix(fp + ".gate.weight", c.n_routed_experts, c.dim);
  f.hash = layer_id < c.n_hash_layers;
  if (f.hash) f.tid2eid = L.index_table(fp + ".gate.tid2eid", c.vocab_size, c.n_activated, c.n_routed_experts);
  else f.bias = L.vec(fp + ".gate.bias", {c.n_routed_experts});
  for (int e = 0; e < c.n_routed_experts; ++e)
    f.experts.push_back(load_expert(L, fp + ".experts." + std::to_string(e), c, true));
  if (c.n_shared_experts != 1)
    throw CheckpointError("config: n_shared_experts = " + std::to_string(c.n_shared_experts) + " is not supported (V4 has 1)");
  f.shared = load_expert(L, fp + ".shared_experts", c, false);
  return b;
}

HeadWeights load_head(Loader& L, const std::string& p, const ModelConfig& c) {
  HeadWeights h;
  h.hc_fn = L.matrix(p + "hc_head_fn", c.hc_mult, c.hc_mult * c.dim);
  h.hc_base = L.vec(p + "hc_head_base", {c.hc_mult});
  h.hc_scale = L.vec(p + "hc_head_scale", {1});
  h.norm = L.vec(p + "norm.weight", {c.dim});
  return h;
}

DSparkWeights load_dspark(Loader& L, const TensorStore& st, const ModelConfig& c, Progress& prog, size_t step) {
  const DSparkConfig& d = c.dspark;
  DSparkWeights w;
  for (int s = 0; s < d.n_stages; ++s) {
    BlockWeights b = load_block(L, "mtp." + std::to_string(s), c, c.n_layers + s);
    b.ffn.hash = false;
    w.stages.push_back(std::move(b));
    prog.update(step + static_cast<size_t>(s));
  }
  const std::string last = "mtp." + std::to_string(d.n_stages - 1) + ".";
  const int T = static_cast<int>(d.target_layer_ids.size());
  w.main_proj = L.linear("mtp.0.main_proj", c.dim, T * c.dim);
  w.main_norm = L.vec("mtp.0.main_norm.weight", {c.dim});
  w.head = load_head(L, last, c);
  w.markov_w1 = L.matrix(last + "markov_head.markov_w1.weight", c.vocab_size, d.markov_rank);
  w.markov_w2 = L.matrix(last + "markov_head.markov_w2.weight", c.vocab_size, d.markov_rank);
  w.confidence = L.matrix(last + "confidence_head.proj.weight", 1, c.dim + d.markov_rank);
  for (const auto& name : st.names()) {
    if (name.rfind("mtp.", 0) != 0) continue;
    if (L.used(name)) {
      ++w.tensors;
      w.bytes += st.get(name).nbytes;
    } else {
      w.unrecognised.push_back(name);
    }
  }
  return w;
}

}  // namespace

std::string ModelWeights::drafter_summary() const {
  if (!dspark) return "";
  const DSparkConfig& d = cfg.dspark;
  std::string targets;
  for (int t : d.target_layer_ids) targets += (targets.empty() ? "" : ", ") + std::to_string(t);
  std::string s = "DSpark drafter: " + std::to_string(d.n_stages) + " stages (mtp.0-mtp." +
                  std::to_string(d.n_stages - 1) + "), " + std::to_string(dspark->tensors) + " tensors, " +
                  std::to_string(dspark->bytes / 1000000) + " MB validated; block " + std::to_string(d.block_size) +
                  ", target layers [" + targets + "], Markov rank " + std::to_string(d.markov_rank) +
                  "; drafts for speculative decoding (generate --speculative, serve --speculative)";
  if (!dspark->unrecognised.empty())
    s += "; " + std::to_string(dspark->unrecognised.size()) + " unrecognised mtp.* tensors ignored (first: '" +
         dspark->unrecognised.front() + "')";
  return s;
}

bool parse_populate(const std::string& s, Populate* out) {
  if (s == "auto") *out = Populate::Auto;
  else if (s == "on") *out = Populate::On;
  else if (s == "off") *out = Populate::Off;
  else return false;
  return true;
}

namespace {

std::string gb(double b) {
  char s[32];
  std::snprintf(s, sizeof s, "%.2f GB", b / 1e9);
  return s;
}

PopulateReport populate_store(const TensorStore& store, Populate mode, bool quiet) {
  PopulateReport r;
  r.bytes = store.total_bytes();
  if (mode == Populate::Off) {
    r.why = "--populate off";
    return r;
  }
  if (mode == Populate::Auto) {
    const auto mem = usable_memory_bytes();
    if (!mem) {
      r.why = "the usable memory is unknown";
      return r;
    }
    if (static_cast<double>(r.bytes) > 0.8 * static_cast<double>(*mem)) {
      r.why = gb(static_cast<double>(r.bytes)) + " of weights > 80 % of the " + gb(static_cast<double>(*mem)) + " this process may use";
      return r;
    }
  }
  const auto t0 = std::chrono::steady_clock::now();
  constexpr size_t kMB = size_t{1} << 20;
  Progress prog("mapping", std::max<size_t>(1, r.bytes / kMB), quiet);
  r.bytes = store.populate([&](size_t done, size_t) { prog.update(done / kMB); });
  prog.finish();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.populated = true;
  return r;
}

}  // namespace

std::unique_ptr<ModelWeights> ModelWeights::load(const std::string& dir, bool load_mtp, bool quiet, Populate populate) {
  auto m = std::unique_ptr<ModelWeights>(new ModelWeights());
  m->cfg = ModelConfig::load(dir);
  m->store_ = std::make_unique<TensorStore>(dir);
  const ModelConfig& c = m->cfg;
  Loader L(*m->store_);
  Progress prog("loading", static_cast<size_t>(c.n_layers + 2 + c.dspark.n_stages), quiet);
  m->embed = L.matrix("embed.weight", c.vocab_size, c.dim);
  m->lm_head = L.matrix("head.weight", c.vocab_size, c.dim);
  m->head = load_head(L, "", c);
  prog.update(1);
  for (int l = 0; l < c.n_layers; ++l) {
    m->layers.push_back(load_block(L, "layers." + std::to_string(l), c, l));
    prog.update(static_cast<size_t>(l + 2));
  }
  if (load_mtp && c.n_mtp_layers > 0 && L.has("mtp.0.e_proj.weight")) {
    MtpWeights mt;
    mt.block = load_block(L, "mtp.0", c, c.n_layers);
    mt.block.ffn.hash = false;
    mt.e_proj = L.linear("mtp.0.e_proj", c.dim, c.dim);
    mt.h_proj = L.linear("mtp.0.h_proj", c.dim, c.dim);
    mt.enorm = L.vec("mtp.0.enorm.weight", {c.dim});
    mt.hnorm = L.vec("mtp.0.hnorm.weight", {c.dim});
    mt.head = load_head(L, "mtp.0.", c);
    m->mtp = std::move(mt);
  }
  if (c.dspark.present()) {
    bool any = false;
    for (const auto& name : m->store_->names()) any = any || name.rfind("mtp.", 0) == 0;
    if (load_mtp || any) m->dspark = load_dspark(L, *m->store_, c, prog, static_cast<size_t>(c.n_layers + 2));
  }
  prog.finish();
  if (!quiet && m->dspark) std::fprintf(stderr, "%s\n", m->drafter_summary().c_str());
  m->populated_ = populate_store(*m->store_, populate, quiet);
  if (!quiet) {
    const PopulateReport& r = m->populated_;
    if (r.populated)
      std::fprintf(stderr, "v4host: weights mapped: %s in %.1f s\n", gb(static_cast<double>(r.bytes)).c_str(), r.seconds);
    else
      std::fprintf(stderr, "v4host: weights mapped as they are used (%s)\n", r.why.c_str());
  }
  return m;
}

}  // namespace v4
