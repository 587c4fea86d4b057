// A client that disconnects while its request is still generating — streaming or not — has its
// request cancelled and its sequence freed at once (the scheduler's running count and KV bytes in
// /health drop to zero long before the request could have finished), and the server counts it.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "../common/loopback.h"
#include "server_fixture.h"

using namespace v4;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

json health(test::ServerFixture& f) {
  auto r = f.client().Get("/health");
  return r ? json::parse(r->body) : json();
}

double metric(test::ServerFixture& f, const std::string& name) {
  auto r = f.client().Get("/metrics");
  if (!r) return -1;
  size_t p = r->body.find("\n" + name + " ");
  return p == std::string::npos ? 0 : std::stod(r->body.substr(p + name.size() + 2));
}

// Sends a long generation, waits until it runs, closes the socket; returns seconds until freed.
double disconnect_and_time_the_release(test::ServerFixture& f, bool stream) {
  json body = {{"model", "test-model"}, {"prompt", "Once upon a time"}, {"max_tokens", 3000}, {"temperature", 0},
               {"stream", stream}};
  const std::string b = body.dump();
  const std::string req = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
                          std::to_string(b.size()) + "\r\n\r\n" + b;
  int fd = v4::test::connect_loopback(f.port);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(::send(fd, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
  const auto t_wait = Clock::now() + std::chrono::seconds(20);
  json h;
  while (Clock::now() < t_wait) {
    h = health(f);
    if (h.value("running", 0) == 1 && h.value("kv_bytes", 0) > 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(h.value("running", 0), 1) << h.dump();
  EXPECT_GT(h.value("kv_bytes", 0), 0) << h.dump();
  ::close(fd);
  const auto t0 = Clock::now();
  while (Clock::now() - t0 < std::chrono::seconds(20)) {
    h = health(f);
    if (h.value("running", 1) == 0 && h.value("kv_bytes", 1) == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(h.value("running", 1), 0) << h.dump();
  EXPECT_EQ(h.value("kv_bytes", 1), 0) << h.dump();
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

TEST(HttpDisconnect, NonStreamingAndStreamingRequestsAreFreedWhenTheClientLeaves) {
  test::ServerFixture f;
  ServeOptions o;
  o.sched.ctx = 4096;
  std::string why = f.start(o);
  if (!why.empty()) GTEST_SKIP() << why;
  const double before = metric(f, "v4host_client_disconnects_total");
  // 3000 tokens take this model many seconds; freeing must take a step or two.
  EXPECT_LT(disconnect_and_time_the_release(f, false), 2.0);
  EXPECT_LT(disconnect_and_time_the_release(f, true), 2.0);
  // Both counted once the replies have been finalised.
  const auto t0 = Clock::now();
  while (metric(f, "v4host_client_disconnects_total") < before + 2 && Clock::now() - t0 < std::chrono::seconds(5))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(metric(f, "v4host_client_disconnects_total"), before + 2);
  // And the server goes on serving.
  auto r = f.client().Post("/v1/completions", json{{"model", "test-model"}, {"prompt", "hi"}, {"max_tokens", 3}}.dump(),
                           "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

}  // namespace
