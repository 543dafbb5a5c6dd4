//! `routelmt eval | calibrate | route | labels` end to end: the real binary on the fixtures of
//! `tests/fixtures/route/make_goldens.py`, checked against its Python reference values (the
//! contract is docs/metrics.md), plus errors that name file and line and leave no output behind.

use std::ffi::OsStr;
use std::path::Path;

use serde_json::Value;

use crate::common::{
    Cli, assert_close, cli, files_in, fixture, read_json, read_lines, read_text, stderr, stdout,
    write_input,
};

/// Reference values come from an independent Python implementation; sums are exact on both
/// sides, so only last-bit differences remain.
const TOL: f64 = 1e-9;

/// The members of each router's entry in the `eval` report, sorted.
const ROUTER_FIELDS: [&str; 8] =
    ["apgr", "hit_rate", "mean_delta", "name", "quality", "routed", "severe_loss", "spearman"];

fn close(what: &str, got: &Value, want: &Value) {
    assert_close(what, got, want, TOL);
}

/// `eval` of `data` at `budget` with the comma-separated `routers` (add `--output`).
fn eval(data: impl AsRef<OsStr>, budget: &str, routers: &str) -> Cli {
    cli("eval").arg("--data", data).arg("--budget", budget).arg("--routers", routers)
}

/// `command` (`route` or `calibrate`) over the field `field` of the records in `scores`.
fn by_field(command: &str, scores: impl AsRef<OsStr>, field: &str) -> Cli {
    cli(command).arg("--scores", scores).arg("--field", field)
}

/// `command` (`route` or `calibrate`) over eval_small.jsonl, lowest small-model QE first.
fn worst_small_first(command: &str) -> Cli {
    by_field(command, fixture("route/eval_small.jsonl"), "metric_small.QE-src").flag("--asc")
}

#[test]
fn eval_matches_the_python_reference_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    let expected = read_json(fixture("route/eval_small.expected.json"));
    let routers = format!("{},random", expected["routers_arg"].as_str().unwrap());
    let (report, svg) = (dir.path().join("report.json"), dir.path().join("curve.svg"));
    let run = eval(fixture("route/eval_small.jsonl"), "0.3", &routers)
        .arg("--severe-delta", "0.05")
        .arg("--seed", "7");
    let o = run.clone().arg("--output", &report).arg("--plot", &svg).ok();
    let got = read_json(&report);

    let keys: Vec<&String> = got.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["budget", "curve", "n", "routers", "severe_delta"], "top-level keys");
    for k in ["n", "budget", "severe_delta"] {
        close(k, &got[k], &expected[k]);
    }
    let want_routers = expected["routers"].as_array().unwrap();
    let got_routers = got["routers"].as_array().unwrap();
    assert_eq!(got_routers.len(), want_routers.len() + 1);
    for (g, w) in got_routers.iter().zip(want_routers) {
        let name = w["name"].as_str().unwrap();
        assert_eq!(g["name"], w["name"]);
        let mut fields: Vec<&String> = g.as_object().unwrap().keys().collect();
        fields.sort();
        assert_eq!(fields, ROUTER_FIELDS);
        for f in ["spearman", "hit_rate", "mean_delta", "severe_loss", "quality", "apgr", "routed"]
        {
            close(&format!("{name}.{f}"), &g[f], &w[f]);
        }
        let (gc, wc) =
            (got["curve"][name].as_array().unwrap(), expected["curve"][name].as_array().unwrap());
        assert_eq!(gc.len(), 21);
        for (j, (a, b)) in gc.iter().zip(wc).enumerate() {
            close(&format!("{name}.curve[{j}]"), a, b);
        }
    }
    let random = got_routers.last().unwrap();
    assert_eq!(random["name"], "random");
    assert_eq!(random["routed"], 18);
    let budgets = got["curve"]["budgets"].as_array().unwrap();
    assert_eq!(budgets.len(), 21);
    close("budgets[3]", &budgets[3], &Value::from(0.15));

    let table = stdout(&o);
    assert!(table.starts_with("| router | Spearman | HitRate@30% |"), "{table}");
    for r in routers.split(',') {
        assert!(table.contains(&format!("| {r} |")), "{r} missing from\n{table}");
    }
    let svg = read_text(&svg);
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<polyline").count(), 7);
    assert!(svg.contains("small only") && svg.contains("large only"));
    assert_eq!(files_in(dir.path()), ["curve.svg", "report.json"], "no temporary files left");

    // Same seed, same report; another seed moves only the random router.
    let again = dir.path().join("again.json");
    run.arg("--output", &again).ok();
    assert_eq!(read_json(&again), got);
}

