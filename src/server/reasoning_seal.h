// The `encrypted_content` of Responses reasoning items: the reasoning text in an opaque,
// integrity-checked blob (HMAC-SHA256 under the server's key), so a client that keeps no
// server state (store: false, as Codex does) sends it back and gets the exact prompt again,
// while a blob altered or made by another key is refused. Not encryption: the text is only
// encoded; the key makes it tamper-evident. Key: --secret (stable across restarts and
// replicas) or 32 random bytes per process.
#pragma once
#include <optional>
#include <string>

namespace v4 {

class ReasoningSeal {
 public:
  explicit ReasoningSeal(const std::string& secret = "");
  std::string seal(const std::string& reasoning) const;
  // The reasoning, or nullopt when the blob is malformed or its tag does not verify.
  std::optional<std::string> open(const std::string& blob) const;

 private:
  std::string key_;
};

}  // namespace v4
