//! One step of learning and one validation pass: the trainable module (decoder carrying LoRA
//! adapters, or frozen, plus the head), the loss of one micro-batch on standardized labels,
//! and the validation MSE and Spearman. The loop (`trainer.rs`) strings these together.

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use routelmt_model::readback::read;
use routelmt_model::{Decoder, HeadKind, Model, RouterHead};
use serde::{Deserialize, Serialize};

use crate::data::Example;
use crate::error::{Result, TrainError};
use crate::settings::label_names;

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

impl std::fmt::Display for EpochReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "epoch {}: train loss {:.4}, valid MSE {:.4}, valid Spearman {:.4}{}",
            self.epoch,
            self.train_loss,
            self.valid_mse,
            self.valid_spearman,
            if self.best { " (best)" } else { "" }
        )
    }
}

/// The trainable part: decoder (carrying LoRA adapters, or frozen) and head.
#[derive(Module, Debug)]
pub(crate) struct Trainable {
    pub decoder: Decoder,
    pub head: RouterHead,
}

/// Where the head's inputs come from.
pub(crate) enum Inputs<'a> {
    /// Prompts run through the trainable decoder on every pass (LoRA).
    Prefill {
        /// The base model (for its config and host embedding).
        base: &'a Model,
        /// The examples, indexed by row.
        examples: &'a [Example],
        /// hidden_states index.
        layer: usize,
    },
    /// Hidden states of the frozen model, computed once (head only).
    Frozen(&'a [Vec<f32>]),
}

/// Standardized labels: `(y − mean) / std` per output.
pub(crate) struct Labels {
    /// (mean, std) of each output over the training set.
    pub norm: Vec<(f64, f64)>,
    head: HeadKind,
}

impl Labels {
    /// Label statistics of the training set; constant labels are an error.
    pub fn fit(train: &[Example], head: HeadKind) -> Result<Self> {
        let n = train.len() as f64;
        let norm = (0..head.outputs())
            .map(|o| {
                let ys: Vec<f64> = train.iter().map(|e| e.targets(head)[o]).collect();
                let mean = ys.iter().sum::<f64>() / n;
                let var = ys.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / n;
                if var.is_nan() || var <= 0.0 {
                    return Err(TrainError::ConstantLabels {
                        label: label_names(head)[o],
                        value: mean,
                    });
                }
                Ok((mean, var.sqrt()))
            })
            .collect::<Result<_>>()?;
        Ok(Self { norm, head })
    }

    /// The standardized targets of a set, one row per example.
    pub fn targets(&self, set: &[Example]) -> Vec<Vec<f32>> {
        set.iter()
            .map(|e| {
                let y = e.targets(self.head);
                y.iter().zip(&self.norm).map(|(y, (m, s))| ((y - m) / s) as f32).collect()
            })
            .collect()
    }
}

/// Runs one micro-batch (`rows` of the training set) forward and backward and adds its
/// gradients to `accum`. The loss is the sum of squares divided by `denom` (the step's
/// examples × outputs), so the accumulated gradient is exactly that of the step's MSE.
/// Returns the micro-batch's share of the step loss.
pub(crate) fn micro_batch(
    m: &Trainable,
    inputs: &Inputs<'_>,
    rows: &[usize],
    targets: &[Vec<f32>],
    denom: usize,
    ad: &Device,
    accum: &mut GradientsAccumulator<Trainable>,
) -> Result<f64> {
    let pred = match inputs {
        Inputs::Prefill { base, examples, layer } => {
            let ids: Vec<Vec<u32>> = rows.iter().map(|&i| examples[i].ids.clone()).collect();
            check_buffers(base, &ids)?;
            let hidden = m.decoder.forward_last(&base.config, &base.embed_tokens, &ids, *layer, ad);
            m.head.forward(hidden)
        }
        Inputs::Frozen(hidden) => m.head.forward(host_tensor(rows.iter().map(|&i| &hidden[i]), ad)),
    };
    let y = host_tensor(rows.iter().map(|&i| &targets[i]), ad);
    let diff = pred - y;
    let loss = (diff.clone() * diff).sum().div_scalar(denom as f64);
    let value = f64::from(read(loss.clone())?[0]);
    let grads = GradientsParams::from_grads(loss.backward(), m);
    accum.accumulate(m, grads);
    Ok(value)
}

/// Rows of host vectors as a `[rows, width]` tensor on `device`.
fn host_tensor<'a>(rows: impl Iterator<Item = &'a Vec<f32>>, device: &Device) -> Tensor<2> {
    let mut flat = Vec::new();
    let mut n = 0;
    for r in rows {
        flat.extend_from_slice(r);
        n += 1;
    }
    let width = flat.len() / n.max(1);
    Tensor::from_data(TensorData::new(flat, [n, width]), device)
}

/// Head outputs of hidden states on the host, one row per state.
pub(crate) fn predict_host(
    head: &RouterHead,
    hidden: &[Vec<f32>],
    device: &Device,
) -> Result<Vec<Vec<f32>>> {
    let out = read(head.forward(host_tensor(hidden.iter(), device)))?;
    let o = out.len() / hidden.len().max(1);
    Ok(out.chunks(o.max(1)).map(<[f32]>::to_vec).collect())
}

/// (MSE over all outputs, Spearman of output 0 with its label; 0 when undefined).
pub(crate) fn validation(pred: &[Vec<f32>], y: &[Vec<f32>]) -> (f64, f64) {
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

/// The data order of an epoch: a pure function of (seed, epoch), so a resumed run sees the
/// order an uninterrupted one would.
pub(crate) fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed ^ (epoch as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    order.shuffle(&mut rng);
    order
}

/// Errors before a micro-batch would exceed the device's buffer limit (a panic on wgpu).
fn check_buffers(model: &Model, ids: &[Vec<u32>]) -> Result<()> {
    let t = ids.iter().map(Vec::len).max().unwrap_or(0);
    let need = routelmt_model::limits::peak_buffer_bytes(&model.config, ids.len(), t);
    if need > routelmt_model::MAX_BUFFER_BYTES {
        return Err(TrainError::BatchTooLarge {
            rows: ids.len(),
            tokens: t,
            need_mib: need >> 20,
            limit_mib: routelmt_model::MAX_BUFFER_BYTES >> 20,
        });
    }
    Ok(())
}
