#!/usr/bin/env bash
# Builds the browser package web/pkg/ (ES module: routelmt_web.js + routelmt_web_bg.wasm +
# .d.ts, `wasm-bindgen --target web`) from crates/routelmt-web, release, for wasm32.
# Trunk runs this as its pre-build hook (Trunk.toml), so `trunk build` / `trunk serve` always
# serve a fresh package; it can also run alone. Needs scripts/setup-web.sh's tools.
# Usage: scripts/build-web.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="${ROUTELMT_TOOLS:-$HOME/.cache/routelmt-tools}/bin"
export PATH="$TOOLS:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/routelmt-target}"
cargo build --release --locked --target wasm32-unknown-unknown -p routelmt-web
wasm="$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/routelmt_web.wasm"
out=web/pkg
tmp=$(mktemp -d web/.pkg.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
wasm-bindgen --target web --out-dir "$tmp" "$wasm"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
cat > "$tmp/package.json" <<JSON
{
  "name": "routelmt-web",
  "version": "$version",
  "description": "RouteLMT in the browser: route translation requests with a small model's prefill (WebGPU or wasm CPU)",
  "license": "Apache-2.0",
  "type": "module",
  "main": "routelmt_web.js",
  "types": "routelmt_web.d.ts",
  "files": ["routelmt_web.js", "routelmt_web_bg.wasm", "routelmt_web.d.ts", "routelmt_web_bg.wasm.d.ts", "snippets"],
  "sideEffects": false
}
JSON
rm -rf "$out"
chmod 755 "$tmp"
mv "$tmp" "$out"
trap - EXIT
echo "build-web: wrote $out ($(du -h "$out/routelmt_web_bg.wasm" | cut -f1) wasm)" >&2
