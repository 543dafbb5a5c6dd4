//! `routelmt train | score`: learn a router, and score records with one.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use routelmt_model::{HeadKind, LoraSettings, PromptStyle, Qwen3Model, Router, hf};
use routelmt_route::jsonline::set_fields;
use routelmt_train::{Event, TrainSettings};
use serde_json::{Value, json};

use crate::cmd_model::{DeviceArg, LazyTokenizer, Prepared, StyleArg, count_lines, prepare};
use crate::io::{Rejects, progress, read_lines, write_atomic};

/// Arguments of `routelmt train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Base model folder (config.json, weights, tokenizer.json).
    #[arg(long, env = "ROUTELMT_MODEL")]
    pub model: PathBuf,
    /// tokenizer.json to use instead of MODEL/tokenizer.json.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Training records (JSONL): score_small, score_large and either input_ids or
    /// src/src_lang/tgt_lang.
    #[arg(long)]
    pub train: PathBuf,
    /// Validation records, same schema; the best epoch by validation Spearman is kept.
    #[arg(long)]
    pub valid: PathBuf,
    /// What the head predicts: gain (RouteLMT), quality (RouteLMT-Q), both.
    #[arg(long, default_value = "gain")]
    pub head: HeadKind,
    /// Router folder to write (adapter, head, router.json).
    #[arg(long)]
    pub output: PathBuf,
    /// Passes over the training set.
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Peak learning rate (linear warm-up over --warmup of the steps, then linear decay).
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f64,
    /// Share of the optimizer steps spent warming up.
    #[arg(long, default_value_t = 0.05)]
    pub warmup: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Examples per forward/backward pass.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Passes accumulated per optimizer step.
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    /// LoRA rank r.
    #[arg(long, default_value_t = 8)]
    pub lora_rank: usize,
    /// LoRA alpha (scale alpha / r).
    #[arg(long, default_value_t = 32.0)]
    pub lora_alpha: f64,
    /// Train the head alone on the frozen model (its prefill is exactly the small model's).
    #[arg(long)]
    pub no_lora: bool,
    /// hidden_states index the head reads: 0 = embeddings, num_hidden_layers = final (default).
    #[arg(long)]
    pub layer: Option<usize>,
    /// Seed of the initialization and the data order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Compute device.
    #[arg(long, value_enum, default_value_t, env = "ROUTELMT_DEVICE")]
    pub device: DeviceArg,
    /// Prompt revision (for records given as text).
    #[arg(long, value_enum, default_value_t)]
    pub prompt_style: StyleArg,
    /// Also checkpoint every N optimizer steps (0: at the end of each epoch only).
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every: usize,
    /// Continue the interrupted run whose checkpoint is in OUTPUT (same command otherwise).
    #[arg(long)]
    pub resume: bool,
    /// Replace a finished router in OUTPUT.
    #[arg(long)]
    pub force: bool,
    /// Stop after N optimizer steps as if killed (tests the resume path).
    #[arg(long, hide = true)]
    pub stop_after_steps: Option<usize>,
}

/// Arguments of `routelmt score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Base model folder the router was trained on.
    #[arg(long, env = "ROUTELMT_MODEL")]
    pub model: PathBuf,
    /// Router folder written by `routelmt train`.
    #[arg(long)]
    pub router: PathBuf,
    /// tokenizer.json to use instead of MODEL/tokenizer.json.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// JSONL records: "id" and either "input_ids" or "src", "src_lang", "tgt_lang".
    #[arg(long)]
    pub input: PathBuf,
    /// JSONL output: each record with "score" added (and "pred_quality" for a `both` head).
    #[arg(long)]
    pub output: PathBuf,
    /// Compute device.
    #[arg(long, value_enum, default_value_t, env = "ROUTELMT_DEVICE")]
    pub device: DeviceArg,
    /// Prompts per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Process valid lines and write invalid ones to OUTPUT.rejected.jsonl instead of failing.
    #[arg(long)]
    pub skip_invalid: bool,
}

