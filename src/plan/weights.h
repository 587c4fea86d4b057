// Weight bytes of a V4 checkpoint, split by how tensor/expert parallelism places them:
// routed experts are distributed over the GPUs (EP), the tensors the official converter splits
// for TP (embed, head, wq_b, wo_a, wo_b, attn_sink, indexer weights_proj; spec §2.5) are divided
// by the attention TP degree, everything else is replicated on every GPU.
#pragma once
#include <cstdint>
#include <string>

#include "plan/catalog_models.h"

namespace v4 {
class TensorStore;
}

namespace v4::plan {

struct WeightPart {
  double experts = 0;     // routed experts, all layers
  double sharded = 0;     // split by attention TP
  double replicated = 0;  // copied to every GPU
  double params = 0;      // parameter count (FP4 counts two per byte; scales excluded)
  double total() const { return experts + sharded + replicated; }
};

struct WeightBytes {
  WeightPart main;               // layers + embed/head (no MTP)
  WeightPart mtp;                // the MTP layer (loaded only for MTP speculative decoding)
  double expert_bytes = 0;       // one routed expert in one layer (w1 + w3 + w2 with scales)
  double embed_bytes = 0;        // embedding table (a decode step reads one row)
  double head_bytes = 0;         // LM head (read in full every decode step)
  std::string source;            // "schema" or "safetensors headers (N tensors)"
  double total() const { return main.total() + mtp.total(); }
};

// Bytes from the config and the tensor schema of spec §2.2–2.4 (Σ numel · dtype size).
WeightBytes weights_from_schema(const ModelConfig& m);
// Exact bytes from the tensors of a checkpoint, classified by name.
WeightBytes weights_from_store(const TensorStore& store, const ModelConfig& m);

}  // namespace v4::plan
