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

struct Source<'a> {
    file: &'a str,
    view: safetensors::tensor::TensorView<'a>,
}

struct Tensors<'a> {
    by_name: BTreeMap<String, Source<'a>>,
    used: BTreeSet<String>,
    dtypes: BTreeSet<String>,
}

impl<'a> Tensors<'a> {
    fn parse(shards: &'a [Shard<'a>]) -> Result<Self> {
        let mut by_name = BTreeMap::new();
        for shard in shards {
            let st = SafeTensors::deserialize(shard.bytes).map_err(|e| {
                ModelError::weights(
                    &shard.name,
                    format!("not a valid safetensors file (corrupt or truncated?): {e}"),
                )
            })?;
            for (name, view) in st.tensors() {
                if let Some(prev) = by_name.insert(name.clone(), Source { file: &shard.name, view })
                {
                    return Err(ModelError::weights(
                        &shard.name,
                        format!("tensor '{name}' also appears in {}", prev.file),
                    ));
                }
            }
        }
        Ok(Self { by_name, used: BTreeSet::new(), dtypes: BTreeSet::new() })
    }

    fn files(&self) -> String {
        let files: BTreeSet<&str> = self.by_name.values().map(|s| s.file).collect();
        files.into_iter().collect::<Vec<_>>().join(", ")
    }

    /// Row-major f32 values of `name`, checked against `shape`.
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<(Vec<f32>, Dtype)> {
        let src = self.by_name.get(name).ok_or_else(|| {
            ModelError::weights(
                self.files(),
                format!("missing tensor '{name}' (expected shape {shape:?})"),
            )
        })?;
        if src.view.shape() != shape {
            return Err(ModelError::weights(
                src.file,
                format!("tensor '{name}' has shape {:?}, expected {shape:?}", src.view.shape()),
            ));
        }
        let bytes = src.view.data();
        let dtype = src.view.dtype();
        let values = match dtype {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::BF16 => {
                bytes.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
            }
            Dtype::F16 => {
                bytes.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
            }
            other => {
                return Err(ModelError::weights(
                    src.file,
                    format!(
                        "tensor '{name}' has dtype {other:?}; only F32, BF16 and F16 are supported"
                    ),
                ));
            }
        };
        self.dtypes.insert(format!("{dtype:?}").to_lowercase());
        self.used.insert(name.to_string());
        Ok((values, dtype))
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
    let (h, d, i) = (config.hidden_size, config.head_dim, config.intermediate_size);
    let (nq, nkv) = (config.num_attention_heads, config.num_key_value_heads);
    let eps = config.rms_norm_eps;

    // The embedding stays on the host, in its stored precision.
    let embed_name = "model.embed_tokens.weight";
    let embed = {
        let (v, dtype) = ts.take(embed_name, &[config.vocab_size, h])?;
        let data = match dtype {
            Dtype::BF16 => EmbeddingData::Bf16(v.into_iter().map(bf16::from_f32).collect()),
            Dtype::F16 => EmbeddingData::F16(v.into_iter().map(f16::from_f32).collect()),
            _ => EmbeddingData::F32(v),
        };
        HostEmbedding::new(config.vocab_size, h, data)
    };

    let mut layers = Vec::with_capacity(config.num_hidden_layers);
    for n in 0..config.num_hidden_layers {
        let p = format!("model.layers.{n}");
        let norm = |ts: &mut Tensors, name: &str, len| -> Result<RmsNorm> {
            Ok(RmsNorm::new(ts.vector(&format!("{p}.{name}.weight"), len, device)?, eps))
        };
        let self_attn = Attention {
            q_proj: ts.linear(&format!("{p}.self_attn.q_proj.weight"), h, nq * d, device)?,
            k_proj: ts.linear(&format!("{p}.self_attn.k_proj.weight"), h, nkv * d, device)?,
            v_proj: ts.linear(&format!("{p}.self_attn.v_proj.weight"), h, nkv * d, device)?,
            o_proj: ts.linear(&format!("{p}.self_attn.o_proj.weight"), nq * d, h, device)?,
            q_norm: norm(&mut ts, "self_attn.q_norm", d)?,
            k_norm: norm(&mut ts, "self_attn.k_norm", d)?,
            num_heads: nq,
            num_kv_heads: nkv,
            head_dim: d,
        };
        let mlp = Mlp {
            gate_proj: ts.linear(&format!("{p}.mlp.gate_proj.weight"), h, i, device)?,
            up_proj: ts.linear(&format!("{p}.mlp.up_proj.weight"), h, i, device)?,
            down_proj: ts.linear(&format!("{p}.mlp.down_proj.weight"), i, h, device)?,
        };
        layers.push(DecoderLayer {
            self_attn,
            mlp,
            input_layernorm: norm(&mut ts, "input_layernorm", h)?,
            post_attention_layernorm: norm(&mut ts, "post_attention_layernorm", h)?,
        });
    }
    let final_norm = RmsNorm::new(ts.vector("model.norm.weight", h, device)?, eps);

    let report = LoadReport {
        applied: ts.used.len(),
        unused: ts.by_name.keys().filter(|k| !ts.used.contains(*k)).cloned().collect(),
        dtypes: ts.dtypes,
    };
    let decoder = Qwen3Decoder { layers, norm: final_norm };
    Ok((Qwen3Model::from_parts(config.clone(), embed, decoder, device.clone()), report))
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
