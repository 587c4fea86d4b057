// Error types shared by every part. Bad input is reported, never crashes.
#pragma once
#include <stdexcept>
#include <string>

namespace v4 {

// A user-facing problem with input (file, flag, request). CLI maps it to exit code 2.
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A checkpoint that is missing, truncated or inconsistent; message names tensor and file.
struct CheckpointError : InputError {
  using InputError::InputError;
};

}  // namespace v4
