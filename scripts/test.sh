#!/usr/bin/env bash
# Build (Release, Ninja) and run the whole test suite: bounded fuzzing of the text layer, then
# every GoogleTest and node (official SDK) test under CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
# Tokenizer, renderer JSON and DSML parser under libFuzzer for a bounded time (skips without clang).
if [ -x scripts/fuzz.sh ]; then bash scripts/fuzz.sh; fi
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
