//! Router heads on the last-prompt-token state (RouteLMT §3): a linear layer with bias that
//! predicts the gain `q_large − q_small` (`gain`), the small model's quality (`quality`,
//! RouteLMT-Q: route the lowest first), or both (two outputs: gain, quality).
//!
//! Stored as safetensors in the PyTorch layout: `head.weight` `[outputs, hidden]`,
//! `head.bias` `[outputs]`.

use burn::module::{Module, Param, ParamId};
use burn::nn::Linear;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::formats::safetensors;
use crate::readback::read;
use crate::tensors::{Tensors, transpose};

/// What the head predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum HeadKind {
    /// `score_large − score_small` (RouteLMT). Route the highest first.
    Gain,
    /// `score_small` (RouteLMT-Q). Route the lowest first.
    Quality,
    /// Both: output 0 is the gain, output 1 the small model's quality.
    Both,
}

impl HeadKind {
    /// Number of outputs.
    pub fn outputs(self) -> usize {
        match self {
            Self::Both => 2,
            _ => 1,
        }
    }
}

crate::error::from_str_by_name!(HeadKind, "head", "gain" => Gain, "quality" => Quality, "both" => Both);

/// A linear head `[hidden] -> [outputs]`.
#[derive(Module, Debug)]
pub struct RouterHead {
    /// burn layout `[hidden, outputs]` plus bias.
    pub linear: Linear,
}

impl RouterHead {
    /// A fresh head: small random weights, zero bias.
    pub fn init(hidden: usize, kind: HeadKind, device: &Device) -> Self {
        let w = Tensor::random([hidden, kind.outputs()], Distribution::Normal(0.0, 0.01), device);
        let b = Tensor::zeros([kind.outputs()], device);
        Self { linear: Linear { weight: Param::from_tensor(w), bias: Some(Param::from_tensor(b)) } }
    }

    /// # Shapes
    /// - x: `[batch, hidden]` -> `[batch, outputs]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.linear.forward(x)
    }

    /// Parameter ids `[weight, bias]` (optimizer state is keyed by them).
    pub fn param_ids(&self) -> [u64; 2] {
        let b = self.linear.bias.as_ref().map_or(0, |b| b.id.val());
        [self.linear.weight.id.val(), b]
    }

    /// The same head with the given parameter ids (to resume training exactly).
    pub fn with_param_ids(mut self, [w, b]: [u64; 2]) -> Self {
        self.linear.weight.id = ParamId::from(w);
        if let Some(bias) = self.linear.bias.as_mut() {
            bias.id = ParamId::from(b);
        }
        self
    }

    /// A head from host values: `weight` `[hidden, outputs]` row-major (burn layout), `bias`
    /// `[outputs]`.
    pub fn from_host(weight: Vec<f32>, bias: Vec<f32>, device: &Device) -> Self {
        let outputs = bias.len();
        let hidden = weight.len() / outputs.max(1);
        let w = Tensor::from_data(TensorData::new(weight, [hidden, outputs]), device);
        let b = Tensor::from_data(TensorData::new(bias, [outputs]), device);
        Self { linear: Linear { weight: Param::from_tensor(w), bias: Some(Param::from_tensor(b)) } }
    }

    /// Host values `(weight [hidden, outputs], bias [outputs])`.
    pub fn to_host(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        let w = self.linear.weight.val();
        let outputs = w.dims()[1];
        let w = read(w)?;
        let b = match &self.linear.bias {
            Some(b) => read(b.val())?,
            None => vec![0.0; outputs],
        };
        Ok((w, b))
    }

    /// The head that predicts `y·std + mean` per output where this one predicts `y`: training
    /// works on standardized labels, the saved head predicts in label units.
    pub fn unstandardized(&self, norms: &[(f64, f64)], device: &Device) -> Result<Self> {
        let (mut w, mut b) = self.to_host()?;
        let outputs = b.len();
        if norms.len() != outputs {
            return Err(ModelError::Input(format!(
                "{} label scales for a head with {outputs} outputs",
                norms.len()
            )));
        }
        for (i, x) in w.iter_mut().enumerate() {
            *x = (f64::from(*x) * norms[i % outputs].1) as f32;
        }
        for (o, x) in b.iter_mut().enumerate() {
            *x = (f64::from(*x) * norms[o].1 + norms[o].0) as f32;
        }
        Ok(Self::from_host(w, b, device))
    }

    /// Serializes to safetensors (`head.weight` `[outputs, hidden]`, `head.bias`).
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let (w, b) = self.to_host()?;
        let outputs = b.len();
        let hidden = w.len() / outputs.max(1);
        let wt = transpose(&w, hidden, outputs);
        let tensors =
            [("head.weight", vec![outputs, hidden], &wt[..]), ("head.bias", vec![outputs], &b[..])];
        safetensors::write("head.safetensors", &tensors)
    }

    /// Reads a head written by [`Self::to_safetensors`], checking its shape.
    pub fn from_safetensors(
        bytes: &[u8],
        file: &str,
        hidden: usize,
        kind: HeadKind,
        device: &Device,
    ) -> Result<Self> {
        let mut ts = Tensors::new(safetensors::sources(file, bytes)?)?;
        let linear = ts.linear("head", hidden, kind.outputs(), true, device)?;
        if let Some(extra) = ts.unused().first() {
            return Err(ModelError::weights(file, format!("unexpected tensor '{extra}'")));
        }
        Ok(Self { linear })
    }
}
