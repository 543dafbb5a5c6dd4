#!/usr/bin/env python3
"""Synthetic evaluation records for benchmarking `routelmt eval` (not goldens, not committed).

Writes N JSONL records in the project's schema: id, src (10-120 characters, mixed scripts),
src_lang, tgt_lang, ref, hyp_small, hyp_large, MQM-like score_small/score_large (many ties,
~30% zero gains, large better on average), gain, and two router fields: `qe` (a noisy
small-quality estimate) and `gain_hat` (a noisy gain prediction). Lines are ~640 bytes
(a million records: 645 MB), like real data with texts.

Usage (standard library only; ~2 minutes for a million records on one core):
    python3 scripts/route_bench_data.py --n 1000000 --out /tmp/bench1m.jsonl
Then, e.g.:
    /usr/bin/time -v target/release/routelmt eval --data /tmp/bench1m.jsonl --budget 0.3 \
        --routers random,length,oracle-gain,oracle-quality,field:gain_hat --output /tmp/b.json
"""

import argparse
import json
import random

MQM = [0.0, -1.0, -2.0, -5.0, -6.0, -10.0, -25.0]
MQM_W = [0.35, 0.2, 0.1, 0.15, 0.08, 0.07, 0.05]  # small model
MQM_W_LARGE = [0.5, 0.2, 0.1, 0.1, 0.05, 0.04, 0.01]  # large model: better on average
CHARS = "abcdefghijklmnopqrstuvwxyz     的一是不了人我在有他这为之大来以个中上们перевдкчсмо"


def text(rng, lo, hi):
    return "".join(rng.choices(CHARS, k=rng.randint(lo, hi))).strip() or "x"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    with open(a.out, "w", encoding="utf-8") as f:
        for i in range(a.n):
            small = rng.choices(MQM, MQM_W)[0]
            large = small if rng.random() < 0.3 else rng.choices(MQM, MQM_W_LARGE)[0]
            gain = large - small
            rec = {
                "id": f"bench.{i}",
                "src": text(rng, 10, 120),
                "src_lang": "zh",
                "tgt_lang": "en",
                "ref": text(rng, 10, 100),
                "hyp_small": text(rng, 10, 100),
                "hyp_large": text(rng, 10, 100),
                "score_small": small,
                "score_large": large,
                "gain": gain,
                "score_type": "mqm",
                "qe": round(small + rng.gauss(0, 4), 4),
                "gain_hat": round(gain + rng.gauss(0, 6), 4),
            }
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
