// Real-time priority for latency-critical I/O threads (the bench client's readers, the router's
// event loops): on a machine shared with other work, a woken I/O thread at normal priority can
// wait milliseconds for a core, and its reads or forwards come late.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <thread>

namespace v4 {

// Puts the calling thread at SCHED_FIFO priority 1. Returns "" when granted; otherwise why not
// (no CAP_SYS_NICE, typically), after asking the scheduler for a 100 us EEVDF slice instead
// (Linux >= 6.12, sched_setattr's sched_runtime, no privilege needed): a woken thread with a short
// slice preempts a CPU-bound task at once rather than at the end of that task's slice (about 3 ms
// here), its CPU share unchanged. Threads the caller starts afterwards inherit the setting.
std::string raise_io_thread_priority();

// Asks the scheduler for an EEVDF slice of `ns` for the calling thread at its current policy and
// nice value (sched_setattr's sched_runtime for SCHED_OTHER, Linux >= 6.12, no privilege needed).
// Returns whether the kernel took it (older kernels accept and ignore it: see sched_getattr).
bool request_short_slice(uint64_t ns);

// The same for a slice in microseconds, as the options carry it (--io-slice-us); `us` <= 0 asks
// for nothing, keeping the kernel's default slice. Returns whether a slice was set.
bool request_short_slice_us(int us);

// The EEVDF slice (sched_getattr's sched_runtime, ns) of thread `tid` (0: the caller); 0 where
// the kernel does not say.
uint64_t thread_slice_ns(pid_t tid);

// Starts a thread that runs `body`, first raising its own priority as above when `realtime`.
// Returns once the thread has tried, with *refused set to why it was refused ("" when granted or
// not asked).
std::thread start_io_thread(bool realtime, std::function<void()> body, std::string* refused);

}  // namespace v4
