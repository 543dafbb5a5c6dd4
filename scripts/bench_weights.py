#!/usr/bin/env python3
"""How much `--weights f16|q8|q4` changes what the router sees, against f32, on real data.

    scripts/bench_weights.py --bin target/release/routelmt --model MODEL.gguf \\
        --data WMT.jsonl --out /tmp/weights [--n 800] [--weights f16,q8,q4]

The first N records of DATA (src, src_lang, tgt_lang, score_small, score_large) are cut into a
train half, a validation quarter and a test quarter. One head-only router is trained on the
train half with f32 weights (3 epochs); then, for f32 and each of --weights, the test quarter is
run through `routelmt features` (final hidden states) and `routelmt score` (the router's scores)
with those weights. Printed, one row per precision: the worst and median relative hidden-state
error against f32 (max |Δ| / max |h| per record), the Spearman of the routing scores with the
f32 scores and the Spearman with the true gain (score_large - score_small). Standard library
only; nothing is written inside the repository. (Speed: `routelmt bench prefill --weights`.)
"""
import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path


def ranks(xs):
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    r = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2
        i = j + 1
    return r


def spearman(a, b):
    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = sum((x - ma) ** 2 for x in ra)
    vb = sum((y - mb) ** 2 for y in rb)
    return cov / (va * vb) ** 0.5


def run(cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def read(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default="routelmt")
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=800)
    ap.add_argument("--weights", default="f16,q8,q4")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    keep = ("src", "src_lang", "tgt_lang", "score_small", "score_large")
    recs = []
    for line in Path(args.data).read_text().splitlines()[: args.n]:
        r = json.loads(line)
        recs.append({"id": r["id"], **{k: r[k] for k in keep}})
    parts = {"train": recs[: len(recs) // 2], "valid": recs[len(recs) // 2 : 3 * len(recs) // 4],
             "test": recs[3 * len(recs) // 4 :]}
    for name, rs in parts.items():
        (out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rs))
    router = out / "router"
    base = ["--model", args.model, "--device", "cpu"]
    run([args.bin, "train", *base, "--train", str(out / "train.jsonl"), "--valid",
         str(out / "valid.jsonl"), "--output", str(router), "--no-lora", "--epochs", "3",
         "--weights", "f32", "--force"])
    test = out / "test.jsonl"
    gains = [r["score_large"] - r["score_small"] for r in parts["test"]]
    results = {}
    for w in ["f32"] + [w for w in args.weights.split(",") if w != "f32"]:
        feats, scores = out / f"features-{w}.jsonl", out / f"scores-{w}.jsonl"
        run([args.bin, "features", *base, "--input", str(test), "--output", str(feats),
             "--weights", w])
        run([args.bin, "score", *base, "--router", str(router), "--input", str(test),
                    "--output", str(scores), "--weights", w])
        results[w] = ([f["hidden"] for f in read(feats)], [s["score"] for s in read(scores)])
    ref_h, ref_s = results["f32"]
    print(f"model {args.model}, {len(parts['test'])} test records of {args.data}\n")
    print("| weights | max rel. hidden error, worst | median | routing-score Spearman vs f32 "
          "| Spearman vs true gain |")
    print("|---|---:|---:|---:|---:|")
    for w, (hs, ss) in results.items():
        rel = []
        for a, b in zip(ref_h, hs):
            scale = max(abs(x) for x in a)
            rel.append(max(abs(x - y) for x, y in zip(a, b)) / scale)
        print(f"| {w} | {max(rel):.2e} | {statistics.median(rel):.2e} | "
              f"{spearman(ref_s, ss):.4f} | {spearman(gains, ss):.4f} |")


if __name__ == "__main__":
    sys.exit(main())
