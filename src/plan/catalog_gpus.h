// The accelerator catalog: memory, memory bandwidth, FP8/FP4 support and interconnect of each
// GPU (or unified-memory machine) `v4host check` knows, every value with the date it was recorded
// and its source. Values can be overridden or extended from a JSON file (catalog_file.h) or with
// --gpu-spec on the command line.
#pragma once
#include <string>
#include <vector>

namespace v4::plan {

struct GpuSpec {
  std::string name;             // catalog key, e.g. "H100"
  std::vector<std::string> aliases;
  std::string description;      // "NVIDIA H100 SXM5 80GB (Hopper, sm_90)"
  std::string arch;             // ampere, hopper, ada, blackwell, apple, custom
  double memory_gib = 0;        // memory usable by CUDA/Metal per device
  double bandwidth_gbs = 0;     // peak memory bandwidth, GB/s (decimal)
  bool fp8 = false;             // FP8 tensor-core math
  bool fp4 = false;             // FP4 (MXFP4/NVFP4) tensor-core math
  std::string interconnect;     // "NVLink 4, 900 GB/s" / "PCIe 4.0 x16" ...
  double interconnect_gbs = 0;  // GPU-to-GPU bandwidth per GPU, GB/s
  int max_per_node = 8;         // GPUs in one server / NVLink domain
  std::string platform = "cuda";  // "cuda" or "metal"
  std::string as_of;            // date the values were recorded (YYYY-MM-DD)
  std::string source;           // where they come from
};

const std::vector<GpuSpec>& builtin_gpus();

// A set of GPUs: count, nodes, spec. `--gpus 8xH100`, `16xH200` (split into nodes of
// max_per_node), `2x8xH200` (2 nodes of 8).
struct GpuSet {
  GpuSpec gpu;
  int count = 1;
  int nodes = 1;
  int per_node() const { return count / nodes; }
};

// Looks a name up (case-insensitive, aliases) in `catalog`. Throws InputError naming the known
// GPUs when absent.
const GpuSpec& find_gpu(const std::vector<GpuSpec>& catalog, const std::string& name);
GpuSet parse_gpus(const std::vector<GpuSpec>& catalog, const std::string& text);
// "NAME:memory_gib=96,bandwidth_gbs=1800,fp8=1,fp4=1,interconnect_gbs=64,max_per_node=8"
// Adds or replaces the entry in `catalog`. Throws InputError.
void add_gpu_spec(std::vector<GpuSpec>& catalog, const std::string& text);

}  // namespace v4::plan
