// v4host: self-hosting DeepSeek V4 — engine, text layer, server, and the fit/cost checker.
#include <cstdio>
#include <exception>

#include "cli/commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"v4host — run, serve and plan self-hosted DeepSeek V4 models"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "v4host 0.1.0");
  v4::cli::add_engine_commands(app);
  v4::cli::add_text_commands(app);
  v4::cli::add_serve_command(app);
  v4::cli::add_check_command(app);
  v4::cli::add_bench_serve_command(app);
  v4::cli::add_bench_command(app);
  v4::cli::add_route_command(app);
  v4::cli::add_spend_command(app);
  v4::cli::add_eval_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  } catch (const v4::InputError& e) {
    std::fprintf(stderr, "v4host: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "v4host: fatal: %s\n", e.what());
    return 1;
  }
  return 0;
}
