//! The training loop: LoRA (on the seven projection types) and a linear head trained jointly
//! with AdamW on the MSE of standardized labels; validation Spearman and MSE after every
//! epoch; the best epoch is the router that is published. One micro-batch's forward and loss
//! live in `step.rs`, checkpoints and publishing in `checkpoint.rs`.
//!
//! With a fixed seed on the CPU, a run resumed from a checkpoint ends with exactly the weights
//! of an uninterrupted run: data order is a pure function of (seed, epoch), parameter ids are
//! restored so the optimizer state applies, and the learning-rate schedule is a function of
//! the step.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Module;
use burn::optim::{GradientsAccumulator, ModuleOptimizer};
use burn::tensor::Device;
use routelmt_model::router::FORMAT;
use routelmt_model::router::peft;
use routelmt_model::{Model, PeftAdapter, Router, RouterConfig, RouterHead};
use serde_json::json;

use crate::checkpoint::{Checkpoints, STATE_FORMAT, State};
use crate::data::{Example, digest};
use crate::error::{Result, TrainError};
use crate::settings::{TrainSettings, adamw};
use crate::step::{
    EpochReport, Inputs, Labels, Trainable, epoch_order, micro_batch, predict_host, validation,
};

/// One training run: the base model, the data, the settings, where the router goes.
pub struct TrainJob<'a> {
    /// The base model, on the device to train on.
    pub model: Model,
    /// Training examples.
    pub train: &'a [Example],
    /// Validation examples (the best epoch by their Spearman is kept).
    pub valid: &'a [Example],
    /// Everything that determines the result.
    pub settings: TrainSettings,
    /// The router folder to write.
    pub out: &'a Path,
    /// The base model's name, recorded in the router.
    pub base_name: &'a str,
    /// Continue the interrupted run whose checkpoint is in `out` (without it, an existing
    /// checkpoint is an error).
    pub resume: bool,
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
    /// Frozen-model features computed (head-only runs).
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

/// What the event callback wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Go on.
    Continue,
    /// Stop now, as if interrupted: the run ends with [`TrainError::Stopped`] and its last
    /// checkpoint stays for a resumed run.
    Stop,
}

/// The result of a run.
#[derive(Debug)]
pub struct TrainOutcome {
    /// The best epoch's router (published in the output folder).
    pub router: Router,
    /// Every epoch's report.
    pub history: Vec<EpochReport>,
    /// 1-based best epoch.
    pub best_epoch: usize,
    /// The step the run resumed from, if it did.
    pub resumed_from: Option<usize>,
}

/// The run's moving parts.
struct Run {
    trainable: Trainable,
    state: State,
    optim: ModuleOptimizer,
    best: Option<Router>,
    resumed_from: Option<usize>,
}

/// Hidden states of the frozen model for (training, validation) examples.
type Frozen = (Vec<Vec<f32>>, Vec<Vec<f32>>);

/// What every step reads.
struct Ctx<'a> {
    settings: &'a TrainSettings,
    train: &'a [Example],
    valid: &'a [Example],
    labels: Labels,
    train_y: Vec<Vec<f32>>,
    valid_y: Vec<Vec<f32>>,
    /// Frozen features of (train, valid), for head-only runs.
    frozen: Option<Frozen>,
    checkpoints: Checkpoints,
    base_name: &'a str,
    plain: Device,
    ad: Device,
}

