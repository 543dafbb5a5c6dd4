#!/usr/bin/env python3
"""Golden values for the routing crate (`crates/routelmt-route`) and the CLI end-to-end tests.

Independent references, never the Rust code itself:
  - Spearman: `scipy.stats.spearmanr` (average-tie ranks; a constant side gives NaN there and
    0 by our contract, REFERENCE.md section 4);
  - chrF: `sacrebleu.sentence_chrf` / `sacrebleu.corpus_chrf` (chrF2, defaults);
  - HitRate@p, MeanDelta@p, SevereLoss@p, Quality@p, the curve and APGR: the small, plain
    Python implementation below, written from REFERENCE.md section 4 (exact sums: math.fsum).

All data is synthetic and made here (seeded numpy Generator): MQM-like discrete scores with
many ties and zero gains, continuous COMET-like scores, tied router scores, negative zeros,
Unicode/CJK/emoji/combining/whitespace/punctuation text for chrF. Nothing comes from
../shared/data.

Rerun (from the repository root):
    python3 -m venv $HOME/.cache/routelmt-venv
    $HOME/.cache/routelmt-venv/bin/pip install numpy scipy sacrebleu
    $HOME/.cache/routelmt-venv/bin/python scripts/route_goldens.py
Written with numpy 2.4, scipy 1.17, sacrebleu 2.6. Output (commit it): tests/fixtures/route/
    goldens.json              unit-test goldens (spearman, metrics, chrf)
    eval_small.jsonl          60 records for the CLI tests, eval_small.expected.json its report
    labels_in.jsonl           hyp/ref records for `routelmt labels`, labels.expected.json
    bad_*.jsonl               invalid inputs, each broken on a known line
"""

import json
import math
import os
import sys
import warnings

import numpy as np
import sacrebleu
import scipy
import scipy.stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "route")
CURVE = [j / 20 for j in range(21)]  # p = 0, 0.05, ..., 1 computed as j/20, like the Rust side


# --- Reference metrics (REFERENCE.md section 4) -------------------------------------------------

def k_of(p, n):
    return math.floor(p * n + 0.5)


def order(s):
    """Indices by score descending, ties by input order (earlier first)."""
    return sorted(range(len(s)), key=lambda i: (-s[i], i))


def routed(s, k, eligible=None):
    """The first k records in router order; with a guard, only eligible ones (fewer if short)."""
    idx = [i for i in order(s) if eligible is None or eligible[i]]
    return idx[:k]


def hit_rate(g, r, k):
    if k == 0:
        return None
    gk = sorted(g, reverse=True)[k - 1]
    a = sum(1 for x in g if x > gk)
    ra = sum(1 for i in r if g[i] > gk)
    rb = sum(1 for i in r if g[i] == gk)
    return 100.0 * (ra + min(rb, k - a)) / k


def mean_delta(g, r):
    return math.fsum(g[i] for i in r) / len(r) if r else None


def severe_loss(g, r, delta):
    return 100.0 * sum(1 for i in r if g[i] < -delta) / len(r) if r else None


def quality(small, large, r):
    rs = set(r)
    return math.fsum(large[i] if i in rs else small[i] for i in range(len(small))) / len(small)


def spearman(s, g):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input: NaN there, 0 by contract
        rho = scipy.stats.spearmanr(s, g).statistic
    return 0.0 if math.isnan(rho) else float(rho)


def evaluate(small, large, s, budget, delta, eligible=None):
    n = len(small)
    g = [l - m for l, m in zip(large, small)]
    k = k_of(budget, n)
    r = routed(s, k, eligible)
    curve = [quality(small, large, routed(s, k_of(p, n), eligible)) for p in CURVE]
    q0 = math.fsum(small) / n
    q1 = math.fsum(large) / n
    if q1 == q0:
        apgr = None
    else:
        y = [(q - q0) / (q1 - q0) for q in curve]
        apgr = sum((CURVE[j] - CURVE[j - 1]) * (y[j - 1] + y[j]) / 2 for j in range(1, len(CURVE)))
    return {
        "spearman": spearman(s, g),
        "hit_rate": hit_rate(g, r, k),
        "mean_delta": mean_delta(g, r),
        "severe_loss": severe_loss(g, r, delta),
        "quality": quality(small, large, r),
        "apgr": apgr,
        "routed": len(r),
        "curve": curve,
    }


