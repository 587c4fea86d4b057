#!/usr/bin/env bash
# Build (Release, Ninja) and run the whole test suite: bounded fuzzing of the text layer, then
# every GoogleTest and node (official SDK) test under CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each stage's wall time is printed: the whole run must stay within ~20 minutes on 2 cores.
stage() { echo "test.sh: $1 took $((SECONDS - t0)) s (total ${SECONDS} s)"; t0=$SECONDS; }
t0=$SECONDS
bash scripts/setup.sh
stage setup
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
stage build
# Tokenizer, renderer JSON and DSML parser under libFuzzer for a bounded time (skips without clang).
if [ -x scripts/fuzz.sh ]; then bash scripts/fuzz.sh; fi
stage fuzz
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
stage ctest