/// Trains a router on `job.train`, validates on `job.valid` after every epoch, and publishes
/// the best epoch's router folder to `job.out`. `on_event` hears every step and epoch and may
/// stop the run.
pub fn train(
    job: TrainJob<'_>,
    on_event: &mut dyn FnMut(Event<'_>) -> Control,
) -> Result<TrainOutcome> {
    let TrainJob { mut model, train, valid, settings, out, base_name, resume } = job;
    settings.check(model.config.num_hidden_layers)?;
    for (name, set) in [("training", train), ("validation", valid)] {
        if set.is_empty() {
            return Err(TrainError::EmptySet(name));
        }
    }
    let labels = Labels::fit(train, settings.head)?;
    let plain = model.device().clone();
    let fresh = State {
        format: STATE_FORMAT.into(),
        settings: settings.clone(),
        base_fingerprint: model.config.fingerprint(),
        train_digest: digest(train),
        valid_digest: digest(valid),
        label_norm: labels.norm.clone(),
        step: 0,
        epoch: 0,
        batch: 0,
        epoch_loss: (0.0, 0),
        history: Vec::new(),
        adapter_ids: BTreeMap::new(),
        head_ids: [0, 0],
    };
    let checkpoints = Checkpoints::new(out);
    let mut run = start(&model, fresh, &checkpoints, resume)?;
    let frozen = frozen_features(&model, &settings, train, valid, on_event)?;
    let ctx = Ctx {
        train_y: labels.targets(train),
        valid_y: labels.targets(valid),
        settings: &settings,
        train,
        valid,
        labels,
        frozen,
        checkpoints,
        base_name,
        ad: plain.clone().autodiff(),
        plain,
    };
    let (batches, steps_per_epoch) = settings.steps_per_epoch(train.len());
    let total = steps_per_epoch * settings.epochs;
    on_event(Event::Started { total_steps: total, steps_done: run.state.step });
    while run.state.epoch < settings.epochs {
        let order = epoch_order(train.len(), settings.seed, run.state.epoch);
        while run.state.batch < batches {
            let loss;
            (run, loss) = optimizer_step(run, &ctx, &model, &order, batches, total)?;
            if on_event(Event::Step { step: run.state.step, loss }) == Control::Stop {
                return Err(TrainError::Stopped(run.state.step));
            }
            let every = settings.checkpoint_every;
            if every > 0 && run.state.step % every == 0 && run.state.batch < batches {
                ctx.checkpoints.save_last(&run.state, &run.trainable, &run.optim)?;
            }
        }
        let report = end_epoch(&mut run, &ctx, &mut model)?;
        if on_event(Event::Epoch(&report)) == Control::Stop {
            return Err(TrainError::Stopped(run.state.step));
        }
    }
    finish(run, ctx.checkpoints, out)
}

/// The trainable module, state and optimizer: fresh, or restored from the checkpoint with
/// the parameter ids the optimizer state refers to.
fn start(model: &Model, fresh: State, checkpoints: &Checkpoints, resume: bool) -> Result<Run> {
    let settings = fresh.settings.clone();
    let plain = model.device();
    // The base decoder's tensors are shared, not copied, by the clone.
    let base = model.decoder.clone();
    let mut run = if resume {
        let r = checkpoints.restore(&fresh, &model.config, plain)?;
        let decoder = match &r.adapter {
            Some(a) => a.attach_with_ids(base, plain, &r.state.adapter_ids),
            None => base.no_grad(),
        };
        let head = r.head.with_param_ids(r.state.head_ids);
        let step = Some(r.state.step);
        let trainable = Trainable { decoder, head };
        Run { trainable, state: r.state, optim: r.optim, best: r.best, resumed_from: step }
    } else {
        checkpoints.check_absent()?;
        plain.seed(settings.seed);
        let decoder = match settings.lora {
            Some(l) => peft::apply_new_lora(base, l)?,
            None => base.no_grad(),
        };
        let head = RouterHead::init(model.config.hidden_size, settings.head, plain);
        let trainable = Trainable { decoder, head };
        let optim = adamw(settings.weight_decay);
        Run { trainable, state: fresh, optim, best: None, resumed_from: None }
    };
    run.state.adapter_ids = PeftAdapter::param_ids(&run.trainable.decoder);
    run.state.head_ids = run.trainable.head.param_ids();
    run.trainable = run.trainable.train();
    Ok(run)
}

/// Head-only runs: the frozen model's hidden states of (train, valid), computed once.
fn frozen_features(
    model: &Model,
    settings: &TrainSettings,
    train: &[Example],
    valid: &[Example],
    on_event: &mut dyn FnMut(Event<'_>) -> Control,
) -> Result<Option<Frozen>> {
    if settings.lora.is_some() {
        return Ok(None);
    }
    let all: Vec<Vec<u32>> = train.iter().chain(valid).map(|e| e.ids.clone()).collect();
    // On the CPU the frozen states come from the inference kernels (the same states within
    // the parity bounds, several times faster); the decoder's tensors are shared by the clone
    // until the kernels pack their own copy.
    let kernels = if model.device() == &Device::flex() {
        let copy = Model::from_parts(
            model.config.clone(),
            model.embed_tokens.clone(),
            model.decoder.clone(),
            model.device().clone(),
        );
        Some(copy.prepared(routelmt_model::Precision::F32)?)
    } else {
        None
    };
    let frozen = kernels.as_ref().unwrap_or(model);
    let mut hidden = Vec::with_capacity(all.len());
    for part in all.chunks(settings.batch_size.max(16)) {
        hidden.extend(frozen.last_hidden(part, settings.layer, settings.batch_size)?.read()?);
        on_event(Event::Features { done: hidden.len(), total: all.len() });
    }
    let valid_h = hidden.split_off(train.len());
    Ok(Some((hidden, valid_h)))
}

/// One optimizer step: up to `grad_accum` micro-batches from the epoch's order. Returns the
/// run after the step and the step's mean loss.
fn optimizer_step(
    mut run: Run,
    ctx: &Ctx<'_>,
    model: &Model,
    order: &[usize],
    batches: usize,
    total: usize,
) -> Result<(Run, f64)> {
    let s = ctx.settings;
    let (first, last) = (run.state.batch, (run.state.batch + s.grad_accum).min(batches));
    let rows = &order[first * s.batch_size..(last * s.batch_size).min(ctx.train.len())];
    let inputs = match &ctx.frozen {
        None => Inputs::Prefill { base: model, examples: ctx.train, layer: s.layer },
        Some((train_h, _)) => Inputs::Frozen(train_h),
    };
    let denom = rows.len() * s.outputs();
    let mut accum = GradientsAccumulator::<Trainable>::new();
    let mut loss = 0.0;
    for micro in rows.chunks(s.batch_size) {
        let m = &run.trainable;
        loss += micro_batch(m, &inputs, micro, &ctx.train_y, denom, &ctx.ad, &mut accum)?;
    }
    let lr = s.lr_at(run.state.step, total);
    run.trainable = run.optim.step(lr, run.trainable, accum.grads());
    run.state.step += 1;
    run.state.batch = last;
    run.state.epoch_loss.0 += loss * rows.len() as f64;
    run.state.epoch_loss.1 += rows.len();
    Ok((run, loss))
}

/// Validates the epoch just finished, keeps its router if it is the best so far, and
/// checkpoints. Validation runs a plain (no autodiff) copy of the trained module.
fn end_epoch(run: &mut Run, ctx: &Ctx<'_>, model: &mut Model) -> Result<EpochReport> {
    let s = ctx.settings;
    let snapshot = run.trainable.valid();
    let valid_pred = match &ctx.frozen {
        None => {
            model.decoder = snapshot.decoder.clone();
            let ids: Vec<Vec<u32>> = ctx.valid.iter().map(|e| e.ids.clone()).collect();
            let hidden = model.last_hidden(&ids, s.layer, s.batch_size)?.read()?;
            predict_host(&snapshot.head, &hidden, &ctx.plain)?
        }
        Some((_, valid_h)) => predict_host(&snapshot.head, valid_h, &ctx.plain)?,
    };
    let (mse, rho) = validation(&valid_pred, &ctx.valid_y);
    let state = &mut run.state;
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
        state.history.iter_mut().for_each(|r| r.best = false);
    }
    state.history.push(report.clone());
    (state.epoch, state.batch, state.epoch_loss) = (state.epoch + 1, 0, (0.0, 0));
    if is_best {
        let router = export(&snapshot, state, model, ctx)?;
        ctx.checkpoints.save_best(&router)?;
        run.best = Some(router);
    }
    ctx.checkpoints.save_last(&run.state, &run.trainable, &run.optim)?;
    Ok(report)
}

/// The router of a (plain) trained module: adapter extracted, head in label units.
fn export(m: &Trainable, state: &State, model: &Model, ctx: &Ctx<'_>) -> Result<Router> {
    let s = ctx.settings;
    let adapter = match s.lora {
        Some(l) => PeftAdapter::extract(&m.decoder, l.rank, l.alpha)?,
        None => None,
    };
    let head = m.head.unstandardized(&ctx.labels.norm, &ctx.plain)?;
    let best = state.history.iter().find(|r| r.best).map(|r| r.epoch);
    let config = RouterConfig {
        format: FORMAT.into(),
        head: s.head,
        layer: s.layer,
        prompt_style: s.prompt_style,
        chat_template: s.chat_template,
        weights: s.weights,
        base_fingerprint: model.config.fingerprint(),
        base_model: Some(ctx.base_name.to_string()),
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

/// Publishes the best epoch's router (kept in memory) and ends the run.
fn finish(run: Run, checkpoints: Checkpoints, out: &Path) -> Result<TrainOutcome> {
    let router = run.best.ok_or_else(|| TrainError::checkpoint(out, "no epoch was validated"))?;
    checkpoints.publish(&router, out)?;
    let best_epoch = run.state.history.iter().find(|r| r.best).map_or(0, |r| r.epoch);
    Ok(TrainOutcome {
        router,
        history: run.state.history,
        best_epoch,
        resumed_from: run.resumed_from,
    })
}
