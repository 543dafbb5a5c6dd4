//! Training tests on the tiny transformers-written fixtures, with synthetic labels that only
//! the representation can see.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use routelmt_model::{HeadKind, LoraSettings, Model, PromptStyle, hf};

use crate::TrainSettings;
use crate::data::Example;
use crate::error::TrainError;
use crate::trainer::{Control, Event, TrainJob, TrainOutcome, train};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn tiny() -> Model {
    hf::load_folder(&fixtures().join("models/tiny-gqa"), &Device::flex()).unwrap().0
}

/// Random prompts of 8–40 tokens. The gain depends on a marker token only: +2 if token 7
/// occurs, +1 more if it occurs in the first half, −1.5 if token 11 occurs; plus N(0, 0.3)-ish
/// noise. Length carries no signal.
fn synthetic(n: usize, seed: u64) -> Vec<Example> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let len = rng.random_range(8..=40usize);
            let mut ids: Vec<u32> = (0..len).map(|_| rng.random_range(20..500u32)).collect();
            let mut gain = 0.0;
            if rng.random_bool(0.5) {
                let pos = rng.random_range(0..len - 1);
                ids[pos] = 7;
                gain += 2.0 + if pos < len / 2 { 1.0 } else { 0.0 };
            }
            if rng.random_bool(0.4) {
                let pos = rng.random_range(0..len - 1);
                if ids[pos] != 7 {
                    ids[pos] = 11;
                    gain -= 1.5;
                }
            }
            let noise: f64 = (0..4).map(|_| rng.random_range(-0.26..0.26)).sum();
            let score_small = 50.0 + rng.random_range(-10.0..10.0);
            Example { ids, score_small, gain: gain + noise, line: i + 1 }
        })
        .collect()
}

fn settings(epochs: usize, lora: bool) -> TrainSettings {
    TrainSettings {
        head: HeadKind::Gain,
        layer: 3,
        prompt_style: PromptStyle::Card,
        chat_template: routelmt_model::ChatMode::Auto,
        weights: routelmt_model::Precision::F32,
        epochs,
        lr: 3e-3,
        weight_decay: 0.01,
        warmup: 0.05,
        batch_size: 16,
        grad_accum: 1,
        lora: lora.then_some(LoraSettings { rank: 8, alpha: 32.0 }),
        seed: 7,
        checkpoint_every: 0,
    }
}

