//! Strict loading of a decoder from stored tensors (safetensors shards, a GGUF file, or
//! random values for benchmarks), one tensor group at a time, through the one door of
//! [`crate::tensors`]. The module tree is spelled here once: [`ModelBuilder::names`] lists a
//! group's tensors and [`ModelBuilder::add`] reads exactly those.
//!
//! Tensor names are the Hugging Face ones (`model.layers.N.self_attn.q_proj.weight`, ...).
//! A missing tensor, a wrong shape, a corrupt or truncated file, or an unsupported dtype is an
//! error naming the file and tensor. Tensors we do not use (`lm_head.weight` unless asked
//! for, stray buffers) are listed in the [`LoadReport`], not silently dropped.

use std::collections::{BTreeMap, BTreeSet};

use burn::tensor::Device;
use safetensors::Dtype;

use crate::block::{Attention, DecoderLayer, Mlp};
use crate::config::ModelConfig;
use crate::embedding::HostEmbedding;
use crate::error::{ModelError, Result};
use crate::model::{Decoder, Model};
use crate::norm::RmsNorm;
pub use crate::tensors::{Layout, Source, Tensors};

/// One safetensors file's bytes and the name to use in errors.
pub struct Shard<'a> {
    /// File name (or path) for messages.
    pub name: String,
    /// The whole file.
    pub bytes: &'a [u8],
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

/// The shard file names of a sharded checkpoint, from its `model.safetensors.index.json`
/// bytes (`index` names it in errors), sorted and without repeats. Names must be plain file
/// names inside the folder: a path that would leave it is an error.
pub fn shard_names(bytes: &[u8], index: &str) -> Result<Vec<String>> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ModelError::weights(index, format!("not valid JSON: {e}")))?;
    let map = value
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| ModelError::weights(index, "missing object 'weight_map'"))?;
    let mut files = BTreeSet::new();
    for (tensor, file) in map {
        let file = file.as_str().ok_or_else(|| {
            ModelError::weights(index, format!("weight_map['{tensor}'] is not a file name"))
        })?;
        if file.contains('/') || file.contains('\\') || file.starts_with('.') {
            return Err(ModelError::weights(
                index,
                format!("weight_map['{tensor}'] = '{file}' is not a plain file name"),
            ));
        }
        files.insert(file.to_string());
    }
    Ok(files.into_iter().collect())
}

/// What to load beyond the prefill's needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Keep an untied `lm_head.weight` on the host (for next-token logits). A tied head is
    /// the embedding table and always available.
    pub lm_head: bool,
}

/// Loads a model from the safetensors `shards` of one checkpoint onto `device`.
pub fn load_model(
    config: &ModelConfig,
    shards: &[Shard<'_>],
    device: &Device,
) -> Result<(Model, LoadReport)> {
    let mut ts = Tensors::parse(shards)?;
    load_tensors(config, &mut ts, LoadOptions::default(), device)
}

/// Loads a model from tensors already by HF name (a GGUF file's, a checkpoint's, or random).
pub fn load_tensors(
    config: &ModelConfig,
    ts: &mut Tensors<'_>,
    opts: LoadOptions,
    device: &Device,
) -> Result<(Model, LoadReport)> {
    let mut builder = ModelBuilder::new(config, device).with_options(opts);
    for group in 0..builder.groups() {
        builder.add(group, ts)?;
    }
    let unused = ts.unused();
    builder.finish(unused)
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
    norm: Option<RmsNorm>,
    lm_head: Option<HostEmbedding>,
    applied: usize,
    dtypes: BTreeSet<String>,
}

/// The tensors of one decoder layer as (HF name without the `model.layers.N.` prefix), for a
/// config's family.
fn layer_tensors(c: &ModelConfig) -> Vec<String> {
    let mut names = Vec::new();
    for proj in ["q_proj", "k_proj", "v_proj", "o_proj"] {
        names.push(format!("self_attn.{proj}.weight"));
        let bias = if proj == "o_proj" { c.o_bias() } else { c.qkv_bias() };
        if bias {
            names.push(format!("self_attn.{proj}.bias"));
        }
    }
    if c.qk_norm() {
        names.extend(["self_attn.q_norm.weight".into(), "self_attn.k_norm.weight".into()]);
    }
    for t in ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "input_layernorm"] {
        names.push(format!("{t}.weight"));
    }
    names.push("post_attention_layernorm.weight".into());
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
            norm: None,
            lm_head: None,
            applied: 0,
            dtypes: BTreeSet::new(),
        }
    }

    /// Loads what `opts` asks for beyond the prefill.
    pub fn with_options(mut self, opts: LoadOptions) -> Self {
        self.opts = opts;
        self
    }

    /// Groups in load order: embedding, layers 0..L-1, final norm (and untied head).
    pub fn groups(&self) -> usize {
        self.config.num_hidden_layers + 2
    }

    /// The HF tensor names of a group.
    pub fn names(&self, group: usize) -> Vec<String> {
        let c = self.config;
        match group {
            0 => vec!["model.embed_tokens.weight".into()],
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
            0 => {
                // The embedding stays on the host, in its stored precision.
                self.embed = Some(ts.embedding("model.embed_tokens.weight", c.vocab_size, h)?);
            }
            g if g <= c.num_hidden_layers => {
                let layer = read_layer(c, &format!("model.layers.{}", g - 1), ts, device)?;
                self.layers.push(layer);
            }
            _ => {
                self.norm = Some(RmsNorm::new(ts.vector("model.norm.weight", h, device)?, eps));
                if self.wants_lm_head() {
                    self.lm_head = Some(ts.embedding("lm_head.weight", c.vocab_size, h)?);
                }
            }
        }
        self.applied += ts.used_count() - before;
        self.dtypes.extend(ts.dtypes().iter().cloned());
        Ok(())
    }

    /// The model, once every group was added; `unused` lists the tensors never read.
    pub fn finish(self, unused: Vec<String>) -> Result<(Model, LoadReport)> {
        let incomplete =
            || ModelError::Input("model load stopped before every tensor group".into());
        let embed = self.embed.ok_or_else(incomplete)?;
        let norm = self.norm.ok_or_else(incomplete)?;
        if self.layers.len() != self.config.num_hidden_layers {
            return Err(incomplete());
        }
        let report = LoadReport { applied: self.applied, unused, dtypes: self.dtypes };
        let decoder = Decoder { layers: self.layers, norm };
        let model = Model::from_parts(self.config.clone(), embed, decoder, self.device)
            .with_lm_head(self.lm_head);
        Ok((model, report))
    }
}