# --- Synthetic data ------------------------------------------------------------------------------

MQM = [0.0, -1.0, -2.0, -5.0, -6.0, -10.0, -25.0]
MQM_P = [0.35, 0.2, 0.1, 0.15, 0.08, 0.07, 0.05]


def mqm_scores(rng, n):
    small = rng.choice(MQM, size=n, p=MQM_P)
    # Large is often identical (zero gain), else redrawn.
    same = rng.random(n) < 0.35
    large = np.where(same, small, rng.choice(MQM, size=n, p=MQM_P))
    return [float(x) for x in small], [float(x) for x in large]


def comet_scores(rng, n):
    q = rng.normal(0.75, 0.12, size=n)
    small = np.round(np.clip(q - np.abs(rng.normal(0, 0.05, n)), 0, 1), 4)
    large = np.round(np.clip(small + rng.normal(0.03, 0.08, n), 0, 1), 4)
    large = np.where(rng.random(n) < 0.15, small, large)  # exact zero gains
    return [float(x) for x in small], [float(x) for x in large]


def metric_cases(rng):
    cases = []

    def add(name, small, large, scores, delta, budgets, guard=None):
        n = len(small)
        eligible = None
        if guard is not None:
            eligible = [q <= guard[1] for q in guard[0]]
        for sname, s in scores.items():
            case = {
                "name": f"{name}/{sname}",
                "score_small": small,
                "score_large": large,
                "scores": s,
                "severe_delta": delta,
                "guard_quality": guard[0] if guard else None,
                "guard_max": guard[1] if guard else None,
                "budgets": [],
            }
            for b in budgets:
                m = evaluate(small, large, s, b, delta, eligible)
                m["budget"] = b
                m["k"] = k_of(b, n)
                case["budgets"].append(m)
            cases.append(case)

    budgets = [0.0, 0.05, 0.1, 0.25, 0.3, 1 / 3, 0.35, 0.5, 0.77, 1.0]
    # MQM-like: discrete scores, many ties and zero gains; router scores with ties.
    small, large = mqm_scores(rng, 200)
    g = [l - m for l, m in zip(large, small)]
    add(
        "mqm200",
        small,
        large,
        {
            "length": [float(x) for x in rng.integers(1, 30, 200)],
            "oracle_gain": g,
            "oracle_quality": [-x for x in small],
            "noisy_gain": [round(x + float(rng.normal(0, 4)), 2) for x in g],
            "constant": [1.0] * 200,
            "neg_zero": [-0.0 if i % 3 == 0 else (0.0 if i % 3 == 1 else 1.0) for i in range(200)],
        },
        5.0,
        budgets,
    )
    # Continuous COMET-like with a guard on a small-quality estimate.
    small, large = comet_scores(rng, 500)
    g = [l - m for l, m in zip(large, small)]
    qe = [round(x + float(rng.normal(0, 0.05)), 3) for x in small]
    add(
        "comet500",
        small,
        large,
        {
            "noisy_gain": [round(x + float(rng.normal(0, 0.05)), 6) for x in g],
            "qe_asc": [-x for x in qe],
        },
        0.1,
        budgets,
    )
    add(
        "comet500_guard",
        small,
        large,
        {"noisy_gain": [round(x + float(rng.normal(0, 0.05)), 6) for x in g]},
        0.1,
        budgets,
        guard=(qe, 0.8),
    )
    # Tiny and degenerate inputs.
    add("n1", [0.0], [1.0], {"s": [0.5]}, 0.1, [0.0, 0.3, 0.5, 1.0])
    add("n2_tie", [0.0, 0.0], [1.0, 1.0], {"s": [0.5, 0.5]}, 0.1, [0.25, 0.5, 1.0])
    add("equal_quality", [0.0, 1.0, 2.0], [1.0, 0.0, 2.0], {"s": [3.0, 2.0, 1.0]}, 0.5, [0.3, 0.6])
    add(
        "n7",
        [-1.0, 0.0, -5.0, -5.0, 0.0, -25.0, -1.0],
        [0.0, -5.0, 0.0, -5.0, 0.0, -1.0, -1.0],
        {"s": [2.0, 2.0, 1.0, 3.0, 2.0, 0.0, 1.0]},
        1.0,
        budgets,
    )
    return cases


