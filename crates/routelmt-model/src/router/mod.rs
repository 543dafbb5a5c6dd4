//! A trained router (docs/architecture.md, decision 8): what `routelmt train` writes and what scoring,
//! the page and the gateway read. A router folder holds
//!
//! - `router.json`: head kind, layer, prompt style, the base model's identity (config
//!   fingerprint), LoRA settings, any calibrated threshold, training provenance;
//! - `head.safetensors`: the head in PyTorch layout (`head.weight` `[outputs, hidden]`,
//!   `head.bias`), predicting in the labels' own units;
//! - `adapter_config.json` + `adapter_model.safetensors`: the LoRA adapter in PEFT's format
//!   (absent for a head-only router trained with `--no-lora`).
//!
//! Bytes in, values out: the native `hf` module and the browser read a folder into
//! [`RouterFiles`].
//!
//! - [`head`]: the linear head and its safetensors form; [`peft`]: LoRA adapters in PEFT's
//!   format; [`scorer`]: a base model prepared with a router, the one way requests are scored.

pub mod head;
pub mod peft;
pub mod scorer;

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use self::head::{HeadKind, RouterHead};
use self::peft::{LoraSettings, PeftAdapter};
use crate::config::ModelConfig;
use crate::decoder::block::DecoderLayer;
use crate::error::{ModelError, Result};
use crate::formats::Named;
use crate::model::{LayerEdit, Model};
use crate::precision::Precision;
use crate::readback::{Part, Pending};
use crate::text::prompt::PromptStyle;

/// The settings file of a router folder.
pub const ROUTER_JSON: &str = "router.json";
/// The head weights of a router folder.
pub const HEAD_FILE: &str = "head.safetensors";
/// PEFT's adapter settings.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
/// PEFT's adapter weights.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// Version tag written into `router.json`.
pub const FORMAT: &str = "routelmt-router/1";

/// `router.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouterConfig {
    /// Always [`FORMAT`].
    pub format: String,
    /// What the head predicts.
    pub head: HeadKind,
    /// hidden_states index the head reads (0 = embeddings, num_hidden_layers = final).
    pub layer: usize,
    /// Prompt revision the router was trained with.
    pub prompt_style: PromptStyle,
    /// Whether the prompt was placed in the model's chat template (`auto`, the default and
    /// what routers written before this field used) or left bare (`none`).
    #[serde(default)]
    pub chat_template: crate::text::chat::ChatMode,
    /// How scoring stores the decoder's weights (`f32`, the default and what routers written
    /// before this field used; `f16`; `q8`). `--weights` overrides it.
    #[serde(default)]
    pub weights: Precision,
    /// [`ModelConfig::fingerprint`] of the base model.
    pub base_fingerprint: String,
    /// Where the base model came from (informational).
    #[serde(default)]
    pub base_model: Option<String>,
    /// LoRA settings; `None` when the base model is used unchanged.
    pub lora: Option<LoraSettings>,
    /// A calibrated streaming threshold on the `score` field (`routelmt calibrate --router`),
    /// in the form `THRESH.json` has.
    #[serde(default)]
    pub threshold: Option<Value>,
    /// Training provenance: settings, per-epoch validation, best epoch.
    #[serde(default)]
    pub training: Option<Value>,
}

impl RouterConfig {
    /// Parses `router.json` bytes (`file` names them in errors).
    pub fn from_json(bytes: &[u8], file: &str) -> Result<Self> {
        let c: Self = serde_json::from_slice(bytes)
            .map_err(|e| ModelError::config(file, format!("not a valid router file: {e}")))?;
        if c.format != FORMAT {
            return Err(ModelError::config(
                file,
                format!("field 'format' is '{}', this build reads '{FORMAT}'", c.format),
            ));
        }
        Ok(c)
    }

    /// Errors unless `base` is the model this router was trained on.
    pub fn check_base(&self, base: &ModelConfig, file: &str) -> Result<()> {
        let fp = base.fingerprint();
        if fp != self.base_fingerprint {
            return Err(ModelError::config(
                file,
                format!(
                    "this router was trained on base model {} (fingerprint {}), but the model \
                     given has fingerprint {fp}; use the base model it was trained on",
                    self.base_model.as_deref().unwrap_or("?"),
                    self.base_fingerprint
                ),
            ));
        }
        if self.layer > base.num_hidden_layers {
            return Err(ModelError::config(
                file,
                format!(
                    "field 'layer' is {}, the base model has {} layers",
                    self.layer, base.num_hidden_layers
                ),
            ));
        }
        Ok(())
    }
}

/// The files of a router folder, as bytes with their names (for errors).
#[derive(Debug, Clone, Copy)]
pub struct RouterFiles<'a> {
    /// `router.json`.
    pub router_json: Named<'a>,
    /// `head.safetensors`.
    pub head: Named<'a>,
    /// `adapter_config.json` and `adapter_model.safetensors`, if the folder has them.
    pub adapter: Option<(Named<'a>, Named<'a>)>,
}

