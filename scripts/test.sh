#!/usr/bin/env bash
# Build (Release, Ninja) and run the whole test suite under CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
# Bounded fuzzing of the text layer (tokenizer, renderer JSON, DSML parser) when available.
if [ -x scripts/fuzz.sh ]; then bash scripts/fuzz.sh; fi
