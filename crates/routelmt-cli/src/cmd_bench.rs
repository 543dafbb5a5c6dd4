//! `routelmt bench prefill | train`: benchmarks that print figures (medians of timed runs,
//! peak memory), for BENCHMARKS.md. Nothing here asserts a speed.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use routelmt_model::{LoraSettings, Model, ModelConfig, hf, peft};
use serde_json::json;

use crate::args::DeviceOpt;
use crate::io::print_stdout;

/// `routelmt bench ...`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Prefill throughput, latency and peak memory.
    Prefill(BenchPrefillArgs),
    /// Training steps per second and peak memory, LoRA or head only.
    Train(BenchTrainArgs),
}

/// Arguments of `routelmt bench prefill`.
#[derive(Debug, Args)]
pub struct BenchPrefillArgs {
    /// Architecture with random weights: qwen3-0.6b (ignored with --model).
    #[arg(long, default_value = "qwen3-0.6b")]
    pub config: String,
    /// Benchmark a real folder instead of random weights.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Tokens per prompt.
    #[arg(long, default_value_t = 64)]
    pub seq: usize,
    /// Batch sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    pub batch: Vec<usize>,
    /// Device and output format.
    #[command(flatten)]
    pub out: BenchOut,
    /// Timed repetitions per batch size (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// Untimed warm-up runs per batch size.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Also time the same model with a rank-8 LoRA merged into its weights (what `score`
    /// runs), side by side with the plain model.
    #[arg(long)]
    pub merged_lora: bool,
}

/// Arguments of `routelmt bench train`.
#[derive(Debug, Args)]
pub struct BenchTrainArgs {
    /// Architecture with random weights: qwen3-0.6b.
    #[arg(long, default_value = "qwen3-0.6b")]
    pub config: String,
    /// Examples per step.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Tokens per example.
    #[arg(long, default_value_t = 64)]
    pub seq: usize,
    /// What to time: lora, no-lora (the head on the frozen prefill), or both (one after the
    /// other in this process; the peak memory is then cumulative).
    #[arg(long, default_value = "both")]
    pub mode: String,
    /// Timed steps per mode (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub iters: usize,
    /// Untimed warm-up steps per mode.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Device and output format.
    #[command(flatten)]
    pub out: BenchOut,
}

