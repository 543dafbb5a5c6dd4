//! The model facade: a host embedding table and a decoder, either the burn [`Decoder`] (any
//! device; what training differentiates) or, once [`Model::prepared`] on the CPU, the
//! [`CpuDecoder`] on the project's kernels. It loads from the one tensor door ([`ModelLoad`]:
//! packed for inference block by block as it loads, when asked), answers
//! last-token hidden states in chunks that fit [`crate::limits::MAX_BUFFER_BYTES`], and
//! next-token logits on the host.

use burn::tensor::{Device, Tensor, TensorData};

use crate::config::ModelConfig;
use crate::cpu::CpuDecoder;
use crate::decoder::Decoder;
use crate::decoder::block::DecoderLayer;
use crate::decoder::build::{LoadOptions, LoadReport, ModelBuilder};
use crate::embedding::HostEmbedding;
use crate::error::{ModelError, Result};
use crate::formats::dtype::Stored;
use crate::limits::{check_batch, check_chunk, plan_chunks};
use crate::precision::Precision;
use crate::readback::{Part, Pending};
use crate::tensors::Tensors;

/// A loaded model: host embedding + decoder.
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
    /// The weights it was made ready for inference with (`None`: the plain f32 burn decoder).
    weights: Option<Precision>,
    /// The label of the [`LayerEdit`] applied while it loaded, if any.
    edit: Option<String>,
}

/// Applies a [`LayerEdit`] to block `n`.
pub type EditFn<'e> = Box<dyn Fn(usize, &mut DecoderLayer) + 'e>;

/// A change made to each decoder block as it loads, before it is packed (a router's LoRA
/// adapter merged into the block's weights), with a label the model keeps, so that a scorer
/// can check the adapter merged was its own.
pub struct LayerEdit<'e> {
    /// What was applied (see [`Model::edit`]).
    pub label: String,
    /// Applies the change to block `n`.
    pub apply: EditFn<'e>,
}

/// A model loading one tensor group at a time (see [`ModelBuilder`]), made ready for inference
/// as it loads when [`LoadOptions::weights`] asks: on the CPU each block is edited (if a
/// [`LayerEdit`] is given) and packed as soon as it is read, so the f32 burn decoder never
/// exists whole.
pub struct ModelLoad<'c, 'e> {
    builder: ModelBuilder<'c>,
    config: &'c ModelConfig,
    device: Device,
    weights: Option<Precision>,
    edit: Option<LayerEdit<'e>>,
    layers: Vec<DecoderLayer>,
    cpu: Option<CpuDecoder>,
}

impl<'c, 'e> ModelLoad<'c, 'e> {
    /// A load of `config` onto `device`.
    pub fn new(config: &'c ModelConfig, opts: LoadOptions, device: &Device) -> Self {
        let packing = opts.weights.filter(|_| *device == Device::flex());
        Self {
            builder: ModelBuilder::new(config, device).with_options(opts),
            config,
            device: device.clone(),
            weights: opts.weights,
            edit: None,
            layers: Vec::new(),
            cpu: packing.map(|w| CpuDecoder::new(config, w)),
        }
    }

    /// Applies `edit` to each block as it loads.
    pub fn with_edit(mut self, edit: Option<LayerEdit<'e>>) -> Self {
        self.edit = edit;
        self
    }

    /// Tensor groups, in load order.
    pub fn groups(&self) -> usize {
        self.builder.groups()
    }

    /// The HF tensor names of a group.
    pub fn names(&self, group: usize) -> Vec<String> {
        self.builder.names(group)
    }

