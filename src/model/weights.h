// ModelWeights: every tensor of a V4 checkpoint, validated against the config (name, dtype,
// shape) and referenced zero-copy from the memory-mapped shards. Small per-layer vectors (norms,
// hc parameters, sinks, biases) are copied to float32.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/safetensors.h"
#include "kernels/linear.h"
#include "model/config.h"

namespace v4 {

struct CompressorWeights {
  int ratio = 0;        // tokens per compressed entry
  int dim = 0;          // d_c: 512-style head_dim (attention) or index_head_dim (indexer)
  bool overlap = false; // ratio 4 (CSA): windows overlap by one window
  LinearWeight wkv, wgate;        // [coff·d, D]
  std::vector<float> ape;         // [ratio, coff·d]
  std::vector<float> norm;        // [d]
};

struct IndexerWeights {
  LinearWeight wq_b;              // [nIH·ihd, q_lora]
  LinearWeight weights_proj;      // [nIH, D]
  CompressorWeights comp;
};

struct AttentionWeights {
  LinearWeight wq_a, wq_b, wkv, wo_a, wo_b;
  std::vector<float> q_norm, kv_norm, sink;
  std::optional<CompressorWeights> comp;
  std::optional<IndexerWeights> indexer;
};

struct ExpertWeights {
  LinearWeight w1, w2, w3;
};

struct FfnWeights {
  LinearWeight gate;                    // [E, D]
  std::vector<float> bias;              // score layers
  std::vector<int32_t> tid2eid;         // hash layers: [vocab, topk]
  std::vector<ExpertWeights> experts;
  ExpertWeights shared;
  bool hash = false;
};

struct HcWeights {
  LinearWeight fn;                      // [(2+hc)·hc, hc·D] F32
  std::vector<float> base, scale;
};

struct BlockWeights {
  int layer_id = 0;
  int ratio = 0;
  std::vector<float> attn_norm, ffn_norm;
  HcWeights hc_attn, hc_ffn;
  AttentionWeights attn;
  FfnWeights ffn;
};

struct HeadWeights {  // hc_head reduction + final norm (main model or MTP)
  LinearWeight hc_fn;                   // [hc, hc·D]
  std::vector<float> hc_base, hc_scale, norm;
};

struct MtpWeights {
  BlockWeights block;
  LinearWeight e_proj, h_proj;
  std::vector<float> enorm, hnorm;
  HeadWeights head;
};

// The DSpark drafter (V4-Flash-0731, V4-Pro-0813; docs/checkpoints.md). Stage i is a full V4
// block stored as mtp.i (sliding-window attention, score-routed MoE, layer id n_layers + i) that
// reads the shared embedding and LM head. The first stage also holds the target-context
// projection, the last the output head and the Markov and confidence heads.
struct DSparkWeights {
  std::vector<BlockWeights> stages;     // mtp.0 .. mtp.{n-1}
  LinearWeight main_proj;               // mtp.0.main_proj [D, T·D]: the concatenated streams of the T target layers
  std::vector<float> main_norm;         // mtp.0.main_norm.weight [D]
  HeadWeights head;                     // mtp.{n-1}.hc_head_{fn,base,scale} + mtp.{n-1}.norm.weight
  LinearWeight markov_w1;               // mtp.{n-1}.markov_head.markov_w1.weight [V, r]: rows (dequant_row) embed the previous token
  LinearWeight markov_w2;               // mtp.{n-1}.markov_head.markov_w2.weight [V, r]: bias over the vocabulary = w2 · w1[prev]
  LinearWeight confidence;              // mtp.{n-1}.confidence_head.proj.weight [1, D + r]: acceptance logit
  size_t tensors = 0;                   // mtp.* tensors validated
  size_t bytes = 0;                     // their size
  std::vector<std::string> unrecognised;  // mtp.* tensors outside this layout (ignored)
};

// Whether the loader maps every page of the checkpoint into the process up front (see
// MappedFile::populate): `auto` does when the files fit in 80 % of the memory the process may use
// (weights that do not fit cannot stay resident anyway, and reading them all would only evict
// the ones in use), `on` always, `off` never (pages are mapped as the forward passes touch them).
enum class Populate { Auto, On, Off };
inline constexpr const char* kPopulateChoices = "auto | on | off";
bool parse_populate(const std::string& s, Populate* out);

struct PopulateReport {
  bool populated = false;
  size_t bytes = 0;        // the files' size
  double seconds = 0;      // time the populate took (reads from disk included)
  std::string why;         // why not, when not populated ("--populate off", "13.6 GB > 80 % of ...")
};

class ModelWeights {
 public:
  // Loads and validates; throws CheckpointError naming the tensor and file. `load_mtp` false
  // skips the preview layout's mtp.* (NextN) tensors, and the DSpark drafter when none of its
  // tensors exist; a drafter that is present is always validated (it is cheap: zero-copy).
  // Unless quiet, one line on stderr reports the drafter.
  // `populate` as above; unless quiet, a line on stderr says what it did.
  static std::unique_ptr<ModelWeights> load(const std::string& dir, bool load_mtp = true, bool quiet = false,
                                            Populate populate = Populate::Auto);

  ModelConfig cfg;
  LinearWeight embed;                   // [V, D], rows are read with dequant_row
  LinearWeight lm_head;                 // [V, D]
  HeadWeights head;
  std::vector<BlockWeights> layers;
  std::optional<MtpWeights> mtp;
  std::optional<DSparkWeights> dspark;  // validated and loaded; drafts in engine/dspark.cpp

  // "DSpark drafter: 3 stages (mtp.0-mtp.2), ..." or "" when the checkpoint has none.
  std::string drafter_summary() const;

  size_t weight_bytes() const { return store_->total_bytes(); }
  const TensorStore& store() const { return *store_; }
  const PopulateReport& populate_report() const { return populated_; }

 private:
  std::unique_ptr<TensorStore> store_;
  PopulateReport populated_;
};

}  // namespace v4
