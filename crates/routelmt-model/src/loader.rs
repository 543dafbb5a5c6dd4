//! Strict loading of Qwen3 weights from safetensors bytes (one file or several shards).
//!
//! Tensor names are the Hugging Face ones (`model.layers.N.self_attn.q_proj.weight`, ...).
//! Stored dtypes f32, bf16 and f16 are widened to f32; HF Linear weights `[out, in]` are
//! transposed to burn's `[in, out]`. A missing tensor, a wrong shape, a corrupt or truncated
//! file, or an unsupported dtype is an error naming the file and tensor. Tensors we do not use
//! (`lm_head.weight`, stray buffers) are listed in the [`LoadReport`], not silently dropped.

use std::collections::{BTreeMap, BTreeSet};

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor, TensorData};
use half::{bf16, f16};
use safetensors::{Dtype, SafeTensors};

use crate::block::{Attention, DecoderLayer, Mlp};
use crate::config::Qwen3Config;
use crate::embedding::{EmbeddingData, HostEmbedding};
use crate::error::{ModelError, Result};
use crate::model::{MAX_BUFFER_BYTES, Qwen3Decoder, Qwen3Model};
use crate::norm::RmsNorm;

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
    /// Dtypes found on disk.
    pub dtypes: BTreeSet<String>,
}

/// One tensor's bytes as stored, with its dtype, shape and the file it came from.
pub struct Source<'a> {
    /// The file's name, for messages.
    pub file: &'a str,
    /// Stored dtype.
    pub dtype: Dtype,
    /// Stored shape.
    pub shape: Vec<usize>,
    /// The tensor's bytes (little-endian, row-major).
    pub data: &'a [u8],
}

/// The tensors available to a load, by name: all of a checkpoint's, or one group's at a time
/// when the bytes are fetched per group (the browser). Records which were used.
pub struct Tensors<'a> {
    by_name: BTreeMap<String, Source<'a>>,
    used: BTreeSet<String>,
    dtypes: BTreeSet<String>,
}

impl<'a> Tensors<'a> {
    /// Tensors from sources by name; a name given twice is an error naming both files.
    pub fn new(sources: impl IntoIterator<Item = (String, Source<'a>)>) -> Result<Self> {
        let mut by_name = BTreeMap::new();
        for (name, src) in sources {
            let file = src.file;
            if let Some(prev) = by_name.insert(name.clone(), src) {
                return Err(ModelError::weights(
                    file,
                    format!("tensor '{name}' also appears in {}", prev.file),
                ));
            }
        }
        Ok(Self { by_name, used: BTreeSet::new(), dtypes: BTreeSet::new() })
    }

    /// All tensors of whole safetensors files.
    pub fn parse(shards: &'a [Shard<'a>]) -> Result<Self> {
        let mut sources = Vec::new();
        for shard in shards {
            let st = SafeTensors::deserialize(shard.bytes).map_err(|e| {
                ModelError::weights(
                    &shard.name,
                    format!("not a valid safetensors file (corrupt or truncated?): {e}"),
                )
            })?;
            for (name, view) in st.tensors() {
                let (dtype, shape, data) = (view.dtype(), view.shape().to_vec(), view.data());
                sources.push((name, Source { file: &shard.name, dtype, shape, data }));
            }
        }
        Self::new(sources)
    }

    /// Names present but not read by the load (e.g. `lm_head.weight`).
    pub fn unused(&self) -> Vec<String> {
        self.by_name.keys().filter(|k| !self.used.contains(*k)).cloned().collect()
    }

    fn files(&self) -> String {
        let files: BTreeSet<&str> = self.by_name.values().map(|s| s.file).collect();
        files.into_iter().collect::<Vec<_>>().join(", ")
    }

    /// The stored bytes of `name`, checked against `shape` and the supported dtypes, and
    /// marked as used.
    fn raw(&mut self, name: &str, shape: &[usize]) -> Result<(&'a [u8], Dtype)> {
        let src = self.by_name.get(name).ok_or_else(|| {
            ModelError::weights(
                self.files(),
                format!("missing tensor '{name}' (expected shape {shape:?})"),
            )
        })?;
        if src.shape != shape {
            return Err(ModelError::weights(
                src.file,
                format!("tensor '{name}' has shape {:?}, expected {shape:?}", src.shape),
            ));
        }
        if !matches!(src.dtype, Dtype::F32 | Dtype::BF16 | Dtype::F16) {
            return Err(ModelError::weights(
                src.file,
                format!(
                    "tensor '{name}' has dtype {:?}; only F32, BF16 and F16 are supported",
                    src.dtype
                ),
            ));
        }
        let (data, dtype) = (src.data, src.dtype);
        self.dtypes.insert(format!("{dtype:?}").to_lowercase());
        self.used.insert(name.to_string());
        Ok((data, dtype))
    }

