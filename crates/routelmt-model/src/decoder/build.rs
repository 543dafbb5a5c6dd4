//! Strict building of a decoder from stored tensors (safetensors shards, a GGUF file, or
//! random values for benchmarks), one tensor group at a time, through the one door of
//! [`crate::tensors`]. The module tree is spelled here once: [`ModelBuilder::names`] lists a
//! group's tensors and [`ModelBuilder::add`] reads exactly those. The result is the parts
//! ([`Parts`]); `crate::model::Model` assembles them.
//!
//! Tensor names are the Hugging Face ones (`model.layers.N.self_attn.q_proj.weight`, ...).
//! A missing tensor, a wrong shape, a corrupt or truncated file, or an unsupported dtype is an
//! error naming the file and tensor. Tensors we do not use (`lm_head.weight` unless asked
//! for, stray buffers) are listed in the [`LoadReport`], not silently dropped.

use std::collections::BTreeSet;

use burn::tensor::Device;

use super::Decoder;
use super::block::{Attention, DecoderLayer, Mlp, PROJECTIONS};
use super::norm::RmsNorm;
use crate::config::ModelConfig;
use crate::embedding::{HostEmbedding, table_quant};
use crate::error::{ModelError, Result};
use crate::formats::dtype::Stored;
use crate::precision::Precision;
use crate::tensors::{QuantTable, Tensors};

/// The embedding table's Hugging Face name.
pub const EMBED: &str = "model.embed_tokens.weight";

/// What a finished build holds.
#[derive(Debug)]
pub struct Parts {
    /// The embedding table (host, stored precision).
    pub embed: HostEmbedding,
    /// The decoder blocks and final norm.
    pub decoder: Decoder,
    /// An untied `lm_head` kept on the host when [`LoadOptions::lm_head`] asked for it.
    pub lm_head: Option<HostEmbedding>,
}

/// What a load did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LoadReport {
    /// Tensors read into the model.
    pub applied: usize,
    /// Tensors present in the files but not used (e.g. `lm_head.weight`).
    pub unused: Vec<String>,
    /// Stored types found (`f32`, `bf16`, `q4_1`, ...).
    pub dtypes: BTreeSet<String>,
}

/// What to load beyond the prefill's needs, and how to hold it.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Keep an untied `lm_head.weight` on the host (for next-token logits). A tied head is
    /// the embedding table and always available.
    pub lm_head: bool,
    /// Make the model ready for inference with these weights while it loads (`--weights`):
    /// on the CPU each block is packed as soon as it is read, so memory peaks at the packed
    /// model plus one f32 block; with q8 the embedding table is held as q8 too. `None` loads
    /// the plain f32 burn decoder (what training differentiates).
    pub weights: Option<Precision>,
}

/// Builds a model one group of tensors at a time (the host embedding, each decoder layer, the
/// final norm), so that a loader that fetches bytes per group (the browser) holds one group's
/// source bytes at a time. Each tensor is decoded, transposed and uploaded as it is read.
pub struct ModelBuilder<'c> {
    config: &'c ModelConfig,
    device: Device,
    opts: LoadOptions,
    embed: Option<HostEmbedding>,
    layers: Vec<DecoderLayer>,
    /// Blocks read so far (some may have been taken out by [`ModelBuilder::take_layers`]).
    built: usize,
    norm: Option<RmsNorm>,
    lm_head: Option<HostEmbedding>,
    /// The embedding table as q8 or q4, when its bytes come in slices
    /// ([`Self::add_embedding_rows`]).
    streamed: Option<QuantTable>,
    applied: usize,
    dtypes: BTreeSet<String>,
}

/// The tensors of one decoder layer as (HF name without the `model.layers.N.` prefix), for a
/// config's family.
fn layer_tensors(c: &ModelConfig) -> Vec<String> {
    let mut names = Vec::new();
    for proj in PROJECTIONS {
        names.push(format!("{proj}.weight"));
        let bias = match proj {
            "self_attn.o_proj" => c.o_bias(),
            p if p.starts_with("self_attn.") => c.qkv_bias(),
            _ => false,
        };
        if bias {
            names.push(format!("{proj}.bias"));
        }
    }
    if c.qk_norm() {
        names.extend(["self_attn.q_norm.weight".into(), "self_attn.k_norm.weight".into()]);
    }
    names.extend(["input_layernorm.weight".into(), "post_attention_layernorm.weight".into()]);
    names
}

