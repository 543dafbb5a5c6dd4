//! LoRA adapters in PEFT's format, so adapters move between this project and Python.
//!
//! PEFT stores `base_model.model.model.layers.N.<module>.lora_A.weight` `[r, in]` and
//! `lora_B.weight` `[out, r]`; the update of the HF weight `[out, in]` is
//! `scale · B·A` with `scale = lora_alpha / r` (rsLoRA: `alpha / √r`). burn keeps Linear
//! weights as `[in, out]` and its `LoraAdapter` as `a [in, r]`, `b [r, out]` with
//! `W + scale · a·b`, so `a = Aᵀ` and `b = Bᵀ`.
//!
//! Only the seven projection types (q, k, v, o, gate, up, down) are supported, never the
//! embedding, norms or head (docs/architecture.md, decision 7).

use std::collections::BTreeMap;

use burn::module::{Lora, LoraAdapter, Module, Param, ParamGroup, ParamId, Reparameterizer};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::ModelConfig;
use crate::decoder::Decoder;
use crate::decoder::block::{DecoderLayer, PROJECTIONS};
use crate::error::{ModelError, Result};
use crate::formats::safetensors;
use crate::readback::read;
use crate::tensors::{Tensors, transpose};

/// LoRA settings: rank and alpha (`None` in a router's settings for a head-only router).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoraSettings {
    /// Rank r.
    pub rank: usize,
    /// lora_alpha (scale alpha / r).
    pub alpha: f64,
}

/// Parameter paths (inside [`Decoder`]) that LoRA adapts: every weight of [`PROJECTIONS`].
pub const TARGET_REGEX: &str =
    r"^layers\.[0-9]+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)\.weight$";

/// Attaches fresh LoRA adapters (burn's initialization: `A` random, `B` zero, so the model's
/// outputs are unchanged until trained) to the seven projection types of every layer, and
/// nothing else. The one LoRA set-up used by training, benchmarks and tests.
pub fn apply_new_lora(decoder: Decoder, settings: LoraSettings) -> Result<Decoder> {
    let group = ParamGroup::from_regex(TARGET_REGEX)
        .map_err(|e| ModelError::Input(format!("LoRA target pattern: {e:?}")))?;
    Ok(decoder.apply_lora(Lora::new(settings.rank, settings.alpha).set_param_group(group)))
}

/// One adapted projection in burn layout.
#[derive(Debug, Clone)]
pub struct Factors {
    /// `[in, r]` row-major.
    pub a: Vec<f32>,
    /// `[r, out]` row-major.
    pub b: Vec<f32>,
    /// Input width.
    pub d_in: usize,
    /// Output width.
    pub d_out: usize,
}

/// A LoRA adapter: rank, scale and the factors by decoder path (`layers.0.self_attn.q_proj`).
#[derive(Debug, Clone)]
pub struct PeftAdapter {
    /// Rank `r`.
    pub rank: usize,
    /// `lora_alpha`.
    pub alpha: f64,
    /// `alpha / r` (or `alpha / √r` with rsLoRA).
    pub scale: f64,
    /// Factors by decoder module path.
    pub factors: BTreeMap<String, Factors>,
}