    /// Reads group `group` (in order) from `ts`.
    pub fn add(&mut self, group: usize, ts: &mut Tensors<'_>) -> Result<()> {
        // Packing without an edit: the block goes from its stored tensors straight into the
        // packed decoder (an edit, a router's LoRA merge, needs the burn block).
        let c = self.config;
        if let Some(cpu) = self.cpu.as_mut().filter(|_| self.edit.is_none())
            && (1..=c.num_hidden_layers).contains(&group)
        {
            let p = format!("model.layers.{}", group - 1);
            return self.builder.add_block_with(ts, |ts| cpu.push_tensors(c, &p, ts));
        }
        self.builder.add(group, ts)?;
        for mut layer in self.builder.take_layers() {
            let n = self.layers.len() + self.cpu.as_ref().map_or(0, CpuDecoder::len);
            if let Some(edit) = &self.edit {
                (edit.apply)(n, &mut layer);
            }
            match &mut self.cpu {
                Some(cpu) => cpu.push(layer),
                None => self.layers.push(layer),
            }
        }
        Ok(())
    }

    /// The config being loaded.
    pub fn config(&self) -> &'c ModelConfig {
        self.config
    }

    /// See [`ModelBuilder::embedding_quant`].
    pub fn embedding_quant(&self) -> Option<Precision> {
        self.builder.embedding_quant()
    }

    /// See [`ModelBuilder::add_embedding_rows`].
    pub fn add_embedding_rows(
        &mut self,
        dtype: Stored,
        file: &str,
        bytes: &[u8],
        n: usize,
    ) -> Result<()> {
        self.builder.add_embedding_rows(dtype, file, bytes, n)
    }

    /// The model, once every group was added; `unused` lists the tensors never read.
    pub fn finish(self, unused: Vec<String>) -> Result<(Model, LoadReport)> {
        let (parts, report) = self.builder.finish(unused)?;
        let norm = parts.decoder.norm;
        let mut model = Model {
            config: self.config.clone(),
            embed_tokens: parts.embed,
            decoder: Decoder { layers: self.layers, norm: norm.clone() },
            device: self.device,
            lm_head: parts.lm_head,
            cpu: None,
            weights: self.weights,
            edit: self.edit.map(|e| e.label),
        };
        match (self.cpu, self.weights) {
            (Some(cpu), _) => model.cpu = Some(cpu.with_norm(&norm)),
            (None, Some(w)) => {
                model.decoder = crate::decoder::quantize::convert(model.decoder, w)?;
            }
            (None, None) => {}
        }
        Ok((model, report))
    }
}

impl Model {
    /// Assembles a model from parts (the loader and training use this).
    pub fn from_parts(
        config: ModelConfig,
        embed_tokens: HostEmbedding,
        decoder: Decoder,
        device: Device,
    ) -> Self {
        let (lm_head, cpu, weights, edit) = (None, None, None, None);
        Self { config, embed_tokens, decoder, device, lm_head, cpu, weights, edit }
    }

    /// Loads a model from tensors by HF name (a checkpoint's, a GGUF file's, or random) onto
    /// `device`, one group at a time through [`ModelLoad`], with `edit` applied to each block.
    pub fn load_edited(
        config: &ModelConfig,
        ts: &mut Tensors<'_>,
        opts: LoadOptions,
        edit: Option<LayerEdit<'_>>,
        device: &Device,
    ) -> Result<(Self, LoadReport)> {
        let mut load = ModelLoad::new(config, opts, device).with_edit(edit);
        for group in 0..load.groups() {
            load.add(group, ts)?;
        }
        load.finish(ts.unused())
    }

    /// [`Self::load_edited`] with no edit.
    pub fn load(
        config: &ModelConfig,
        ts: &mut Tensors<'_>,
        opts: LoadOptions,
        device: &Device,
    ) -> Result<(Self, LoadReport)> {
        Self::load_edited(config, ts, opts, None, device)
    }

    /// A model with random weights (N(0, 0.02) projections, unit norms, zero biases, a bf16
    /// embedding), built by the loader from [`Tensors::random`], for benchmarks of the
    /// full-size architecture without a download.
    pub fn random(config: ModelConfig, device: &Device, seed: u64) -> Self {
        let mut ts = Tensors::random(seed);
        let (model, _) = Self::load(&config, &mut ts, LoadOptions::default(), device)
            .expect("random tensors have every name and shape");
        model
    }

