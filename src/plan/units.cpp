#include "plan/units.h"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <fmt/format.h>

#include "core/error.h"

namespace v4::plan {
namespace {

// Splits "1.5B" into 1.5 and 'B'. Returns false when the text is not a number with an optional
// one-letter suffix.
bool split_number(const std::string& raw, double* value, char* suffix) {
  std::string s;
  for (char c : raw)
    if (c != '_' && c != ',' && !std::isspace(static_cast<unsigned char>(c))) s += c;
  if (s.empty()) return false;
  *suffix = 0;
  if (std::isalpha(static_cast<unsigned char>(s.back()))) {
    *suffix = static_cast<char>(std::toupper(static_cast<unsigned char>(s.back())));
    s.pop_back();
  }
  if (s.empty()) return false;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (end == s.c_str() || *end != '\0' || !std::isfinite(v)) return false;
  *value = v;
  return true;
}

}  // namespace

int64_t parse_context(const std::string& s, const std::string& flag) {
  double v = 0;
  char suf = 0;
  if (!split_number(s, &v, &suf))
    throw InputError(flag + ": '" + s + "' is not a context length (examples: 8192, 128k, 1M)");
  double mult = 1;
  if (suf == 'K') mult = 1024;
  else if (suf == 'M') mult = 1024.0 * 1024.0;
  else if (suf != 0)
    throw InputError(flag + ": unknown suffix in '" + s + "' (use k or M, e.g. 128k, 1M)");
  double n = std::round(v * mult);
  if (n < 1)
    throw InputError(flag + ": context must be at least 1 token, got '" + s + "'");
  if (n > 1e12) throw InputError(flag + ": '" + s + "' is not a plausible context length");
  return static_cast<int64_t>(n);
}

double parse_volume(const std::string& s, const std::string& flag) {
  double v = 0;
  char suf = 0;
  if (!split_number(s, &v, &suf))
    throw InputError(flag + ": '" + s + "' is not a token volume (examples: 200M, 1.5B, 50000000)");
  double mult = 1;
  if (suf == 'K') mult = 1e3;
  else if (suf == 'M') mult = 1e6;
  else if (suf == 'B' || suf == 'G') mult = 1e9;
  else if (suf == 'T') mult = 1e12;
  else if (suf != 0)
    throw InputError(flag + ": unknown suffix in '" + s + "' (use k, M, B or T)");
  if (v < 0) throw InputError(flag + ": a token volume cannot be negative ('" + s + "')");
  return v * mult;
}

double parse_nonneg(const std::string& s, const std::string& flag) {
  double v = 0;
  char suf = 0;
  if (!split_number(s, &v, &suf) || suf != 0)
    throw InputError(flag + ": '" + s + "' is not a number");
  if (v < 0) throw InputError(flag + ": must not be negative, got '" + s + "'");
  return v;
}

double parse_fraction(const std::string& s, const std::string& flag) {
  double v = parse_nonneg(s, flag);
  if (v > 1) throw InputError(flag + ": must be a fraction between 0 and 1, got '" + s + "'");
  return v;
}

std::string fmt_gib(double bytes) {
  if (bytes != 0 && std::fabs(bytes) < 0.1 * kGiB) return fmt::format("{:.1f} MiB", bytes / (1024.0 * 1024.0));
  return fmt::format("{:.2f} GiB", bytes / kGiB);
}
std::string fmt_gb(double bytes) { return fmt::format("{:.2f} GB", bytes / kGB); }

std::string fmt_tokens(double n) {
  auto trim = [](double x) {
    std::string t = fmt::format("{:.2f}", x);
    while (!t.empty() && t.back() == '0') t.pop_back();
    if (!t.empty() && t.back() == '.') t.pop_back();
    return t;
  };
  if (n >= 1e12) return trim(n / 1e12) + "T";
  if (n >= 1e9) return trim(n / 1e9) + "B";
  if (n >= 1e6) return trim(n / 1e6) + "M";
  if (n >= 1e3) return trim(n / 1e3) + "k";
  return trim(n);
}

std::string fmt_int(int64_t n) {
  std::string d = std::to_string(n < 0 ? -n : n), out;
  for (size_t i = 0; i < d.size(); ++i) {
    if (i && (d.size() - i) % 3 == 0) out += ',';
    out += d[i];
  }
  return n < 0 ? "-" + out : out;
}

std::string fmt_context(int64_t n) {
  if (n >= 1048576 && n % 1048576 == 0) return std::to_string(n / 1048576) + "M";
  if (n >= 1024 && n % 1024 == 0) return std::to_string(n / 1024) + "K";
  return fmt_int(n);
}

std::string fmt_usd(double usd) {
  double r = std::round(usd * 100) / 100;
  int64_t whole = static_cast<int64_t>(std::floor(std::fabs(r)));
  int cents = static_cast<int>(std::lround((std::fabs(r) - static_cast<double>(whole)) * 100));
  if (cents == 100) { ++whole; cents = 0; }
  return fmt::format("{}${}.{:02d}", r < 0 ? "-" : "", fmt_int(whole), cents);
}

}  // namespace v4::plan