def spearman_cases(rng):
    cases = []

    def add(name, x, y):
        cases.append({"name": name, "x": x, "y": y, "rho": spearman(x, y)})

    add("continuous", *[[round(float(v), 6) for v in rng.normal(size=300)] for _ in range(2)])
    z = rng.normal(size=300)
    add(
        "correlated",
        [round(float(v), 6) for v in z],
        [round(float(v + 0.5 * w), 6) for v, w in zip(z, rng.normal(size=300))],
    )
    add(
        "heavy_ties",
        [float(v) for v in rng.integers(0, 4, 400)],
        [float(v) for v in rng.choice(MQM, size=400, p=MQM_P)],
    )
    add("constant_x", [2.0] * 10, [float(v) for v in range(10)])
    add("constant_y", [float(v) for v in range(10)], [0.0] * 10)
    add("two", [1.0, 2.0], [5.0, 3.0])
    add("neg_zero_ties", [-0.0, 0.0, 1.0, -0.0, 2.0], [1.0, 2.0, 3.0, 4.0, 5.0])
    add("perfect_with_ties", [1.0, 1.0, 2.0, 3.0, 3.0], [10.0, 10.0, 20.0, 30.0, 30.0])
    return cases


WORDS = [
    "the", "cat", "sat", "on", "mat", "translation", "quality", "router", "budget", "large",
    "small", "model", "Hello", "world", "naïve", "café", "cafe\u0301", "Straße", "über",
    "перевод", "качество", "модель", "中文", "翻译", "质量", "是否有途径处罚他", "以免再次发生",
    "日本語", "のテキスト", "한국어", "😀", "👩\u200d💻", "«quoted»", "it's", "(hi)", "3.14",
    "—", "…", "!!!", "e.g.", "U.S.", "l'été", "ß", "İstanbul",
]
SPACES = [" ", " ", " ", "  ", "\t", "\u3000", "\xa0", "\x1f", "\u200b"]


def sentence(rng, lo=1, hi=12):
    n = int(rng.integers(lo, hi))
    out = ""
    for i in range(n):
        if i:
            out += SPACES[int(rng.integers(len(SPACES)))]
        out += WORDS[int(rng.integers(len(WORDS)))]
    return out


def perturb(rng, s):
    words = s.split(" ")
    ops = int(rng.integers(0, 4))
    for _ in range(ops):
        op = int(rng.integers(4))
        if op == 0 and len(words) > 1:
            words.pop(int(rng.integers(len(words))))
        elif op == 1:
            words.insert(int(rng.integers(len(words) + 1)), WORDS[int(rng.integers(len(WORDS)))])
        elif op == 2 and len(words) > 1:
            i = int(rng.integers(len(words) - 1))
            words[i], words[i + 1] = words[i + 1], words[i]
        elif words:
            i = int(rng.integers(len(words)))
            w = words[i]
            if w:
                j = int(rng.integers(len(w)))
                words[i] = w[:j] + "x" + w[j + 1:]
    return " ".join(words)


