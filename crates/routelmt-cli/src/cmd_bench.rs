//! `routelmt bench prefill | train`: benchmarks that print figures (medians of timed runs,
//! peak memory), for BENCHMARKS.md. Nothing here asserts a speed.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use routelmt_model::router::peft;
use routelmt_model::{LoadOptions, LoraSettings, Model, ModelConfig, hf};
use serde_json::{Value, json};

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
    /// Decoder weights to time, comma-separated (f32, f16, q8, q4), each prepared for inference
    /// (the CPU kernels on the CPU).
    #[arg(long, value_delimiter = ',', default_value = "f32")]
    pub weights: Vec<routelmt_model::Precision>,
    /// Also time the unprepared burn decoder (what training runs; the CPU path before the
    /// kernels).
    #[arg(long)]
    pub burn: bool,
    /// After each timed run, one more run of each CPU-kernel variant that times GEMM,
    /// attention and elementwise work separately (printed and in the JSON).
    #[arg(long)]
    pub profile: bool,
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

/// CPU time (user + system) this process has used, in seconds (Linux `/proc/self/stat`, at
/// the usual 100 ticks per second).
fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (f64, f64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
    Some((utime + stime) / 100.0)
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

/// One model variant of the prefill benchmark.
struct Variant {
    name: String,
    model: Model,
}

/// The variants asked for: each `--weights` on the inference path (CPU kernels or the
/// prepared wgpu decoder), optionally the unprepared burn decoder and a merged LoRA.
fn variants(a: &BenchPrefillArgs, dev: &burn::tensor::Device) -> Result<Vec<Variant>> {
    let load = || -> Result<Model> {
        Ok(match &a.model {
            Some(dir) => hf::load_folder(dir, dev)?.0,
            None => random_model(&a.config, dev)?,
        })
    };
    let mut out = Vec::new();
    if a.burn {
        out.push(Variant { name: "burn f32".into(), model: load()? });
    }
    for &w in &a.weights {
        // A file is packed as it loads (as every front door loads it); the random model is
        // built whole, then prepared.
        let model = match &a.model {
            Some(dir) => {
                let opts = LoadOptions { lm_head: false, weights: Some(w) };
                hf::load_with(dir, opts, dev)?.0
            }
            None => random_model(&a.config, dev)?.prepared(w)?,
        };
        let engine = match model.cpu_decoder() {
            Some(c) => format!("kernels {}", c.isa().name()),
            None => "wgpu".into(),
        };
        out.push(Variant { name: format!("{engine} {w}"), model });
    }
    if a.merged_lora {
        let mut m = load()?;
        m.decoder = merge_random_lora(m.decoder, dev)?;
        let w = a.weights.first().copied().unwrap_or_default();
        out.push(Variant { name: format!("merged-lora {w}"), model: m.prepared(w)? });
    }
    Ok(out)
}

/// `routelmt bench prefill`.
pub fn bench(cmd: BenchCommand) -> Result<()> {
    let a = match cmd {
        BenchCommand::Prefill(a) => a,
        BenchCommand::Train(a) => return bench_train(a),
    };
    if a.iters == 0 || a.seq == 0 || a.batch.contains(&0) || a.weights.is_empty() {
        bail!("--iters, --seq and every --batch must be at least 1, and --weights non-empty");
    }
    let dev = a.out.device.select()?;
    let variants = variants(&a, &dev.device)?;
    let config = variants[0].model.config.clone();
    let layer = config.num_hidden_layers;
    let vocab = config.vocab_size as u64;
    let mut results = Vec::new();
    for &b in &a.batch {
        let ids = bench_ids(b, a.seq, vocab);
        for _ in 0..a.warmup {
            for v in &variants {
                v.model
                    .last_hidden(&ids, layer, b)
                    .and_then(|p| p.read())
                    .context("warm-up run")?;
            }
        }
        // Variants interleaved per iteration, so that load on a shared machine hits all.
        let mut times = vec![Vec::with_capacity(a.iters); variants.len()];
        let mut busy = vec![(0.0, 0.0); variants.len()];
        let mut profiles = vec![Vec::new(); variants.len()];
        for _ in 0..a.iters {
            for (i, v) in variants.iter().enumerate() {
                let (t0, c0) = (Instant::now(), cpu_seconds());
                let h = v.model.last_hidden(&ids, layer, b)?.read()?;
                let wall = t0.elapsed().as_secs_f64();
                times[i].push(wall);
                if let (Some(c0), Some(c1)) = (c0, cpu_seconds()) {
                    busy[i].0 += c1 - c0;
                    busy[i].1 += wall;
                }
                assert_eq!(h.len(), b);
                if a.profile
                    && let Some(cpu) = v.model.cpu_decoder()
                {
                    let before = crate::alloc_count::totals();
                    let prof = cpu.forward_profiled(&v.model.embed_tokens, &ids, layer).1;
                    let after = crate::alloc_count::totals();
                    profiles[i].push((prof, (after.0 - before.0, after.1 - before.1)));
                }
            }
        }
        for (((v, t), profs), cpu) in
            variants.iter().zip(times.iter_mut()).zip(&profiles).zip(&busy)
        {
            let per_iter: Vec<f64> = t.iter().map(|s| (b * a.seq) as f64 / s).collect();
            let med = median(t);
            let mut r = json!({
                "variant": v.name,
                "batch": b,
                "iter_tokens_per_s": per_iter,
                "seq": a.seq,
                "tokens_per_s": (b * a.seq) as f64 / med,
                "ms_per_prompt": med * 1e3 / b as f64,
                "peak_rss_mb": peak_rss_mb(),
                "cpu_busy": if cpu.1 > 0.0 { cpu.0 / cpu.1 } else { 0.0 },
            });
            if let Some(cpu) = v.model.cpu_decoder() {
                r["decoder_mib"] = json!(cpu.weight_bytes() as f64 / (1 << 20) as f64);
            }
            let mut line = format!(
                "{:<22} batch {b:>3} seq {:>4}: {:>8.1} tokens/s, {:>8.1} ms/prompt (median of {}), {:.2} cores busy, peak RSS {:.0} MiB",
                v.name,
                a.seq,
                r["tokens_per_s"].as_f64().unwrap_or(0.0),
                r["ms_per_prompt"].as_f64().unwrap_or(0.0),
                a.iters,
                r["cpu_busy"].as_f64().unwrap_or(0.0),
                peak_rss_mb().unwrap_or(f64::NAN)
            );
            if !profs.is_empty() {
                line += &profile_report(profs, &mut r);
            }
            say(&a.out, &line);
            results.push(r);
        }
    }
    finish(&a.out, results, &dev.description)
}

/// The profile's medians into `r["profile"]`, and as text lines for the table.
fn profile_report(profs: &[(routelmt_model::cpu::Profile, (u64, u64))], r: &mut Value) -> String {
    let mid = |f: &dyn Fn(&routelmt_model::cpu::Profile) -> f64| {
        let mut v: Vec<f64> = profs.iter().map(|p| f(&p.0)).collect();
        median(&mut v)
    };
    let (g, at, el) = (mid(&|p| p.gemm), mid(&|p| p.attention), mid(&|p| p.elementwise));
    let (pack, copies) = (mid(&|p| p.gemm_packing), mid(&|p| p.gemm_copies));
    let (p0, (allocs, bytes)) = &profs[0];
    let (gflop, mib) = (p0.gemm_flops() / 1e9, *bytes as f64 / (1 << 20) as f64);
    let shapes: Vec<Value> = p0
        .gemm_shapes
        .iter()
        .map(|(s, n)| json!({"m": s[0], "k": s[1], "n": s[2], "calls": n}))
        .collect();
    r["profile"] = json!({
        "gemm_ms": g * 1e3, "gemm_packing_ms": pack * 1e3, "gemm_copies_ms": copies * 1e3,
        "attention_ms": at * 1e3, "elementwise_ms": el * 1e3,
        "gemm_calls": p0.gemm_calls(), "gemm_gflop": gflop,
        "gemm_gflop_per_s": gflop / g, "gemm_shapes": shapes,
        "allocations": allocs, "allocated_mib": mib,
    });
    let shapes: Vec<String> = p0
        .gemm_shapes
        .iter()
        .map(|(s, n)| format!("{n}× [{}×{}]·[{}×{}]", s[0], s[1], s[1], s[2]))
        .collect();
    format!(
        "\n    profile (median of {}): GEMM {:.1} ms ({} calls, {:.1} GFLOP, {:.0} GFLOP/s; of it packing {:.1} ms, copies {:.1} ms), attention {:.1} ms, elementwise {:.1} ms\n    {} allocations ({:.0} MiB) per prefill; GEMM shapes: {}",
        profs.len(),
        g * 1e3,
        p0.gemm_calls(),
        gflop,
        gflop / g,
        pack * 1e3,
        copies * 1e3,
        at * 1e3,
        el * 1e3,
        allocs,
        mib,
        shapes.join(", ")
    )
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
    let dev = a.out.device.select()?;
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