#[test]
fn bad_records_fail_naming_file_and_line_and_leave_no_output() {
    for (file, line, what) in [
        ("route/bad_gain.jsonl", 3, "gain"),
        ("route/bad_nan.jsonl", 2, "field `score_small` is NaN"),
        ("route/bad_missing.jsonl", 4, "missing field `score_large`"),
        ("route/bad_json.jsonl", 5, "invalid JSON"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let o = eval(fixture(file), "0.3", "oracle-gain,length")
            .arg("--output", dir.path().join("report.json"))
            .arg("--plot", dir.path().join("c.svg"))
            .run();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{file}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        let name = Path::new(file).file_name().unwrap().to_str().unwrap();
        assert!(err.contains(name), "{file}: {err}");
        assert!(err.contains(&format!("line {line}: ")), "{file}: {err}");
        assert!(err.contains(what), "{file}: {err}");
        assert!(files_in(dir.path()).is_empty(), "{file}: left {:?}", files_in(dir.path()));
    }
}

#[test]
fn eval_rejects_bad_arguments_before_reading() {
    let data = fixture("route/eval_small.jsonl");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.json");
    let (data, out) = (data.as_path(), out.as_path());
    let (no_data, no_dir) = (Path::new("/nonexistent.jsonl"), Path::new("/nonexistent-dir/r.json"));
    for (data, budget, routers, output, code, want) in [
        (data, "30", "random", out, 2, "fraction in [0, 1]"),
        (data, "0.3", "random,magic", out, 2, "unknown router `magic`"),
        (data, "0.3", "field:nope", out, 1, "line 1: missing field `nope`"),
        (no_data, "0.3", "random", out, 1, "cannot open /nonexistent.jsonl"),
        (data, "0.3", "random", no_dir, 1, "/nonexistent-dir"),
    ] {
        let o = eval(data, budget, routers).arg("--output", output).exits(code);
        assert!(stderr(&o).contains(want), "{}", stderr(&o));
    }
    assert!(files_in(dir.path()).is_empty());
    let help = stdout(&cli("eval").flag("--help").run());
    assert!(help.contains("--severe-delta") && help.contains("+guard:FIELD:MAX"), "{help}");
}

/// The records of eval_small.jsonl as parsed JSON, in order.
fn small_records() -> (Vec<String>, Vec<Value>) {
    let lines = read_lines(fixture("route/eval_small.jsonl"));
    let values = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    (lines, values)
}

/// Checks that `out` is `input` with a `route` member appended to every line.
fn routes_of(out: &Path, input: &[String]) -> Vec<bool> {
    let got = read_lines(out);
    assert_eq!(got.len(), input.len());
    got.iter()
        .zip(input)
        .map(|(g, i)| {
            let large = format!("{}, \"route\": \"large\"}}", &i[..i.len() - 1]);
            let small = format!("{}, \"route\": \"small\"}}", &i[..i.len() - 1]);
            assert!(g == &large || g == &small, "record changed:\n{i}\n{g}");
            g == &large
        })
        .collect()
}

#[test]
fn route_top_p_routes_exactly_k_by_score_then_input_order() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("routed.jsonl");
    let top = by_field("route", fixture("route/eval_small.jsonl"), "qe").arg("--budget", "0.3");
    let o = top.clone().arg("--output", &out).ok();
    assert!(stdout(&o).starts_with("routed 18 of 60 records"), "{}", stdout(&o));
    let (lines, recs) = small_records();
    let large = routes_of(&out, &lines);
    // Independent expectation: sort by (-qe, index), take 18 (qe has many ties).
    let mut idx: Vec<usize> = (0..recs.len()).collect();
    idx.sort_by(|&a, &b| {
        let (x, y) = (recs[a]["qe"].as_f64().unwrap(), recs[b]["qe"].as_f64().unwrap());
        y.partial_cmp(&x).unwrap().then(a.cmp(&b))
    });
    let want: Vec<bool> = (0..recs.len()).map(|i| idx[..18].contains(&i)).collect();
    assert_eq!(large, want);

    // Guard: never route a record whose QE is above 0.8, refill from the next best.
    let guarded = dir.path().join("guarded.jsonl");
    top.arg("--guard", "metric_small.QE-src:0.8").arg("--output", &guarded).ok();
    let large = routes_of(&guarded, &lines);
    let eligible =
        recs.iter().filter(|r| r["metric_small.QE-src"].as_f64().unwrap() <= 0.8).count();
    assert_eq!(large.iter().filter(|&&x| x).count(), eligible.min(18));
    for (r, l) in recs.iter().zip(&large) {
        assert!(!(*l && r["metric_small.QE-src"].as_f64().unwrap() > 0.8));
    }
}

