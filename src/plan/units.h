// Parsing and formatting of the quantities `v4host check` talks about: token counts with
// suffixes (128k, 1M, 1.5B), fractions, byte sizes and dollar amounts.
#pragma once
#include <cstdint>
#include <string>

namespace v4::plan {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
constexpr double kGB = 1e9;

// "131072", "128k", "128K" (k = 1024 for contexts), "1M" = 1,048,576. Throws InputError.
int64_t parse_context(const std::string& s, const std::string& flag);
// Token volumes are decimal: "200M" = 200,000,000, "1.5B" = 1.5e9, "10k" = 10,000. Throws on
// negative, non-numeric or non-finite values.
double parse_volume(const std::string& s, const std::string& flag);
// A plain non-negative decimal number (prices, hours). Throws InputError.
double parse_nonneg(const std::string& s, const std::string& flag);
// A fraction in [0, 1]. Throws InputError.
double parse_fraction(const std::string& s, const std::string& flag);

std::string fmt_gib(double bytes);          // "78.12 GiB" (MiB below 0.1 GiB)
std::string fmt_gb(double bytes);           // "159.61 GB"
std::string fmt_tokens(double n);           // "200M", "1.5B", "128K" style (decimal)
std::string fmt_context(int64_t n);         // "128K", "1M", "96,256" (binary suffixes when exact)
std::string fmt_usd(double usd);            // "$5,169.60"
std::string fmt_int(int64_t n);             // "1,048,576"

}  // namespace v4::plan
