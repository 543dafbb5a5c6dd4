//! What determines a run's result: the settings, their checks, the step counts and the
//! learning-rate schedule, and the optimizer built from them.

use burn::optim::{AdamWConfig, ModuleOptimizer};
use routelmt_model::{HeadKind, LoraSettings, PromptStyle};
use serde::{Deserialize, Serialize};

use crate::error::{Result, Setting, TrainError};

/// Everything that determines a run's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    /// What the head predicts.
    pub head: HeadKind,
    /// hidden_states index the head reads.
    pub layer: usize,
    /// Prompt revision (recorded in the router; prompts are built by the caller).
    pub prompt_style: PromptStyle,
    /// Chat template use (recorded in the router; prompts are built by the caller).
    #[serde(default)]
    pub chat_template: routelmt_model::ChatMode,
    /// How scoring will store the decoder's weights (recorded in the router; training itself
    /// runs in f32).
    #[serde(default)]
    pub weights: routelmt_model::Precision,
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
    /// Checks the settings against a base model with `layers` decoder layers.
    pub fn check(&self, layers: usize) -> Result<()> {
        let bad = |setting, message: String| Err(TrainError::Setting { setting, message });
        for (setting, value) in [
            (Setting::Epochs, self.epochs),
            (Setting::BatchSize, self.batch_size),
            (Setting::GradAccum, self.grad_accum),
        ] {
            if value == 0 {
                return bad(setting, "must be at least 1".into());
            }
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(Setting::Lr, format!("must be a positive number, not {}", self.lr));
        }
        if !(0.0..=1.0).contains(&self.warmup) {
            return bad(Setting::Warmup, format!("must be in [0, 1], not {}", self.warmup));
        }
        if self.weight_decay.is_nan() || self.weight_decay < 0.0 {
            return bad(Setting::WeightDecay, "must be non-negative".into());
        }
        if self.layer > layers {
            let range = format!("out of range: 0 (embeddings) to {layers} (final)");
            return bad(Setting::Layer, format!("{} {range}", self.layer));
        }
        if let Some(l) = self.lora {
            if l.rank == 0 {
                return bad(Setting::LoraRank, "must be at least 1".into());
            }
            if !(l.alpha > 0.0 && l.alpha.is_finite()) {
                return bad(Setting::LoraAlpha, "must be positive".into());
            }
            if self.layer == 0 {
                return bad(
                    Setting::Lora,
                    "cannot change layer 0 (the embeddings); train the head alone".into(),
                );
            }
        }
        Ok(())
    }

    /// Micro-batches and optimizer steps per epoch for `n` examples.
    pub(crate) fn steps_per_epoch(&self, n: usize) -> (usize, usize) {
        let batches = n.div_ceil(self.batch_size);
        (batches, batches.div_ceil(self.grad_accum))
    }

    /// Learning rate of optimizer step `step` (0-based) out of `total`.
    pub(crate) fn lr_at(&self, step: usize, total: usize) -> f64 {
        let warm = (self.warmup * total as f64).ceil() as usize;
        if step < warm {
            self.lr * (step + 1) as f64 / warm as f64
        } else {
            self.lr * (total - step) as f64 / (total - warm).max(1) as f64
        }
    }

    /// The outputs of the head (1, or 2 for `both`).
    pub(crate) fn outputs(&self) -> usize {
        self.head.outputs()
    }
}

/// AdamW with decoupled weight decay (the optimizer of every run and benchmark).
pub(crate) fn adamw(weight_decay: f64) -> ModuleOptimizer {
    AdamWConfig::new().with_weight_decay(weight_decay as f32).with_epsilon(1e-8).init()
}

/// The label names of a head kind's outputs, in output order (for messages).
pub(crate) fn label_names(head: HeadKind) -> &'static [&'static str] {
    match head {
        HeadKind::Gain => &["gain"],
        HeadKind::Quality => &["score_small"],
        HeadKind::Both => &["gain", "score_small"],
    }
}