    /// Row-major f32 values of `name`, checked against `shape`.
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<(Vec<f32>, Dtype)> {
        let (bytes, dtype) = self.raw(name, shape)?;
        let values = match dtype {
            Dtype::BF16 => {
                bytes.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
            }
            Dtype::F16 => {
                bytes.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
            }
            _ => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        };
        Ok((values, dtype))
    }

    /// The embedding table in its stored precision (no f32 copy of a bf16 table).
    fn embedding(&mut self, name: &str, vocab: usize, h: usize) -> Result<HostEmbedding> {
        let (bytes, dtype) = self.raw(name, &[vocab, h])?;
        let halves = || bytes.chunks_exact(2).map(|c| [c[0], c[1]]);
        let data = match dtype {
            Dtype::BF16 => EmbeddingData::Bf16(halves().map(bf16::from_le_bytes).collect()),
            Dtype::F16 => EmbeddingData::F16(halves().map(f16::from_le_bytes).collect()),
            _ => EmbeddingData::F32(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
        };
        Ok(HostEmbedding::new(vocab, h, data))
    }

    fn vector(&mut self, name: &str, len: usize, device: &Device) -> Result<Tensor<1>> {
        let (v, _) = self.take(name, &[len])?;
        Ok(Tensor::from_data(TensorData::new(v, [len]), device))
    }

    /// An HF `[out, in]` Linear weight as a burn `[in, out]` Linear without bias.
    fn linear(&mut self, name: &str, d_in: usize, d_out: usize, device: &Device) -> Result<Linear> {
        let (v, _) = self.take(name, &[d_out, d_in])?;
        if 4 * d_in * d_out > MAX_BUFFER_BYTES {
            return Err(ModelError::weights(
                self.by_name[name].file,
                format!(
                    "tensor '{name}' would need a device buffer over {} MiB",
                    MAX_BUFFER_BYTES >> 20
                ),
            ));
        }
        let t = transpose(&v, d_out, d_in);
        let weight = Tensor::from_data(TensorData::new(t, [d_in, d_out]), device);
        Ok(Linear { weight: Param::from_tensor(weight), bias: None })
    }
}

/// `[rows, cols]` -> `[cols, rows]`, blocked for cache locality.
fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const B: usize = 32;
    let mut out = vec![0f32; v.len()];
    for r0 in (0..rows).step_by(B) {
        for c0 in (0..cols).step_by(B) {
            for r in r0..(r0 + B).min(rows) {
                for c in c0..(c0 + B).min(cols) {
                    out[c * rows + r] = v[r * cols + c];
                }
            }
        }
    }
    out
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

/// Loads a Qwen3 model from the safetensors `shards` of one checkpoint onto `device`.
pub fn load_model(
    config: &Qwen3Config,
    shards: &[Shard<'_>],
    device: &Device,
) -> Result<(Qwen3Model, LoadReport)> {
    let mut ts = Tensors::parse(shards)?;
    let mut builder = ModelBuilder::new(config, device);
    for group in 0..builder.groups() {
        builder.add(group, &mut ts)?;
    }
    let unused = ts.unused();
    builder.finish(unused)
}

/// Builds a model one group of tensors at a time (the host embedding, each decoder layer, the
/// final norm), so that a loader that fetches bytes per group (the browser) holds one group's
/// source bytes at a time. Each tensor is widened, transposed and uploaded as it is read.
pub struct ModelBuilder<'c> {
    config: &'c Qwen3Config,
    device: Device,
    embed: Option<HostEmbedding>,
    layers: Vec<DecoderLayer>,
    norm: Option<RmsNorm>,
    applied: usize,
    dtypes: BTreeSet<String>,
}

impl<'c> ModelBuilder<'c> {
    /// A builder for `config` on `device`.
    pub fn new(config: &'c Qwen3Config, device: &Device) -> Self {
        Self {
            config,
            device: device.clone(),
            embed: None,
            layers: Vec::with_capacity(config.num_hidden_layers),
            norm: None,
            applied: 0,
            dtypes: BTreeSet::new(),
        }
    }

    /// Groups in load order: embedding, layers 0..L-1, final norm.
    pub fn groups(&self) -> usize {
        self.config.num_hidden_layers + 2
    }

