#include "cli/commands.h"

namespace v4::cli {

void add_engine_commands(CLI::App&) {}

}  // namespace v4::cli
