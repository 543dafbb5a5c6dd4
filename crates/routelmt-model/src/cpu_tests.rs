//! `--weights f16|q8|q4`: routing scores and hidden states against f32, on the CPU kernels
//! and (q8, q4) on wgpu.

use burn::tensor::Device;

use crate::Precision;
use crate::device::{DeviceChoice, select};
use crate::hf;
use crate::model::Model;
use crate::tests::{fixtures, max_abs_diff};

/// Spearman's rho of two score lists without ties.
fn spearman(a: &[f32], b: &[f32]) -> f64 {
    let rank = |v: &[f32]| {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut r = vec![0f64; v.len()];
        for (pos, &i) in idx.iter().enumerate() {
            r[i] = pos as f64;
        }
        r
    };
    let (ra, rb) = (rank(a), rank(b));
    let n = a.len() as f64;
    let d2: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - y) * (x - y)).sum();
    1.0 - 6.0 * d2 / (n * (n * n - 1.0))
}

/// 64 prompts of 3..40 tokens.
fn prompts(vocab: usize) -> Vec<Vec<u32>> {
    (0..64u64)
        .map(|r| {
            let len = 3 + (r * 37 % 38) as usize;
            (0..len as u64).map(|t| ((r * 7919 + t * 104_729 + 13) % vocab as u64) as u32).collect()
        })
        .collect()
}

/// A fixed routing head: scores `h · w` with `w` pseudo-random.
fn scores(hidden: &[Vec<f32>]) -> Vec<f32> {
    let w: Vec<f32> = (0..hidden[0].len())
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 8) as f32 / (1u32 << 24) as f32 - 0.5)
        .collect();
    hidden.iter().map(|h| h.iter().zip(&w).map(|(a, b)| a * b).sum()).collect()
}

fn load(name: &str, device: &Device) -> Model {
    hf::load_folder(&fixtures().join("models").join(name), device).unwrap().0
}

/// Final-layer states of the prompts.
fn states(model: &Model) -> Vec<Vec<f32>> {
    let ps = prompts(model.config.vocab_size);
    model.last_hidden(&ps, model.config.num_hidden_layers, 16).unwrap().read().unwrap()
}

/// Checks `got` against `reference`: the routing scores' Spearman at least `min_rho`, the final
/// states within `max_rel` of the largest reference value (and not identical).
fn compare(label: &str, reference: &[Vec<f32>], got: &[Vec<f32>], max_rel: f32, min_rho: f64) {
    let scale = reference.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
    let worst = reference.iter().zip(got).map(|(a, b)| max_abs_diff(a, b)).fold(0f32, f32::max);
    let rho = spearman(&scores(reference), &scores(got));
    println!(
        "{label}: max |Δ hidden| {worst:.3e} (max |h| {scale:.3}), routing-score Spearman {rho:.6}"
    );
    assert!(rho >= min_rho, "{label}: Spearman {rho} < {min_rho}");
    assert!(worst > 0.0, "{label}: identical to f32, so the weights were not converted");
    assert!(worst <= max_rel * scale, "{label}: max |Δ hidden| {worst:e} over {max_rel} · {scale}");
}

#[test]
fn f16_q8_and_q4_weights_keep_routing_scores_on_the_cpu_kernels() {
    let cpu = select(DeviceChoice::Cpu).unwrap().device;
    for name in ["tiny-gqa", "tiny-llama", "tiny-qwen2"] {
        let reference = states(&load(name, &cpu).prepared(Precision::F32).unwrap());
        for (w, max_rel, min_rho) in [
            (Precision::F16, 2e-3, 0.999),
            (Precision::Q8, 3e-2, 0.999),
            (Precision::Q4, 0.3, 0.97),
        ] {
            for isa in [crate::cpu::Isa::detect(), crate::cpu::Isa::Portable] {
                let m = load(name, &cpu).prepared(w).unwrap().with_isa(isa);
                let bytes = m.cpu_decoder().unwrap().weight_bytes();
                let label = format!("{name} cpu {} {w} ({bytes} bytes)", isa.name());
                compare(&label, &reference, &states(&m), max_rel, min_rho);
            }
        }
    }
}

#[test]
fn q8_decoder_is_over_3_5x_and_q4_over_6x_smaller_than_f32() {
    let cpu = select(DeviceChoice::Cpu).unwrap().device;
    let cfg = crate::ModelConfig {
        vocab_size: 64,
        num_hidden_layers: 2,
        ..crate::ModelConfig::qwen3_0_6b()
    };
    let size = |w| {
        Model::random(cfg.clone(), &cpu, 3)
            .prepared(w)
            .unwrap()
            .cpu_decoder()
            .unwrap()
            .weight_bytes()
    };
    let (f32_bytes, f16_bytes, q8_bytes, q4_bytes) =
        (size(Precision::F32), size(Precision::F16), size(Precision::Q8), size(Precision::Q4));
    println!("decoder bytes: f32 {f32_bytes}, f16 {f16_bytes}, q8 {q8_bytes}, q4 {q4_bytes}");
    assert!(f32_bytes as f64 / q8_bytes as f64 >= 3.5, "q8 {q8_bytes} vs f32 {f32_bytes}");
    assert!(f32_bytes as f64 / q4_bytes as f64 >= 6.0, "q4 {q4_bytes} vs f32 {f32_bytes}");
    assert!(f32_bytes as f64 / f16_bytes as f64 >= 1.99);
}

#[test]
fn q8_and_q4_weights_run_on_wgpu() {
    let gpu =
        select(DeviceChoice::Gpu).expect("wgpu adapter required (install mesa-vulkan-drivers)");
    let cpu = select(DeviceChoice::Cpu).unwrap().device;
    let reference = states(&load("tiny-gqa", &cpu));
    let q8 = load("tiny-gqa", &gpu.device).prepared(Precision::Q8).unwrap();
    compare(&format!("tiny-gqa {} q8", gpu.description), &reference, &states(&q8), 3e-2, 0.999);
    let q4 = load("tiny-gqa", &gpu.device).prepared(Precision::Q4).unwrap();
    compare(&format!("tiny-gqa {} q4", gpu.description), &reference, &states(&q4), 0.3, 0.97);
    let e = load("tiny-gqa", &gpu.device).prepared(Precision::F16).unwrap_err().to_string();
    assert!(e.contains("f16") && e.contains("--device cpu"), "{e}");
}

#[test]
fn profile_counts_every_projection() {
    let cpu = select(DeviceChoice::Cpu).unwrap().device;
    let m = load("tiny-gqa", &cpu).prepared(Precision::F32).unwrap();
    let ps = prompts(m.config.vocab_size);
    let l = m.config.num_hidden_layers;
    let (h, prof) = m.cpu_decoder().unwrap().forward_profiled(&m.embed_tokens, &ps[..4], l);
    assert_eq!(h.len(), 4 * m.config.hidden_size);
    assert_eq!(prof.gemm_calls(), 4 * l, "q/k/v, o, gate/up and down per block");
    assert!(prof.gemm > 0.0 && prof.attention > 0.0 && prof.elementwise > 0.0);
}
