//! `routelmt tokenize | features | info | bench prefill` end to end: real binary, temp dirs,
//! files and exit codes checked; bad input names file and line and leaves no output behind.

use std::path::Path;

use serde_json::Value;

use crate::common::{fixture, root, routelmt, stderr};

fn read_jsonl(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn tokenizer() -> String {
    let p = root().join("assets/qwen3-tokenizer/tokenizer.json");
    assert!(p.is_file(), "run scripts/setup.sh first");
    p.display().to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn tokenize_matches_transformers_golden_ids() {
    let golden: Vec<Value> =
        serde_json::from_slice(&std::fs::read(fixture("tokenizer/golden_ids.json")).unwrap())
            .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.jsonl");
    let lines: Vec<String> = golden
        .iter()
        .enumerate()
        .filter(|(_, g)| g["style"] == "colon")
        .map(|(i, g)| {
            serde_json::json!({"id": i, "src": g["src"], "src_lang": g["src_lang"], "tgt_lang": g["tgt_lang"]})
                .to_string()
        })
        .collect();
    assert!(!lines.is_empty());
    std::fs::write(&input, lines.join("\n")).unwrap();
    let out = tmp.path().join("out.jsonl");
    let model = fixture("models/tiny-default");
    let o = routelmt(&[
        "tokenize",
        "--model",
        s(&model),
        "--tokenizer",
        &tokenizer(),
        "--input",
        s(&input),
        "--output",
        s(&out),
        "--prompt-style",
        "colon",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = read_jsonl(&out);
    assert_eq!(got.len(), lines.len());
    for row in got {
        let g = &golden[row["id"].as_u64().unwrap() as usize];
        assert_eq!(row["input_ids"], g["input_ids"]);
        assert_eq!(row["prompt"], g["prompt"]);
    }
}

#[test]
fn features_match_transformers_and_keep_input_order() {
    let dir = fixture("models/tiny-gqa");
    let golden: Value =
        serde_json::from_slice(&std::fs::read(dir.join("golden.json")).unwrap()).unwrap();
    let cases = golden["cases"].as_array().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.jsonl");
    let text: Vec<String> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            serde_json::json!({"id": format!("c{i}"), "input_ids": c["input_ids"]}).to_string()
        })
        .collect();
    std::fs::write(&input, text.join("\n") + "\n").unwrap();
    for (device, layer) in [("cpu", "3"), ("gpu", "1")] {
        let out = tmp.path().join(format!("{device}.jsonl"));
        let o = routelmt(&[
            "features",
            "--model",
            s(&dir),
            "--input",
            s(&input),
            "--output",
            s(&out),
            "--layer",
            layer,
            "--device",
            device,
            "--batch-size",
            "2",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stderr(&o).contains("device: "), "says which device ran");
        let rows = read_jsonl(&out);
        assert_eq!(rows.len(), cases.len());
        for (i, (row, case)) in rows.iter().zip(cases).enumerate() {
            assert_eq!(row["id"], format!("c{i}"));
            assert_eq!(
                row["n_tokens"].as_u64().unwrap() as usize,
                case["input_ids"].as_array().unwrap().len()
            );
            let got: Vec<f64> = serde_json::from_value(row["hidden"].clone()).unwrap();
            let want: Vec<f64> = serde_json::from_value(case["hidden"][layer].clone()).unwrap();
            let d = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(d <= 1e-4, "{device} case {i}: {d}");
        }
    }
}

#[test]
fn features_from_text_on_the_bundled_default_model() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("f.jsonl");
    let model = fixture("models/tiny-default");
    let input = fixture("sample/requests.jsonl");
    let o = routelmt(&[
        "features",
        "--model",
        s(&model),
        "--tokenizer",
        &tokenizer(),
        "--input",
        s(&input),
        "--output",
        s(&out),
        "--device",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = read_jsonl(&out);
    assert_eq!(rows.len(), 8);
    assert!(rows.iter().all(|r| r["hidden"].as_array().unwrap().len() == 16));
    assert_eq!(rows[0]["id"], "r1");
}

fn expect_failure(args: &[&str], out: &Path, needles: &[&str]) {
    let o = routelmt(args);
    assert!(!o.status.success(), "should fail: {args:?}");
    let e = stderr(&o);
    for n in needles {
        assert!(e.contains(n), "stderr lacks {n:?}: {e}");
    }
    assert_eq!(
        e.trim().lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "one error line: {e}"
    );
    assert!(!out.exists(), "partial output left at {}", out.display());
    let dir = out.parent().unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn bad_lines_name_file_and_line_and_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixture("models/tiny-gqa");
    let out = tmp.path().join("out").join("f.jsonl");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let good = r#"{"id": 1, "input_ids": [1, 2, 3]}"#;
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("{not json", vec!["in.jsonl:3: invalid JSON"]),
        (r#"{"input_ids": [1]}"#, vec!["in.jsonl:3: missing field 'id'"]),
        (r#"{"id": 9, "input_ids": []}"#, vec!["in.jsonl:3: empty 'input_ids'"]),
        (
            r#"{"id": 9, "input_ids": [1, 600]}"#,
            vec!["in.jsonl:3: token id 600 out of range for vocab_size 512"],
        ),
        (r#"{"id": 9}"#, vec!["in.jsonl:3: needs 'input_ids' or 'src'"]),
        (
            r#"{"id": 9, "src": "hi", "src_lang": "en"}"#,
            vec!["in.jsonl:3: missing field 'tgt_lang'"],
        ),
    ];
    for (bad, needles) in cases {
        let input = tmp.path().join("in.jsonl");
        std::fs::write(&input, format!("{good}\n{good}\n{bad}\n{good}\n")).unwrap();
        let args = [
            "features",
            "--model",
            s(&model),
            "--input",
            s(&input),
            "--output",
            s(&out),
            "--device",
            "cpu",
        ];
        expect_failure(&args, &out, &needles);
    }
    // Unknown language in `tokenize`: the error lists the supported codes.
    let input = tmp.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"id\": 1, \"src\": \"a\", \"src_lang\": \"en\", \"tgt_lang\": \"xx\"}\n",
    )
    .unwrap();
    let tok = tokenizer();
    let args = [
        "tokenize",
        "--model",
        s(&model),
        "--tokenizer",
        &tok,
        "--input",
        s(&input),
        "--output",
        s(&out),
    ];
    expect_failure(
        &args,
        &out,
        &["in.jsonl:1: unknown language code 'xx'; supported codes: ar, en, es"],
    );
    // A broken model folder fails before any output exists.
    let args = ["features", "--model", s(tmp.path()), "--input", s(&input), "--output", s(&out)];
    expect_failure(&args, &out, &["config.json"]);
}

#[test]
fn skip_invalid_writes_the_rest_and_a_side_file() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixture("models/tiny-gqa");
    let input = tmp.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"id\": \"a\", \"input_ids\": [1, 2]}\n{oops\n\n{\"id\": \"b\", \"input_ids\": [700]}\n{\"id\": \"c\", \"input_ids\": [5]}\n",
    )
    .unwrap();
    let out = tmp.path().join("f.jsonl");
    let o = routelmt(&[
        "features",
        "--model",
        s(&model),
        "--input",
        s(&input),
        "--output",
        s(&out),
        "--skip-invalid",
        "--device",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ids: Vec<Value> = read_jsonl(&out).into_iter().map(|r| r["id"].clone()).collect();
    assert_eq!(ids, vec![Value::from("a"), Value::from("c")]);
    let rejected = read_jsonl(&tmp.path().join("f.jsonl.rejected.jsonl"));
    let lines: Vec<u64> = rejected.iter().map(|r| r["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, vec![2, 4]);
    assert!(rejected[1]["error"].as_str().unwrap().contains("token id 700"));
    assert!(stderr(&o).contains("skipped 2 invalid line(s)"));
}

#[test]
fn info_describes_the_folder() {
    let model = fixture("models/tiny-bf16");
    let o = routelmt(&["info", "--model", s(&model), "--json", "--device", "cpu"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["architecture"], "qwen3");
    assert_eq!(v["dtype_on_disk"], serde_json::json!(["bf16"]));
    assert_eq!(v["head_dim"], 24);
    assert_eq!(v["device"], "cpu (burn flex)");
    let o = routelmt(&["info", "--model", s(&fixture("models/tiny-sharded")), "--device", "cpu"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && text.contains("unused [\"lm_head.weight\"]"), "{text}");
}

#[test]
fn bench_prefill_prints_the_promised_json() {
    let model = fixture("models/tiny-gqa");
    let o = routelmt(&[
        "bench",
        "prefill",
        "--model",
        s(&model),
        "--seq",
        "8",
        "--batch",
        "1,3",
        "--iters",
        "2",
        "--json",
        "--device",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let r = v["results"].as_array().unwrap();
    assert_eq!(r.len(), 2);
    for (row, b) in r.iter().zip([1, 3]) {
        assert_eq!(row["batch"], b);
        assert_eq!(row["seq"], 8);
        for k in ["tokens_per_s", "ms_per_prompt", "peak_rss_mb"] {
            assert!(row[k].as_f64().unwrap() > 0.0, "{k}");
        }
    }
}
