//! The training loop: LoRA (burn's `apply_lora`, restricted to the seven projection types) and
//! a linear head trained jointly with AdamW on the MSE of standardized labels; validation
//! Spearman and MSE after every epoch; the best epoch is the router that is written.
//!
//! Checkpoints live in `OUT/.routelmt-train/`: `last/` (adapter, head, optimizer state, loop
//! position) after every epoch and every `checkpoint_every` optimizer steps, and `best/` (the
//! best epoch's router folder). Each is written beside and swapped in by renames, so an
//! interrupt at any moment leaves a usable checkpoint. With a fixed seed on the CPU, a run
//! resumed from a checkpoint ends with exactly the weights of an uninterrupted run: data order
//! is a pure function of (seed, epoch), parameter ids are restored so the optimizer state
//! applies, and the learning-rate schedule is a function of the step.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::{Lora, Module, ParamGroup};
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use routelmt_model::head::read;
use routelmt_model::peft::TARGET_REGEX;
use routelmt_model::router::{ADAPTER_CONFIG, ADAPTER_WEIGHTS, FORMAT, HEAD_FILE, ROUTER_JSON};
use routelmt_model::{
    HeadKind, LoraSettings, PeftAdapter, PromptStyle, Qwen3Decoder, Qwen3Model, Router,
    RouterConfig, RouterHead,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::data::{Example, digest};
use crate::error::{Result, TrainError};

/// Everything that determines a run's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    /// What the head predicts.
    pub head: HeadKind,
    /// hidden_states index the head reads.
    pub layer: usize,
    /// Prompt revision (recorded in the router; prompts are built by the caller).
    pub prompt_style: PromptStyle,
    /// Passes over the training set.
    pub epochs: usize,
    /// Peak learning rate (linear warm-up, then linear decay to zero).
    pub lr: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Share of the optimizer steps spent warming up.
    pub warmup: f64,
    /// Examples per forward/backward pass.
    pub batch_size: usize,
    /// Passes accumulated per optimizer step.
    pub grad_accum: usize,
    /// LoRA rank and alpha; `None` trains the head alone on the frozen model.
    pub lora: Option<LoraSettings>,
    /// Seed of the LoRA/head initialization and the data order.
    pub seed: u64,
    /// Also checkpoint every N optimizer steps (0: at epoch ends only).
    pub checkpoint_every: usize,
}

impl TrainSettings {
    fn check(&self, layers: usize) -> Result<()> {
        let bad = |m: String| Err(TrainError::Settings(m));
        if self.epochs == 0 || self.batch_size == 0 || self.grad_accum == 0 {
            return bad("--epochs, --batch-size and --grad-accum must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("--lr must be a positive number, not {}", self.lr));
        }
        if !(0.0..=1.0).contains(&self.warmup)
            || self.weight_decay.is_nan()
            || self.weight_decay < 0.0
        {
            return bad("--warmup must be in [0, 1] and --weight-decay non-negative".into());
        }
        if self.layer > layers {
            return bad(format!(
                "--layer {} out of range: 0 (embeddings) to {layers} (final)",
                self.layer
            ));
        }
        if let Some(l) = self.lora {
            if l.rank == 0 || !(l.alpha > 0.0 && l.alpha.is_finite()) {
                return bad("--lora-rank must be at least 1 and --lora-alpha positive".into());
            }
            if self.layer == 0 {
                return bad("LoRA cannot change layer 0 (the embeddings); use --no-lora".into());
            }
        }
        Ok(())
    }

    /// Micro-batches and optimizer steps per epoch for `n` examples.
    fn steps_per_epoch(&self, n: usize) -> (usize, usize) {
        let batches = n.div_ceil(self.batch_size);
        (batches, batches.div_ceil(self.grad_accum))
    }

    /// Learning rate of optimizer step `step` (0-based) out of `total`.
    fn lr_at(&self, step: usize, total: usize) -> f64 {
        let warm = (self.warmup * total as f64).ceil() as usize;
        if step < warm {
            self.lr * (step + 1) as f64 / warm as f64
        } else {
            self.lr * (total - step) as f64 / (total - warm).max(1) as f64
        }
    }
}

/// What one epoch measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss (MSE on standardized labels).
    pub train_loss: f64,
    /// Validation MSE on standardized labels.
    pub valid_mse: f64,
    /// Validation Spearman of the routing output (gain, or quality for `quality`) with its
    /// label.
    pub valid_spearman: f64,
    /// Whether this epoch is the best so far (highest Spearman; the earlier on ties).
    pub best: bool,
}