impl PeftAdapter {
    /// Reads `adapter_config.json` and `adapter_model.safetensors` (bytes; names for errors)
    /// and checks every factor against the base model's shapes.
    pub fn from_peft(
        config_json: &[u8],
        config_file: &str,
        weights: &[u8],
        weights_file: &str,
        base: &ModelConfig,
    ) -> Result<Self> {
        let cfg: Value = serde_json::from_slice(config_json)
            .map_err(|e| ModelError::config(config_file, format!("not valid JSON: {e}")))?;
        let err = |m: String| ModelError::config(config_file, m);
        if cfg.get("peft_type").and_then(Value::as_str) != Some("LORA") {
            return Err(err("field 'peft_type' must be \"LORA\"".into()));
        }
        let rank = cfg
            .get("r")
            .and_then(Value::as_u64)
            .filter(|r| *r > 0)
            .ok_or_else(|| err("field 'r' must be a positive integer".into()))?
            as usize;
        let alpha = cfg
            .get("lora_alpha")
            .and_then(Value::as_f64)
            .ok_or_else(|| err("field 'lora_alpha' is missing".into()))?;
        for (field, neutral) in [("use_dora", false), ("fan_in_fan_out", false)] {
            if cfg.get(field).and_then(Value::as_bool).unwrap_or(neutral) != neutral {
                return Err(err(format!("field '{field}' is not supported")));
            }
        }
        for field in ["rank_pattern", "alpha_pattern"] {
            if cfg.get(field).and_then(Value::as_object).is_some_and(|m| !m.is_empty()) {
                return Err(err(format!("field '{field}' (per-module ranks) is not supported")));
            }
        }
        if cfg.get("bias").and_then(Value::as_str).is_some_and(|b| b != "none") {
            return Err(err("field 'bias' must be \"none\"".into()));
        }
        let rslora = cfg.get("use_rslora").and_then(Value::as_bool).unwrap_or(false);
        let scale = if rslora { alpha / (rank as f64).sqrt() } else { alpha / rank as f64 };

        let sources = safetensors::sources(weights_file, weights)?;
        let names: Vec<String> = sources.iter().map(|(n, _)| n.clone()).collect();
        let mut ts = Tensors::new(sources)?;
        let mut factors = BTreeMap::new();
        for name in &names {
            if !name.ends_with(".lora_A.weight") {
                if !name.ends_with(".lora_B.weight") {
                    return Err(ModelError::weights(
                        weights_file,
                        format!("tensor '{name}' is not a LoRA factor this project supports"),
                    ));
                }
                continue;
            }
            let path = name
                .strip_prefix("base_model.model.model.")
                .and_then(|p| p.strip_suffix(".lora_A.weight"))
                .ok_or_else(|| {
                    ModelError::weights(
                        weights_file,
                        format!("tensor '{name}' has an unexpected key"),
                    )
                })?;
            let (layer, module) = parse_path(path).ok_or_else(|| {
                ModelError::weights(
                    weights_file,
                    format!("tensor '{name}' does not name a q/k/v/o/gate/up/down projection"),
                )
            })?;
            if layer >= base.num_hidden_layers {
                return Err(ModelError::weights(
                    weights_file,
                    format!(
                        "tensor '{name}' adapts layer {layer}, but the base model has {} layers",
                        base.num_hidden_layers
                    ),
                ));
            }
            let (d_in, d_out) = base.projection_dims(module);
            let b_name = format!("base_model.model.model.{path}.lora_B.weight");
            for (n, shape) in [(name.as_str(), [rank, d_in]), (b_name.as_str(), [d_out, rank])] {
                if let Some(src) = ts.get(n).filter(|s| s.shape != shape) {
                    return Err(ModelError::weights(
                        weights_file,
                        format!(
                            "tensor '{n}' has shape {:?}, expected {shape:?} for this base model",
                            src.shape
                        ),
                    ));
                }
            }
            let a = transpose(&ts.take(name, &[rank, d_in])?, rank, d_in);
            let b = transpose(&ts.take(&b_name, &[d_out, rank])?, d_out, rank);
            factors.insert(path.to_string(), Factors { a, b, d_in, d_out });
        }
        if !ts.unused().is_empty() {
            return Err(ModelError::weights(
                weights_file,
                format!("tensor '{}' (a lora_B) has no matching lora_A", ts.unused()[0]),
            ));
        }
        if factors.is_empty() {
            return Err(ModelError::weights(weights_file, "no LoRA factors found"));
        }
        Ok(Self { rank, alpha, scale, factors })
    }

