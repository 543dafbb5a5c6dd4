//! The Qwen3 decoder, prefill only, returning each row's last-real-token hidden state at a
//! chosen layer (transformers' `hidden_states` indexing: 0 = embeddings, `num_hidden_layers` =
//! final output after the final norm).
//!
//! Batches are right-padded with per-row positions `0..len`; each row's result equals that
//! row run alone. Work is split into chunks so that no device buffer exceeds
//! [`MAX_BUFFER_BYTES`] (WebGPU's default binding limit), the same on every device.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::block::DecoderLayer;
use crate::config::ModelConfig;
use crate::cpu::CpuDecoder;
use crate::embedding::HostEmbedding;
use crate::error::{ModelError, Result};
use crate::loader::LoadOptions;
use crate::norm::RmsNorm;
use crate::precision::Precision;
use crate::rope::Rope;
use crate::tensors::Tensors;

/// Largest device buffer the model creates (WebGPU's default `maxStorageBufferBindingSize`).
pub const MAX_BUFFER_BYTES: usize = 128 << 20;

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
    /// is). Inputs must be valid (see [`check_batch`]); chunking is the caller's job.
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

/// Checks a layer index against transformers' `hidden_states` range and every sequence
/// against the vocabulary (non-empty, ids below `vocab_size`).
pub fn check_batch(config: &ModelConfig, batch: &[Vec<u32>], layer: usize) -> Result<()> {
    let n = config.num_hidden_layers;
    if layer > n {
        return Err(ModelError::Input(format!(
            "layer {layer} out of range: hidden_states indices are 0 (embeddings) to {n} (final)"
        )));
    }
    for (row, ids) in batch.iter().enumerate() {
        if ids.is_empty() {
            return Err(ModelError::Input(format!("row {row}: empty token sequence")));
        }
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= config.vocab_size) {
            return Err(ModelError::Input(format!(
                "row {row}: token id {bad} out of range for vocab_size {}",
                config.vocab_size
            )));
        }
    }
    Ok(())
}

/// A loaded Qwen3 model: host embedding + device decoder.
#[derive(Debug)]
pub struct Model {
    /// Architecture.
    pub config: ModelConfig,
    /// Token embeddings (host).
    pub embed_tokens: HostEmbedding,
    /// Decoder (device).
    pub decoder: Decoder,
    device: Device,
    lm_head: Option<HostEmbedding>,
    cpu: Option<CpuDecoder>,
}

impl Model {
    /// Assembles a model from parts (the loader and the random initializer use this).
    pub fn from_parts(
        config: ModelConfig,
        embed_tokens: HostEmbedding,
        decoder: Decoder,
        device: Device,
    ) -> Self {
        Self { config, embed_tokens, decoder, device, lm_head: None, cpu: None }
    }

    /// The model for inference with `weights`: on the CPU (burn flex), the decoder's blocks move
    /// into the host kernels of [`crate::cpu`] (fused, packed, in f32, f16 or q8) and the burn
    /// decoder keeps only its final norm, so a prepared model is for inference, not training.
    /// On other devices the burn decoder stays: f32 as it is, f16 cast, q8 quantized per
    /// block of 32 (see [`crate::Precision`]).
    ///
    /// Errors for f16 off the CPU (see [`crate::gpu_weights`]).
    pub fn prepared(mut self, weights: Precision) -> Result<Self> {
        if self.cpu.is_some() {
            return Err(ModelError::Input("the model is already prepared".into()));
        }
        if self.device == Device::flex() {
            let norm = self.decoder.norm.clone();
            let decoder =
                std::mem::replace(&mut self.decoder, Decoder { layers: Vec::new(), norm });
            self.cpu = Some(CpuDecoder::from_decoder(&self.config, decoder, weights));
        } else {
            self.decoder = crate::gpu_weights::convert(self.decoder, weights)?;
        }
        Ok(self)
    }

    /// A [`Self::prepared`] CPU model running the micro-kernel `isa` instead of the best one
    /// detected (tests and benchmarks; `isa` must be supported by this CPU).
    pub fn with_isa(mut self, isa: crate::cpu::Isa) -> Self {
        if let Some(cpu) = self.cpu.take() {
            self.cpu = Some(cpu.with_isa(isa));
        }
        self
    }

