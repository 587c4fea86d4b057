#include "cli/commands.h"

namespace v4::cli {

void add_serve_command(CLI::App&) {}

}  // namespace v4::cli