impl<'a> RouterFiles<'a> {
    /// The files of a folder, the adapter's optional: half an adapter (one of its two files)
    /// is an error naming the missing one.
    pub fn new(
        router_json: Named<'a>,
        head: Named<'a>,
        adapter_config: Option<Named<'a>>,
        adapter_weights: Option<Named<'a>>,
    ) -> Result<Self> {
        let missing = |name: &str, other: Named<'_>| {
            ModelError::config(name, format!("missing, but the folder has {}", other.name))
        };
        let adapter = match (adapter_config, adapter_weights) {
            (None, None) => None,
            (Some(c), Some(w)) => Some((c, w)),
            (None, Some(w)) => return Err(missing(ADAPTER_CONFIG, w)),
            (Some(c), None) => return Err(missing(ADAPTER_WEIGHTS, c)),
        };
        Ok(Self { router_json, head, adapter })
    }
}

/// A loaded router: settings, head and (optionally) the LoRA adapter.
#[derive(Debug)]
pub struct Router {
    /// `router.json`.
    pub config: RouterConfig,
    /// The head, predicting in label units.
    pub head: RouterHead,
    /// The LoRA adapter, if the router has one.
    pub adapter: Option<PeftAdapter>,
}

impl Router {
    /// Builds a router from its files and checks it against the base model.
    pub fn from_files(files: RouterFiles<'_>, base: &ModelConfig, device: &Device) -> Result<Self> {
        let Named { name, bytes } = files.router_json;
        let config = RouterConfig::from_json(bytes, name)?;
        config.check_base(base, name)?;
        let head = RouterHead::from_safetensors(
            files.head.bytes,
            files.head.name,
            base.hidden_size,
            config.head,
            device,
        )?;
        let adapter = match (config.lora, files.adapter) {
            (None, None) => None,
            (None, Some((cfg, _))) => {
                return Err(ModelError::config(
                    name,
                    format!("field 'lora' is null, but the folder has {}", cfg.name),
                ));
            }
            (Some(_), None) => {
                return Err(ModelError::config(
                    name,
                    format!("field 'lora' is set, but {ADAPTER_CONFIG} is missing"),
                ));
            }
            (Some(l), Some((c, w))) => {
                let cn = c.name;
                let a = PeftAdapter::from_peft(c.bytes, cn, w.bytes, w.name, base)?;
                if a.rank != l.rank || a.alpha != l.alpha {
                    return Err(ModelError::config(
                        cn,
                        format!(
                            "r {} / lora_alpha {} disagree with {name} (rank {}, alpha {})",
                            a.rank, a.alpha, l.rank, l.alpha
                        ),
                    ));
                }
                Some(a)
            }
        };
        Ok(Self { config, head, adapter })
    }

    /// The folder's files as bytes, `router.json` last (its presence marks a complete folder).
    pub fn to_files(&self) -> Result<Vec<(&'static str, Vec<u8>)>> {
        let mut files = vec![(HEAD_FILE, self.head.to_safetensors()?)];
        if let Some(a) = &self.adapter {
            let name = self.config.base_model.as_deref().unwrap_or("Qwen3");
            let (cfg, weights) = a.to_peft(name)?;
            files.push((ADAPTER_CONFIG, cfg));
            files.push((ADAPTER_WEIGHTS, weights));
        }
        let json = serde_json::to_vec_pretty(&self.config)
            .map_err(|e| ModelError::config(ROUTER_JSON, e.to_string()))?;
        files.push((ROUTER_JSON, json));
        Ok(files)
    }

    /// Prepares a base model for scoring: the adapter is merged into the weights, so a request
    /// costs exactly one plain prefill.
    pub fn prepare(&self, mut model: Model) -> Model {
        if let Some(a) = &self.adapter {
            let device = model.device().clone();
            model.decoder = a.merge_into(model.decoder, &device);
        }
        model
    }

    /// The adapter's merge as a [`LayerEdit`] for a load: each block gets its factors merged as
    /// it arrives, before it is packed (`None` without an adapter).
    pub fn merge_edit(&self, device: &Device) -> Option<LayerEdit<'_>> {
        let adapter = self.adapter.as_ref()?;
        let device = device.clone();
        Some(LayerEdit {
            label: adapter.fingerprint(),
            apply: Box::new(move |n: usize, layer: &mut DecoderLayer| {
                adapter.merge_layer(n, layer, &device)
            }),
        })
    }

    /// [`Self::prepare`], then [`Model::prepared`] for inference with `weights` (the router's
    /// own setting when `None`).
    pub fn prepare_for_inference(&self, model: Model, weights: Option<Precision>) -> Result<Model> {
        self.prepare(model).prepared(weights.unwrap_or(self.config.weights))
    }

    /// Head outputs for last-token states.
    ///
    /// # Shapes
    /// - hidden: `[batch, hidden]` -> `[batch, outputs]` (gain, then quality for `both`)
    pub fn predict(&self, hidden: Tensor<2>) -> Tensor<2> {
        self.head.forward(hidden)
    }

    /// Head outputs of `batch` with a model from [`Self::prepare`]: one row of head outputs
    /// per sequence, in input order, in chunks that fit the buffer limit, not read back yet
    /// (`.read()` natively, `.read_async().await` in the browser).
    pub fn score(&self, model: &Model, batch: &[Vec<u32>], max_rows: usize) -> Result<Pending> {
        let hidden = model.last_hidden(batch, self.config.layer, max_rows)?;
        let parts = hidden
            .parts
            .into_iter()
            .map(|h| Part::Device(self.predict(model.to_tensor(h))))
            .collect();
        Ok(Pending { parts, width: self.config.head.outputs() })
    }
}