/// Where a benchmark runs and how it reports.
#[derive(Debug, Args)]
pub struct BenchOut {
    /// Compute device.
    #[command(flatten)]
    pub device: DeviceOpt,
    /// Print {"results": [...]} on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Peak resident set of this process in MiB (Linux `VmHWM`), if available.
fn peak_rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The full-size architecture with random weights, by name.
fn random_model(name: &str, device: &burn::tensor::Device) -> Result<Model> {
    let config = match name {
        "qwen3-0.6b" => ModelConfig::qwen3_0_6b(),
        other => bail!("unknown --config '{other}' (known: qwen3-0.6b)"),
    };
    Ok(Model::random(config, device, 7))
}

/// Deterministic pseudo-random ids for benchmarks: `batch` rows of `seq` tokens each (every
/// row full length, the worst case for padding).
fn bench_ids(batch: usize, seq: usize, vocab: u64) -> Vec<Vec<u32>> {
    (0..batch)
        .map(|r| {
            (0..seq).map(|t| ((r as u64 * 7919 + t as u64 * 104_729 + 13) % vocab) as u32).collect()
        })
        .collect()
}

/// Median (sorts in place).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// `routelmt bench prefill`.
pub fn bench(cmd: BenchCommand) -> Result<()> {
    let a = match cmd {
        BenchCommand::Prefill(a) => a,
        BenchCommand::Train(a) => return bench_train(a),
    };
    if a.iters == 0 || a.seq == 0 || a.batch.contains(&0) {
        bail!("--iters, --seq and every --batch must be at least 1");
    }
    let dev = a.out.device.device.select()?;
    let model = match &a.model {
        Some(dir) => hf::load_folder(dir, &dev.device)?.0,
        None => random_model(&a.config, &dev.device)?,
    };
    let merged = if a.merged_lora {
        let mut m = match &a.model {
            Some(dir) => hf::load_folder(dir, &dev.device)?.0,
            None => random_model(&a.config, &dev.device)?,
        };
        m.decoder = merge_random_lora(m.decoder, &dev.device)?;
        Some(m)
    } else {
        None
    };
    let layer = model.config.num_hidden_layers;
    let vocab = model.config.vocab_size as u64;
    let mut results = Vec::new();
    for &b in &a.batch {
        let ids = bench_ids(b, a.seq, vocab);
        let variants: Vec<(&str, &Model)> = std::iter::once(("plain", &model))
            .chain(merged.as_ref().map(|m| ("merged-lora", m)))
            .collect();
        for _ in 0..a.warmup {
            for (_, m) in &variants {
                m.last_hidden(&ids, layer, b).context("warm-up run")?;
            }
        }
        // Variants interleaved per iteration, so that load on a shared machine hits both.
        let mut times = vec![Vec::with_capacity(a.iters); variants.len()];
        for _ in 0..a.iters {
            for (v, (_, m)) in variants.iter().enumerate() {
                let t0 = Instant::now();
                let h = m.last_hidden(&ids, layer, b)?;
                times[v].push(t0.elapsed().as_secs_f64());
                assert_eq!(h.len(), b);
            }
        }
        for ((variant, _), t) in variants.iter().zip(times.iter_mut()) {
            let med = median(t);
            let mut r = json!({
                "batch": b,
                "seq": a.seq,
                "tokens_per_s": (b * a.seq) as f64 / med,
                "ms_per_prompt": med * 1e3 / b as f64,
                "peak_rss_mb": peak_rss_mb(),
            });
            if merged.is_some() {
                r["variant"] = json!(variant);
            }
            let line = format!(
                "{variant:<11} batch {b:>3} seq {:>4}: {:>8.1} tokens/s, {:>8.1} ms/prompt (median of {}), peak RSS {:.0} MiB",
                a.seq,
                r["tokens_per_s"].as_f64().unwrap_or(0.0),
                r["ms_per_prompt"].as_f64().unwrap_or(0.0),
                a.iters,
                peak_rss_mb().unwrap_or(f64::NAN)
            );
            say(&a.out, &line);
            results.push(r);
        }
    }
    finish(&a.out, results, &dev.description)
}
/// `routelmt bench train`.
fn bench_train(a: BenchTrainArgs) -> Result<()> {
    if a.iters == 0 || a.seq == 0 || a.batch == 0 {
        bail!("--iters, --seq and --batch must be at least 1");
    }
    let modes: Vec<bool> = match a.mode.as_str() {
        "lora" => vec![true],
        "no-lora" => vec![false],
        "both" => vec![false, true],
        o => bail!("unknown --mode '{o}' (lora, no-lora, both)"),
    };
    let dev = a.out.device.device.select()?;
    let mut results = Vec::new();
    for lora in modes {
        let model = random_model(&a.config, &dev.device)?;
        let (layer, vocab) = (model.config.num_hidden_layers, model.config.vocab_size as u64);
        let ids = bench_ids(a.batch, a.seq, vocab);
        let settings = lora.then_some(LoraSettings { rank: 8, alpha: 32.0 });
        let mut t = routelmt_train::time_steps(model, settings, layer, &ids, a.iters, a.warmup)?;
        let med = median(&mut t);
        let mode = if lora { "lora" } else { "no-lora" };
        let r = json!({
            "mode": mode,
            "batch": a.batch,
            "seq": a.seq,
            "steps_per_s": 1.0 / med,
            "s_per_step": med,
            "tokens_per_s": (a.batch * a.seq) as f64 / med,
            "peak_rss_mb": peak_rss_mb(),
        });
        let line = format!(
            "{mode:<8} batch {} seq {}: {:.4} steps/s ({med:.2} s/step, median of {}), peak RSS {:.0} MiB",
            a.batch,
            a.seq,
            1.0 / med,
            a.iters,
            peak_rss_mb().unwrap_or(f64::NAN)
        );
        say(&a.out, &line);
        results.push(r);
    }
    finish(&a.out, results, &dev.description)
}

/// A result line on stderr, unless the results go out as JSON.
fn say(out: &BenchOut, line: &str) {
    if !out.json {
        eprintln!("{line}");
    }
}

/// With --json, all results and the device as one object on stdout.
fn finish(out: &BenchOut, results: Vec<serde_json::Value>, device: &str) -> Result<()> {
    if out.json {
        print_stdout(&format!("{}\n", json!({"results": results, "device": device})))?;
    }
    Ok(())
}

/// Merges a rank-8 LoRA (burn's initialization) into a decoder: the weights `score` runs.
fn merge_random_lora(
    decoder: routelmt_model::Decoder,
    device: &burn::tensor::Device,
) -> Result<routelmt_model::Decoder> {
    use burn::module::Module;
    let settings = LoraSettings { rank: 8, alpha: 32.0 };
    let adapted = peft::apply_new_lora(decoder, settings)?;
    let adapter = routelmt_model::PeftAdapter::extract(&adapted, settings.rank, settings.alpha)?
        .context("no LoRA adapters attached")?;
    let base = adapted.materialize(); // drop adapters (B = 0: base weights unchanged)
    Ok(adapter.merge_into(base, device))
}
