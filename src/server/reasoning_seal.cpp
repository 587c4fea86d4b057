#include "server/reasoning_seal.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <stdexcept>

namespace v4 {

namespace {

constexpr const char* kPrefix = "v4r1.";

std::string hmac(const std::string& key, const std::string& msg) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), out,
       &len);
  return std::string(reinterpret_cast<const char*>(out), len);
}

std::string b64(const std::string& in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::optional<std::string> unb64(const std::string& in) {
  if (in.size() % 4 != 0) return std::nullopt;
  std::string out(3 * (in.size() / 4) + 1, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  if (n < 0) return std::nullopt;
  size_t pad = 0;
  if (!in.empty() && in.back() == '=') ++pad;
  if (in.size() > 1 && in[in.size() - 2] == '=') ++pad;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

}  // namespace

ReasoningSeal::ReasoningSeal(const std::string& secret) {
  if (!secret.empty()) {
    key_ = secret;
    return;
  }
  key_.resize(32);
  if (RAND_bytes(reinterpret_cast<unsigned char*>(key_.data()), 32) != 1) throw std::runtime_error("RAND_bytes failed");
}

std::string ReasoningSeal::seal(const std::string& reasoning) const {
  return kPrefix + b64(hmac(key_, reasoning) + reasoning);
}

std::optional<std::string> ReasoningSeal::open(const std::string& blob) const {
  const std::string prefix = kPrefix;
  if (blob.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
  auto raw = unb64(blob.substr(prefix.size()));
  if (!raw || raw->size() < 32) return std::nullopt;
  std::string text = raw->substr(32);
  const std::string want = hmac(key_, text);
  if (CRYPTO_memcmp(want.data(), raw->data(), 32) != 0) return std::nullopt;
  return text;
}

}  // namespace v4
