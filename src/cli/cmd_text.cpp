#include "cli/commands.h"

namespace v4::cli {

void add_text_commands(CLI::App&) {}

}  // namespace v4::cli
