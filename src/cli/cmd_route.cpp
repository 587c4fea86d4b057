// v4host route: the gateway in front of self-hosted V4 and hosted APIs (docs/route.md).
#include <cstdio>

#include "cli/commands.h"
#include "core/error.h"
#include "router/config.h"

namespace v4::cli {

namespace {

struct RouteArgs {
  std::string config, check_config;
};

void run_route(const RouteArgs& a) {
  if (!a.check_config.empty()) {
    router::Config cfg = router::load_config_file(a.check_config);
    std::fputs(router::describe_config(cfg).c_str(), stdout);
    std::printf("config OK\n");
    return;
  }
  throw InputError("give --check-config FILE");
}

}  // namespace

void add_route_command(CLI::App& app) {
  auto a = std::make_shared<RouteArgs>();
  auto* c = app.add_subcommand("route", "Gateway: rules, fallback chains, verification, cost caps, budgets, residency, ledger");
  c->add_option("--check-config", a->check_config, "validate a config and print every resolved chain");
  c->callback([a] { run_route(*a); });
}

}  // namespace v4::cli
