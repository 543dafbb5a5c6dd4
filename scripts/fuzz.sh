#!/usr/bin/env bash
# Fuzzes every reader of untrusted input (fuzz/, cargo-fuzz on libFuzzer) and prints one table:
# target, seconds, executions, corpus size, crashes (+ timeouts + out-of-memory).
#   scripts/fuzz.sh                 every target for 20 s
#   scripts/fuzz.sh 600             every target for 10 minutes
#   scripts/fuzz.sh 60 gguf config  two targets for a minute each
# Not part of scripts/test.sh (a cold CI run is 7 minutes under its budget; building the targets
# alone takes longer). Needs the nightly toolchain (installed here if missing) and cargo-fuzz
# (installed under ~/.cache/routelmt-tools). The corpus grows under ~/.cache/routelmt-fuzz/corpus,
# seeded from fuzz/seeds (written by fuzz/make_seeds.py from the fixtures); a crash, timeout or
# out-of-memory input lands in ~/.cache/routelmt-fuzz/artifacts/TARGET/ and the script exits 1.
# Limits per input: 10 s, 1 GiB RSS (a reader may allocate in proportion to its input, never
# more than that).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-20}"
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(gguf gguf_checkpoint config safetensors_header tokenizer chat_template peft_adapter
    router_files jsonl request)
fi
TOOLS="${ROUTELMT_TOOLS:-$HOME/.cache/routelmt-tools}"
WORK="${ROUTELMT_FUZZ:-$HOME/.cache/routelmt-fuzz}"
TARGET_DIR="${ROUTELMT_FUZZ_TARGET:-$HOME/.cache/routelmt-fuzz-target}"
FUZZ_VERSION=0.13.2
export PATH="$TOOLS/bin:$PATH"

rustup run nightly rustc --version >/dev/null 2>&1 \
  || rustup toolchain install nightly --profile minimal
if [ "$(cargo-fuzz --version 2>/dev/null | cut -d' ' -f2)" != "$FUZZ_VERSION" ]; then
  env -u CARGO_TARGET_DIR cargo +nightly install --quiet --locked --root "$TOOLS" cargo-fuzz \
    --version "$FUZZ_VERSION"
fi

# Release with debug assertions and overflow checks (cargo-fuzz's default); no sanitizer: the
# readers are safe Rust, so what the fuzzer looks for is panics, overflows, hangs and memory.
(cd fuzz && cargo +nightly fuzz build -s none --target-dir "$TARGET_DIR" 2>&1 \
  | grep -v '^ *Compiling' >&2) || true
BIN="$TARGET_DIR/x86_64-unknown-linux-gnu/release"

ROWS=()
FAILED=0
for t in "${TARGETS[@]}"; do
  [ -x "$BIN/$t" ] || { echo "fuzz: $t did not build (see the output above)" >&2; exit 1; }
  corpus="$WORK/corpus/$t"
  artifacts="$WORK/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  cp -n fuzz/seeds/"$t"/* "$corpus"/
  log="$WORK/$t.log"
  echo "fuzz: $t for $SECONDS_EACH s (log $log)" >&2
  rc=0
  "$BIN/$t" "$corpus" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=1024 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1 || rc=$?
  execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)"
  secs="$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | grep -o 'in [0-9]*' | grep -o '[0-9]*' || echo "$SECONDS_EACH")"
  found="$(find "$artifacts" -type f | wc -l)"
  ROWS+=("$(printf '%-20s %8s %12s %8s %8s' "$t" "$secs" "$execs" "$(find "$corpus" -type f | wc -l)" "$found")")
  if [ "$rc" -ne 0 ] || [ "$found" -ne 0 ]; then
    FAILED=1
    echo "fuzz: $t FAILED (exit $rc): $(grep -m1 -E 'panicked|ERROR' "$log" || true)" >&2
  fi
done
printf '\n%-20s %8s %12s %8s %8s\n' target seconds executions corpus crashes
printf '%s\n' "${ROWS[@]}"
exit "$FAILED"
