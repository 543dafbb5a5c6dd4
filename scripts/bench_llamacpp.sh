#!/usr/bin/env bash
# Native prefill side by side with llama.cpp on the same GGUF files (issue 19). For each file and
# thread count, in ROUNDS alternating rounds: llama.cpp's `llama-bench -p SEQ -n 0 -t N` and
# `routelmt bench prefill --model FILE --seq SEQ --batch 1 --weights W` (RAYON_NUM_THREADS=N),
# each in its own process under /usr/bin/time for its peak RSS. Prints one table: median prompt
# tokens/s of each (llama-bench's per-repetition samples and ours' per-iteration figures,
# pooled over the rounds), the ratio ours/llama.cpp and both peak RSS figures.
#
# Files: Qwen3-0.6B architecture, random weights, written by llama.cpp's converter and
# llama-quantize (scripts/make_llamacpp_gguf.sh); llama.cpp is built from the PyPI sdist
# (scripts/setup-llamacpp.sh). Not part of CI: a full run takes about 30 minutes on 2 cores.
#
# Usage: scripts/bench_llamacpp.sh
# Env:   TYPES="Q8_0 F16 Q4_0"   SEQS="64 512"   THREADS="1 2"   ROUNDS=3   REPS=3 (per round)
#        ROUTELMT_BIN (default: a release build under $HOME/.cache/routelmt-release)
#        FILES="/path/a.gguf:q8 ..." to bench other files instead (PATH:WEIGHTS)
set -euo pipefail
cd "$(dirname "$0")/.."
TYPES=${TYPES:-Q8_0 F16 Q4_0}
SEQS=${SEQS:-64 512}
THREADS=${THREADS:-1 2}
ROUNDS=${ROUNDS:-3}
REPS=${REPS:-3}
say() { printf 'bench_llamacpp: %s\n' "$*" >&2; }

LLAMA=$(scripts/setup-llamacpp.sh | tail -1)
if [ -z "${ROUTELMT_BIN:-}" ]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/routelmt-release}"
  say "building routelmt (release) in $CARGO_TARGET_DIR"
  cargo build --release -q -p routelmt-cli >&2
  ROUTELMT_BIN="$CARGO_TARGET_DIR/release/routelmt"
fi

# The routelmt --weights that keeps each GGUF type closest to its stored form.
weights_for() {
  case "$1" in
    F16 | BF16) echo f16 ;; Q8_0) echo q8 ;; Q4_0 | Q4_1 | Q4_K_M | Q4_K_S) echo q4 ;; *) echo f32 ;;
  esac
}
if [ -z "${FILES:-}" ]; then
  FILES=""
  while read -r type path; do
    FILES="$FILES $path:$(weights_for "$type")"
  done < <(scripts/make_llamacpp_gguf.sh $TYPES)
fi

RAW=$(mktemp -d)
trap 'rm -rf "$RAW"' EXIT
cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
say "machine: $cpu, $(nproc) cores; llama.cpp $(basename "$(dirname "$(dirname "$LLAMA")")")"
for round in $(seq 1 "$ROUNDS"); do
  for fw in $FILES; do
    file=${fw%:*}; w=${fw##*:}
    for t in $THREADS; do
      for s in $SEQS; do
        tag="$(basename "$file" .gguf)|$w|$t|$s"
        say "round $round: $tag"
        /usr/bin/time -f '%M' -o "$RAW/time" "$LLAMA/llama-bench" -m "$file" -p "$s" -n 0 -t "$t" \
          -r "$REPS" -o json >"$RAW/llama.json" 2>"$RAW/llama.err" \
          || { say "llama-bench failed:"; tail -5 "$RAW/llama.err" >&2; exit 1; }
        printf '%s\tllama\t%s\t%s\n' "$tag" "$(tr -d '\n' <"$RAW/llama.json")" "$(tail -1 "$RAW/time")" >>"$RAW/rows"
        RAYON_NUM_THREADS=$t /usr/bin/time -f '%M' -o "$RAW/time" "$ROUTELMT_BIN" bench prefill \
          --model "$file" --seq "$s" --batch 1 --device cpu --weights "$w" --iters "$REPS" \
          --json >"$RAW/ours.json" 2>"$RAW/ours.err" \
          || { say "routelmt bench prefill failed:"; tail -5 "$RAW/ours.err" >&2; exit 1; }
        printf '%s\tours\t%s\t%s\n' "$tag" "$(tr -d '\n' <"$RAW/ours.json")" "$(tail -1 "$RAW/time")" >>"$RAW/rows"
      done
    done
  done
done

python3 - "$RAW/rows" "$cpu" <<'PY'
import json, statistics, sys
rows, cpu = sys.argv[1], sys.argv[2]
data = {}
for line in open(rows):
    tag, who, js, rss_kb = line.rstrip("\n").split("\t")
    d = data.setdefault(tag, {"llama": [], "ours": [], "llama_rss": 0, "ours_rss": 0, "iters": {}})
    if who == "llama":
        for r in json.loads(js):
            if r.get("n_prompt", 0) > 0 and r.get("n_gen", 0) == 0:
                d["llama"] += r.get("samples_ts") or [r["avg_ts"]]
    else:
        for r in json.loads(js)["results"]:
            d["ours"] += r.get("iter_tokens_per_s") or [r["tokens_per_s"]]
    d[who + "_rss"] = max(d[who + "_rss"], int(rss_kb) / 1024)
print(f"machine: {cpu}; prompt tokens/s at batch 1, medians over all repetitions of all rounds")
print(f"| file | --weights | threads | tokens | routelmt tok/s | llama-bench tok/s | ratio | peak RSS routelmt / llama.cpp (MiB) |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for tag, d in data.items():
    f, w, t, s = tag.split("|")
    o, l = statistics.median(d["ours"]), statistics.median(d["llama"])
    print(f"| {f} | {w} | {t} | {s} | {o:.1f} | {l:.1f} | {o / l:.2f}x | {d['ours_rss']:.0f} / {d['llama_rss']:.0f} |")
PY