    /// The CPU kernels, on a model [`Self::prepared`] on the CPU.
    pub fn cpu_decoder(&self) -> Option<&CpuDecoder> {
        self.cpu.as_ref()
    }

    /// The parts (config, host embedding, decoder, device), e.g. to train the decoder and
    /// reassemble the model with [`Self::from_parts`]. Not for a [`Self::prepared`] CPU model,
    /// whose burn decoder has no blocks.
    pub fn into_parts(self) -> (ModelConfig, HostEmbedding, Decoder, Device) {
        (self.config, self.embed_tokens, self.decoder, self.device)
    }

    /// The device the decoder lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A model with random weights (N(0, 0.02) projections, unit norms, zero biases, a bf16
    /// embedding), built by the loader from [`Tensors::random`], for benchmarks of the
    /// full-size architecture without a download.
    pub fn random(config: ModelConfig, device: &Device, seed: u64) -> Self {
        let mut ts = Tensors::random(seed);
        let (model, _) =
            crate::loader::load_tensors(&config, &mut ts, LoadOptions::default(), device)
                .expect("random tensors have every name and shape");
        model
    }

    /// Sets the host copy of an untied `lm_head` (the loader's [`LoadOptions::lm_head`]).
    pub fn with_lm_head(mut self, lm_head: Option<HostEmbedding>) -> Self {
        self.lm_head = lm_head;
        self
    }

    /// The `k` most likely next tokens after each final hidden state (`hidden_states[L]`,
    /// already normed), most likely first, with their logits: `h · Wᵀ` over the vocabulary on
    /// the host, with `W` the embedding table (tied) or the untied `lm_head` (loaded with
    /// [`LoadOptions::lm_head`]). Ties go to the lower id.
    pub fn top_logits(&self, hidden: &[Vec<f32>], k: usize) -> Result<Vec<(Vec<u32>, Vec<f32>)>> {
        let table = match (&self.lm_head, self.config.tie_word_embeddings) {
            (Some(head), _) => head,
            (None, true) => &self.embed_tokens,
            (None, false) => {
                return Err(ModelError::Input(
                    "the model has an untied lm_head that was not loaded (LoadOptions::lm_head)"
                        .into(),
                ));
            }
        };
        Ok(hidden.iter().map(|h| table.top_dot(h, k)).collect())
    }

    /// Bytes of the largest device buffer a chunk of `rows` sequences padded to `seq` creates.
    pub fn peak_buffer_bytes(&self, rows: usize, seq: usize) -> usize {
        let c = &self.config;
        let per_row = [
            c.num_attention_heads * seq * seq,        // attention scores
            seq * c.intermediate_size,                // MLP activations
            seq * c.num_attention_heads * c.head_dim, // queries
            seq * c.hidden_size,                      // residual stream
        ];
        4 * rows * per_row.iter().max().copied().unwrap_or(0)
    }

    /// Splits `lens` (in order) into consecutive chunks of at most `max_rows` rows whose
    /// buffers fit [`MAX_BUFFER_BYTES`]. Errors when one sequence alone does not fit.
    pub fn plan_chunks(
        &self,
        lens: &[usize],
        max_rows: usize,
    ) -> Result<Vec<std::ops::Range<usize>>> {
        let mut chunks = Vec::new();
        let mut start = 0;
        while start < lens.len() {
            let mut end = start;
            let mut seq = 0;
            while end < lens.len() && end - start < max_rows.max(1) {
                let s = seq.max(lens[end]);
                if self.peak_buffer_bytes(end - start + 1, s) > MAX_BUFFER_BYTES {
                    break;
                }
                seq = s;
                end += 1;
            }
            if end == start {
                return Err(ModelError::Input(format!(
                    "a prompt of {} tokens needs a {} MiB device buffer, over the {} MiB limit; \
                     shorten it",
                    lens[start],
                    self.peak_buffer_bytes(1, lens[start]) >> 20,
                    MAX_BUFFER_BYTES >> 20
                )));
            }
            chunks.push(start..end);
            start = end;
        }
        Ok(chunks)
    }

