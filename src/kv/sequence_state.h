// Per-sequence inference state of a V4 model (spec §4): for every layer the raw-KV ring of the
// sliding window, the compressed KV entries, the indexer keys (CSA layers) and the compressor
// frontier (partial window rows and, for overlapping compressors, the previous window's rows).
// States are plain values: copying one snapshots a prefix exactly (prefix cache).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/attn.h"

namespace v4 {

struct ModelConfig;

// Rows (a, g) of the projected tokens of the current partial window and, for overlapping
// compressors (ratio 4), the previous complete window.
struct CompressorState {
  int ratio = 0;
  int width = 0;                 // coff · d
  std::vector<float> cur_a, cur_g;    // [ratio, width]; first cur_count rows valid
  std::vector<float> prev_a, prev_g;  // [ratio, width]; valid when has_prev
  int cur_count = 0;
  bool has_prev = false;
  size_t bytes() const { return (cur_a.capacity() + cur_g.capacity() + prev_a.capacity() + prev_g.capacity()) * 4; }
};

struct LayerState {
  int ratio = 0;
  std::vector<float> ring;       // [window, head_dim], slot = position % window
  std::vector<float> comp;       // [n_comp, head_dim] compressed entries, append-only
  KeyBlocks idx_keys;            // n_comp keys of index_head_dim, in blocks of 16 (CSA only)
  CompressorState comp_state, idx_state;
  int64_t n_comp(int head_dim) const { return static_cast<int64_t>(comp.size()) / head_dim; }
};

// Bytes in use by cache family (for metrics and admission control).
struct StateBytes {
  size_t window = 0, compressed_c4 = 0, indexer = 0, compressed_hca = 0, frontier = 0;
  size_t total() const { return window + compressed_c4 + indexer + compressed_hca + frontier; }
};

// What rollback() needs to undo the next `n` tokens of a state: sizes of the append-only caches,
// the compressor frontiers and the window-ring rows the tokens will overwrite. Costs O(n + frontier),
// not O(context) like copying the state (speculative decoding marks before every verification).
struct StateMark {
  int64_t pos = 0;
  int n = 0;
  struct Layer {
    size_t comp_floats = 0;
    int64_t idx_n = 0;
    CompressorState comp_state, idx_state;
    std::vector<float> ring_rows;  // rows of ring slots (pos + i) % window, i < min(n, window)
  };
  std::vector<Layer> layers;
};

class SequenceState {
 public:
  SequenceState() = default;
  SequenceState(const ModelConfig& cfg, bool with_mtp);
  // Only the MTP block's window (no main layers): the drafter's own state beside a main state.
  static SequenceState mtp_only(const ModelConfig& cfg);

  int64_t pos = 0;                 // tokens consumed by the main model (next position)
  std::vector<LayerState> layers;
  bool has_mtp = false;
  LayerState mtp;                  // the MTP block's own sliding window
  int64_t mtp_pos = 0;

  StateBytes bytes() const;
  // Mark before consuming at most `n` more tokens; rollback() restores the state exactly as it was
  // at the mark (the main layers; the MTP block is not covered).
  StateMark mark(int n, int window, int head_dim) const;
  void rollback(const StateMark& m, int window, int head_dim);
  // Upper bound of bytes this sequence will hold at `ctx` tokens (admission control).
  static size_t projected_bytes(const ModelConfig& cfg, int64_t ctx);
};

// The DSpark drafter's per-sequence state: for each draft stage, the sliding window of context
// KV rows projected from the target model's streams (slot = position % window), valid for
// positions [first, end).
struct DSparkState {
  std::vector<std::vector<float>> ring;  // [stages][window · head_dim]
  int64_t first = 0, end = 0;
};

}  // namespace v4
