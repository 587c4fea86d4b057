// Running an event loop that keeps polling for a short while before it sleeps.
//
// A loop blocked in epoll_wait needs a thread wake-up when its next byte arrives, and on a shared
// virtual machine that wake-up (often a halted vCPU to interrupt) is the tail of the router's
// added latency, not its own work. A loop that handled an event a moment ago is likely to get
// another soon (the upstream's answer to the request it just forwarded, the next chunk of a
// stream), so it may stay on the CPU polling for `spin` and find that byte without a wake-up.
// The price is the CPU it polls with, which on a small machine the client and upstream lack.
#pragma once
#include <chrono>

namespace boost::asio {
class io_context;
}

namespace v4::net {

// Runs `io` until it is stopped or runs out of work, as io.run() does. With `spin` > 0, once a
// handler has run the loop polls without blocking (a non-blocking epoll_wait per pass, the CPU
// yielded to any other runnable thread between passes) until `spin` has passed with no handler,
// and only then blocks again; an idle loop still sleeps, and io.stop() ends it at the next pass.
void run_loop(boost::asio::io_context& io, std::chrono::microseconds spin);

}  // namespace v4::net
