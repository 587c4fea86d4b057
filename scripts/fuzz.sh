#!/usr/bin/env bash
# Bounded libFuzzer runs of the text layer: tokenizer, renderer JSON input, DSML parser.
# Builds with clang++ in build-fuzz/ and runs each target for about FUZZ_SECONDS (default 20) CPU seconds;
# fails on any crash, sanitizer report, leak or hang (timeout per input: 10 s).
# Skips (exit 0) with a message when clang or libFuzzer is not installed.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${FUZZ_SECONDS:-20}"
if ! command -v clang++ >/dev/null 2>&1; then
  echo "fuzz: skipped (clang++ not installed; bash scripts/setup.sh installs clang and libclang-rt-14-dev)"
  exit 0
fi
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n' > "$probe/p.cpp"
if ! clang++ -fsanitize=fuzzer "$probe/p.cpp" -o "$probe/p" >/dev/null 2>&1; then
  echo "fuzz: skipped (clang++ cannot link libFuzzer; install libclang-rt-14-dev)"
  exit 0
fi
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Release -DV4HOST_FUZZ=ON \
  -DV4HOST_BUILD_TESTS=OFF -DV4HOST_BUILD_BENCH=OFF >/dev/null
cmake --build build-fuzz --target fuzz_tokenizer fuzz_render fuzz_dsml -j"${FUZZ_JOBS:-2}"
# The three targets run side by side (CI has 2 cores): each gets SECS x 2/3 of wall time x 3/2,
# i.e. about SECS seconds of CPU, in 1.5 x SECS of wall time instead of 3 x SECS one after another.
WALL=$(( SECS * 3 / 2 ))
run_one() {
  local t=$1 corpus="build-fuzz/corpus/$1"
  mkdir -p "$corpus"
  [ -d "fuzz/seeds/$t" ] && cp -n fuzz/seeds/"$t"/* "$corpus"/ 2>/dev/null || true
  # Official encoding fixtures as extra seeds (tokenizer and DSML) when the shared data is present.
  local shared="${V4HOST_SHARED:-../shared}/encoding"
  if [ -d "$shared" ] && [ "$t" != render ]; then
    for f in "$shared"/test_output_*.txt; do [ -f "$f" ] && cp -n "$f" "$corpus"/ 2>/dev/null || true; done
  fi
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1 \
    "build-fuzz/fuzz/fuzz_$t" -max_total_time="$WALL" -timeout=10 -rss_limit_mb=4096 \
    -artifact_prefix="build-fuzz/crash-$t-" -print_final_stats=0 "$corpus" > "build-fuzz/fuzz_$t.log" 2>&1
}
echo "fuzz: tokenizer, render, dsml side by side for ${WALL}s"
declare -A pid
for t in tokenizer render dsml; do run_one "$t" & pid[$t]=$!; done
fail=0
for t in tokenizer render dsml; do
  if ! wait "${pid[$t]}"; then
    echo "fuzz: $t FAILED (see build-fuzz/fuzz_$t.log and build-fuzz/crash-$t-*)"
    tail -40 "build-fuzz/fuzz_$t.log"
    fail=1
  else
    echo "fuzz: $t $(grep -E '^#[0-9]+.*DONE|Done [0-9]+ runs' "build-fuzz/fuzz_$t.log" | tail -1 || true)"
  fi
done
exit $fail