    /// The HF tensor names of a group.
    pub fn names(&self, group: usize) -> Vec<String> {
        let l = self.config.num_hidden_layers;
        match group {
            0 => vec!["model.embed_tokens.weight".into()],
            g if g <= l => {
                let p = format!("model.layers.{}", g - 1);
                [
                    "self_attn.q_proj",
                    "self_attn.k_proj",
                    "self_attn.v_proj",
                    "self_attn.o_proj",
                    "self_attn.q_norm",
                    "self_attn.k_norm",
                    "mlp.gate_proj",
                    "mlp.up_proj",
                    "mlp.down_proj",
                    "input_layernorm",
                    "post_attention_layernorm",
                ]
                .iter()
                .map(|t| format!("{p}.{t}.weight"))
                .collect()
            }
            _ => vec!["model.norm.weight".into()],
        }
    }

    /// Reads group `group` (in order) from `ts`.
    pub fn add(&mut self, group: usize, ts: &mut Tensors<'_>) -> Result<()> {
        let c = self.config;
        let (h, eps, device) = (c.hidden_size, c.rms_norm_eps, &self.device);
        let before = ts.used.len();
        match group {
            0 => {
                // The embedding stays on the host, in its stored precision.
                self.embed = Some(ts.embedding("model.embed_tokens.weight", c.vocab_size, h)?);
            }
            g if g <= c.num_hidden_layers => {
                let layer = read_layer(c, &format!("model.layers.{}", g - 1), ts, device)?;
                self.layers.push(layer);
            }
            _ => self.norm = Some(RmsNorm::new(ts.vector("model.norm.weight", h, device)?, eps)),
        }
        self.applied += ts.used.len() - before;
        self.dtypes.extend(ts.dtypes.iter().cloned());
        Ok(())
    }

    /// The model, once every group was added; `unused` lists the tensors never read.
    pub fn finish(self, unused: Vec<String>) -> Result<(Qwen3Model, LoadReport)> {
        let incomplete =
            || ModelError::Input("model load stopped before every tensor group".into());
        let embed = self.embed.ok_or_else(incomplete)?;
        let norm = self.norm.ok_or_else(incomplete)?;
        if self.layers.len() != self.config.num_hidden_layers {
            return Err(incomplete());
        }
        let report = LoadReport { applied: self.applied, unused, dtypes: self.dtypes };
        let decoder = Qwen3Decoder { layers: self.layers, norm };
        Ok((Qwen3Model::from_parts(self.config.clone(), embed, decoder, self.device), report))
    }
}

/// One decoder layer's tensors (prefix `model.layers.N`).
fn read_layer(
    c: &Qwen3Config,
    p: &str,
    ts: &mut Tensors<'_>,
    device: &Device,
) -> Result<DecoderLayer> {
    let (h, d, i) = (c.hidden_size, c.head_dim, c.intermediate_size);
    let (nq, nkv, eps) = (c.num_attention_heads, c.num_key_value_heads, c.rms_norm_eps);
    let norm = |ts: &mut Tensors, name: &str, len| -> Result<RmsNorm> {
        Ok(RmsNorm::new(ts.vector(&format!("{p}.{name}.weight"), len, device)?, eps))
    };
    let self_attn = Attention {
        q_proj: ts.linear(&format!("{p}.self_attn.q_proj.weight"), h, nq * d, device)?,
        k_proj: ts.linear(&format!("{p}.self_attn.k_proj.weight"), h, nkv * d, device)?,
        v_proj: ts.linear(&format!("{p}.self_attn.v_proj.weight"), h, nkv * d, device)?,
        o_proj: ts.linear(&format!("{p}.self_attn.o_proj.weight"), nq * d, h, device)?,
        q_norm: norm(ts, "self_attn.q_norm", d)?,
        k_norm: norm(ts, "self_attn.k_norm", d)?,
        num_heads: nq,
        num_kv_heads: nkv,
        head_dim: d,
    };
    let mlp = Mlp {
        gate_proj: ts.linear(&format!("{p}.mlp.gate_proj.weight"), h, i, device)?,
        up_proj: ts.linear(&format!("{p}.mlp.up_proj.weight"), h, i, device)?,
        down_proj: ts.linear(&format!("{p}.mlp.down_proj.weight"), i, h, device)?,
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

    #[test]
    fn transpose_is_exact() {
        let v: Vec<f32> = (0..35 * 70).map(|x| x as f32).collect();
        let t = transpose(&v, 35, 70);
        for r in 0..35 {
            for c in 0..70 {
                assert_eq!(t[c * 35 + r], v[r * 70 + c]);
            }
        }
    }
}