/// `routelmt train`.
pub fn train(a: TrainArgs) -> Result<()> {
    let config = hf::read_config(&a.model)?;
    let layer = a.layer.unwrap_or(config.num_hidden_layers);
    let style: PromptStyle = a.prompt_style.into();
    let settings = TrainSettings {
        head: a.head,
        layer,
        prompt_style: style,
        epochs: a.epochs,
        lr: a.lr,
        weight_decay: a.weight_decay,
        warmup: a.warmup,
        batch_size: a.batch_size,
        grad_accum: a.grad_accum,
        lora: (!a.no_lora).then_some(LoraSettings { rank: a.lora_rank, alpha: a.lora_alpha }),
        seed: a.seed,
        checkpoint_every: a.checkpoint_every,
    };
    if a.output.join(routelmt_model::router::ROUTER_JSON).exists() && !a.resume && !a.force {
        bail!("{} already holds a router; pass --force to replace it", a.output.display());
    }

    // Data first: a bad record fails before the model loads.
    let tok = LazyTokenizer::new(&a.model, &a.tokenizer);
    let mut encode = |src: &str, sl: &str, tl: &str| -> std::result::Result<Vec<u32>, String> {
        let t = tok.get().map_err(|e| format!("{e:#}"))?;
        t.encode_request(src, sl, tl, style).map(|(_, ids)| ids).map_err(|e| e.to_string())
    };
    let train = routelmt_train::read_examples(&a.train, config.vocab_size, &mut encode)?;
    let valid = routelmt_train::read_examples(&a.valid, config.vocab_size, &mut encode)?;
    eprintln!("data: {} training and {} validation records", train.len(), valid.len());

    let dev = a.device.select()?;
    let (model, _) = hf::load_folder(&a.model, &dev.device)?;
    std::fs::create_dir_all(&a.output)
        .with_context(|| format!("cannot create {}", a.output.display()))?;
    let started = Instant::now();
    let bar = progress(0, "train");
    let mut on_event = |e: Event<'_>| match e {
        Event::Started { total_steps, steps_done } => {
            bar.set_length(total_steps as u64);
            bar.set_position(steps_done as u64);
            if steps_done > 0 {
                eprintln!("resuming after step {steps_done} of {total_steps}");
            }
        }
        Event::Features { done, total } => {
            bar.set_message(format!("frozen features {done}/{total}"));
        }
        Event::Step { step, loss } => {
            bar.set_position(step as u64);
            bar.set_message(format!("loss {loss:.4}"));
        }
        Event::Epoch(r) => {
            bar.suspend(|| {
                eprintln!(
                    "epoch {}: train loss {:.4}, valid MSE {:.4}, valid Spearman {:.4}{}",
                    r.epoch,
                    r.train_loss,
                    r.valid_mse,
                    r.valid_spearman,
                    if r.best { " (best)" } else { "" }
                );
            });
        }
    };
    let outcome = routelmt_train::train(
        model,
        &train,
        &valid,
        &settings,
        &a.output,
        &a.model.display().to_string(),
        a.resume,
        a.stop_after_steps,
        &mut on_event,
    )?;
    bar.finish_and_clear();
    eprintln!(
        "trained in {:.1?}: best epoch {} (valid Spearman {:.4}) -> {}",
        started.elapsed(),
        outcome.best_epoch,
        outcome.history.iter().find(|r| r.best).map_or(f64::NAN, |r| r.valid_spearman),
        a.output.display()
    );
    Ok(())
}

/// A base model prepared with a router (LoRA merged), and the router.
pub struct Scorer {
    /// The router.
    pub router: Router,
    model: Qwen3Model,
    tok: LazyTokenizer,
}

impl Scorer {
    /// Loads the base model and the router, and merges the adapter.
    pub fn load(
        model_dir: &Path,
        router_dir: &Path,
        tokenizer: &Option<PathBuf>,
        device: DeviceArg,
    ) -> Result<Self> {
        let config = hf::read_config(model_dir)?;
        let dev = device.select()?;
        let router = hf::read_router(router_dir, &config, &dev.device)?;
        let (model, _) = hf::load_folder(model_dir, &dev.device)?;
        let model = router.prepare(model);
        Ok(Self { router, model, tok: LazyTokenizer::new(model_dir, tokenizer) })
    }

