//! The decoder as a burn module (Qwen3, Qwen2 and Llama families), prefill only, returning each
//! row's last-real-token hidden state at a chosen layer (transformers' `hidden_states`
//! indexing: 0 = embeddings, `num_hidden_layers` = final output after the final norm). It is
//! what training differentiates and what wgpu runs; the CPU kernels convert from it.
//!
//! Batches are right-padded with per-row positions `0..len`; each row's result equals that
//! row run alone. Chunking to the buffer limit is the caller's ([`crate::limits`]).
//!
//! - [`block`]: attention, MLP and the decoder layer; [`norm`]: RMSNorm; [`rope`]: RoPE tables.
//! - [`build`]: the decoder from stored tensors, one group at a time.
//! - [`quantize`]: `--weights q8` for the burn decoder (wgpu).

pub mod block;
pub mod build;
pub mod norm;
pub(crate) mod quantize;
pub mod rope;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};

use self::block::DecoderLayer;
use self::norm::RmsNorm;
use self::rope::Rope;
use crate::config::ModelConfig;
use crate::embedding::HostEmbedding;

/// Added to masked attention scores; finite so that no backend sees `inf - inf`.
const MASKED: f32 = -1.0e30;

/// The trainable, device-resident part: decoder blocks and the final norm.
/// Parameter paths mirror HF without the leading `model.` (`layers.0.self_attn.q_proj.weight`).
#[derive(Module, Debug)]
pub struct Decoder {
    /// Decoder blocks.
    pub layers: Vec<DecoderLayer>,
    /// Final RMSNorm.
    pub norm: RmsNorm,
}

impl Decoder {
    /// Last-real-token hidden states at `layer`, on `device` (autodiff-aware when the device
    /// is). Inputs must be valid (see [`crate::limits::check_batch`]); chunking is the caller's
    /// job.
    ///
    /// # Shapes
    /// - batch: `B` token sequences of lengths ≥ 1 (right-padded internally to `T`)
    /// - output: `[B, hidden]`
    pub fn forward_last(
        &self,
        config: &ModelConfig,
        embed: &HostEmbedding,
        batch: &[Vec<u32>],
        layer: usize,
        device: &Device,
    ) -> Tensor<2> {
        let (b, h) = (batch.len(), config.hidden_size);
        let t = batch.iter().map(Vec::len).max().unwrap_or(0);

        // 1. Gather embedding rows on the host: [B, T, H], padding rows left at zero.
        let mut host = vec![0f32; b * t * h];
        for (row, ids) in batch.iter().enumerate() {
            for (pos, &id) in ids.iter().enumerate() {
                let at = (row * t + pos) * h;
                embed.gather_row(id, &mut host[at..at + h]);
            }
        }
        let mut x: Tensor<3> = Tensor::from_data(TensorData::new(host, [b, t, h]), device);

        // 2. Blocks 1..=min(layer, L).
        let n_blocks = layer.min(config.num_hidden_layers);
        if n_blocks > 0 {
            let rope = Rope::new(t, config, device);
            let bias = causal_bias(config.group_size(), t, device);
            for block in &self.layers[..n_blocks] {
                x = block.forward(x, &rope, &bias);
            }
        }

        // 3. Pick each row's last real token: [B, T, H] -> [B*T, H] -> [B, H].
        let idx: Vec<i64> =
            batch.iter().enumerate().map(|(row, ids)| (row * t + ids.len() - 1) as i64).collect();
        let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [b]), device);
        let last = x.reshape([b * t, h]).select(0, idx);

        // 4. transformers applies the final norm to the last entry of `hidden_states` only.
        if layer == config.num_hidden_layers { self.norm.forward(last) } else { last }
    }
}

/// `[g*T, T]` additive causal bias for the grouped-query layout (row r is position r % T).
fn causal_bias(g: usize, t: usize, device: &Device) -> Tensor<2> {
    let mut bias = vec![0f32; g * t * t];
    for r in 0..g * t {
        let i = r % t;
        bias[r * t + i + 1..(r + 1) * t].fill(MASKED);
    }
    Tensor::from_data(TensorData::new(bias, [g * t, t]), device)
}
