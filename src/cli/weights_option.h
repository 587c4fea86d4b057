// The option every command that loads a checkpoint shares: whether its pages are mapped up front.
#pragma once
#include <CLI/CLI.hpp>
#include <string>

#include "core/error.h"
#include "model/weights.h"

namespace v4::cli {

inline void add_populate_option(CLI::App* c, std::string* v) {
  c->add_option("--populate", *v,
                "map every page of the checkpoint at load: auto (when it fits in 80% of memory), on, off "
                "(mapped as used; pages untouched for a while may be evicted and read again)")
      ->check(CLI::IsMember({"auto", "on", "off"}));
}

inline Populate populate_from(const std::string& s) {
  Populate p = Populate::Auto;
  if (!parse_populate(s, &p)) throw InputError(std::string("--populate must be ") + kPopulateChoices + " (got '" + s + "')");
  return p;
}

}  // namespace v4::cli
