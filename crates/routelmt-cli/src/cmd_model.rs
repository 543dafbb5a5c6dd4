//! `routelmt tokenize | features | info | bench prefill`: the small model's front door.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use routelmt_model::device::{self, DeviceChoice, SelectedDevice};
use routelmt_model::{PromptStyle, Qwen3Config, Qwen3Model, Tokenizer, hf};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::io::{Line, Rejects, print_stdout, progress, read_lines, write_atomic, write_json_line};

/// Which device runs the model.
#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub enum DeviceArg {
    /// A GPU adapter if one exists, else the CPU.
    #[default]
    Auto,
    /// The CPU (burn flex).
    Cpu,
    /// wgpu (Vulkan, Metal, DX12; fails if no adapter).
    Gpu,
}

impl DeviceArg {
    /// Resolves the device and says which one runs, on stderr.
    pub fn select(self) -> Result<SelectedDevice> {
        let choice = match self {
            Self::Auto => DeviceChoice::Auto,
            Self::Cpu => DeviceChoice::Cpu,
            Self::Gpu => DeviceChoice::Gpu,
        };
        let d = device::select(choice)?;
        eprintln!("device: {}", d.description);
        Ok(d)
    }
}

/// The LMT prompt revision.
#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub enum StyleArg {
    /// Model card: "... into {T}." (default).
    #[default]
    Card,
    /// Later code revision: "... into {T}:".
    Colon,
}

impl From<StyleArg> for PromptStyle {
    fn from(s: StyleArg) -> Self {
        match s {
            StyleArg::Card => PromptStyle::Card,
            StyleArg::Colon => PromptStyle::Colon,
        }
    }
}

/// Arguments of `routelmt tokenize`.
#[derive(Debug, Args)]
pub struct TokenizeArgs {
    /// Model folder (only its tokenizer.json is read).
    #[arg(long, env = "ROUTELMT_MODEL")]
    pub model: PathBuf,
    /// tokenizer.json to use instead of MODEL/tokenizer.json.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// JSONL input: {"id", "src", "src_lang", "tgt_lang"} per line.
    #[arg(long)]
    pub input: PathBuf,
    /// JSONL output: {"id", "prompt", "input_ids"} per line, in input order.
    #[arg(long)]
    pub output: PathBuf,
    /// Prompt revision.
    #[arg(long, value_enum, default_value_t)]
    pub prompt_style: StyleArg,
    /// Process valid lines and write invalid ones to OUTPUT.rejected.jsonl instead of failing.
    #[arg(long)]
    pub skip_invalid: bool,
}

/// Arguments of `routelmt features`.
#[derive(Debug, Args)]
pub struct FeaturesArgs {
    /// Model folder (config.json, model.safetensors[.index.json], tokenizer.json).
    #[arg(long, env = "ROUTELMT_MODEL")]
    pub model: PathBuf,
    /// tokenizer.json to use instead of MODEL/tokenizer.json.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// JSONL input: "id" and either "input_ids" or "src", "src_lang", "tgt_lang".
    #[arg(long)]
    pub input: PathBuf,
    /// JSONL output: {"id", "n_tokens", "hidden"} per line, in input order.
    #[arg(long)]
    pub output: PathBuf,
    /// hidden_states index: 0 = embeddings, num_hidden_layers = final (default).
    #[arg(long)]
    pub layer: Option<usize>,
    /// Compute device.
    #[arg(long, value_enum, default_value_t, env = "ROUTELMT_DEVICE")]
    pub device: DeviceArg,
    /// Prompts per forward pass (split further if a batch would exceed 128 MiB buffers).
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Prompt revision (for records given as text).
    #[arg(long, value_enum, default_value_t)]
    pub prompt_style: StyleArg,
    /// Process valid lines and write invalid ones to OUTPUT.rejected.jsonl instead of failing.
    #[arg(long)]
    pub skip_invalid: bool,
}