    /// Last-real-token hidden states of one chunk, left on the device. The chunk must fit
    /// [`MAX_BUFFER_BYTES`] (see [`Self::plan_chunks`]).
    ///
    /// # Shapes
    /// - batch: `B` token sequences of any lengths ≥ 1 (right-padded internally)
    /// - output: `[B, hidden]`
    pub fn last_hidden_chunk(&self, batch: &[Vec<u32>], layer: usize) -> Result<Tensor<2>> {
        check_batch(&self.config, batch, layer)?;
        let b = batch.len();
        let t = batch.iter().map(Vec::len).max().unwrap_or(0);
        if b == 0 {
            return Err(ModelError::Input("empty batch".into()));
        }
        if self.peak_buffer_bytes(b, t) > MAX_BUFFER_BYTES {
            return Err(ModelError::Input(format!(
                "batch of {b} × {t} tokens exceeds the {} MiB device buffer limit",
                MAX_BUFFER_BYTES >> 20
            )));
        }

        if let Some(cpu) = &self.cpu {
            let h = cpu.forward_last(&self.embed_tokens, batch, layer);
            let data = TensorData::new(h, [b, self.config.hidden_size]);
            return Ok(Tensor::from_data(data, &self.device));
        }
        Ok(self.decoder.forward_last(&self.config, &self.embed_tokens, batch, layer, &self.device))
    }

    /// The last-token states of `batch` in chunks of at most `max_rows` that fit the buffer
    /// limit, queued on the device in input order (not read back yet).
    pub fn last_hidden_chunks(
        &self,
        batch: &[Vec<u32>],
        layer: usize,
        max_rows: usize,
    ) -> Result<Vec<Tensor<2>>> {
        check_batch(&self.config, &[], layer)?;
        let lens: Vec<usize> = batch.iter().map(Vec::len).collect();
        let chunks = self.plan_chunks(&lens, max_rows)?;
        chunks.into_iter().map(|chunk| self.last_hidden_chunk(&batch[chunk], layer)).collect()
    }

    /// [`Self::last_hidden`] without blocking on the read-back: the browser's way (WebGPU
    /// cannot read synchronously), usable natively too.
    pub async fn last_hidden_async(
        &self,
        batch: &[Vec<u32>],
        layer: usize,
        max_rows: usize,
    ) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(batch.len());
        for hidden in self.last_hidden_chunks(batch, layer, max_rows)? {
            out.extend(split_rows(
                &crate::head::read_async(hidden).await?,
                self.config.hidden_size,
            ));
        }
        Ok(out)
    }

    /// Last-real-token hidden states for any number of sequences, read back to the host in
    /// input order. Splits into chunks of at most `max_rows` that fit the buffer limit.
    /// Native only: the browser reads with [`Self::last_hidden_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn last_hidden(
        &self,
        batch: &[Vec<u32>],
        layer: usize,
        max_rows: usize,
    ) -> Result<Vec<Vec<f32>>> {
        if let Some(cpu) = &self.cpu {
            check_batch(&self.config, batch, layer)?;
            let lens: Vec<usize> = batch.iter().map(Vec::len).collect();
            let mut out = Vec::with_capacity(batch.len());
            for chunk in self.plan_chunks(&lens, max_rows)? {
                let flat = cpu.forward_last(&self.embed_tokens, &batch[chunk], layer);
                out.extend(split_rows(&flat, self.config.hidden_size));
            }
            return Ok(out);
        }
        let chunks = self.last_hidden_chunks(batch, layer, max_rows)?;
        let flat: Result<Vec<Vec<f32>>> = chunks.into_iter().map(crate::head::read).collect();
        Ok(flat?.iter().flat_map(|f| split_rows(f, self.config.hidden_size)).collect())
    }
}

/// Host values of a `[rows, width]` tensor as one vector per row.
pub fn split_rows(flat: &[f32], width: usize) -> impl Iterator<Item = Vec<f32>> + '_ {
    flat.chunks(width.max(1)).map(<[f32]>::to_vec)
}
