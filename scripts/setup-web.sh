#!/usr/bin/env bash
# Installs what the browser build and its tests need, idempotently (seconds when present),
# cached under $HOME:
#   - wasm-bindgen-cli at exactly the wasm-bindgen version in Cargo.lock (`cargo install`
#     without --locked: with it, a pinned dependency is missing from the registry mirror) and
#     trunk 0.21.14 (0.22 needs a newer Rust; with --locked: without it, a newer cssparser breaks
#     its lightningcss), into $HOME/.cache/routelmt-tools, built in a throw-away target folder;
#   - Debian's chromium, for the headless browser tests (WebGPU on SwiftShader);
#   - the tests' npm packages (puppeteer-core, from web/package-lock.json) into web/node_modules.
# With --tools only the first two: what building the page needs (scripts/demo.sh), not its tests.
# Usage: scripts/setup-web.sh [--tools]
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="${ROUTELMT_TOOLS:-$HOME/.cache/routelmt-tools}"
TRUNK_VERSION=0.21.14
BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
say() { printf 'setup-web: %s\n' "$*" >&2; }
case "${1:-}" in
  "") TOOLS_ONLY=0 ;;
  --tools) TOOLS_ONLY=1 ;;
  *) say "usage: scripts/setup-web.sh [--tools]"; exit 2 ;;
esac
[ -n "$BINDGEN_VERSION" ] || { say "no wasm-bindgen entry in Cargo.lock"; exit 1; }
# The browser tests use node's test runner with --test-concurrency (Node >= 20.10).
[ "$TOOLS_ONLY" = 1 ] || node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 10) ? 0 : 1)' \
  || { say "Node.js >= 20.10 is needed for the browser tests (found $(node --version 2>/dev/null || echo none))"; exit 1; }
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    say "need root for: $*"; return 1; fi
}

if [ "$("$TOOLS/bin/wasm-bindgen" --version 2>/dev/null | cut -d' ' -f2)" != "$BINDGEN_VERSION" ]; then
  say "installing wasm-bindgen-cli $BINDGEN_VERSION (a few minutes, once)"
  env -u CARGO_TARGET_DIR cargo install --quiet --root "$TOOLS" wasm-bindgen-cli \
    --version "=$BINDGEN_VERSION" --force
fi
if [ "$("$TOOLS/bin/trunk" --version 2>/dev/null | cut -d' ' -f2)" != "$TRUNK_VERSION" ]; then
  say "installing trunk $TRUNK_VERSION (several minutes, once)"
  # A debug build: trunk only copies files and runs the hook, and it compiles in 4 minutes
  # instead of 9 on two cores.
  env -u CARGO_TARGET_DIR cargo install --quiet --locked --debug --root "$TOOLS" trunk \
    --version "=$TRUNK_VERSION" --force
fi
if [ "$TOOLS_ONLY" = 1 ]; then
  say "ok (wasm-bindgen $BINDGEN_VERSION, trunk $TRUNK_VERSION)"
  exit 0
fi
if ! command -v chromium >/dev/null || ! dpkg -s fonts-wqy-microhei >/dev/null 2>&1; then
  say "installing chromium"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null
fi
if [ ! -f web/node_modules/.package-lock.json ] || ! cmp -s web/package-lock.json web/node_modules/.routelmt-lock; then
  say "installing the browser tests' npm packages"
  (cd web && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --silent --no-audit --no-fund --prefer-offline)
  cp web/package-lock.json web/node_modules/.routelmt-lock
fi
say "ok (wasm-bindgen $BINDGEN_VERSION, trunk $TRUNK_VERSION, $(chromium --version 2>/dev/null | cut -d' ' -f1-2))"
