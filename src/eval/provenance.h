// Where a result came from, recorded in every summary so a rerun after a model or engine update
// is a diff, not a guess: endpoint, API, model, the server's own description (/v1/models),
// v4host version, sampling settings and seeds, machine, times.
#pragma once
#include <string>

#include "eval/item.h"

namespace v4::eval {

// hostname, cpu model, logical cores, kernel, OS.
Json machine_info();
// Current UTC time, ISO 8601.
std::string utc_now();

}  // namespace v4::eval
