#include "plan/catalog_gpus.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>

#include "core/error.h"

namespace v4::plan {
namespace {

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::string out;
  for (char c : s)
    if (c != '-' && c != '_' && c != ' ') out += c;
  return out;
}

// Recorded 2026-11-29 from the vendors' published datasheets / spec pages (named in `source`).
// memory_gib is the capacity the driver exposes where that is known (e.g. nvidia-smi shows
// 143,771 MiB on an H200 sold as "141 GB"), otherwise the datasheet figure.
std::vector<GpuSpec> make_gpus() {
  const std::string d = "2026-11-29";
  std::vector<GpuSpec> g;
  g.push_back({"A100-80G", {"A100", "A100-80GB", "A10080G"}, "NVIDIA A100 SXM4 80GB (Ampere, sm_80)", "ampere",
               80, 2039, false, false, "NVLink 3, 600 GB/s", 600, 8, "cuda", d,
               "NVIDIA A100 datasheet (80GB SXM: 2,039 GB/s HBM2e; no FP8/FP4 tensor cores)"});
  g.push_back({"H100", {"H100-80G", "H100-SXM", "H100-80GB"}, "NVIDIA H100 SXM5 80GB (Hopper, sm_90)", "hopper",
               79.6, 3350, true, false, "NVLink 4, 900 GB/s", 900, 8, "cuda", d,
               "NVIDIA H100 datasheet (SXM: 80 GB HBM3, 3.35 TB/s; nvidia-smi 81,559 MiB)"});
  g.push_back({"H200", {"H200-141G", "H200-SXM"}, "NVIDIA H200 SXM 141GB (Hopper, sm_90)", "hopper",
               140.4, 4800, true, false, "NVLink 4, 900 GB/s", 900, 8, "cuda", d,
               "NVIDIA H200 datasheet (141 GB HBM3e, 4.8 TB/s; nvidia-smi 143,771 MiB)"});
  g.push_back({"B200", {"B200-180G", "HGX-B200"}, "NVIDIA B200 180GB (Blackwell, sm_100)", "blackwell",
               179.1, 8000, true, true, "NVLink 5, 1.8 TB/s", 1800, 8, "cuda", d,
               "NVIDIA DGX/HGX B200 spec (180 GB HBM3e per GPU, 8 TB/s; nvidia-smi 183,359 MiB)"});
  g.push_back({"B300", {"B300-288G", "HGX-B300", "BLACKWELL-ULTRA"}, "NVIDIA B300 288GB (Blackwell Ultra, sm_103)",
               "blackwell", 268.2, 8000, true, true, "NVLink 5, 1.8 TB/s", 1800, 8, "cuda", d,
               "NVIDIA HGX B300 spec (288 GB HBM3e per GPU, 8 TB/s; capacity taken as 288e9 bytes, "
               "driver-visible figure not confirmed)"});
  g.push_back({"L40S", {"L40S-48G"}, "NVIDIA L40S 48GB (Ada, sm_89)", "ada", 45.0, 864, true, false,
               "PCIe 4.0 x16, 32 GB/s (no NVLink)", 32, 8, "cuda", d,
               "NVIDIA L40S datasheet (48 GB GDDR6 ECC, 864 GB/s; nvidia-smi 46,068 MiB)"});
  g.push_back({"RTX4090", {"RTX-4090", "4090"}, "NVIDIA GeForce RTX 4090 24GB (Ada, sm_89)", "ada", 24.0,
               1008, true, false, "PCIe 4.0 x16, 32 GB/s (no NVLink, no P2P)", 32, 8, "cuda", d,
               "NVIDIA RTX 4090 spec page (24 GB GDDR6X, 1,008 GB/s; nvidia-smi 24,564 MiB)"});
  g.push_back({"RTX5090", {"RTX-5090", "5090"}, "NVIDIA GeForce RTX 5090 32GB (Blackwell, sm_120)", "blackwell",
               31.8, 1792, true, true, "PCIe 5.0 x16, 64 GB/s (no NVLink)", 64, 8, "cuda", d,
               "NVIDIA RTX 5090 spec page (32 GB GDDR7, 1,792 GB/s, 5th-gen tensor cores with FP4; nvidia-smi 32,607 MiB)"});
  g.push_back({"RTX-PRO-6000", {"RTXPRO6000", "PRO6000", "RTX-PRO-6000-BLACKWELL"},
               "NVIDIA RTX PRO 6000 Blackwell 96GB (sm_120)", "blackwell", 95.6, 1792, true, true,
               "PCIe 5.0 x16, 64 GB/s (no NVLink)", 64, 8, "cuda", d,
               "NVIDIA RTX PRO 6000 Blackwell datasheet (96 GB GDDR7 ECC, 1,792 GB/s; nvidia-smi 97,887 MiB)"});
  g.push_back({"DGX-Spark", {"SPARK", "GB10"}, "NVIDIA DGX Spark (GB10, 128 GB unified LPDDR5x)", "blackwell",
               119, 273, true, true, "ConnectX-7 200 Gb/s (25 GB/s) between two units", 25, 1, "cuda", d,
               "NVIDIA DGX Spark spec (128 GB LPDDR5x unified, 273 GB/s; ~119 GiB usable by the GPU; "
               "two units can be linked)"});
  g.push_back({"M3-Ultra-512G", {"M3-ULTRA", "M3ULTRA"}, "Apple Mac Studio M3 Ultra 512 GB unified", "apple",
               512, 819, false, false, "Thunderbolt 5, 120 Gb/s (15 GB/s)", 15, 1, "metal", d,
               "Apple Mac Studio (2025) tech specs (up to 512 GB unified memory, 819 GB/s; macOS lets the GPU wire about 75% by default)"});
  g.push_back({"M4-Max-128G", {"M4-MAX", "M4MAX"}, "Apple MacBook Pro / Mac Studio M4 Max 128 GB unified", "apple",
               128, 546, false, false, "Thunderbolt 5, 120 Gb/s (15 GB/s)", 15, 1, "metal", d,
               "Apple M4 Max tech specs (up to 128 GB unified memory, 546 GB/s)"});
  g.push_back({"M2-Ultra-192G", {"M2-ULTRA", "M2ULTRA"}, "Apple Mac Studio M2 Ultra 192 GB unified", "apple",
               192, 800, false, false, "Thunderbolt 4, 40 Gb/s (5 GB/s)", 5, 1, "metal", d,
               "Apple Mac Studio (2023) tech specs (up to 192 GB unified memory, 800 GB/s)"});
  return g;
}

}  // namespace