/// Arguments of `routelmt info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Model folder.
    #[arg(long, env = "ROUTELMT_MODEL")]
    pub model: PathBuf,
    /// Compute device the model is loaded on.
    #[arg(long, value_enum, default_value_t, env = "ROUTELMT_DEVICE")]
    pub device: DeviceArg,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `routelmt bench ...`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Prefill throughput, latency and peak memory.
    Prefill(BenchPrefillArgs),
    /// Training steps per second and peak memory, LoRA or head only.
    Train(crate::cmd_train::BenchTrainArgs),
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
    /// Timed repetitions per batch size (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// Untimed warm-up runs per batch size.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Compute device.
    #[arg(long, value_enum, default_value_t)]
    pub device: DeviceArg,
    /// Print {"results": [...]} on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also time the same model with a rank-8 LoRA merged into its weights (what `score`
    /// runs), side by side with the plain model.
    #[arg(long)]
    pub merged_lora: bool,
}

/// One input record for `tokenize`/`features`.
#[derive(Debug, Deserialize)]
struct Request {
    id: Option<Value>,
    input_ids: Option<Vec<u32>>,
    src: Option<String>,
    src_lang: Option<String>,
    tgt_lang: Option<String>,
}

/// A parsed, tokenized input line.
pub struct Prepared {
    /// The record's id.
    pub id: Value,
    /// The prompt, when built from text.
    pub prompt: Option<String>,
    /// Token ids.
    pub ids: Vec<u32>,
}

/// Parses and tokenizes one line; the error is the message without location.
pub(crate) fn prepare(
    line: &Line,
    tokenizer: &LazyTokenizer,
    style: PromptStyle,
    allow_ids: bool,
    vocab: Option<usize>,
) -> std::result::Result<Prepared, String> {
    let req: Request =
        serde_json::from_str(&line.text).map_err(|e| format!("invalid JSON: {e}"))?;
    let id = req.id.filter(|v| !v.is_null()).ok_or("missing field 'id'")?;
    let (prompt, ids) = match (req.input_ids, req.src) {
        (Some(ids), _) if allow_ids => (None, ids),
        (_, Some(src)) => {
            let src_lang = req.src_lang.ok_or("missing field 'src_lang'")?;
            let tgt_lang = req.tgt_lang.ok_or("missing field 'tgt_lang'")?;
            let tok = tokenizer.get().map_err(|e| format!("{e:#}"))?;
            let (p, ids) =
                tok.encode_request(&src, &src_lang, &tgt_lang, style).map_err(|e| e.to_string())?;
            (Some(p), ids)
        }
        _ if allow_ids => return Err("needs 'input_ids' or 'src', 'src_lang', 'tgt_lang'".into()),
        _ => return Err("missing field 'src'".into()),
    };
    if ids.is_empty() {
        return Err("empty 'input_ids'".into());
    }
    if let (Some(v), Some(bad)) =
        (vocab, vocab.and_then(|v| ids.iter().find(|&&i| i as usize >= v)))
    {
        return Err(format!("token id {bad} out of range for vocab_size {v}"));
    }
    Ok(Prepared { id, prompt, ids })
}

/// The tokenizer, loaded on first use (a file of only `input_ids` never needs one).
pub(crate) struct LazyTokenizer {
    path: PathBuf,
    cell: std::cell::OnceCell<Tokenizer>,
}

impl LazyTokenizer {
    pub(crate) fn new(model: &Path, over: &Option<PathBuf>) -> Self {
        let path = over.clone().unwrap_or_else(|| model.join("tokenizer.json"));
        Self { path, cell: std::cell::OnceCell::new() }
    }

    pub(crate) fn get(&self) -> Result<&Tokenizer> {
        if let Some(t) = self.cell.get() {
            return Ok(t);
        }
        let t = hf::read_tokenizer(&self.path)?;
        Ok(self.cell.get_or_init(|| t))
    }
}

pub(crate) fn count_lines(path: &Path) -> u64 {
    std::fs::read(path).map(|b| bytecount(&b)).unwrap_or(0)
}

fn bytecount(b: &[u8]) -> u64 {
    b.iter().filter(|&&c| c == b'\n').count() as u64
}

