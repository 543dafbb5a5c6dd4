//! `routelmt train | score`: learn a router, and score records with one.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::ProgressBar;
use routelmt_model::{HeadKind, LoraSettings, PrepareOptions, PromptStyle, hf};
use routelmt_route::jsonline::set_fields;
use routelmt_train::{Control, Event, Setting, TrainError, TrainJob, TrainSettings};

use crate::args::{BatchOpt, DeviceOpt, ModelArgs, RecordsIo, StyleOpt};
use crate::io::progress;
use crate::requests::{LazyTokenizer, write_records};

/// Arguments of `routelmt train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Base model.
    #[command(flatten)]
    pub model: ModelArgs,
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
    #[command(flatten)]
    pub device: DeviceOpt,
    /// Prompt revision.
    #[command(flatten)]
    pub style: StyleOpt,
    /// Also checkpoint every N optimizer steps (0: at the end of each epoch only).
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every: usize,
    /// Continue the interrupted run whose checkpoint is in OUTPUT (same command otherwise).
    #[arg(long)]
    pub resume: bool,
    /// Replace a finished router in OUTPUT.
    #[arg(long)]
    pub force: bool,
    /// Stop after N optimizer steps as if killed (tests the resume path; the run's event
    /// callback stops it).
    #[arg(long, hide = true)]
    pub stop_after_steps: Option<usize>,
}

/// Arguments of `routelmt score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Base model the router was trained on.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Router folder written by `routelmt train`.
    #[arg(long)]
    pub router: PathBuf,
    /// Input and output: requests -> each record with "score" added (and "pred_quality" for a
    /// `both` head), every other byte kept.
    #[command(flatten)]
    pub io: RecordsIo,
    /// Compute device.
    #[command(flatten)]
    pub device: DeviceOpt,
    /// Prompts per pass.
    #[command(flatten)]
    pub batch: BatchOpt,
}

/// The run's settings from the flags.
fn settings(a: &TrainArgs, layers: usize) -> TrainSettings {
    TrainSettings {
        head: a.head,
        layer: a.layer.unwrap_or(layers),
        prompt_style: a.style.prompt_style,
        chat_template: a.model.chat_mode(routelmt_model::ChatMode::Auto),
        weights: a.model.weights.unwrap_or_default(),
        epochs: a.epochs,
        lr: a.lr,
        weight_decay: a.weight_decay,
        warmup: a.warmup,
        batch_size: a.batch_size,
        grad_accum: a.grad_accum,
        lora: (!a.no_lora).then_some(LoraSettings { rank: a.lora_rank, alpha: a.lora_alpha }),
        seed: a.seed,
        checkpoint_every: a.checkpoint_every,
    }
}

/// The flag that sets a training setting.
fn flag(setting: Setting) -> &'static str {
    match setting {
        Setting::Epochs => "--epochs",
        Setting::BatchSize => "--batch-size",
        Setting::GradAccum => "--grad-accum",
        Setting::Lr => "--lr",
        Setting::Warmup => "--warmup",
        Setting::WeightDecay => "--weight-decay",
        Setting::Layer => "--layer",
        Setting::LoraRank => "--lora-rank",
        Setting::LoraAlpha => "--lora-alpha",
        Setting::Lora => "LoRA (drop it with --no-lora)",
    }
}

/// A training error in the CLI's terms: settings are named by their flags.
fn in_flags(e: TrainError) -> anyhow::Error {
    match e {
        TrainError::Setting { setting, message } => anyhow::anyhow!("{} {message}", flag(setting)),
        TrainError::BatchTooLarge { .. } => anyhow::anyhow!("{e}; lower --batch-size"),
        e => e.into(),
    }
}