const std::vector<GpuSpec>& builtin_gpus() {
  static const std::vector<GpuSpec> g = make_gpus();
  return g;
}

const GpuSpec& find_gpu(const std::vector<GpuSpec>& catalog, const std::string& name) {
  const std::string key = lower(name);
  for (auto& g : catalog) {
    if (lower(g.name) == key) return g;
    for (auto& a : g.aliases)
      if (lower(a) == key) return g;
  }
  std::string known;
  for (auto& g : catalog) known += (known.empty() ? "" : ", ") + g.name;
  throw InputError("unknown GPU '" + name + "' (known: " + known +
                   "; describe another one with --gpu-spec NAME:memory_gib=..,bandwidth_gbs=..,fp8=1,fp4=0 "
                   "or a --catalog file)");
}

GpuSet parse_gpus(const std::vector<GpuSpec>& catalog, const std::string& text) {
  // Forms: "H100" (1), "8xH100", "8*H100", "2x8xH100" (nodes x per-node).
  std::vector<std::string> parts;
  std::string cur;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    bool sep = (c == 'x' || c == 'X' || c == '*') && !cur.empty() &&
               std::all_of(cur.begin(), cur.end(), [](char d) { return std::isdigit(static_cast<unsigned char>(d)); });
    if (sep) {
      parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (cur.empty()) throw InputError("--gpus: '" + text + "' names no GPU (example: 8xH100, 2x8xH200)");
  GpuSet s;
  s.gpu = find_gpu(catalog, cur);
  auto num = [&](const std::string& p) {
    long v = std::strtol(p.c_str(), nullptr, 10);
    if (v < 1 || v > 100000) throw InputError("--gpus: bad GPU count '" + p + "' in '" + text + "'");
    return static_cast<int>(v);
  };
  if (parts.empty()) {
    s.count = 1;
  } else if (parts.size() == 1) {
    s.count = num(parts[0]);
  } else if (parts.size() == 2) {
    s.nodes = num(parts[0]);
    s.count = s.nodes * num(parts[1]);
    if (s.per_node() > s.gpu.max_per_node)
      throw InputError("--gpus: " + s.gpu.name + " comes at most " + std::to_string(s.gpu.max_per_node) +
                       " per node, '" + text + "' asks for " + std::to_string(s.per_node()));
    return s;
  } else {
    throw InputError("--gpus: cannot read '" + text + "' (examples: 8xH100, 16xH200, 2x8xH200)");
  }
  s.nodes = (s.count + s.gpu.max_per_node - 1) / s.gpu.max_per_node;
  if (s.count % s.nodes != 0)
    throw InputError("--gpus: " + std::to_string(s.count) + " " + s.gpu.name + " do not split evenly into nodes of at most " +
                     std::to_string(s.gpu.max_per_node) + "; write NODESxPERNODExTYPE");
  return s;
}

void add_gpu_spec(std::vector<GpuSpec>& catalog, const std::string& text) {
  auto colon = text.find(':');
  if (colon == std::string::npos || colon == 0)
    throw InputError("--gpu-spec: expected NAME:key=value,... (e.g. MyGPU:memory_gib=96,bandwidth_gbs=1800,fp8=1)");
  GpuSpec g;
  std::string name = text.substr(0, colon);
  for (auto& c : catalog)
    if (lower(c.name) == lower(name)) g = c;  // start from the existing entry
  g.name = name;
  if (g.description.empty()) g.description = name + " (custom spec)";
  if (g.arch.empty()) g.arch = "custom";
  g.as_of = "given on the command line";
  g.source = "--gpu-spec";
  std::string rest = text.substr(colon + 1);
  size_t pos = 0;
  while (pos <= rest.size()) {
    size_t end = rest.find(',', pos);
    if (end == std::string::npos) end = rest.size();
    std::string kv = rest.substr(pos, end - pos);
    pos = end + 1;
    if (kv.empty()) continue;
    auto eq = kv.find('=');
    if (eq == std::string::npos) throw InputError("--gpu-spec: '" + kv + "' is not key=value");
    std::string k = kv.substr(0, eq), v = kv.substr(eq + 1);
    char* e = nullptr;
    double x = std::strtod(v.c_str(), &e);
    bool numeric = e != v.c_str() && *e == '\0' && std::isfinite(x);
    auto need = [&](bool positive) {
      if (!numeric || x < 0 || (positive && x == 0))
        throw InputError("--gpu-spec: " + k + " must be a " + (positive ? "positive" : "non-negative") + " number, got '" + v + "'");
    };
    if (k == "memory_gib") { need(true); g.memory_gib = x; }
    else if (k == "memory_gb") { need(true); g.memory_gib = x * 1e9 / (1024.0 * 1024.0 * 1024.0); }
    else if (k == "bandwidth_gbs") { need(true); g.bandwidth_gbs = x; }
    else if (k == "interconnect_gbs") { need(false); g.interconnect_gbs = x; }
    else if (k == "max_per_node") { need(true); g.max_per_node = static_cast<int>(x); }
    else if (k == "fp8") { need(false); g.fp8 = x != 0; }
    else if (k == "fp4") { need(false); g.fp4 = x != 0; }
    else if (k == "platform") {
      if (v != "cuda" && v != "metal" && v != "cpu") throw InputError("--gpu-spec: platform must be cuda, metal or cpu");
      g.platform = v;
    } else if (k == "arch") { g.arch = v; }
    else throw InputError("--gpu-spec: unknown key '" + k + "' (memory_gib, memory_gb, bandwidth_gbs, fp8, fp4, "
                          "interconnect_gbs, max_per_node, platform, arch)");
  }
  if (g.memory_gib <= 0 || g.bandwidth_gbs <= 0)
    throw InputError("--gpu-spec: " + name + " needs memory_gib (or memory_gb) and bandwidth_gbs");
  if (g.interconnect.empty()) g.interconnect = "custom, " + std::to_string(static_cast<int>(g.interconnect_gbs)) + " GB/s";
  for (auto& c : catalog)
    if (lower(c.name) == lower(name)) { c = g; return; }
  catalog.push_back(g);
}

}  // namespace v4::plan