#[test]
fn calibrate_then_route_by_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("route/eval_small.jsonl");
    let thresh = dir.path().join("thresh.json");
    worst_small_first("calibrate")
        .arg("--budget", "0.25")
        .arg("--output", &thresh)
        .arg("--bootstrap", "500")
        .arg("--seed", "3")
        .ok();
    let t = read_json(&thresh);
    assert_eq!(t["field"], "metric_small.QE-src");
    assert_eq!(t["order"], "asc");
    assert_eq!(t["n"], 60);
    let routed = t["routed"].as_u64().unwrap();
    assert!((13..=15).contains(&routed), "{t}");
    let ci = t["share_ci95"].as_array().unwrap();
    let (lo, hi, share) =
        (ci[0].as_f64().unwrap(), ci[1].as_f64().unwrap(), t["share"].as_f64().unwrap());
    assert!(lo <= share && share <= hi && lo > 0.0 && hi < 0.6, "{t}");

    let (lines, recs) = small_records();
    let out = dir.path().join("routed.jsonl");
    by_field("route", &input, "metric_small.QE-src")
        .arg("--threshold", &thresh)
        .arg("--output", &out)
        .ok();
    let large = routes_of(&out, &lines);
    assert_eq!(large.iter().filter(|&&x| x).count() as u64, routed);
    let tau = t["threshold"].as_f64().unwrap();
    for (r, l) in recs.iter().zip(&large) {
        assert_eq!(*l, r["metric_small.QE-src"].as_f64().unwrap() < tau);
    }

    // A plain number: highest first unless --asc.
    let by_qe = by_field("route", &input, "qe").arg("--output", &out);
    by_qe.clone().arg("--threshold", "2.5").ok();
    let large = routes_of(&out, &lines);
    for (r, l) in recs.iter().zip(&large) {
        assert_eq!(*l, r["qe"].as_f64().unwrap() > 2.5);
    }
    // A THRESH.json for another field is refused.
    let o = by_qe.arg("--threshold", &thresh).exits(1);
    assert!(stderr(&o).contains("calibrated on field `metric_small.QE-src`"), "{}", stderr(&o));
}

#[test]
fn route_stream_keeps_the_window_share() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("stream.jsonl");
    worst_small_first("route")
        .arg("--budget", "0.3")
        .arg("--window", "25")
        .arg("--output", &out)
        .ok();
    let (lines, _) = small_records();
    let large = routes_of(&out, &lines);
    // Band of W = 25 at p = 0.3 ± 0.02: [ceil(7.0), floor(8.0)] = [7, 8].
    for w in large.windows(25) {
        let c = w.iter().filter(|&&x| x).count();
        assert!((7..=8).contains(&c), "window count {c}");
    }
    let input = fixture("route/eval_small.jsonl");
    let o = by_field("route", input, "qe").arg("--window", "25").arg("--output", &out).run();
    assert_eq!(o.status.code(), Some(2), "--window needs --budget");
}

