#include "kv/sequence_state.h"

#include "model/config.h"

namespace v4 {

namespace {

CompressorState make_comp(int ratio, int d) {
  CompressorState s;
  s.ratio = ratio;
  s.width = (ratio == 4 ? 2 : 1) * d;
  const size_t n = static_cast<size_t>(ratio) * static_cast<size_t>(s.width);
  s.cur_a.assign(n, 0.f);
  s.cur_g.assign(n, 0.f);
  if (ratio == 4) {
    s.prev_a.assign(n, 0.f);
    s.prev_g.assign(n, 0.f);
  }
  return s;
}

LayerState make_layer(const ModelConfig& c, int ratio) {
  LayerState l;
  l.ratio = ratio;
  l.ring.assign(static_cast<size_t>(c.window) * static_cast<size_t>(c.head_dim), 0.f);
  if (ratio > 0) l.comp_state = make_comp(ratio, c.head_dim);
  if (ratio == 4) {
    l.idx_state = make_comp(4, c.index_head_dim);
    l.idx_keys.d = c.index_head_dim;
  }
  return l;
}

}  // namespace

SequenceState::SequenceState(const ModelConfig& c, bool with_mtp) {
  for (int i = 0; i < c.n_layers; ++i) layers.push_back(make_layer(c, c.ratio(i)));
  has_mtp = with_mtp;
  if (with_mtp) mtp = make_layer(c, 0);
}

StateBytes SequenceState::bytes() const {
  StateBytes b;
  auto add = [&](const LayerState& l) {
    b.window += l.ring.capacity() * 4;
    if (l.ratio == 4) {
      b.compressed_c4 += l.comp.size() * 4;
      b.indexer += l.idx_keys.data.size() * 4;
    } else {
      b.compressed_hca += l.comp.size() * 4;
    }
    b.frontier += l.comp_state.bytes() + l.idx_state.bytes();
  };
  for (auto& l : layers) add(l);
  if (has_mtp) add(mtp);
  return b;
}

size_t SequenceState::projected_bytes(const ModelConfig& c, int64_t ctx) {
  size_t total = 0;
  const size_t hd = static_cast<size_t>(c.head_dim), ihd = static_cast<size_t>(c.index_head_dim);
  for (int i = 0; i < c.n_layers + c.n_mtp_layers; ++i) {
    int r = c.ratio(i);
    total += static_cast<size_t>(c.window) * hd * 4;
    if (r > 0) {
      size_t n = static_cast<size_t>(ctx / r);
      total += n * hd * 4;
      size_t coff = r == 4 ? 2 : 1;
      total += (r == 4 ? 4 : 2) * static_cast<size_t>(r) * coff * hd * 4;
      if (r == 4) total += n * ihd * 4 + 4 * static_cast<size_t>(r) * 2 * ihd * 4;
    }
  }
  return total;
}

}  // namespace v4
