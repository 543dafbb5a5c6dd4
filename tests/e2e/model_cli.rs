//! `routelmt tokenize | features | info | bench prefill` end to end: real binary, temp dirs,
//! files and exit codes checked against the transformers goldens of
//! `tests/fixtures/make_fixtures.py`; bad input names file and line and leaves no output behind.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{
    Cli, cli, files_in, fixture, read_json, read_jsonl, root, stderr, stdout, stdout_json,
    write_input,
};

fn tokenizer() -> PathBuf {
    let p = root().join("assets/qwen3-tokenizer/tokenizer.json");
    assert!(p.is_file(), "run scripts/setup.sh first");
    p
}

/// `features` of the records in `input` on the model folder `model`, written to `output`.
fn features(model: impl AsRef<OsStr>, input: &Path, output: &Path) -> Cli {
    cli("features").arg("--model", model).arg("--input", input).arg("--output", output)
}

/// `tokenize` of the records in `input` with the real tokenizer, written to `output`.
fn tokenize(model: &Path, input: &Path, output: &Path) -> Cli {
    cli("tokenize")
        .arg("--model", model)
        .arg("--tokenizer", tokenizer())
        .arg("--input", input)
        .arg("--output", output)
}

#[test]
fn tokenize_matches_transformers_golden_ids() {
    let golden = read_json(fixture("tokenizer/golden_ids.json"));
    let golden = golden.as_array().unwrap();
    let tmp = tempfile::tempdir().unwrap();
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
    let input = write_input(tmp.path(), "in.jsonl", lines.join("\n"));
    let out = tmp.path().join("out.jsonl");
    tokenize(&fixture("models/tiny-default"), &input, &out).arg("--prompt-style", "colon").ok();
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
    let golden = read_json(dir.join("golden.json"));
    let cases = golden["cases"].as_array().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let text: Vec<String> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            serde_json::json!({"id": format!("c{i}"), "input_ids": c["input_ids"]}).to_string()
        })
        .collect();
    let input = write_input(tmp.path(), "in.jsonl", text.join("\n") + "\n");
    for (device, layer) in [("cpu", "3"), ("gpu", "1")] {
        let out = tmp.path().join(format!("{device}.jsonl"));
        let o = features(&dir, &input, &out)
            .arg("--layer", layer)
            .arg("--device", device)
            .arg("--batch-size", "2")
            .ok();
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
    features(fixture("models/tiny-default"), &fixture("sample/requests.jsonl"), &out)
        .arg("--tokenizer", tokenizer())
        .arg("--device", "cpu")
        .ok();
    let rows = read_jsonl(&out);
    assert_eq!(rows.len(), 8);
    assert!(rows.iter().all(|r| r["hidden"].as_array().unwrap().len() == 16));
    assert_eq!(rows[0]["id"], "r1");
}

/// Runs `cmd`, which must fail with one `error:` line containing every needle and leave neither
/// `out` nor a temporary file beside it.
fn expect_failure(cmd: Cli, out: &Path, needles: &[&str]) {
    let e = stderr(&cmd.fails());
    for n in needles {
        assert!(e.contains(n), "stderr lacks {n:?}: {e}");
    }
    assert_eq!(
        e.trim().lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "one error line: {e}"
    );
    assert!(!out.exists(), "partial output left at {}", out.display());
    let leftovers: Vec<String> =
        files_in(out.parent().unwrap()).into_iter().filter(|n| n.starts_with(".tmp")).collect();
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
        let input = write_input(tmp.path(), "in.jsonl", format!("{good}\n{good}\n{bad}\n{good}\n"));
        expect_failure(features(&model, &input, &out).arg("--device", "cpu"), &out, &needles);
    }
    // Unknown language in `tokenize`: the error lists the supported codes.
    let input = write_input(
        tmp.path(),
        "in.jsonl",
        "{\"id\": 1, \"src\": \"a\", \"src_lang\": \"en\", \"tgt_lang\": \"xx\"}\n",
    );
    expect_failure(
        tokenize(&model, &input, &out),
        &out,
        &["in.jsonl:1: unknown language code 'xx'; supported codes: ar, en, es"],
    );
    // A broken model folder fails before any output exists.
    expect_failure(features(tmp.path(), &input, &out), &out, &["config.json"]);
}