#[test]
fn route_errors_name_the_line_and_leave_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("routed.jsonl");
    for (file, [flag, value], want) in [
        ("route/eval_small.jsonl", ["--budget", "0.3"], "line 1: missing field `nope`"),
        ("route/eval_small.jsonl", ["--threshold", "0.5"], "line 1: missing field `nope`"),
        ("route/bad_json.jsonl", ["--threshold", "0.5"], "line 5: invalid JSON"),
    ] {
        let field = if file.contains("bad_json") { "qe" } else { "nope" };
        let o =
            by_field("route", fixture(file), field).arg(flag, value).arg("--output", &out).exits(1);
        assert!(stderr(&o).contains(want), "{}", stderr(&o));
        assert!(files_in(dir.path()).is_empty(), "left {:?}", files_in(dir.path()));
    }
    let o = cli("route").arg("--field", "qe").arg("--budget", "0.3").arg("--output", &out).run();
    assert_eq!(o.status.code(), Some(2), "--field needs --scores");
    let o = by_field("route", "x", "qe")
        .arg("--budget", "0.3")
        .arg("--threshold", "1")
        .arg("--output", &out)
        .run();
    assert_eq!(o.status.code(), Some(2), "--budget and --threshold exclude each other");
}

#[test]
fn labels_match_sacrebleu() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("route/labels_in.jsonl");
    let out = dir.path().join("labelled.jsonl");
    let o = cli("labels").arg("--input", &input).arg("--metric", "chrf").arg("--output", &out).ok();
    let expected = read_json(fixture("route/labels.expected.json"));
    let (ws, wl) =
        (expected["score_small"].as_array().unwrap(), expected["score_large"].as_array().unwrap());
    let inputs = read_lines(&input);
    let got = read_lines(&out);
    assert_eq!(got.len(), ws.len());
    for (i, line) in got.iter().enumerate() {
        let v: Value = serde_json::from_str(line).unwrap();
        close(&format!("line {} score_small", i + 1), &v["score_small"], &ws[i]);
        close(&format!("line {} score_large", i + 1), &v["score_large"], &wl[i]);
        let gain = v["score_large"].as_f64().unwrap() - v["score_small"].as_f64().unwrap();
        close(&format!("line {} gain", i + 1), &v["gain"], &Value::from(gain));
        assert_eq!(v["score_type"], "chrF2");
        let before: Value = serde_json::from_str(&inputs[i]).unwrap();
        for k in ["id", "src", "ref", "hyp_small", "hyp_large"] {
            assert_eq!(v[k], before[k], "line {}: {k}", i + 1);
        }
        assert!(line.starts_with(&inputs[i][..inputs[i].len() - 1]), "prefix kept");
    }
    let msg = stdout(&o);
    let small = format!("small {:.4}", expected["corpus_small"].as_f64().unwrap());
    let large = format!("large {:.4}", expected["corpus_large"].as_f64().unwrap());
    assert!(msg.contains(&small) && msg.contains(&large), "{msg}");

    // The labelled file is valid `eval` input.
    eval(&out, "0.5", "oracle-gain").arg("--output", dir.path().join("r.json")).ok();

    // A record without a hypothesis names its line.
    let bad = format!("{}\n{{\"ref\": \"a\", \"hyp_small\": \"a\"}}\n", inputs[0]);
    let bad = write_input(dir.path(), "bad.jsonl", bad);
    let out2 = dir.path().join("never.jsonl");
    let o =
        cli("labels").arg("--input", &bad).arg("--metric", "chrf").arg("--output", &out2).exits(1);
    assert!(stderr(&o).contains("bad.jsonl: line 2: missing field `hyp_large`"), "{}", stderr(&o));
    assert!(!out2.exists());
}