    /// The model for inference with `weights`: on the CPU (burn flex), the decoder's blocks move
    /// into the host kernels of [`crate::cpu`] (fused, packed, in f32, f16 or q8) and the burn
    /// decoder keeps only its final norm, so a prepared model is for inference, not training.
    /// On other devices the burn decoder stays: f32 as it is, f16 cast, q8 quantized per
    /// block of 32 (see [`Precision`]).
    ///
    /// Errors for f16 off the CPU (see [`crate::decoder::quantize`]).
    pub fn prepared(mut self, weights: Precision) -> Result<Self> {
        if self.weights.is_some() {
            return Err(ModelError::Input("the model is already prepared".into()));
        }
        self.weights = Some(weights);
        if self.device == Device::flex() {
            let norm = self.decoder.norm.clone();
            let decoder =
                std::mem::replace(&mut self.decoder, Decoder { layers: Vec::new(), norm });
            self.cpu = Some(CpuDecoder::from_decoder(&self.config, decoder, weights));
        } else {
            self.decoder = crate::decoder::quantize::convert(self.decoder, weights)?;
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

    /// The weights the model was made ready for inference with ([`Self::prepared`] or
    /// [`LoadOptions::weights`]); `None` for the plain f32 burn decoder.
    pub fn weights(&self) -> Option<Precision> {
        self.weights
    }

    /// The label of the [`LayerEdit`] applied while loading (a merged adapter), if any.
    pub fn edit(&self) -> Option<&str> {
        self.edit.as_deref()
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

    /// Last-real-token hidden states of one chunk: on the host from the CPU kernels, else left
    /// on the device. The chunk must fit the buffer limit (see [`plan_chunks`]).
    ///
    /// # Shapes
    /// - batch: `B` token sequences of any lengths ≥ 1 (right-padded internally)
    /// - output: `B × hidden` values
    pub fn last_hidden_chunk(&self, batch: &[Vec<u32>], layer: usize) -> Result<Part> {
        check_batch(&self.config, batch, layer)?;
        let t = batch.iter().map(Vec::len).max().unwrap_or(0);
        check_chunk(&self.config, batch.len(), t)?;
        if let Some(cpu) = &self.cpu {
            return Ok(Part::Host(cpu.forward_last(&self.embed_tokens, batch, layer)));
        }
        let out =
            self.decoder.forward_last(&self.config, &self.embed_tokens, batch, layer, &self.device);
        Ok(Part::Device(out))
    }

    /// The last-token states of any number of sequences, in chunks of at most `max_rows` that
    /// fit the buffer limit, in input order, not read back yet: `.read()` natively,
    /// `.read_async().await` in the browser.
    pub fn last_hidden(
        &self,
        batch: &[Vec<u32>],
        layer: usize,
        max_rows: usize,
    ) -> Result<Pending> {
        check_batch(&self.config, batch, layer)?;
        let lens: Vec<usize> = batch.iter().map(Vec::len).collect();
        let parts = plan_chunks(&self.config, &lens, max_rows)?
            .into_iter()
            .map(|chunk| self.last_hidden_chunk(&batch[chunk], layer))
            .collect::<Result<Vec<_>>>()?;
        Ok(Pending { parts, width: self.config.hidden_size })
    }

    /// A chunk's states as a tensor on the model's device (for a head that runs there).
    pub fn to_tensor(&self, part: Part) -> Tensor<2> {
        match part {
            Part::Device(t) => t,
            Part::Host(v) => {
                let rows = v.len() / self.config.hidden_size.max(1);
                Tensor::from_data(TensorData::new(v, [rows, self.config.hidden_size]), &self.device)
            }
        }
    }
}