/// Progress, for a bar or a log.
#[derive(Debug)]
pub enum Event<'a> {
    /// The loop starts (or resumes after `steps_done` steps).
    Started {
        /// Optimizer steps of the whole run.
        total_steps: usize,
        /// Steps already done (resumed runs).
        steps_done: usize,
    },
    /// Frozen-model features computed (`--no-lora`).
    Features {
        /// Examples done.
        done: usize,
        /// Examples in all.
        total: usize,
    },
    /// An optimizer step finished.
    Step {
        /// Steps done.
        step: usize,
        /// Mean loss of the step's examples.
        loss: f64,
    },
    /// An epoch finished and was validated.
    Epoch(&'a EpochReport),
}

/// The result of a run.
#[derive(Debug)]
pub struct TrainOutcome {
    /// The best epoch's router (written to the output folder).
    pub router: Router,
    /// Every epoch's report.
    pub history: Vec<EpochReport>,
    /// 1-based best epoch.
    pub best_epoch: usize,
    /// The step the run resumed from, if it did.
    pub resumed_from: Option<usize>,
}

/// The loop position and everything needed to resume, in `last/state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    format: String,
    settings: TrainSettings,
    base_fingerprint: String,
    train_digest: String,
    valid_digest: String,
    /// (mean, std) of each label.
    label_norm: Vec<(f64, f64)>,
    /// Optimizer steps done.
    step: usize,
    /// 0-based epoch in progress.
    epoch: usize,
    /// Next micro-batch of that epoch.
    batch: usize,
    /// Sum and count of the epoch's losses so far.
    epoch_loss: (f64, usize),
    history: Vec<EpochReport>,
    adapter_ids: BTreeMap<String, [u64; 2]>,
    head_ids: [u64; 2],
}

const STATE_FORMAT: &str = "routelmt-train-state/1";
const WORK_DIR: &str = ".routelmt-train";
const OPTIMIZER_FILE: &str = "optimizer.bpk";
const STATE_FILE: &str = "state.json";

/// The trainable part: decoder (carrying LoRA adapters, or frozen) and head.
#[derive(Module, Debug)]
struct Trainable {
    decoder: Qwen3Decoder,
    head: RouterHead,
}