/// `routelmt tokenize`.
pub fn tokenize(a: TokenizeArgs) -> Result<()> {
    let tok = LazyTokenizer::new(&a.model, &a.tokenizer);
    tok.get()?; // fail early on a bad tokenizer, before reading input
    let style = a.prompt_style.into();
    let mut rejects = Rejects::default();
    let shown = a.input.display().to_string();
    let mut n = 0usize;
    write_atomic(&a.output, |w| {
        for line in read_lines(&a.input)? {
            let line = line?;
            match prepare(&line, &tok, style, false, None) {
                Ok(p) => {
                    write_json_line(
                        w,
                        &json!({"id": p.id, "prompt": p.prompt, "input_ids": p.ids}),
                    )?;
                    n += 1;
                }
                Err(e) if a.skip_invalid => rejects.push(&line, &e),
                Err(e) => bail!("{shown}:{}: {e}", line.number),
            }
        }
        Ok(())
    })?;
    rejects.finish(&a.output, &a.input)?;
    eprintln!("tokenized {n} record(s) -> {}", a.output.display());
    Ok(())
}

/// `routelmt features`.
pub fn features(a: FeaturesArgs) -> Result<()> {
    if a.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let config = hf::read_config(&a.model)?;
    let layer = a.layer.unwrap_or(config.num_hidden_layers);
    if layer > config.num_hidden_layers {
        bail!(
            "--layer {layer} out of range: 0 (embeddings) to {} (final)",
            config.num_hidden_layers
        );
    }
    let dev = a.device.select()?;
    let started = Instant::now();
    let (model, report) = hf::load_folder(&a.model, &dev.device)?;
    tracing::info!(?report, "loaded in {:.2?}", started.elapsed());

    let tok = LazyTokenizer::new(&a.model, &a.tokenizer);
    let style = a.prompt_style.into();
    let shown = a.input.display().to_string();
    let mut rejects = Rejects::default();
    let bar = progress(count_lines(&a.input), "prefill");
    let mut n = 0usize;
    let run = |batch: &mut Vec<Prepared>, w: &mut dyn std::io::Write| -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let ids: Vec<Vec<u32>> = batch.iter().map(|p| p.ids.clone()).collect();
        let hidden = model.last_hidden(&ids, layer, a.batch_size)?;
        for (p, h) in batch.drain(..).zip(hidden) {
            write_json_line(w, &json!({"id": p.id, "n_tokens": p.ids.len(), "hidden": h}))?;
        }
        Ok(())
    };
    write_atomic(&a.output, |w| {
        let mut batch: Vec<Prepared> = Vec::with_capacity(a.batch_size);
        for line in read_lines(&a.input)? {
            let line = line?;
            bar.inc(1);
            match prepare(&line, &tok, style, true, Some(config.vocab_size)) {
                Ok(p) => {
                    batch.push(p);
                    n += 1;
                    if batch.len() == a.batch_size {
                        run(&mut batch, w)?;
                    }
                }
                Err(e) if a.skip_invalid => rejects.push(&line, &e),
                Err(e) => bail!("{shown}:{}: {e}", line.number),
            }
        }
        run(&mut batch, w)
    })?;
    bar.finish_and_clear();
    rejects.finish(&a.output, &a.input)?;
    eprintln!(
        "features: {n} record(s), layer {layer}, {:.2?} -> {}",
        started.elapsed(),
        a.output.display()
    );
    Ok(())
}

