#!/usr/bin/env bash
# The WMT22 zh->en / SmolLM2-135M-Instruct routing experiment, end to end (see README.md).
#
#   experiments/wmt22-smollm2/run.sh DATA.jsonl OUT_DIR
#
# DATA.jsonl  the 1,875 WMT22 zh->en MQM segments (score_small, score_large, gain, src,
#             src_lang, tgt_lang, doc_id, ...); it is read, never copied into the repository.
# OUT_DIR     where everything is written; must be outside the repository.
#
# Environment:
#   ROUTELMT_BIN    the routelmt binary (default: `routelmt` on PATH)
#   ROUTELMT_MODEL  the base model (default: ~/.cache/routelmt-models/SmolLM2-135M-Instruct.Q4_1.gguf,
#                   as models/fetch.sh puts it)
#   SWEEP_SEEDS     seeds per setting in the head sweep (default 5)
#   LORA_STEPS      optimizer steps of the LoRA timing run (default 5; 0 skips it)
#
# Stages (each one's wall time goes to OUT_DIR/timings.tsv):
#   1. split.py: fixed split by document (sha256(doc_id) % 10: 0-5 train, 6-7 valid, 8-9 test)
#   2. routelmt features on train and valid (the frozen model's states, computed once)
#   3. sweep_head.py: lr x weight decay sweep of the head-only router on those states,
#      chosen by mean validation Spearman over seeds (the test part is never read)
#   4. routelmt train --no-lora with the chosen setting, for --head gain and --head quality
#   5. routelmt score on the test part with both routers, merged into one file
#      (pred_gain, pred_quality)
#   6. routelmt eval at budget 0.3, severe delta 5 MQM points
#   7. a LoRA (r 8) training run stopped after LORA_STEPS steps, timed, for the cost estimate
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 DATA.jsonl OUT_DIR" >&2
    exit 2
fi
DATA=$(realpath "$1")
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
mkdir -p "$2"
OUT=$(realpath "$2")
case "$OUT/" in
    "$REPO"/*) echo "OUT_DIR must be outside the repository ($REPO)" >&2; exit 2 ;;
esac
BIN=${ROUTELMT_BIN:-routelmt}
MODEL=${ROUTELMT_MODEL:-$HOME/.cache/routelmt-models/SmolLM2-135M-Instruct.Q4_1.gguf}
SEEDS=${SWEEP_SEEDS:-5}
LORA_STEPS=${LORA_STEPS:-5}
PY=${PYTHON:-python3}

TIMINGS="$OUT/timings.tsv"
printf 'stage\tseconds\n' > "$TIMINGS"
stage() { # stage NAME command...: runs and records the wall time
    local name=$1 t0 t1
    shift
    echo "== $name" >&2
    t0=$(date +%s.%N)
    "$@"
    t1=$(date +%s.%N)
    printf '%s\t%.1f\n' "$name" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" >> "$TIMINGS"
}

{ lscpu | grep -E '^(Model name|CPU\(s\))'; "$BIN" --version; "$BIN" info --model "$MODEL" --device cpu; } \
    > "$OUT/machine.txt" 2>&1

# 1. Split.
stage split "$PY" "$HERE/split.py" "$DATA" "$OUT/split" | tee "$OUT/split_counts.txt"

# 2. Frozen features of train and valid (batch 8, as the trainer computes them).
mkdir -p "$OUT/features"
for part in train valid; do
    stage "features-$part" "$BIN" features --model "$MODEL" --device cpu --batch-size 8 \
        --input "$OUT/split/$part.jsonl" --output "$OUT/features/$part.jsonl"
done

# 3. Sweep (lr x weight decay, 3 epochs, best epoch kept as the trainer does).
stage sweep "$PY" "$HERE/sweep_head.py" --split "$OUT/split" --features "$OUT/features" \
    --heads gain,quality --lrs 5e-5,2e-4,1e-3,5e-3 --wds 0,0.01,0.1,1,10 --epochs 3 \
    --seeds "$SEEDS" --out "$OUT/sweep.tsv"

# The best row per head by mean validation Spearman (first in table order on ties).
choose() { # choose HEAD -> "LR WD EPOCHS"
    awk -F'\t' -v h="$1" 'NR > 1 && $1 == h && (best == "" || $5 > best) { best = $5; pick = $2 " " $3 " " $4 }
        END { print pick }' "$OUT/sweep.tsv"
}

# 4. The chosen runs.
for head in gain quality; do
    read -r lr wd epochs <<< "$(choose $head)"
    echo "$head: lr $lr, weight decay $wd, epochs $epochs" | tee -a "$OUT/chosen.txt"
    stage "train-$head" "$BIN" train --model "$MODEL" --device cpu --no-lora --head "$head" \
        --lr "$lr" --weight-decay "$wd" --epochs "$epochs" --seed 0 \
        --train "$OUT/split/train.jsonl" --valid "$OUT/split/valid.jsonl" \
        --output "$OUT/router-$head" --force 2>&1 | tee "$OUT/train-$head.log"
done

# 5. Score the test part with both routers; one file with both predictions.
for head in gain quality; do
    stage "score-$head" "$BIN" score --model "$MODEL" --device cpu --router "$OUT/router-$head" \
        --input "$OUT/split/test.jsonl" --output "$OUT/scored-$head.jsonl"
done
"$PY" - "$OUT" <<'EOF'
import json, sys
out = sys.argv[1]
def rows(head):
    with open(f"{out}/scored-{head}.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
gain, quality = rows("gain"), rows("quality")
assert len(gain) == len(quality)
with open(f"{out}/scored.jsonl", "w", encoding="utf-8") as f:
    for g, q in zip(gain, quality):
        assert g["id"] == q["id"]
        g["pred_gain"] = g.pop("score")
        g["pred_quality"] = q["score"]
        f.write(json.dumps(g, ensure_ascii=False) + "\n")
EOF

# 6. Evaluate on the test part (the quality router routes the lowest predicted quality first).
stage eval "$BIN" eval --data "$OUT/scored.jsonl" --budget 0.3 --severe-delta 5 \
    --routers random,length,oracle-gain,oracle-quality,field:pred_gain,field:pred_quality:asc \
    --output "$OUT/report.json" --plot "$OUT/curve.svg" | tee "$OUT/eval.md"

# 7. LoRA cost: a LoRA r 8 run on the training part, stopped after LORA_STEPS optimizer steps
# (hidden flag --stop-after-steps; the run ends with a "stopped" error by design).
if [ "$LORA_STEPS" -gt 0 ]; then
    rm -rf "$OUT/router-lora-timing"
    t0=$(date +%s.%N)
    "$BIN" train --model "$MODEL" --device cpu --head gain \
        --train "$OUT/split/train.jsonl" --valid "$OUT/split/valid.jsonl" \
        --output "$OUT/router-lora-timing" --stop-after-steps "$LORA_STEPS" \
        > "$OUT/lora-timing.log" 2>&1 || true
    t1=$(date +%s.%N)
    printf 'lora-%s-steps\t%.1f\n' "$LORA_STEPS" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" >> "$TIMINGS"
fi

cat "$TIMINGS"