/// Trains a router on `train`, validates on `valid` after every epoch, and writes the best
/// epoch's router folder to `out` (`router.json` last). `model` is the base model on the
/// device to train on. `base_name` is recorded as the base model's name. With `resume`, the
/// run continues from the checkpoint in `out`; without it, an existing checkpoint is an error.
/// `stop_after` stops after that many optimizer steps without a final checkpoint (a test hook
/// that simulates an interrupt).
#[allow(clippy::too_many_arguments)]
pub fn train(
    model: Qwen3Model,
    train: &[Example],
    valid: &[Example],
    settings: &TrainSettings,
    out: &Path,
    base_name: &str,
    resume: bool,
    stop_after: Option<usize>,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<TrainOutcome> {
    let config = model.config.clone();
    settings.check(config.num_hidden_layers)?;
    if train.is_empty() || valid.is_empty() {
        return Err(TrainError::Settings("training and validation sets must be non-empty".into()));
    }
    let kind = settings.head;
    let label_norm = label_norm(train, kind)?;
    let work = out.join(WORK_DIR);
    let fresh_state = State {
        format: STATE_FORMAT.into(),
        settings: settings.clone(),
        base_fingerprint: config.fingerprint(),
        train_digest: digest(train),
        valid_digest: digest(valid),
        label_norm: label_norm.clone(),
        step: 0,
        epoch: 0,
        batch: 0,
        epoch_loss: (0.0, 0),
        history: Vec::new(),
        adapter_ids: BTreeMap::new(),
        head_ids: [0, 0],
    };
    let plain = model.device().clone();
    let ad = plain.clone().autodiff();

    // 1. The trainable module: fresh, or restored from the checkpoint with its parameter ids.
    let resumed = if resume {
        Some(load_checkpoint(&work, &fresh_state, &config, &plain)?)
    } else {
        if work.exists() {
            return Err(TrainError::checkpoint(
                &work,
                "an interrupted run is here; pass --resume to continue it, or delete the folder",
            ));
        }
        None
    };
    let mut model = model;
    let base_decoder = std::mem::replace(&mut model.decoder, empty_decoder(&config, &plain));
    let (trainable, mut state, mut optim, resumed_from) = match resumed {
        Some((adapter, head, state, optim)) => {
            let decoder = match &adapter {
                Some(a) => a.attach_with_ids(base_decoder, &plain, &state.adapter_ids),
                None => base_decoder.no_grad(),
            };
            let head = head.with_param_ids(state.head_ids);
            let step = state.step;
            (Trainable { decoder, head }, state, optim, Some(step))
        }
        None => {
            plain.seed(settings.seed);
            let decoder = match settings.lora {
                Some(l) => {
                    let group = ParamGroup::from_regex(TARGET_REGEX)
                        .map_err(|e| TrainError::Settings(format!("LoRA target pattern: {e:?}")))?;
                    base_decoder.apply_lora(Lora::new(l.rank, l.alpha).set_param_group(group))
                }
                None => base_decoder.no_grad(),
            };
            let head = RouterHead::init(config.hidden_size, kind, &plain);
            let optim = adamw(settings.weight_decay);
            (Trainable { decoder, head }, fresh_state, optim, None)
        }
    };
    state.adapter_ids = PeftAdapter::param_ids(&trainable.decoder);
    state.head_ids = trainable.head.param_ids();
    let mut trainable = trainable.train();

    // 2. Targets, standardized; frozen features computed once without LoRA.
    let targets = |set: &[Example]| -> Vec<Vec<f32>> {
        set.iter()
            .map(|e| {
                e.targets(kind)
                    .iter()
                    .zip(&label_norm)
                    .map(|(y, (m, s))| ((y - m) / s) as f32)
                    .collect()
            })
            .collect()
    };
    let (train_y, valid_y) = (targets(train), targets(valid));
    let frozen = match settings.lora {
        Some(_) => None,
        None => {
            let plain_decoder = trainable.decoder.valid();
            model.decoder = plain_decoder;
            let all: Vec<Vec<u32>> = train.iter().chain(valid).map(|e| e.ids.clone()).collect();
            let mut hidden = Vec::with_capacity(all.len());
            for part in all.chunks(settings.batch_size.max(16)) {
                hidden.extend(model.last_hidden(part, settings.layer, settings.batch_size)?);
                on_event(Event::Features { done: hidden.len(), total: all.len() });
            }
            let valid_h = hidden.split_off(train.len());
            Some((hidden, valid_h))
        }
    };

    // 3. The loop.
    let (batches, steps_per_epoch) = settings.steps_per_epoch(train.len());
    let total = steps_per_epoch * settings.epochs;
    on_event(Event::Started { total_steps: total, steps_done: state.step });
    let h = config.hidden_size;
    let outputs = kind.outputs();
    while state.epoch < settings.epochs {
        let order = epoch_order(train.len(), settings.seed, state.epoch);
        while state.batch < batches {
            // One optimizer step: up to grad_accum micro-batches.
            let first = state.batch;
            let last = (first + settings.grad_accum).min(batches);
            let rows: Vec<usize> = order
                [first * settings.batch_size..(last * settings.batch_size).min(train.len())]
                .to_vec();
            let n_step = rows.len();
            let mut accum = GradientsAccumulator::<Trainable>::new();
            let mut step_loss = 0.0;
            for micro in rows.chunks(settings.batch_size) {
                let pred = match &frozen {
                    None => {
                        let ids: Vec<Vec<u32>> =
                            micro.iter().map(|&i| train[i].ids.clone()).collect();
                        check_buffers(&model, &ids)?;
                        let hidden = trainable.decoder.forward_last(
                            &config,
                            &model.embed_tokens,
                            &ids,
                            settings.layer,
                            &ad,
                        );
                        trainable.head.forward(hidden)
                    }
                    Some((train_h, _)) => {
                        let flat: Vec<f32> =
                            micro.iter().flat_map(|&i| train_h[i].iter().copied()).collect();
                        let x =
                            Tensor::<2>::from_data(TensorData::new(flat, [micro.len(), h]), &ad);
                        trainable.head.forward(x)
                    }
                };
                let y: Vec<f32> = micro.iter().flat_map(|&i| train_y[i].iter().copied()).collect();
                let y = Tensor::<2>::from_data(TensorData::new(y, [micro.len(), outputs]), &ad);
                let diff = pred - y;
                // Sum of squares over the step's examples and outputs: the accumulated
                // gradient is exactly that of the step's MSE.
                let loss = (diff.clone() * diff).sum().div_scalar((n_step * outputs) as f64);
                step_loss += f64::from(read(loss.clone())?[0]);
                let grads = GradientsParams::from_grads(loss.backward(), &trainable);
                accum.accumulate(&trainable, grads);
            }
            let lr = settings.lr_at(state.step, total);
            trainable = optim.step(lr, trainable, accum.grads());
            state.step += 1;
            state.batch = last;
            state.epoch_loss.0 += step_loss * n_step as f64;
            state.epoch_loss.1 += n_step;
            on_event(Event::Step { step: state.step, loss: step_loss });
            if stop_after.is_some_and(|s| state.step >= s) {
                return Err(TrainError::Stopped(state.step));
            }
            if settings.checkpoint_every > 0
                && state.step % settings.checkpoint_every == 0
                && state.batch < batches
            {
                save_last(&work, &state, &trainable, settings, &optim)?;
            }
        }

        // Validate: plain (no autodiff) copy of the trained module.
        let snapshot = trainable.valid();
        let valid_pred = match &frozen {
            None => {
                model.decoder = snapshot.decoder.clone();
                let ids: Vec<Vec<u32>> = valid.iter().map(|e| e.ids.clone()).collect();
                let hidden = model.last_hidden(&ids, settings.layer, settings.batch_size)?;
                predict_host(&snapshot.head, &hidden, &plain)?
            }
            Some((_, valid_h)) => predict_host(&snapshot.head, valid_h, &plain)?,
        };
        let (mse, rho) = validation(&valid_pred, &valid_y);
        let best_so_far = state.history.iter().map(|r| r.valid_spearman).fold(f64::NAN, f64::max);
        let is_best = state.history.is_empty() || rho > best_so_far;
        let report = EpochReport {
            epoch: state.epoch + 1,
            train_loss: state.epoch_loss.0 / state.epoch_loss.1.max(1) as f64,
            valid_mse: mse,
            valid_spearman: rho,
            best: is_best,
        };
        if is_best {
            for r in &mut state.history {
                r.best = false;
            }
        }
        state.history.push(report.clone());
        state.epoch += 1;
        state.batch = 0;
        state.epoch_loss = (0.0, 0);
        if is_best {
            let router = export(&snapshot, &state, settings, &config, base_name, &plain)?;
            write_dir(&work.join("best"), &router.to_files()?)?;
        }
        save_last(&work, &state, &trainable, settings, &optim)?;
        on_event(Event::Epoch(&report));
    }

    // 4. Publish the best epoch's router, router.json last, then drop the work folder.
    let best_dir = work.join("best");
    let best = std::fs::read_dir(&best_dir).map_err(|e| TrainError::io(&best_dir, e))?;
    let mut names: Vec<PathBuf> = best.filter_map(|e| e.ok().map(|e| e.path())).collect();
    names.sort_by_key(|p| p.file_name().is_some_and(|n| n == ROUTER_JSON));
    for path in &names {
        let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
        let name = path.file_name().map(|n| n.to_owned()).unwrap_or_default();
        write_file(&out.join(name), &bytes)?;
    }
    if settings.lora.is_none() {
        for stale in [ADAPTER_CONFIG, ADAPTER_WEIGHTS] {
            let _ = std::fs::remove_file(out.join(stale));
        }
    }
    let router = routelmt_model::hf::read_router(out, &config, &plain)?;
    std::fs::remove_dir_all(&work).map_err(|e| TrainError::io(&work, e))?;
    let best_epoch = state.history.iter().find(|r| r.best).map_or(0, |r| r.epoch);
    Ok(TrainOutcome { router, history: state.history, best_epoch, resumed_from })
}

fn adamw(weight_decay: f64) -> ModuleOptimizer {
    AdamWConfig::new().with_weight_decay(weight_decay as f32).with_epsilon(1e-8).init()
}

/// A decoder with no layers, holding the place of the one being trained.
fn empty_decoder(config: &routelmt_model::Qwen3Config, device: &Device) -> Qwen3Decoder {
    Qwen3Decoder {
        layers: Vec::new(),
        norm: routelmt_model::norm::RmsNorm::ones(1, config.rms_norm_eps, device),
    }
}

fn check_buffers(model: &Qwen3Model, ids: &[Vec<u32>]) -> Result<()> {
    let t = ids.iter().map(Vec::len).max().unwrap_or(0);
    let need = model.peak_buffer_bytes(ids.len(), t);
    if need > routelmt_model::MAX_BUFFER_BYTES {
        return Err(TrainError::Settings(format!(
            "a batch of {} prompts of up to {t} tokens needs {} MiB device buffers, over the {} \
             MiB limit; lower --batch-size",
            ids.len(),
            need >> 20,
            routelmt_model::MAX_BUFFER_BYTES >> 20
        )));
    }
    Ok(())
}

/// (mean, std) of each label over the training set.
fn label_norm(train: &[Example], kind: HeadKind) -> Result<Vec<(f64, f64)>> {
    let n = train.len() as f64;
    let names = ["gain", "score_small"];
    (0..kind.outputs())
        .map(|o| {
            let ys: Vec<f64> = train.iter().map(|e| e.targets(kind)[o]).collect();
            let mean = ys.iter().sum::<f64>() / n;
            let var = ys.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / n;
            if var.is_nan() || var <= 0.0 {
                let name = if kind == HeadKind::Quality { names[1] } else { names[o] };
                return Err(TrainError::Settings(format!(
                    "every training label '{name}' is {mean}: nothing to learn"
                )));
            }
            Ok((mean, var.sqrt()))
        })
        .collect()
}

/// The data order of an epoch: a pure function of (seed, epoch).
fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed ^ (epoch as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    order.shuffle(&mut rng);
    order
}

fn predict_host(head: &RouterHead, hidden: &[Vec<f32>], device: &Device) -> Result<Vec<Vec<f32>>> {
    let h = hidden.first().map_or(0, Vec::len);
    let flat: Vec<f32> = hidden.iter().flat_map(|r| r.iter().copied()).collect();
    let x = Tensor::<2>::from_data(TensorData::new(flat, [hidden.len(), h]), device);
    let out = read(head.forward(x))?;
    let o = out.len() / hidden.len().max(1);
    Ok(out.chunks(o.max(1)).map(<[f32]>::to_vec).collect())
}

/// (MSE over all outputs, Spearman of output 0 with its label).
fn validation(pred: &[Vec<f32>], y: &[Vec<f32>]) -> (f64, f64) {
    let mut se = 0.0;
    let mut count = 0usize;
    for (p, t) in pred.iter().zip(y) {
        for (a, b) in p.iter().zip(t) {
            se += (f64::from(*a) - f64::from(*b)).powi(2);
            count += 1;
        }
    }
    let p0: Vec<f64> = pred.iter().map(|p| f64::from(p[0])).collect();
    let y0: Vec<f64> = y.iter().map(|t| f64::from(t[0])).collect();
    let rho = routelmt_route::spearman(&p0, &y0);
    (se / count.max(1) as f64, if rho.is_finite() { rho } else { 0.0 })
}

/// The router of a (plain) trained module: adapter extracted, head in label units.
fn export(
    m: &Trainable,
    state: &State,
    s: &TrainSettings,
    config: &routelmt_model::Qwen3Config,
    base_name: &str,
    device: &Device,
) -> Result<Router> {
    let adapter = match s.lora {
        Some(l) => PeftAdapter::extract(&m.decoder, l.rank, l.alpha)?,
        None => None,
    };
    let head = m.head.unstandardized(&state.label_norm, device)?;
    let best = state.history.iter().find(|r| r.best).map(|r| r.epoch);
    let config = RouterConfig {
        format: FORMAT.into(),
        head: s.head,
        layer: s.layer,
        prompt_style: s.prompt_style,
        base_fingerprint: config.fingerprint(),
        base_model: Some(base_name.to_string()),
        lora: s.lora,
        threshold: None,
        training: Some(json!({
            "settings": s,
            "label_norm": state.label_norm,
            "train_digest": state.train_digest,
            "valid_digest": state.valid_digest,
            "best_epoch": best,
            "epochs": state.history,
        })),
    };
    Ok(Router { config, head, adapter })
}

/// Writes `last/`: adapter, raw (standardized) head, optimizer state and the loop position.
fn save_last(
    work: &Path,
    state: &State,
    m: &Trainable,
    s: &TrainSettings,
    optim: &ModuleOptimizer,
) -> Result<()> {
    let plain = m.valid();
    let mut files: Vec<(&str, Vec<u8>)> = vec![(HEAD_FILE, plain.head.to_safetensors()?)];
    if let Some(l) = s.lora {
        let adapter = PeftAdapter::extract(&plain.decoder, l.rank, l.alpha)?
            .ok_or_else(|| TrainError::checkpoint(work, "the decoder lost its LoRA adapters"))?;
        let (cfg, weights) = adapter.to_peft("base")?;
        files.push((ADAPTER_CONFIG, cfg));
        files.push((ADAPTER_WEIGHTS, weights));
    }
    let optim_bytes = optim
        .into_bytes()
        .map_err(|e| TrainError::checkpoint(work, format!("optimizer state: {e:?}")))?;
    files.push((OPTIMIZER_FILE, optim_bytes.to_vec()));
    let json = serde_json::to_vec_pretty(state)
        .map_err(|e| TrainError::checkpoint(work, e.to_string()))?;
    files.push((STATE_FILE, json));
    write_dir(&work.join("last"), &files)
}

type Restored = (Option<PeftAdapter>, RouterHead, State, ModuleOptimizer);

fn load_checkpoint(
    work: &Path,
    expect: &State,
    config: &routelmt_model::Qwen3Config,
    device: &Device,
) -> Result<Restored> {
    let dir = [work.join("last"), work.join("last.old")]
        .into_iter()
        .find(|d| d.join(STATE_FILE).is_file())
        .ok_or_else(|| {
            TrainError::checkpoint(work, "no checkpoint to resume from (run without --resume)")
        })?;
    let read_file = |name: &str| -> Result<Vec<u8>> {
        let p = dir.join(name);
        std::fs::read(&p).map_err(|e| TrainError::io(&p, e))
    };
    let state: State = serde_json::from_slice(&read_file(STATE_FILE)?).map_err(|e| {
        TrainError::checkpoint(&dir.join(STATE_FILE), format!("not a valid state file: {e}"))
    })?;
    let mismatch = |what: &str| {
        Err(TrainError::checkpoint(
            &dir,
            format!("was made with different {what}; resume with the same command, or start over"),
        ))
    };
    if state.format != STATE_FORMAT {
        return mismatch("software (state format)");
    }
    let mut a = state.settings.clone();
    a.checkpoint_every = expect.settings.checkpoint_every;
    if a != expect.settings {
        return mismatch("settings");
    }
    if state.base_fingerprint != expect.base_fingerprint {
        return mismatch("base model");
    }
    if state.train_digest != expect.train_digest || state.valid_digest != expect.valid_digest {
        return mismatch("training or validation data");
    }
    let adapter = match expect.settings.lora {
        Some(_) => Some(PeftAdapter::from_peft(
            &read_file(ADAPTER_CONFIG)?,
            ADAPTER_CONFIG,
            &read_file(ADAPTER_WEIGHTS)?,
            ADAPTER_WEIGHTS,
            config,
        )?),
        None => None,
    };
    let head = RouterHead::from_safetensors(
        &read_file(HEAD_FILE)?,
        HEAD_FILE,
        config.hidden_size,
        expect.settings.head,
        device,
    )?;
    // burn materializes loaded optimizer state on `Device::default()`, which initializes wgpu
    // with default settings when a GPU backend is compiled in; a later explicit wgpu set-up in
    // this process would then fail. Set wgpu up our way first (a no-op if already done; no
    // adapter is fine, the state then lands on the CPU).
    let _ = routelmt_model::device::select(routelmt_model::device::DeviceChoice::Gpu);
    let optim = adamw(expect.settings.weight_decay)
        .from_bytes(burn::tensor::Bytes::from_bytes_vec(read_file(OPTIMIZER_FILE)?))
        .map_err(|e| TrainError::checkpoint(&dir.join(OPTIMIZER_FILE), format!("{e:?}")))?;
    let mut state = state;
    state.settings.checkpoint_every = expect.settings.checkpoint_every;
    Ok((adapter, head, state, optim))
}

/// Writes a file beside its target and renames it into place.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).map_err(|e| TrainError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))
}