def chrf_pairs(rng):
    pairs = [
        ("", ""),
        ("", "abc"),
        ("abc", ""),
        (" ", "a"),
        ("a", "a"),
        ("ab", "abc"),
        ("abcdef", "ab"),
        ("The cat sat on the mat.", "The cat sat on the mat."),
        ("The cat sat on the mat.", "The cat is on the mat."),
        ("The cat.", "The cat ."),
        ("!!!", "!!!?"),
        ("...", ","),
        ("中文", "中文字"),
        ("是否有途径处罚他", "是否有办法惩罚他"),
        ("Is there a way to punish him?", "Is there any way to punish him"),
        ("café", "cafe\u0301"),
        ("👩\u200d💻 coding", "👩\u200d💻 codes"),
        ("a\x1fb\x1cc", "abc"),
        ("ab\u200bcd", "abcd"),
        ("a\u3000b\xa0c", "abc"),
        ("aaaaaaa", "aaa"),
        ("Перевод качества", "перевод качества"),
        ("x" * 50, "x" * 49 + "y"),
    ]
    for _ in range(40):
        ref = sentence(rng)
        pairs.append((perturb(rng, ref), ref))
    return pairs


def chrf_goldens(pairs):
    sentences = [
        {"hyp": h, "ref": r, "score": sacrebleu.sentence_chrf(h, [r]).score} for h, r in pairs
    ]
    corpora = []
    for lo, hi in [(0, len(pairs)), (0, 5), (7, 23), (23, len(pairs)), (1, 2)]:
        hyps = [h for h, _ in pairs[lo:hi]]
        refs = [r for _, r in pairs[lo:hi]]
        corpora.append({"from": lo, "to": hi, "score": sacrebleu.corpus_chrf(hyps, [refs]).score})
    return {"sentences": sentences, "corpora": corpora}


# --- CLI fixtures --------------------------------------------------------------------------------

E2E_ROUTERS = [
    "length",
    "oracle-gain",
    "oracle-quality",
    "field:qe",
    "field:metric_small.QE-src:asc",
    "oracle-gain+guard:metric_small.QE-src:0.8",
]


def eval_records(rng, n=60):
    small, large = comet_scores(rng, n)
    recs = []
    for i in range(n):
        qe = round(small[i] + float(rng.normal(0, 0.05)), 3)
        src = sentence(rng, 1, 10)
        rec = {
            "id": f"synthetic.{i}",
            "src": src,
            "src_lang": "zh" if i % 2 else "en",
            "tgt_lang": "en" if i % 2 else "de",
            "ref": sentence(rng, 1, 8),
            "hyp_small": sentence(rng, 1, 8),
            "hyp_large": sentence(rng, 1, 8),
            "score_small": small[i],
            "score_large": large[i],
            "gain": round(large[i] - small[i], 4),
            "score_type": "synthetic",
            "qe": float(rng.integers(0, 5)),  # heavy ties
            "metric_small.QE-src": qe,
        }
        recs.append(rec)
    return recs


def eval_expected(recs, budget, delta):
    small = [r["score_small"] for r in recs]
    large = [r["score_large"] for r in recs]
    routers = []
    curve = {"budgets": CURVE}
    for name in E2E_ROUTERS:
        base, _, guard = name.partition("+guard:")
        if base == "length":
            s = [float(len(r["src"])) for r in recs]
        elif base == "oracle-gain":
            s = [l - m for l, m in zip(large, small)]
        elif base == "oracle-quality":
            s = [-x for x in small]
        elif base.startswith("field:"):
            field = base[len("field:"):]
            asc = field.endswith(":asc")
            field = field[: -len(":asc")] if asc else field
            s = [(-r[field] if asc else r[field]) for r in recs]
        eligible = None
        if guard:
            gfield, gmax = guard.rsplit(":", 1)
            eligible = [r[gfield] <= float(gmax) for r in recs]
        m = evaluate(small, large, s, budget, delta, eligible)
        curve[name] = m.pop("curve")
        routers.append({"name": name, **m})
    return {"n": len(recs), "budget": budget, "severe_delta": delta, "routers": routers, "curve": curve}