/// One decoder layer's tensors (prefix `model.layers.N`).
fn read_layer(
    c: &ModelConfig,
    p: &str,
    ts: &mut Tensors<'_>,
    device: &Device,
) -> Result<DecoderLayer> {
    let (h, d, i) = (c.hidden_size, c.head_dim, c.intermediate_size);
    let (nq, nkv, eps) = (c.num_attention_heads, c.num_key_value_heads, c.rms_norm_eps);
    let norm = |ts: &mut Tensors, name: &str, len| -> Result<RmsNorm> {
        Ok(RmsNorm::new(ts.vector(&format!("{p}.{name}.weight"), len, device)?, eps))
    };
    let (qkv_bias, o_bias) = (c.qkv_bias(), c.o_bias());
    let lin = |ts: &mut Tensors, name: &str, d_in, d_out, bias| {
        ts.linear(&format!("{p}.{name}"), d_in, d_out, bias, device)
    };
    let self_attn = Attention {
        q_proj: lin(ts, "self_attn.q_proj", h, nq * d, qkv_bias)?,
        k_proj: lin(ts, "self_attn.k_proj", h, nkv * d, qkv_bias)?,
        v_proj: lin(ts, "self_attn.v_proj", h, nkv * d, qkv_bias)?,
        o_proj: lin(ts, "self_attn.o_proj", nq * d, h, o_bias)?,
        q_norm: if c.qk_norm() { Some(norm(ts, "self_attn.q_norm", d)?) } else { None },
        k_norm: if c.qk_norm() { Some(norm(ts, "self_attn.k_norm", d)?) } else { None },
        num_heads: nq,
        num_kv_heads: nkv,
        head_dim: d,
    };
    let mlp = Mlp {
        gate_proj: lin(ts, "mlp.gate_proj", h, i, false)?,
        up_proj: lin(ts, "mlp.up_proj", h, i, false)?,
        down_proj: lin(ts, "mlp.down_proj", i, h, false)?,
    };
    Ok(DecoderLayer {
        self_attn,
        mlp,
        input_layernorm: norm(ts, "input_layernorm", h)?,
        post_attention_layernorm: norm(ts, "post_attention_layernorm", h)?,
    })
}

/// One tensor's entry in a safetensors header: where its bytes are in the file.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Stored dtype.
    pub dtype: Dtype,
    /// Stored shape.
    pub shape: Vec<usize>,
    /// Absolute byte range in the file.
    pub start: u64,
    /// End of the byte range (exclusive).
    pub end: u64,
}

/// Length of a safetensors header, from the file's first 8 bytes (`file` names it in errors).
pub fn header_len(first: &[u8], file: &str) -> Result<u64> {
    let bytes: [u8; 8] = first
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ModelError::weights(file, "not a valid safetensors file (too short)"))?;
    let n = u64::from_le_bytes(bytes);
    if n > 100_000_000 {
        return Err(ModelError::weights(file, "not a valid safetensors file (header too large)"));
    }
    Ok(n)
}

/// The tensor entries of a safetensors header (the JSON after the 8 length bytes), checked
/// against the file's size: an entry past the end means a truncated file.
pub fn header_entries(header: &[u8], file_size: u64, file: &str) -> Result<Vec<(String, Entry)>> {
    let bad = |m: String| ModelError::weights(file, format!("not a valid safetensors file: {m}"));
    let map: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| bad(format!("header is not JSON ({e})")))?;
    let base = 8 + header.len() as u64;
    let mut out = Vec::new();
    for (name, v) in map.into_iter().filter(|(k, _)| k != "__metadata__") {
        let info: HeaderInfo =
            serde_json::from_value(v).map_err(|e| bad(format!("tensor '{name}': {e}")))?;
        let (off0, off1) = info.data_offsets;
        let numel = info.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64));
        let need = numel.and_then(|n| n.checked_mul(info.dtype.bitsize() as u64 / 8));
        if off0 > off1 || need != Some(off1 - off0) {
            return Err(bad(format!(
                "tensor '{name}': data_offsets [{off0}, {off1}] do not hold a {:?} tensor of shape {:?}",
                info.dtype, info.shape
            )));
        }
        let (start, end) = match (base.checked_add(off0), base.checked_add(off1)) {
            (Some(s), Some(e)) => (s, e),
            _ => return Err(bad(format!("tensor '{name}': data_offsets out of range"))),
        };
        if end > file_size {
            return Err(ModelError::weights(
                file,
                format!(
                    "truncated: tensor '{name}' ends at byte {end}, the file has {file_size} bytes"
                ),
            ));
        }
        out.push((name, Entry { dtype: info.dtype, shape: info.shape, start, end }));
    }
    Ok(out)
}

#[derive(serde::Deserialize)]
struct HeaderInfo {
    dtype: Dtype,
    shape: Vec<usize>,
    data_offsets: (u64, u64),
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
            let opts = LoadOptions { lm_head: true };
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