impl<'c> ModelBuilder<'c> {
    /// A builder for `config` on `device`.
    pub fn new(config: &'c ModelConfig, device: &Device) -> Self {
        Self {
            config,
            device: device.clone(),
            opts: LoadOptions::default(),
            embed: None,
            layers: Vec::with_capacity(config.num_hidden_layers),
            built: 0,
            norm: None,
            lm_head: None,
            streamed: None,
            applied: 0,
            dtypes: BTreeSet::new(),
        }
    }

    /// Loads what `opts` asks for beyond the prefill.
    pub fn with_options(mut self, opts: LoadOptions) -> Self {
        self.opts = opts;
        self
    }

    /// Reads the next block with `read` instead of as burn tensors (the CPU loader packs it
    /// straight from `ts`), counted like a block [`Self::add`] reads.
    pub fn add_block_with(
        &mut self,
        ts: &mut Tensors<'_>,
        read: impl FnOnce(&mut Tensors<'_>) -> Result<()>,
    ) -> Result<()> {
        let before = ts.used_count();
        read(ts)?;
        self.built += 1;
        self.applied += ts.used_count() - before;
        self.dtypes.extend(ts.dtypes().iter().cloned());
        Ok(())
    }

    /// How the embedding table is held: q8 or q4 ([`table_quant`]), `None` for its stored type.
    pub fn embedding_quant(&self) -> Option<Precision> {
        table_quant(self.opts.weights, self.config.hidden_size)
    }

    /// Adds `n` values of the embedding table stored as `dtype` (`file` names it in errors),
    /// the next rows in order, whole blocks; then group 0 takes the table from these (call
    /// [`Self::add`] for it with no tensors). Only for a load with an [`Self::embedding_quant`].
    pub fn add_embedding_rows(
        &mut self,
        dtype: Stored,
        file: &str,
        bytes: &[u8],
        n: usize,
    ) -> Result<()> {
        let total = self.config.vocab_size * self.config.hidden_size;
        let q4 = self.embedding_quant() == Some(Precision::Q4);
        let table = self.streamed.get_or_insert_with(|| QuantTable::new(q4, total));
        if table.values() + n > total {
            return Err(ModelError::weights(
                file,
                format!("tensor '{EMBED}': more than {total} values"),
            ));
        }
        table
            .push(dtype, bytes, n)
            .map_err(|m| ModelError::weights(file, format!("tensor '{EMBED}': {m}")))?;
        self.dtypes.insert(dtype.name().to_string());
        Ok(())
    }

    /// Groups in load order: embedding, layers 0..L-1, final norm (and untied head).
    pub fn groups(&self) -> usize {
        self.config.num_hidden_layers + 2
    }

    /// The HF tensor names of a group.
    pub fn names(&self, group: usize) -> Vec<String> {
        let c = self.config;
        match group {
            0 => vec![EMBED.into()],
            g if g <= c.num_hidden_layers => {
                let p = format!("model.layers.{}", g - 1);
                layer_tensors(c).iter().map(|t| format!("{p}.{t}")).collect()
            }
            _ if self.wants_lm_head() => vec!["model.norm.weight".into(), "lm_head.weight".into()],
            _ => vec!["model.norm.weight".into()],
        }
    }

    fn wants_lm_head(&self) -> bool {
        self.opts.lm_head && !self.config.tie_word_embeddings
    }

    /// Reads group `group` (in order) from `ts`.
    pub fn add(&mut self, group: usize, ts: &mut Tensors<'_>) -> Result<()> {
        let c = self.config;
        let (h, eps, device) = (c.hidden_size, c.rms_norm_eps, &self.device);
        let before = ts.used_count();
        match group {
            0 if self.streamed.is_some() => {
                let table = self.streamed.take().expect("checked");
                if table.values() != c.vocab_size * h {
                    return Err(ModelError::Input(format!(
                        "tensor '{EMBED}': {} of {} values arrived",
                        table.values(),
                        c.vocab_size * h
                    )));
                }
                self.embed = Some(HostEmbedding::new(c.vocab_size, h, table.finish()));
                self.applied += 1;
            }
            0 => {
                // The embedding stays on the host, in its stored precision or as q8.
                self.embed = Some(ts.embedding(EMBED, c.vocab_size, h, self.opts.weights)?);
            }
            g if g <= c.num_hidden_layers => {
                let layer = read_layer(c, &format!("model.layers.{}", g - 1), ts, device)?;
                self.layers.push(layer);
                self.built += 1;
            }
            _ => {
                self.norm = Some(RmsNorm::new(ts.vector("model.norm.weight", h, device)?, eps));
                if self.wants_lm_head() {
                    self.lm_head = Some(ts.embedding("lm_head.weight", c.vocab_size, h, None)?);
                }
            }
        }
        self.applied += ts.used_count() - before;
        self.dtypes.extend(ts.dtypes().iter().cloned());
        Ok(())
    }

    /// The blocks read since the last call, in order (a loader that packs or edits each block
    /// as it arrives takes them; the rest stay for [`Self::finish`]).
    pub fn take_layers(&mut self) -> Vec<DecoderLayer> {
        std::mem::take(&mut self.layers)
    }

    /// The parts, once every group was added; `unused` lists the tensors never read. The
    /// decoder holds the blocks not taken by [`Self::take_layers`].
    pub fn finish(self, unused: Vec<String>) -> Result<(Parts, LoadReport)> {
        let incomplete =
            || ModelError::Input("model load stopped before every tensor group".into());
        let embed = self.embed.ok_or_else(incomplete)?;
        let norm = self.norm.ok_or_else(incomplete)?;
        if self.built != self.config.num_hidden_layers {
            return Err(incomplete());
        }
        let report = LoadReport { applied: self.applied, unused, dtypes: self.dtypes };
        let decoder = Decoder { layers: self.layers, norm };
        Ok((Parts { embed, decoder, lm_head: self.lm_head }, report))
    }
}

/// One decoder layer's tensors (prefix `model.layers.N`).
fn read_layer(
    c: &ModelConfig,
    p: &str,
    ts: &mut Tensors<'_>,
    device: &Device,
) -> Result<DecoderLayer> {
    let (h, d, eps) = (c.hidden_size, c.head_dim, c.rms_norm_eps);
    let norm = |ts: &mut Tensors, name: &str, len| -> Result<RmsNorm> {
        Ok(RmsNorm::new(ts.vector(&format!("{p}.{name}.weight"), len, device)?, eps))
    };
    let (qkv_bias, o_bias) = (c.qkv_bias(), c.o_bias());
    let mut lin = |name: &str, bias| {
        let (d_in, d_out) = c.projection_dims(name);
        ts.linear(&format!("{p}.{name}"), d_in, d_out, bias, device)
    };
    let (q_proj, k_proj) = (lin("self_attn.q_proj", qkv_bias)?, lin("self_attn.k_proj", qkv_bias)?);
    let (v_proj, o_proj) = (lin("self_attn.v_proj", qkv_bias)?, lin("self_attn.o_proj", o_bias)?);
    let (gate_proj, up_proj) = (lin("mlp.gate_proj", false)?, lin("mlp.up_proj", false)?);
    let down_proj = lin("mlp.down_proj", false)?;
    let self_attn = Attention {
        q_proj,
        k_proj,
        v_proj,
        o_proj,
        q_norm: if c.qk_norm() { Some(norm(ts, "self_attn.q_norm", d)?) } else { None },
        k_norm: if c.qk_norm() { Some(norm(ts, "self_attn.k_norm", d)?) } else { None },
        num_heads: c.num_attention_heads,
        num_kv_heads: c.num_key_value_heads,
        head_dim: d,
    };
    let mlp = Mlp { gate_proj, up_proj, down_proj };
    Ok(DecoderLayer {
        self_attn,
        mlp,
        input_layernorm: norm(ts, "input_layernorm", h)?,
        post_attention_layernorm: norm(ts, "post_attention_layernorm", h)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `names(group)` is exactly what `add(group)` reads, for every family and group.
    #[test]
    fn names_list_exactly_what_each_group_reads() {
        let device = Device::flex();
        for family in ["qwen3", "qwen2", "llama"] {
            let json = format!(
                r#"{{"model_type":"{family}","vocab_size":64,"hidden_size":16,
                "intermediate_size":24,"num_hidden_layers":2,"num_attention_heads":4,
                "num_key_value_heads":2,"head_dim":4,"rms_norm_eps":1e-6,"rope_theta":10000.0,
                "tie_word_embeddings":false}}"#
            );
            let c = ModelConfig::from_json(json.as_bytes(), "config.json").unwrap();
            let opts = LoadOptions { lm_head: true, weights: None };
            let mut b = ModelBuilder::new(&c, &device).with_options(opts);
            for g in 0..b.groups() {
                let mut ts = Tensors::random(7);
                b.add(g, &mut ts).unwrap();
                let mut read: Vec<String> = ts.unused(); // empty: nothing stored
                assert!(read.is_empty());
                read = ts.used_names();
                let mut want = b.names(g);
                want.sort();
                assert_eq!(read, want, "{family} group {g}");
            }
        }
    }
}
