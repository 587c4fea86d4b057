// Each part of v4host adds its subcommands to the one CLI app.
#pragma once
#include <CLI/CLI.hpp>

namespace v4::cli {

void add_engine_commands(CLI::App& app);  // logits, generate, synth, bench-engine
void add_text_commands(CLI::App& app);    // tokenize, detokenize, render
void add_serve_command(CLI::App& app);    // serve
void add_check_command(CLI::App& app);    // check
void add_bench_serve_command(CLI::App& app);  // bench-serve
void add_bench_command(CLI::App& app);        // bench, bench compare
void add_route_command(CLI::App& app);        // route
void add_spend_command(CLI::App& app);        // spend
void add_eval_command(CLI::App& app);         // eval run | compare | report

}  // namespace v4::cli