def write_jsonl(path, rows, ensure_ascii=False):
    with open(path, "w", encoding="utf-8") as f:
        for i, row in enumerate(rows):
            if isinstance(row, str):
                f.write(row + "\n")
            else:
                # Alternate escaping styles: both must parse identically.
                f.write(json.dumps(row, ensure_ascii=ensure_ascii or i % 2 == 1) + "\n")


def main():
    rng = np.random.default_rng(20260422)
    os.makedirs(OUT, exist_ok=True)

    goldens = {
        "generator": "scripts/route_goldens.py",
        "versions": {"numpy": np.__version__, "scipy": scipy.__version__, "sacrebleu": sacrebleu.__version__},
        "spearman": spearman_cases(rng),
        "metrics": metric_cases(rng),
    }
    pairs = chrf_pairs(rng)
    goldens["chrf"] = chrf_goldens(pairs)
    with open(os.path.join(OUT, "goldens.json"), "w", encoding="ascii") as f:
        json.dump(goldens, f, ensure_ascii=True, indent=1)
        f.write("\n")

    recs = eval_records(rng)
    write_jsonl(os.path.join(OUT, "eval_small.jsonl"), recs)
    with open(os.path.join(OUT, "eval_small.expected.json"), "w", encoding="ascii") as f:
        json.dump(
            {"routers_arg": ",".join(E2E_ROUTERS), **eval_expected(recs, 0.3, 0.05)},
            f,
            ensure_ascii=True,
            indent=1,
        )
        f.write("\n")

    # `labels`: records with hypotheses and references only (no scores yet).
    label_rows = [
        {"id": f"l{i}", "src": "", "ref": r, "hyp_small": h, "hyp_large": perturb(rng, r)}
        for i, (h, r) in enumerate(pairs)
    ]
    write_jsonl(os.path.join(OUT, "labels_in.jsonl"), label_rows)
    small = [sacrebleu.sentence_chrf(r["hyp_small"], [r["ref"]]).score for r in label_rows]
    large = [sacrebleu.sentence_chrf(r["hyp_large"], [r["ref"]]).score for r in label_rows]
    refs = [r["ref"] for r in label_rows]
    with open(os.path.join(OUT, "labels.expected.json"), "w", encoding="ascii") as f:
        json.dump(
            {
                "score_small": small,
                "score_large": large,
                "corpus_small": sacrebleu.corpus_chrf([r["hyp_small"] for r in label_rows], [refs]).score,
                "corpus_large": sacrebleu.corpus_chrf([r["hyp_large"] for r in label_rows], [refs]).score,
            },
            f,
            ensure_ascii=True,
            indent=1,
        )
        f.write("\n")

    # Invalid inputs, each broken on a known line (the tests assert that line in the message).
    good = [json.dumps(r, ensure_ascii=False) for r in recs[:6]]
    bad_gain = dict(recs[2], gain=recs[2]["gain"] + 0.5)
    write_jsonl(os.path.join(OUT, "bad_gain.jsonl"), good[:2] + [json.dumps(bad_gain)] + good[3:])
    nan_line = json.dumps(dict(recs[1], score_small=float("nan")))  # Python writes NaN
    write_jsonl(os.path.join(OUT, "bad_nan.jsonl"), good[:1] + [nan_line] + good[2:])
    missing = {k: v for k, v in recs[3].items() if k != "score_large"}
    write_jsonl(os.path.join(OUT, "bad_missing.jsonl"), good[:3] + [json.dumps(missing)] + good[4:])
    write_jsonl(os.path.join(OUT, "bad_json.jsonl"), good[:4] + [good[4][:-7]] + good[5:])
    print(f"wrote goldens to {os.path.relpath(OUT, ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
