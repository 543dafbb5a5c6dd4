#!/usr/bin/env python3
"""Hyper-parameter sweep of the head-only (`--no-lora`) router, on cached features (stdlib only).

Why: with `--no-lora`, `routelmt train` runs the frozen model over every training and
validation prompt once per run (about 1.4 s per prompt for SmolLM2-135M on 2 CPU cores,
i.e. ~35 min per run on this data) and then trains only a linear head on those states.
A sweep of `routelmt train` runs would recompute the same states for every setting.
This script instead reads the states once, as written by `routelmt features` (same
model, same chat-templated prompts, same layer, same batch size as the trainer), and
replays the trainer's head optimization in plain Python:

  * labels standardized by the training mean and (population) std; head = linear layer
    with bias, weights N(0, 0.01), bias 0;
  * loss = mean squared error of the standardized label, mini-batches of --batch-size in
    a shuffled order per epoch;
  * AdamW as burn 0.22 implements it (beta1 0.9, beta2 0.999, eps 1e-8, decoupled decay
    p <- p * (1 - lr * wd) applied to weight and bias), learning rate warmed up linearly
    over ceil(warmup * steps) steps and then decayed linearly to zero (settings.rs lr_at);
  * after every epoch, the Spearman (average-tie ranks) of the head's output with the
    label on the validation part; the best epoch (earliest on ties) is the run's result.

The initialization and shuffling use Python's RNG, not burn's / ChaCha8, so a replayed
run is not bit-identical to `routelmt train` with the same seed: the sweep therefore
averages several seeds, and the chosen setting is then trained for real with
`routelmt train` (whose per-epoch validation Spearman can be compared with the replay).

It never reads the test part. Prints a TSV table (head, lr, wd, epochs, mean/min/max best
validation Spearman over seeds, mean best epoch) and writes it to OUT.tsv if given.

Command (from the repository root; FEAT holds `routelmt features` output for the train
and valid parts, SPLIT the labelled parts written by split.py):

    python3 experiments/wmt22-smollm2/sweep_head.py --split /tmp/exp/split \
        --features /tmp/exp/feat --out /tmp/exp/sweep.tsv
"""

import argparse
import json
import math
import os
import random
import sys


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load(split_dir, feat_dir, part, head):
    records = read_jsonl(os.path.join(split_dir, f"{part}.jsonl"))
    feats = read_jsonl(os.path.join(feat_dir, f"{part}.jsonl"))
    if len(records) != len(feats):
        sys.exit(f"{part}: {len(records)} records but {len(feats)} feature rows")
    xs, ys = [], []
    for r, f in zip(records, feats):
        if r["id"] != f["id"]:
            sys.exit(f"{part}: id {r['id']} vs feature id {f['id']}")
        xs.append([float(v) for v in f["hidden"]])
        ys.append(float(r["gain"] if head == "gain" else r["score_small"]))
    return xs, ys


def average_ranks(v):
    order = sorted(range(len(v)), key=lambda i: v[i])
    ranks = [0.0] * len(v)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
            j += 1
        r = (i + j) / 2.0 + 1.0
        for k in range(i, j + 1):
            ranks[order[k]] = r
        i = j + 1
    return ranks


def pearson(a, b):
    n = len(a)
    ma, mb = sum(a) / n, sum(b) / n
    sab = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    saa = sum((x - ma) ** 2 for x in a)
    sbb = sum((y - mb) ** 2 for y in b)
    if saa == 0 or sbb == 0:
        return 0.0
    return sab / math.sqrt(saa * sbb)


def spearman(a, b):
    return pearson(average_ranks(a), average_ranks(b))


def lr_at(lr, warmup, step, total):
    warm = math.ceil(warmup * total)
    if step < warm:
        return lr * (step + 1) / warm
    return lr * (total - step) / max(total - warm, 1)


def run(train_x, train_y, valid_x, valid_y, lr, wd, epochs, batch, warmup, seed):
    rng = random.Random(seed)
    d = len(train_x[0])
    w = [rng.gauss(0.0, 0.01) for _ in range(d)]
    b = 0.0
    mw, vw = [0.0] * d, [0.0] * d
    mb = vb = 0.0
    b1, b2, eps = 0.9, 0.999, 1e-8
    n = len(train_x)
    steps_per_epoch = math.ceil(n / batch)
    total = steps_per_epoch * epochs
    step = 0
    history = []
    for _epoch in range(epochs):
        order = list(range(n))
        rng.shuffle(order)
        for s in range(steps_per_epoch):
            rows = order[s * batch:(s + 1) * batch]
            gw = [0.0] * d
            gb = 0.0
            for i in rows:
                x = train_x[i]
                err = 2.0 * (sum(wi * xi for wi, xi in zip(w, x)) + b - train_y[i]) / len(rows)
                gb += err
                for k in range(d):
                    gw[k] += err * x[k]
            t = step + 1
            a = lr_at(lr, warmup, step, total)
            c1, c2 = 1.0 - b1 ** t, 1.0 - b2 ** t
            keep = 1.0 - a * wd
            for k in range(d):
                g = gw[k]
                mw[k] = b1 * mw[k] + (1 - b1) * g
                vw[k] = b2 * vw[k] + (1 - b2) * g * g
                w[k] = w[k] * keep - a * (mw[k] / c1) / (math.sqrt(vw[k] / c2) + eps)
            mb = b1 * mb + (1 - b1) * gb
            vb = b2 * vb + (1 - b2) * gb * gb
            b = b * keep - a * (mb / c1) / (math.sqrt(vb / c2) + eps)
            step += 1
        pred = [sum(wi * xi for wi, xi in zip(w, x)) + b for x in valid_x]
        history.append(spearman(pred, valid_y))
    best = max(range(epochs), key=lambda e: (history[e], -e))
    return history[best], best + 1, history


def floats(text):
    return [float(v) for v in text.split(",")]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--split", required=True, help="folder with train.jsonl and valid.jsonl")
    p.add_argument("--features", required=True, help="folder with routelmt features output")
    p.add_argument("--heads", default="gain,quality")
    p.add_argument("--lrs", type=floats, default=floats("5e-5,2e-4,1e-3"))
    p.add_argument("--wds", type=floats, default=floats("0,0.01,0.1,1,10"))
    p.add_argument("--epochs", default="3")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--warmup", type=float, default=0.05)
    p.add_argument("--out", help="also write the table here (TSV)")
    a = p.parse_args()
    rows = ["head\tlr\twd\tepochs\tvalid_spearman_mean\tmin\tmax\tmean_best_epoch"]
    print(rows[0], flush=True)
    for head in a.heads.split(","):
        tx, ty = load(a.split, a.features, "train", head)
        vx, vy = load(a.split, a.features, "valid", head)
        mean = sum(ty) / len(ty)
        std = math.sqrt(sum((y - mean) ** 2 for y in ty) / len(ty))
        ty = [(y - mean) / std for y in ty]
        vy = [(y - mean) / std for y in vy]
        for epochs in [int(e) for e in a.epochs.split(",")]:
            for lr in a.lrs:
                for wd in a.wds:
                    res = [run(tx, ty, vx, vy, lr, wd, epochs, a.batch_size, a.warmup, s)
                           for s in range(a.seeds)]
                    rhos = [r[0] for r in res]
                    line = (f"{head}\t{lr:g}\t{wd:g}\t{epochs}\t{sum(rhos) / len(rhos):.4f}"
                            f"\t{min(rhos):.4f}\t{max(rhos):.4f}"
                            f"\t{sum(r[1] for r in res) / len(res):.1f}")
                    rows.append(line)
                    print(line, flush=True)
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            f.write("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