    /// Scores `input` into `output`: every record with `score` (and `pred_quality` for a
    /// `both` head) added, in input order; returns the number of records scored.
    pub fn score_file(
        &self,
        input: &Path,
        output: &Path,
        batch_size: usize,
        skip_invalid: bool,
    ) -> Result<usize> {
        if batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        let style = self.router.config.prompt_style;
        let vocab = self.model.config.vocab_size;
        let shown = input.display().to_string();
        let mut rejects = Rejects::default();
        let bar = progress(count_lines(input), "score");
        let mut n = 0usize;
        let both = self.router.config.head == HeadKind::Both;
        let run = |batch: &mut Vec<(Prepared, String)>, w: &mut dyn std::io::Write| -> Result<()> {
            if batch.is_empty() {
                return Ok(());
            }
            let ids: Vec<Vec<u32>> = batch.iter().map(|(p, _)| p.ids.clone()).collect();
            let scores = self.router.score(&self.model, &ids, batch_size)?;
            for ((_, text), s) in batch.drain(..).zip(scores) {
                let mut fields: Vec<(&str, Value)> = vec![("score", json!(s[0]))];
                if both {
                    fields.push(("pred_quality", json!(s[1])));
                }
                let out = set_fields(&text, &fields).context("expected a JSON object")?;
                w.write_all(out.as_bytes())?;
                w.write_all(b"\n")?;
            }
            Ok(())
        };
        write_atomic(output, |w| {
            let mut batch = Vec::with_capacity(batch_size);
            for line in read_lines(input)? {
                let line = line?;
                bar.inc(1);
                match prepare(&line, &self.tok, style, true, Some(vocab)) {
                    Ok(p) => {
                        batch.push((p, line.text));
                        n += 1;
                        if batch.len() == batch_size {
                            run(&mut batch, w)?;
                        }
                    }
                    Err(e) if skip_invalid => rejects.push(&line, &e),
                    Err(e) => bail!("{shown}:{}: {e}", line.number),
                }
            }
            run(&mut batch, w)
        })?;
        bar.finish_and_clear();
        rejects.finish(output, input)?;
        Ok(n)
    }
}

/// `routelmt score`.
pub fn score(a: ScoreArgs) -> Result<()> {
    let started = Instant::now();
    let scorer = Scorer::load(&a.model, &a.router, &a.tokenizer, a.device)?;
    let n = scorer.score_file(&a.input, &a.output, a.batch_size, a.skip_invalid)?;
    eprintln!(
        "scored {n} record(s) with a {:?} router in {:.2?} -> {}",
        scorer.router.config.head,
        started.elapsed(),
        a.output.display()
    );
    Ok(())
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
    /// Compute device.
    #[arg(long, value_enum, default_value_t)]
    pub device: DeviceArg,
    /// Print {"results": [...]} on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `routelmt bench train`.
pub fn bench_train(a: BenchTrainArgs) -> Result<()> {
    use crate::cmd_model::{bench_ids, median, peak_rss_mb, random_model};
    if a.iters == 0 || a.seq == 0 || a.batch == 0 {
        bail!("--iters, --seq and --batch must be at least 1");
    }
    let modes: Vec<bool> = match a.mode.as_str() {
        "lora" => vec![true],
        "no-lora" => vec![false],
        "both" => vec![false, true],
        o => bail!("unknown --mode '{o}' (lora, no-lora, both)"),
    };
    let dev = a.device.select()?;
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
        if !a.json {
            eprintln!(
                "{mode:<8} batch {} seq {}: {:.4} steps/s ({med:.2} s/step, median of {}), peak RSS {:.0} MiB",
                a.batch,
                a.seq,
                1.0 / med,
                a.iters,
                peak_rss_mb().unwrap_or(f64::NAN)
            );
        }
        results.push(r);
    }
    if a.json {
        crate::io::print_stdout(&format!(
            "{}\n",
            json!({"results": results, "device": dev.description})
        ))?;
    }
    Ok(())
}

/// Merges a rank-8 LoRA (burn's initialization) into a decoder: the weights `score` runs.
pub fn merge_random_lora(
    decoder: routelmt_model::Qwen3Decoder,
    device: &burn::tensor::Device,
) -> Result<routelmt_model::Qwen3Decoder> {
    use burn::module::{Lora, Module, ParamGroup};
    let group = ParamGroup::from_regex(routelmt_model::peft::TARGET_REGEX)
        .map_err(|e| anyhow::anyhow!("LoRA target pattern: {e:?}"))?;
    let adapted = decoder.apply_lora(Lora::new(8, 32.0).set_param_group(group));
    let adapter = routelmt_model::PeftAdapter::extract(&adapted, 8, 32.0)?
        .context("no LoRA adapters attached")?;
    let base = adapted.materialize(); // drop adapters (B = 0: base weights unchanged)
    Ok(adapter.merge_into(base, device))
}