/// Progress bar and per-epoch lines; stops after `stop_after` steps when asked.
fn on_event(bar: &ProgressBar, stop_after: Option<usize>) -> impl FnMut(Event<'_>) -> Control {
    move |e| {
        match e {
            Event::Started { total_steps, steps_done } => {
                bar.set_length(total_steps as u64);
                bar.set_position(steps_done as u64);
                if steps_done > 0 {
                    eprintln!("resuming after step {steps_done} of {total_steps}");
                }
            }
            Event::Features { done, total } => {
                bar.set_message(format!("frozen features {done}/{total}"))
            }
            Event::Step { step, loss } => {
                bar.set_position(step as u64);
                bar.set_message(format!("loss {loss:.4}"));
                if stop_after.is_some_and(|s| step >= s) {
                    return Control::Stop;
                }
            }
            Event::Epoch(r) => bar.suspend(|| eprintln!("{r}")),
        }
        Control::Continue
    }
}

/// `routelmt train`.
pub fn train(a: TrainArgs) -> Result<()> {
    let dir = &a.model.model;
    let config = hf::read_config(dir)?;
    let settings = settings(&a, config.num_hidden_layers);
    settings.check(config.num_hidden_layers).map_err(in_flags)?;
    if a.output.join(routelmt_model::router::ROUTER_JSON).exists() && !a.resume && !a.force {
        bail!("{} already holds a router; pass --force to replace it", a.output.display());
    }

    // Data first: a bad record fails before the model loads.
    let tok = LazyTokenizer::new(dir, &a.model.tokenizer, settings.chat_template);
    let style: PromptStyle = settings.prompt_style;
    let mut encode = |src: &str, sl: &str, tl: &str| -> std::result::Result<Vec<u32>, String> {
        use routelmt_model::TokenizerSource;
        let t = tok.tokenizer().map_err(|e| routelmt_model::one_line(&e))?;
        t.encode_request(src, sl, tl, style).map(|(_, ids)| ids).map_err(|e| e.to_string())
    };
    let train = routelmt_train::read_examples(&a.train, config.vocab_size, &mut encode)?;
    let valid = routelmt_train::read_examples(&a.valid, config.vocab_size, &mut encode)?;
    eprintln!("data: {} training and {} validation records", train.len(), valid.len());

    let dev = a.device.select()?;
    let (model, _) = hf::load_folder(dir, &dev.device)?;
    std::fs::create_dir_all(&a.output)
        .with_context(|| format!("cannot create {}", a.output.display()))?;
    let started = Instant::now();
    let bar = progress(0, "train");
    let base_name = dir.display().to_string();
    let job = TrainJob {
        model,
        train: &train,
        valid: &valid,
        settings,
        out: &a.output,
        base_name: &base_name,
        resume: a.resume,
    };
    let outcome =
        routelmt_train::train(job, &mut on_event(&bar, a.stop_after_steps)).map_err(in_flags)?;
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

/// `routelmt score`.
pub fn score(a: ScoreArgs) -> Result<()> {
    let started = Instant::now();
    let dev = a.device.select()?;
    let scorer = hf::load_scorer(&a.model.model, &a.router, &dev.device, a.model.weights)?;
    let mode = a.model.chat_mode(scorer.chat_mode());
    let tok = LazyTokenizer::new(&a.model.model, &a.model.tokenizer, mode);
    let vocab = Some(scorer.model().config.vocab_size);
    let opts = PrepareOptions { style: scorer.prompt_style(), allow_ids: true, vocab };
    let batch_size = a.batch.get();
    let n = write_records(&a.io, batch_size, &tok, opts, |batch, w| {
        let ids: Vec<Vec<u32>> = batch.iter().map(|(p, _)| p.ids.clone()).collect();
        let scores = scorer.score(&ids, batch_size)?.read()?;
        for ((_, line), s) in batch.into_iter().zip(scores) {
            let out =
                set_fields(&line.text, &scorer.fields(&s)).context("expected a JSON object")?;
            w.write_all(out.as_bytes())?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })?;
    eprintln!(
        "scored {n} record(s) with a {:?} router in {:.2?} -> {}",
        scorer.router().config.head,
        started.elapsed(),
        a.io.output.display()
    );
    Ok(())
}