/// Runs a job; `stop_after` stops it after that optimizer step, as an interrupt would.
#[allow(clippy::too_many_arguments)]
fn run(
    model: Model,
    train_set: &[Example],
    valid: &[Example],
    s: &TrainSettings,
    out: &Path,
    name: &str,
    resume: bool,
    stop_after: Option<usize>,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<TrainOutcome, TrainError> {
    let job = TrainJob {
        model,
        train: train_set,
        valid,
        settings: s.clone(),
        out,
        base_name: name,
        resume,
    };
    train(job, &mut |e| {
        let stop = matches!(e, Event::Step { step, .. } if stop_after.is_some_and(|n| step >= n));
        on_event(e);
        if stop { Control::Stop } else { Control::Continue }
    })
}

/// burn materializes loaded optimizer state on its default device, which sets wgpu up with
/// default settings; set it up our way first, as the CLI does by selecting its device before
/// anything else, so that the wgpu test in this process can still select it.
fn set_up_devices() {
    let _ = routelmt_model::device::select(routelmt_model::device::DeviceChoice::Gpu);
}

fn spearman(a: &[f64], b: &[f64]) -> f64 {
    routelmt_route::spearman(a, b)
}

fn scores(router: &routelmt_model::Router, model: Model, set: &[Example]) -> Vec<f64> {
    let model = router.prepare(model);
    let ids: Vec<Vec<u32>> = set.iter().map(|e| e.ids.clone()).collect();
    router
        .score(&model, &ids, 32)
        .unwrap()
        .read()
        .unwrap()
        .iter()
        .map(|s| f64::from(s[0]))
        .collect()
}

#[test]
fn lora_router_learns_what_length_cannot_and_keeps_the_best_epoch() {
    let (tr, va) = (synthetic(640, 1), synthetic(240, 2));
    let dir = tempfile::tempdir().unwrap();
    let s = settings(8, true);
    let out = run(tiny(), &tr, &va, &s, dir.path(), "tiny-gqa", false, None, &mut |_| {}).unwrap();

    let gains: Vec<f64> = va.iter().map(|e| e.gain).collect();
    let lens: Vec<f64> = va.iter().map(|e| e.ids.len() as f64).collect();
    let rho_len = spearman(&lens, &gains);
    for r in &out.history {
        println!("{r}");
    }
    let best = out.history.iter().find(|r| r.best).unwrap();
    println!("length baseline Spearman {rho_len:.4}; router best {:.4}", best.valid_spearman);
    assert!(rho_len.abs() < 0.15, "length should carry no signal, got {rho_len}");
    assert!(best.valid_spearman >= 0.8, "held-out Spearman {}", best.valid_spearman);

    // The best epoch is the highest validation Spearman, and it is the router on disk: scoring
    // the validation set with the saved (merged) router reproduces that epoch's Spearman.
    let max = out.history.iter().map(|r| r.valid_spearman).fold(f64::MIN, f64::max);
    assert_eq!(best.valid_spearman, max);
    assert_eq!(out.best_epoch, best.epoch);
    let loaded = hf::read_router(dir.path(), &tiny().config, &Device::flex()).unwrap();
    let sc = scores(&loaded, tiny(), &va);
    let rho = spearman(&sc, &gains);
    assert!((rho - best.valid_spearman).abs() < 1e-3, "saved router {rho} vs best {best:?}");
    let training = loaded.config.training.as_ref().unwrap();
    assert_eq!(training["best_epoch"], serde_json::json!(best.epoch));

    // Loss falls in trend: least-squares slope over epochs is negative and the last epoch is
    // well below the first.
    let losses: Vec<f64> = out.history.iter().map(|r| r.train_loss).collect();
    let n = losses.len() as f64;
    let mx = (n - 1.0) / 2.0;
    let my = losses.iter().sum::<f64>() / n;
    let slope: f64 = losses.iter().enumerate().map(|(i, y)| (i as f64 - mx) * (y - my)).sum();
    assert!(slope < 0.0, "training loss does not fall: {losses:?}");
    assert!(losses[losses.len() - 1] < 0.7 * losses[0], "{losses:?}");

    // Merged inference equals the unmerged adapter within 1e-5.
    let adapter = loaded.adapter.as_ref().unwrap();
    let ids: Vec<Vec<u32>> = va.iter().take(24).map(|e| e.ids.clone()).collect();
    let merged = loaded.prepare(tiny()).last_hidden(&ids, 3, 32).unwrap().read().unwrap();
    let mut unmerged = tiny();
    unmerged.decoder = adapter.attach(unmerged.decoder, &Device::flex());
    let unmerged = unmerged.last_hidden(&ids, 3, 32).unwrap().read().unwrap();
    let diff = merged
        .iter()
        .flatten()
        .zip(unmerged.iter().flatten())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    println!("merged vs unmerged max abs diff {diff:e}");
    assert!(diff <= 1e-5, "{diff}");
}

#[test]
fn resume_after_interrupt_equals_uninterrupted_and_runs_are_deterministic() {
    set_up_devices();
    let (tr, va) = (synthetic(96, 3), synthetic(32, 4));
    let mut s = settings(2, true);
    s.batch_size = 8;
    s.checkpoint_every = 3;
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run(tiny(), &tr, &va, &s, a.path(), "tiny", false, None, &mut |_| {}).unwrap();

    // Killed after step 17 (epoch 2, after the checkpoint at step 15): the checkpoint stays.
    let err = run(tiny(), &tr, &va, &s, b.path(), "tiny", false, Some(17), &mut |_| {});
    assert!(matches!(err, Err(TrainError::Stopped(17))), "{err:?}");
    assert!(b.path().join(".routelmt-train/last/state.json").is_file());
    assert!(!b.path().join("router.json").exists(), "no router before the run ends");
    // Without --resume the checkpoint is not overwritten.
    let err = run(tiny(), &tr, &va, &s, b.path(), "tiny", false, None, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("--resume"), "{err}");
    // Other settings cannot resume it.
    let mut other = s.clone();
    other.lr *= 2.0;
    let err = run(tiny(), &tr, &va, &other, b.path(), "tiny", true, None, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("different settings"), "{err}");

    let mut resumed_at = None;
    let out = run(tiny(), &tr, &va, &s, b.path(), "tiny", true, None, &mut |e| {
        if let crate::Event::Started { steps_done, .. } = e {
            resumed_at = Some(steps_done);
        }
    })
    .unwrap();
    assert_eq!(resumed_at, Some(15));
    assert_eq!(out.resumed_from, Some(15));
    for f in ["head.safetensors", "adapter_model.safetensors"] {
        let (x, y) =
            (std::fs::read(a.path().join(f)).unwrap(), std::fs::read(b.path().join(f)).unwrap());
        assert!(x == y, "{f} differs between the uninterrupted and the resumed run");
    }
    assert!(!b.path().join(".routelmt-train").exists(), "checkpoint removed at the end");
}

#[test]
fn head_only_router_has_no_adapter_and_scores_the_plain_prefill() {
    let (tr, va) = (synthetic(160, 5), synthetic(64, 6));
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(3, false);
    s.head = HeadKind::Both;
    s.lr = 1e-2;
    let out = run(tiny(), &tr, &va, &s, dir.path(), "tiny", false, None, &mut |_| {}).unwrap();
    assert!(out.router.adapter.is_none());
    assert!(!dir.path().join("adapter_model.safetensors").exists());
    let loaded = hf::read_router(dir.path(), &tiny().config, &Device::flex()).unwrap();
    assert_eq!(loaded.config.head, HeadKind::Both);
    // Save -> load -> score is identical, and equals the head on the plain model's features.
    let ids: Vec<Vec<u32>> = va.iter().map(|e| e.ids.clone()).collect();
    let model = tiny();
    let a = out.router.score(&model, &ids, 16).unwrap().read().unwrap();
    let b = loaded.score(&loaded.prepare(tiny()), &ids, 16).unwrap().read().unwrap();
    assert_eq!(a, b);
    let (w, bias) = loaded.head.to_host().unwrap();
    let hidden = model.last_hidden(&ids, 3, 16).unwrap().read().unwrap();
    for (h, s) in hidden.iter().zip(&a) {
        for o in 0..2 {
            let y: f32 = h.iter().enumerate().map(|(i, x)| x * w[i * 2 + o]).sum::<f32>() + bias[o];
            assert!((y - s[o]).abs() < 1e-4, "{y} vs {}", s[o]);
        }
    }
}

#[test]
fn bad_training_input_is_named_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let mut no_text =
        |_: &str, _: &str, _: &str| -> Result<Vec<u32>, String> { Err("no tokenizer".into()) };
    let read = |p: &Path, enc: &mut crate::data::Encoder<'_>| {
        crate::read_examples(p, 512, enc).unwrap_err().to_string()
    };
    let ok = r#"{"id":1,"input_ids":[1,2,3],"score_small":1.0,"score_large":2.0}"#;
    let cases = [
        (
            "missing.jsonl",
            format!("{ok}\n{{\"id\":2,\"input_ids\":[1],\"score_small\":1.0}}\n"),
            "missing.jsonl:2",
            "score_large",
        ),
        (
            "nan.jsonl",
            format!(
                "{ok}\n\n{{\"id\":2,\"input_ids\":[1],\"score_small\":NaN,\"score_large\":1}}\n"
            ),
            "nan.jsonl:3",
            "",
        ),
        (
            "gain.jsonl",
            "{\"id\":2,\"input_ids\":[1],\"score_small\":1,\"score_large\":2,\"gain\":5}\n"
                .to_string(),
            "gain.jsonl:1",
            "gain",
        ),
        (
            "vocab.jsonl",
            "{\"id\":2,\"input_ids\":[9999],\"score_small\":1,\"score_large\":2}\n".to_string(),
            "vocab.jsonl:1",
            "vocab_size",
        ),
        (
            "noprompt.jsonl",
            "{\"id\":2,\"score_small\":1,\"score_large\":2}\n".to_string(),
            "noprompt.jsonl:1",
            "input_ids",
        ),
        ("empty.jsonl", "\n\n".to_string(), "empty.jsonl", "empty training set"),
    ];
    for (name, text, at, what) in cases {
        let p = write(name, &text);
        let e = read(&p, &mut no_text);
        assert!(e.contains(at) && e.contains(what), "{name}: {e}");
    }

    // Constant labels: nothing to learn, and no output folder content.
    let same: Vec<Example> = (0..8)
        .map(|i| Example { ids: vec![1, 2, 3], score_small: 1.0, gain: 0.5, line: i + 1 })
        .collect();
    let out = dir.path().join("router");
    let e = run(tiny(), &same, &same, &settings(1, true), &out, "t", false, None, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("nothing to learn"), "{e}");
    assert!(!out.exists());
}

