//! `routelmt train | score | calibrate --router | route --router` end to end on the tiny
//! transformers-written fixture (`tests/fixtures/make_fixtures.py`), with synthetic labels made
//! here.

use std::path::Path;

use serde_json::json;

use crate::common::{Cli, cli, files_in, fixture, read_json, read_jsonl, stderr};

/// `n` records over the tiny vocabulary: the gain is 3 when token 7 occurs, plus small noise
/// (a deterministic LCG, so the data is the same on every machine).
fn write_data(path: &Path, n: usize, seed: u64) {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut next = move |m: u64| {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (x >> 33) % m
    };
    let lines: Vec<String> = (0..n)
        .map(|i| {
            let len = 6 + next(20) as usize;
            let mut ids: Vec<u64> = (0..len).map(|_| 20 + next(480)).collect();
            let marked = next(2) == 1;
            if marked {
                let at = next(len as u64 - 1) as usize;
                ids[at] = 7;
            }
            let noise = next(100) as f64 / 250.0;
            let small = 40.0 + next(20) as f64;
            let gain = if marked { 3.0 } else { 0.0 } + noise;
            json!({"id": format!("r{i}"), "input_ids": ids, "score_small": small,
                   "score_large": small + gain, "note": "kept"})
            .to_string()
        })
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// `train` of a router on the tiny-gqa fixture (CPU), written to the folder `output`.
fn train_tiny(train: &Path, valid: &Path, output: &Path) -> Cli {
    cli("train")
        .arg("--model", fixture("models/tiny-gqa"))
        .arg("--train", train)
        .arg("--valid", valid)
        .arg("--output", output)
        .arg("--device", "cpu")
}

/// `command` (`score` or `route`) of the records in `input` with `router` on `model` (CPU).
fn with_router(command: &str, model: &Path, router: &Path, input: &Path, output: &Path) -> Cli {
    cli(command)
        .arg("--model", model)
        .arg("--router", router)
        .arg("--input", input)
        .arg("--output", output)
        .arg("--device", "cpu")
}

#[test]
fn train_score_calibrate_and_route_with_a_router() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, valid) = (tmp.path().join("train.jsonl"), tmp.path().join("valid.jsonl"));
    write_data(&train, 96, 1);
    write_data(&valid, 48, 2);
    let model = fixture("models/tiny-gqa");
    let router = tmp.path().join("router");
    let o = train_tiny(&train, &valid, &router)
        .arg("--epochs", "3")
        .arg("--batch-size", "16")
        .arg("--lr", "3e-3")
        .ok();
    let err = stderr(&o);
    assert!(err.contains("epoch 3:") && err.contains("best epoch"), "{err}");
    assert_eq!(
        files_in(&router),
        ["adapter_config.json", "adapter_model.safetensors", "head.safetensors", "router.json"]
    );
    let cfg = read_json(router.join("router.json"));
    assert_eq!(cfg["head"], "gain");
    assert_eq!(cfg["lora"], json!({"rank": 8, "alpha": 32.0}));
    let peft = read_json(router.join("adapter_config.json"));
    assert_eq!((peft["r"].as_u64(), peft["lora_alpha"].as_f64()), (Some(8), Some(32.0)));

    // score: every record, in order, with "score" added and every other field kept.
    let scored = tmp.path().join("scored.jsonl");
    with_router("score", &model, &router, &valid, &scored).ok();
    let rows = read_jsonl(&scored);
    let input = read_jsonl(&valid);
    assert_eq!(rows.len(), 48);
    for (r, i) in rows.iter().zip(&input) {
        assert_eq!((&r["id"], &r["note"]), (&i["id"], &i["note"]));
        assert!(r["score"].as_f64().unwrap().is_finite());
    }

    // calibrate on the scores and ship τ with the router; route then uses it by default.
    let thresh = tmp.path().join("thresh.json");
    cli("calibrate")
        .arg("--scores", &scored)
        .arg("--field", "score")
        .arg("--budget", "0.25")
        .arg("--output", &thresh)
        .arg("--router", &router)
        .ok();
    let cfg = read_json(router.join("router.json"));
    assert_eq!(cfg["threshold"]["field"], "score");
    let tau = cfg["threshold"]["threshold"].as_f64().unwrap();

    let routed = tmp.path().join("routed.jsonl");
    let route = with_router("route", &model, &router, &valid, &routed);
    route.ok();
    let out = read_jsonl(&routed);
    assert_eq!(out.len(), 48);
    for (r, sc) in out.iter().zip(&rows) {
        assert_eq!(r["score"], sc["score"], "route --router scores like score");
        let large = sc["score"].as_f64().unwrap() > tau;
        assert_eq!(r["route"], if large { "large" } else { "small" });
    }

    // --budget: exactly floor(p·N + 0.5) records go large.
    route.arg("--budget", "0.5").ok();
    let large = read_jsonl(&routed).iter().filter(|r| r["route"] == "large").count();
    assert_eq!(large, 24);

    // A finished router is not overwritten without --force.
    let o = train_tiny(&train, &valid, &router).fails();
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));

    // The router refuses another base model; nothing is written.
    let other = tmp.path().join("other.jsonl");
    let o = with_router("score", &fixture("models/tiny-bf16"), &router, &valid, &other).fails();
    assert!(stderr(&o).contains("fingerprint"), "{}", stderr(&o));
    assert!(!other.exists());
}

#[test]
fn train_rejects_bad_records_before_writing_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, valid) = (tmp.path().join("train.jsonl"), tmp.path().join("valid.jsonl"));
    write_data(&valid, 8, 3);
    std::fs::write(
        &train,
        "{\"id\":1,\"input_ids\":[1,2],\"score_small\":1,\"score_large\":2}\n\
         {\"id\":2,\"input_ids\":[1,2],\"score_small\":1}\n",
    )
    .unwrap();
    let router = tmp.path().join("router");
    let run = train_tiny(&train, &valid, &router);
    let o = run.fails();
    let err = stderr(&o);
    assert!(err.contains("train.jsonl:2") && err.contains("score_large"), "{err}");
    assert!(!router.exists(), "nothing written on bad input");

    std::fs::write(&train, "\n").unwrap();
    let o = run.run();
    assert!(stderr(&o).contains("empty training set"), "{}", stderr(&o));
    assert!(!router.exists());
}
