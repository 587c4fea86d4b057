// v4host spend: what the routed traffic cost, from the router's SQLite ledger.
#include <cstdio>
#include <filesystem>

#include "cli/commands.h"
#include "core/error.h"
#include "router/ledger.h"

namespace v4::cli {

void add_spend_command(CLI::App& app) {
  auto q = std::make_shared<router::SpendQuery>();
  auto path = std::make_shared<std::string>();
  auto* c = app.add_subcommand("spend", "Spend report from a `v4host route` ledger (tariff and amortised self-hosted cost)");
  c->add_option("--ledger", *path, "the router's SQLite ledger file")->required();
  c->add_option("--by", q->by, "group by key | team | route | upstream | day (default route)");
  c->add_option("--since", q->since, "first UTC day included (YYYY-MM-DD)");
  c->add_option("--until", q->until, "last UTC day included (YYYY-MM-DD)");
  c->add_flag("--json", q->json, "JSON rows instead of a table");
  c->callback([q, path] {
    if (!std::filesystem::exists(*path)) throw InputError("--ledger: no such file " + *path);
    std::fputs(router::spend_report(*path, *q).c_str(), stdout);
  });
}

}  // namespace v4::cli
