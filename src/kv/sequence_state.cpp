#include "kv/sequence_state.h"

#include <algorithm>

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

SequenceState SequenceState::mtp_only(const ModelConfig& c) {
  SequenceState s;
  s.has_mtp = true;
  s.mtp = make_layer(c, 0);
  return s;
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

StateMark SequenceState::mark(int n, int window, int head_dim) const {
  StateMark m;
  m.pos = pos;
  m.n = n;
  const int rows = std::min(n, window);
  const size_t hd = static_cast<size_t>(head_dim);
  m.layers.resize(layers.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    const LayerState& l = layers[i];
    StateMark::Layer& ml = m.layers[i];
    ml.comp_floats = l.comp.size();
    ml.idx_n = l.idx_keys.n;
    ml.comp_state = l.comp_state;
    ml.idx_state = l.idx_state;
    ml.ring_rows.resize(static_cast<size_t>(rows) * hd);
    for (int r = 0; r < rows; ++r) {
      const size_t slot = static_cast<size_t>((pos + r) % window);
      std::copy_n(l.ring.data() + slot * hd, hd, ml.ring_rows.data() + static_cast<size_t>(r) * hd);
    }
  }
  return m;
}

void SequenceState::rollback(const StateMark& m, int window, int head_dim) {
  const int rows = std::min(m.n, window);
  const size_t hd = static_cast<size_t>(head_dim);
  for (size_t i = 0; i < layers.size(); ++i) {
    LayerState& l = layers[i];
    const StateMark::Layer& ml = m.layers[i];
    l.comp.resize(ml.comp_floats);
    KeyBlocks& k = l.idx_keys;
    if (k.n != ml.idx_n) {
      // Blocks of 16 transposed keys: drop whole blocks past the mark, zero the lanes after it
      // in the last one (appending assumes zero padding).
      const size_t B = KeyBlocks::kBlock, d = static_cast<size_t>(k.d);
      const size_t nblk = static_cast<size_t>((ml.idx_n + static_cast<int64_t>(B) - 1) / static_cast<int64_t>(B));
      k.data.resize(nblk * d * B);
      const size_t lane0 = static_cast<size_t>(ml.idx_n % static_cast<int64_t>(B));
      if (lane0 != 0) {
        float* blk = k.data.data() + (nblk - 1) * d * B;
        for (size_t e = 0; e < d; ++e)
          for (size_t ln = lane0; ln < B; ++ln) blk[e * B + ln] = 0.f;
      }
      k.n = ml.idx_n;
    }
    l.comp_state = ml.comp_state;
    l.idx_state = ml.idx_state;
    for (int r = 0; r < rows; ++r) {
      const size_t slot = static_cast<size_t>((m.pos + r) % window);
      std::copy_n(ml.ring_rows.data() + static_cast<size_t>(r) * hd, hd, l.ring.data() + slot * hd);
    }
  }
  pos = m.pos;
}

size_t SequenceState::projected_bytes(const ModelConfig& c, int64_t ctx) {
  size_t total = 0;
  const size_t hd = static_cast<size_t>(c.head_dim), ihd = static_cast<size_t>(c.index_head_dim);
  for (int i = 0; i < c.n_layers + c.n_mtp_layers + c.dspark.n_stages; ++i) {
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