#[test]
fn router_folders_refuse_another_base_and_name_missing_files() {
    let (tr, va) = (synthetic(32, 8), synthetic(16, 9));
    let dir = tempfile::tempdir().unwrap();
    run(tiny(), &tr, &va, &settings(1, true), dir.path(), "tiny-gqa", false, None, &mut |_| {})
        .unwrap();
    let other = hf::read_config(&fixtures().join("models/tiny-bf16")).unwrap();
    let e = hf::read_router(dir.path(), &other, &Device::flex()).unwrap_err().to_string();
    assert!(e.contains("router.json") && e.contains("fingerprint"), "{e}");

    let base = tiny().config;
    for missing in ["head.safetensors", "adapter_model.safetensors", "router.json"] {
        let copy = tempfile::tempdir().unwrap();
        for f in std::fs::read_dir(dir.path()).unwrap() {
            let f = f.unwrap().path();
            if f.file_name().unwrap() != missing {
                std::fs::copy(&f, copy.path().join(f.file_name().unwrap())).unwrap();
            }
        }
        let e = hf::read_router(copy.path(), &base, &Device::flex()).unwrap_err().to_string();
        assert!(e.contains(missing), "{missing}: {e}");
    }
}

#[test]
fn trains_on_wgpu_and_the_router_scores_alike_on_both_devices() {
    use routelmt_model::device::{DeviceChoice, select};
    let gpu = select(DeviceChoice::Gpu).expect("wgpu adapter required (mesa-vulkan-drivers)");
    println!("wgpu device: {}", gpu.description);
    let (tr, va) = (synthetic(64, 10), synthetic(32, 11));
    let dir = tempfile::tempdir().unwrap();
    let model = hf::load_folder(&fixtures().join("models/tiny-gqa"), &gpu.device).unwrap().0;
    let mut s = settings(2, true);
    s.batch_size = 8;
    let out = run(model, &tr, &va, &s, dir.path(), "tiny", false, None, &mut |_| {}).unwrap();
    assert_eq!(out.history.len(), 2);
    assert!(out.history.iter().all(|r| r.train_loss.is_finite() && r.valid_mse.is_finite()));
    let ids: Vec<Vec<u32>> = va.iter().map(|e| e.ids.clone()).collect();
    let on_gpu = out
        .router
        .score(
            &out.router.prepare(
                hf::load_folder(&fixtures().join("models/tiny-gqa"), &gpu.device).unwrap().0,
            ),
            &ids,
            16,
        )
        .unwrap()
        .read()
        .unwrap();
    let cpu_router = hf::read_router(dir.path(), &tiny().config, &Device::flex()).unwrap();
    let on_cpu = cpu_router.score(&cpu_router.prepare(tiny()), &ids, 16).unwrap().read().unwrap();
    let diff = on_gpu
        .iter()
        .flatten()
        .zip(on_cpu.iter().flatten())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    println!("router scores wgpu vs cpu: max abs diff {diff:e}");
    assert!(diff < 1e-4, "{diff}");
}
