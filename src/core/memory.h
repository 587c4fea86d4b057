// What the C allocator holds for the process, and handing its free memory back to the OS.
// glibc-specific where it matters; elsewhere the functions report nothing / do nothing.
#pragma once
#include <cstddef>
#include <optional>

namespace v4 {

// Bytes the allocator has handed out and not yet had back (small blocks in every arena plus
// blocks mapped on their own). Unlike the resident size this does not depend on whether freed
// pages were returned to the OS, so it is the figure a leak shows in. Walks every arena's free
// lists under its lock, a cost that grows with the free blocks (not measured here): for a
// scrape now and then, not for a probe or a per-token path. nullopt where unknown.
std::optional<size_t> heap_in_use_bytes();

// The memory this process may use: the machine's MemTotal, or its cgroup's memory.max where
// that is lower (a container). nullopt where unknown.
std::optional<size_t> usable_memory_bytes();

// Returns freed pages of every arena to the OS (glibc keeps them otherwise). Walks every arena;
// call when going idle, not on a hot path.
void release_free_memory();

}  // namespace v4