/// `routelmt info`.
pub fn info(a: InfoArgs) -> Result<()> {
    let config = hf::read_config(&a.model)?;
    let dev = a.device.select()?;
    let (model, report) = hf::load_folder(&a.model, &dev.device)?;
    drop(model);
    let c = &config;
    let v = json!({
        "model": a.model.display().to_string(),
        "architecture": "qwen3",
        "layers": c.num_hidden_layers,
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "attention_heads": c.num_attention_heads,
        "kv_heads": c.num_key_value_heads,
        "head_dim": c.head_dim,
        "vocab_size": c.vocab_size,
        "rope_theta": c.theta(),
        "tie_word_embeddings": c.tie_word_embeddings,
        "non_embedding_params": c.non_embedding_params(),
        "embedding_params": c.embedding_params(),
        "dtype_config": c.dtype,
        "dtype_on_disk": report.dtypes,
        "tensors_loaded": report.applied,
        "tensors_unused": report.unused,
        "fingerprint": c.fingerprint(),
        "device": dev.description,
    });
    if a.json {
        return print_stdout(&format!("{v}\n"));
    }
    println!("model          {}", a.model.display());
    println!(
        "architecture   qwen3: {} layers, hidden {}, {} query / {} kv heads, head_dim {}, mlp {}",
        c.num_hidden_layers,
        c.hidden_size,
        c.num_attention_heads,
        c.num_key_value_heads,
        c.head_dim,
        c.intermediate_size
    );
    println!("vocab          {} (tied embeddings: {})", c.vocab_size, c.tie_word_embeddings);
    println!(
        "parameters     {:.2}M non-embedding + {:.2}M embedding",
        c.non_embedding_params() as f64 / 1e6,
        c.embedding_params() as f64 / 1e6
    );
    println!(
        "dtype on disk  {} (config says {})",
        report.dtypes.iter().cloned().collect::<Vec<_>>().join(", "),
        c.dtype.as_deref().unwrap_or("nothing")
    );
    println!(
        "tensors        {} loaded, {} unused {:?}",
        report.applied,
        report.unused.len(),
        report.unused
    );
    println!("fingerprint    {}", c.fingerprint());
    println!("device         {}", dev.description);
    Ok(())
}

/// Peak resident set of this process in MiB (Linux `VmHWM`), if available.
pub fn peak_rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The full-size architecture with random weights, by name.
pub fn random_model(name: &str, device: &burn::tensor::Device) -> Result<Qwen3Model> {
    let config = match name {
        "qwen3-0.6b" => Qwen3Config::qwen3_0_6b(),
        other => bail!("unknown --config '{other}' (known: qwen3-0.6b)"),
    };
    Ok(Qwen3Model::random(config, device, 7))
}

/// Deterministic pseudo-random ids for benchmarks: `batch` rows of `seq` tokens each (every
/// row full length, the worst case for padding).
pub fn bench_ids(batch: usize, seq: usize, vocab: u64) -> Vec<Vec<u32>> {
    (0..batch)
        .map(|r| {
            (0..seq).map(|t| ((r as u64 * 7919 + t as u64 * 104_729 + 13) % vocab) as u32).collect()
        })
        .collect()
}

/// Median (sorts in place).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// `routelmt bench prefill`.
pub fn bench(cmd: BenchCommand) -> Result<()> {
    let a = match cmd {
        BenchCommand::Prefill(a) => a,
        BenchCommand::Train(a) => return crate::cmd_train::bench_train(a),
    };
    if a.iters == 0 || a.seq == 0 || a.batch.contains(&0) {
        bail!("--iters, --seq and every --batch must be at least 1");
    }
    let dev = a.device.select()?;
    let model = match &a.model {
        Some(dir) => hf::load_folder(dir, &dev.device)?.0,
        None => random_model(&a.config, &dev.device)?,
    };
    let merged = if a.merged_lora {
        let mut m = match &a.model {
            Some(dir) => hf::load_folder(dir, &dev.device)?.0,
            None => random_model(&a.config, &dev.device)?,
        };
        m.decoder = crate::cmd_train::merge_random_lora(m.decoder, &dev.device)?;
        Some(m)
    } else {
        None
    };
    let layer = model.config.num_hidden_layers;
    let vocab = model.config.vocab_size as u64;
    let mut results = Vec::new();
    for &b in &a.batch {
        let ids = bench_ids(b, a.seq, vocab);
        let variants: Vec<(&str, &Qwen3Model)> = std::iter::once(("plain", &model))
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
            if !a.json {
                eprintln!(
                    "{variant:<11} batch {b:>3} seq {:>4}: {:>8.1} tokens/s, {:>8.1} ms/prompt (median of {}), peak RSS {:.0} MiB",
                    a.seq,
                    r["tokens_per_s"].as_f64().unwrap_or(0.0),
                    r["ms_per_prompt"].as_f64().unwrap_or(0.0),
                    a.iters,
                    peak_rss_mb().unwrap_or(f64::NAN)
                );
            }
            results.push(r);
        }
    }
    if a.json {
        print_stdout(&format!("{}\n", json!({"results": results, "device": dev.description})))?;
    }
    Ok(())
}
