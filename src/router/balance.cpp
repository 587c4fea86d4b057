#include "router/balance.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace v4::router {

namespace {

uint64_t fnv1a(std::string_view s, uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// splitmix64's finaliser: FNV alone leaves the high bits of similar keys correlated.
uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

uint64_t rendezvous_score(std::string_view key, std::string_view member) {
  uint64_t h = fnv1a(key);
  h = fnv1a(std::string_view("\x1f", 1), h);  // separator: ("ab","c") and ("a","bc") differ
  return mix(fnv1a(member, h));
}

std::string session_key(const protocol::Request& r, std::string_view session_header, const char** why) {
  auto said = [&](const char* w) {
    if (why) *why = w;
  };
  if (!r.prompt_cache_key.empty()) {
    said("prompt_cache_key");
    return "k:" + r.prompt_cache_key;
  }
  if (r.metadata.is_object()) {
    auto it = r.metadata.find("user_id");
    if (it != r.metadata.end() && it->is_string() && !it->get_ref<const std::string&>().empty()) {
      said("metadata.user_id");
      return "u:" + it->get<std::string>();
    }
  }
  if (!session_header.empty()) {
    said("session header");
    return "h:" + std::string(session_header);
  }
  // The opening of the conversation: system text and the first user message. Every later turn
  // of the same conversation starts with the same two, so it lands where its prefix is cached.
  std::string open;
  for (const auto& m : r.messages) {
    if (m.role == protocol::Role::System) {
      open += m.text;
      open += '\x1e';
    } else if (m.role == protocol::Role::User) {
      open += m.text;
      break;
    }
  }
  if (open.empty()) {
    said("none");
    return "";
  }
  said("conversation opening");
  return "o:" + std::to_string(fnv1a(open));
}

std::vector<size_t> order_replicas(const Balance& b, std::string_view key, const std::vector<std::string>& members,
                                   const std::vector<double>& load, uint64_t tie) {
  const size_t n = members.size();
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  if (n < 2) return order;
  const std::string tie_key = std::to_string(tie);
  const std::string_view k = key.empty() ? std::string_view(tie_key) : key;
  std::vector<uint64_t> score(n);
  for (size_t i = 0; i < n; ++i) score[i] = rendezvous_score(k, members[i]);
  if (b.by == Balance::LeastLoaded) {
    std::sort(order.begin(), order.end(), [&](size_t a, size_t c) {
      return load[a] != load[c] ? load[a] < load[c] : score[a] > score[c];
    });
    return order;
  }
  std::sort(order.begin(), order.end(), [&](size_t a, size_t c) { return score[a] > score[c]; });
  // Bounded loads: the first member in the key's ranking still under capacity goes first; the
  // ones passed over keep their ranking behind it (they are still the fallbacks).
  const double total = std::accumulate(load.begin(), load.end(), 0.0);
  const double cap = std::ceil(b.bounded_load * (total + 1) / static_cast<double>(n));
  auto first_free = std::find_if(order.begin(), order.end(), [&](size_t i) { return load[i] < cap; });
  if (first_free != order.end() && first_free != order.begin()) std::rotate(order.begin(), first_free, first_free + 1);
  return order;
}

}  // namespace v4::router