    /// Writes `(adapter_config.json, adapter_model.safetensors)` bytes in PEFT's format.
    pub fn to_peft(&self, base_model: &str) -> Result<(Vec<u8>, Vec<u8>)> {
        let mut modules: Vec<&str> =
            self.factors.keys().filter_map(|p| parse_path(p).map(|(_, m)| m)).collect();
        modules.sort_unstable();
        modules.dedup();
        let config = json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_model,
            "r": self.rank,
            "lora_alpha": self.alpha,
            "lora_dropout": 0.0,
            "target_modules": modules,
            "bias": "none",
            "fan_in_fan_out": false,
            "use_rslora": false,
            "use_dora": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "modules_to_save": null,
            "rank_pattern": {},
            "alpha_pattern": {},
        });
        let mut owned: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
        for (path, f) in &self.factors {
            let a = transpose(&f.a, f.d_in, self.rank); // -> [r, in]
            let b = transpose(&f.b, self.rank, f.d_out); // -> [out, r]
            let prefix = format!("base_model.model.model.{path}");
            owned.push((format!("{prefix}.lora_A.weight"), vec![self.rank, f.d_in], a));
            owned.push((format!("{prefix}.lora_B.weight"), vec![f.d_out, self.rank], b));
        }
        let tensors: Vec<(&str, Vec<usize>, &[f32])> =
            owned.iter().map(|(n, s, v)| (n.as_str(), s.clone(), &v[..])).collect();
        let weights = safetensors::write("adapter_model.safetensors", &tensors)?;
        let config = serde_json::to_vec_pretty(&config)
            .map_err(|e| ModelError::config("adapter_config.json", e.to_string()))?;
        Ok((config, weights))
    }

    /// Merges the adapter into the decoder's weights (`W + scale·a·b`): same outputs as the
    /// unmerged model, no extra cost per request.
    pub fn merge_into(&self, mut decoder: Decoder, device: &Device) -> Decoder {
        for (n, layer) in decoder.layers.iter_mut().enumerate() {
            self.merge_layer(n, layer, device);
        }
        decoder
    }

    /// [`Self::merge_into`] for block `n` alone (a load merges each block as it arrives).
    pub fn merge_layer(&self, n: usize, layer: &mut DecoderLayer, device: &Device) {
        for (module, lin) in layer.projections_mut() {
            if let Some(f) = self.factors.get(&format!("layers.{n}.{module}")) {
                let (a, b) = f.tensors(self.rank, device);
                let w = lin.weight.val() + a.matmul(b).mul_scalar(self.scale);
                lin.weight = Param::from_tensor(w);
            }
        }
    }

    /// A fingerprint of the adapter (rank, scale, every factor's name and values), naming the
    /// merge in a model loaded with it.
    pub fn fingerprint(&self) -> String {
        // FNV-1a over the bytes, 64 bits.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        };
        eat(&(self.rank as u64).to_le_bytes());
        eat(&self.scale.to_le_bytes());
        for (name, f) in &self.factors {
            eat(name.as_bytes());
            for v in f.a.iter().chain(&f.b) {
                eat(&v.to_le_bytes());
            }
        }
        format!("lora r{} scale {} #{h:016x}", self.rank, self.scale)
    }

    /// Attaches the factors as burn LoRA adapters (unmerged: `W` stays, the delta is added at
    /// use), e.g. to continue training or to check against an unmerged reference.
    pub fn attach(&self, decoder: Decoder, device: &Device) -> Decoder {
        decoder.apply_reparameterization(Attach {
            adapter: self,
            device: device.clone(),
            ids: None,
        })
    }

    /// Like [`Self::attach`], with the factors' parameter ids given by module path (as
    /// [`Self::param_ids`] read them): optimizer state saved under those ids then applies to
    /// the re-attached factors, so training resumes exactly.
    pub fn attach_with_ids(
        &self,
        decoder: Decoder,
        device: &Device,
        ids: &BTreeMap<String, [u64; 2]>,
    ) -> Decoder {
        decoder.apply_reparameterization(Attach {
            adapter: self,
            device: device.clone(),
            ids: Some(ids),
        })
    }

    /// Parameter ids `[a, b]` of every attached adapter, by module path.
    pub fn param_ids(decoder: &Decoder) -> BTreeMap<String, [u64; 2]> {
        let mut ids = BTreeMap::new();
        for (n, layer) in decoder.layers.iter().enumerate() {
            for (module, lin) in layer.projections() {
                if let Some(ad) = lin.weight.adapter() {
                    ids.insert(format!("layers.{n}.{module}"), [ad.a.id.val(), ad.b.id.val()]);
                }
            }
        }
        ids
    }

    /// Reads the LoRA adapters of a decoder (after `apply_lora` and training) back into
    /// PEFT-ready factors. `None` when the decoder carries no adapters.
    pub fn extract(decoder: &Decoder, rank: usize, alpha: f64) -> Result<Option<Self>> {
        let mut factors = BTreeMap::new();
        for (n, layer) in decoder.layers.iter().enumerate() {
            for (module, lin) in layer.projections() {
                if let Some(ad) = lin.weight.adapter() {
                    let a = ad.a.val();
                    let [d_in, r] = a.dims();
                    let b = ad.b.val();
                    let [_, d_out] = b.dims();
                    if r != rank {
                        return Err(ModelError::Input(format!(
                            "adapter of layers.{n}.{module} has rank {r}, expected {rank}"
                        )));
                    }
                    factors.insert(
                        format!("layers.{n}.{module}"),
                        Factors { a: read(a)?, b: read(b)?, d_in, d_out },
                    );
                }
            }
        }
        Ok((!factors.is_empty()).then(|| Self { rank, alpha, scale: alpha / rank as f64, factors }))
    }
}

impl Factors {
    fn tensors(&self, rank: usize, device: &Device) -> (Tensor<2>, Tensor<2>) {
        (
            Tensor::from_data(TensorData::new(self.a.clone(), [self.d_in, rank]), device),
            Tensor::from_data(TensorData::new(self.b.clone(), [rank, self.d_out]), device),
        )
    }
}

/// `layers.N.self_attn.q_proj` -> (N, "q_proj"); `None` for anything but the seven
/// projections.
fn parse_path(path: &str) -> Option<(usize, &'static str)> {
    let (n, module) = path.strip_prefix("layers.")?.split_once('.')?;
    let n: usize = n.parse().ok()?;
    let proj = PROJECTIONS.iter().find(|p| **p == module)?;
    proj.rsplit('.').next().map(|m| (n, m))
}

struct Attach<'a> {
    adapter: &'a PeftAdapter,
    device: Device,
    ids: Option<&'a BTreeMap<String, [u64; 2]>>,
}

impl Reparameterizer for Attach<'_> {
    type Reparam = LoraAdapter;

    fn reparameterize<const D: usize>(
        &mut self,
        path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<LoraAdapter>) {
        let base = param.set_require_grad(false);
        let key = path.strip_suffix(".weight").unwrap_or(path);
        match (D, self.adapter.factors.get(key)) {
            (2, Some(f)) => {
                let (a, b) = f.tensors(self.adapter.rank, &self.device);
                let (mut a, mut b) = (Param::from_tensor(a), Param::from_tensor(b));
                if let Some(&[ia, ib]) = self.ids.and_then(|m| m.get(key)) {
                    a.id = ParamId::from(ia);
                    b.id = ParamId::from(ib);
                }
                let adapter = LoraAdapter { a, b, scale: self.adapter.scale };
                (base, Some(adapter))
            }
            _ => (base, None),
        }
    }
}