#[test]
fn skip_invalid_writes_the_rest_and_a_side_file() {
    let tmp = tempfile::tempdir().unwrap();
    let input = write_input(
        tmp.path(),
        "in.jsonl",
        "{\"id\": \"a\", \"input_ids\": [1, 2]}\n{oops\n\n{\"id\": \"b\", \"input_ids\": [700]}\n{\"id\": \"c\", \"input_ids\": [5]}\n",
    );
    let out = tmp.path().join("f.jsonl");
    let o = features(fixture("models/tiny-gqa"), &input, &out)
        .flag("--skip-invalid")
        .arg("--device", "cpu")
        .ok();
    let ids: Vec<Value> = read_jsonl(&out).into_iter().map(|r| r["id"].clone()).collect();
    assert_eq!(ids, vec![Value::from("a"), Value::from("c")]);
    let rejected = read_jsonl(tmp.path().join("f.jsonl.rejected.jsonl"));
    let lines: Vec<u64> = rejected.iter().map(|r| r["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, vec![2, 4]);
    assert!(rejected[1]["error"].as_str().unwrap().contains("token id 700"));
    assert!(stderr(&o).contains("skipped 2 invalid line(s)"));
}

#[test]
fn info_describes_the_folder() {
    let o = cli("info")
        .arg("--model", fixture("models/tiny-bf16"))
        .flag("--json")
        .arg("--device", "cpu")
        .ok();
    let v = stdout_json(&o);
    assert_eq!(v["architecture"], "qwen3");
    assert_eq!(v["dtype_on_disk"], serde_json::json!(["bf16"]));
    assert_eq!(v["head_dim"], 24);
    let device = v["device"].as_str().unwrap();
    assert!(device.starts_with("cpu: ") && device.contains("kernels"), "{device}");
    let o = cli("info").arg("--model", fixture("models/tiny-sharded")).arg("--device", "cpu").run();
    let text = stdout(&o);
    assert!(o.status.success() && text.contains("unused [\"lm_head.weight\"]"), "{text}");
}

#[test]
fn bench_prefill_prints_the_promised_json() {
    let o = cli("bench prefill")
        .arg("--model", fixture("models/tiny-gqa"))
        .arg("--seq", "8")
        .arg("--batch", "1,3")
        .arg("--iters", "2")
        .flag("--json")
        .arg("--device", "cpu")
        .ok();
    let v = stdout_json(&o);
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

#[test]
fn bench_prefill_profile_breaks_down_the_prefill() {
    // tiny-gqa: 3 layers, hidden 64, 4 query and 2 KV heads of 32, MLP 96.
    let o = cli("bench prefill")
        .arg("--model", fixture("models/tiny-gqa"))
        .arg("--seq", "8")
        .arg("--batch", "3")
        .arg("--iters", "1")
        .arg("--weights", "f32,q8")
        .flag("--profile")
        .flag("--json")
        .arg("--device", "cpu")
        .ok();
    let v = stdout_json(&o);
    let rows = v["results"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        let p = &row["profile"];
        let shapes: Vec<[u64; 4]> = p["gemm_shapes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| ["m", "k", "n", "calls"].map(|f| s[f].as_u64().unwrap()))
            .collect();
        // Blocks 1-2 on all 24 tokens, then the last block's q/k/v on all tokens and its o,
        // gate/up and down on the 3 last tokens.
        let expect = vec![
            [24, 64, 256, 3],
            [24, 128, 64, 2],
            [24, 64, 192, 2],
            [24, 96, 64, 2],
            [3, 128, 64, 1],
            [3, 64, 192, 1],
            [3, 96, 64, 1],
        ];
        assert_eq!(shapes, expect, "{}", row["variant"]);
        assert_eq!(p["gemm_calls"], 12);
        let flops: u64 = shapes.iter().map(|s| 2 * s[0] * s[1] * s[2] * s[3]).sum();
        assert!((p["gemm_gflop"].as_f64().unwrap() - flops as f64 / 1e9).abs() < 1e-12);
        let gemm = p["gemm_ms"].as_f64().unwrap();
        let parts = p["gemm_packing_ms"].as_f64().unwrap() + p["gemm_copies_ms"].as_f64().unwrap();
        assert!(gemm > 0.0 && parts >= 0.0 && parts <= gemm, "{p}");
        assert!(
            p["allocations"].as_u64().unwrap() > 0 && p["allocated_mib"].as_f64().unwrap() > 0.0
        );
    }
}

#[test]
fn auto_device_is_chosen_quietly_and_said_once() {
    // Probing wgpu on a machine without a display server used to print Mesa's
    // "XDG_RUNTIME_DIR is invalid or not set" four times; the choice is now said once, with
    // its reason.
    let o = cli("info").arg("--model", fixture("models/tiny-gqa")).arg("--device", "auto").ok();
    let err = stderr(&o);
    assert!(!err.contains("XDG_RUNTIME_DIR"), "{err}");
    let said: Vec<&str> = err.lines().filter(|l| l.starts_with("device: ")).collect();
    assert_eq!(said.len(), 1, "{err}");
    assert!(said[0].contains("auto: "), "the reason is given: {err}");
    assert_eq!(err.lines().count(), 1, "nothing else on stderr: {err}");
}

#[test]
fn a_missing_model_folder_names_the_file_and_its_cause_once() {
    let o = cli("info").arg("--model", "/nonexistent/model").arg("--device", "cpu").fails();
    let err = stderr(&o);
    assert!(err.contains("/nonexistent/model/config.json"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// Crafted files (issue 21): `features` on each exits with one line naming the field, no
/// panic, no output file, before allocating anything from the crafted number.
#[test]
fn crafted_configs_and_ggufs_fail_with_one_line_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let input = write_input(tmp.path(), "in.jsonl", "{\"id\": 1, \"input_ids\": [1, 2, 3]}\n");
    let run = |model: &Path, want: &str| {
        let out = tmp.path().join("out.jsonl");
        let o = features(model, &input, &out).arg("--device", "cpu").exits(1);
        let err = stderr(&o);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(want), "want '{want}' in: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!out.exists(), "no output file for {}", model.display());
    };
    // config.json: sizes beyond any real checkpoint.
    let base: Value = read_json(fixture("models/tiny-gqa/config.json"));
    for (field, value) in [("num_hidden_layers", 1_000_000_000_000u64), ("head_dim", 1 << 40)] {
        let dir = tmp.path().join(field);
        std::fs::create_dir_all(&dir).unwrap();
        let mut c = base.clone();
        c[field] = value.into();
        std::fs::write(dir.join("config.json"), c.to_string()).unwrap();
        std::fs::copy(fixture("models/tiny-gqa/model.safetensors"), dir.join("model.safetensors"))
            .unwrap();
        run(&dir, &format!("field '{field}'"));
    }
    // GGUF: a tensor count far beyond the file, and a tensor whose dimensions overflow.
    let gguf = std::fs::read(fixture("gguf/tiny-qwen3.gguf")).unwrap();
    let mut count = gguf.clone();
    count[8..16].copy_from_slice(&(1u64 << 60).to_le_bytes());
    let p = tmp.path().join("count.gguf");
    std::fs::write(&p, count).unwrap();
    run(&p, "tensor count");
    let name = b"blk.0.attn_q.weight";
    let mut key = (name.len() as u64).to_le_bytes().to_vec();
    key.extend_from_slice(name);
    let at = gguf.windows(key.len()).position(|w| w == key).unwrap() + key.len() + 4;
    let mut dims = gguf.clone();
    dims[at..at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    dims[at + 8..at + 16].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let p = tmp.path().join("dims.gguf");
    std::fs::write(&p, dims).unwrap();
    run(&p, "tensor 'blk.0.attn_q.weight' has dimensions");
    // Dimensions whose element count fits but whose byte size does not (found by fuzzing).
    let mut bytes = gguf.clone();
    bytes[at..at + 8].copy_from_slice(&(1u64 << 32).to_le_bytes());
    bytes[at + 8..at + 16].copy_from_slice(&(1u64 << 31).to_le_bytes());
    let p = tmp.path().join("bytes.gguf");
    std::fs::write(&p, bytes).unwrap();
    run(&p, "elements are too many for this platform");
}