/// Replaces folder `dir` with `files` so that a complete version exists at every moment:
/// `dir.new` is written, `dir` moves to `dir.old`, `dir.new` to `dir`, `dir.old` is removed.
fn write_dir(dir: &Path, files: &[(&str, Vec<u8>)]) -> Result<()> {
    let with = |suffix: &str| {
        let mut name = dir.file_name().unwrap_or_default().to_owned();
        name.push(suffix);
        dir.with_file_name(name)
    };
    let (new, old) = (with(".new"), with(".old"));
    let _ = std::fs::remove_dir_all(&new);
    std::fs::create_dir_all(&new).map_err(|e| TrainError::io(&new, e))?;
    for (name, bytes) in files {
        let p = new.join(name);
        std::fs::write(&p, bytes).map_err(|e| TrainError::io(&p, e))?;
    }
    let _ = std::fs::remove_dir_all(&old);
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(|e| TrainError::io(dir, e))?;
    }
    std::fs::rename(&new, dir).map_err(|e| TrainError::io(dir, e))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// Wall-clock seconds of `iters` optimizer steps (after `warmup` untimed ones) on one batch,
/// for benchmarks: with LoRA, forward + backward through the decoder + AdamW on adapters and
/// head; without, a plain prefill (no autodiff) + the head's step.
pub fn time_steps(
    model: Qwen3Model,
    lora: Option<LoraSettings>,
    layer: usize,
    batch: &[Vec<u32>],
    iters: usize,
    warmup: usize,
) -> Result<Vec<f64>> {
    let mut model = model;
    let config = model.config.clone();
    let plain = model.device().clone();
    let ad = plain.clone().autodiff();
    let kind = HeadKind::Gain;
    let decoder = std::mem::replace(&mut model.decoder, empty_decoder(&config, &plain));
    let decoder = match lora {
        Some(l) => {
            let group = ParamGroup::from_regex(TARGET_REGEX)
                .map_err(|e| TrainError::Settings(format!("LoRA target pattern: {e:?}")))?;
            decoder.apply_lora(Lora::new(l.rank, l.alpha).set_param_group(group))
        }
        None => {
            model.decoder = decoder.no_grad();
            empty_decoder(&config, &plain)
        }
    };
    let head = RouterHead::init(config.hidden_size, kind, &plain);
    let mut m = Trainable { decoder, head }.train();
    let mut optim = adamw(0.01);
    let y = Tensor::<2>::zeros([batch.len(), 1], &ad);
    let mut times = Vec::with_capacity(iters);
    for i in 0..warmup + iters {
        let t0 = std::time::Instant::now();
        let hidden = match lora {
            Some(_) => m.decoder.forward_last(&config, &model.embed_tokens, batch, layer, &ad),
            None => {
                let h = model.last_hidden_chunk(batch, layer)?;
                Tensor::from_data(h.into_data(), &ad)
            }
        };
        let diff = m.head.forward(hidden) - y.clone();
        let loss = (diff.clone() * diff).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        m = optim.step(1e-4, m, grads);
        read(m.head.linear.weight.val())?; // wait for the device
        if i >= warmup {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    Ok(times)
}
