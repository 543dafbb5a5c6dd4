//! The decoder's `config.json`, deserialized with Hugging Face field names, for the three
//! families one decoder serves (docs/architecture.md, The decoder families):
//!
//! | `model_type` | q/k norm | q/k/v bias          | o bias              | `head_dim` default |
//! |--------------|----------|---------------------|---------------------|--------------------|
//! | `qwen3`      | yes      | `attention_bias`    | `attention_bias`    | required           |
//! | `qwen2`      | no       | always              | no                  | hidden / heads     |
//! | `llama`      | no       | `attention_bias`    | `attention_bias`    | hidden / heads     |
//!
//! Accepts what transformers 4.51+ and 5.x write: `torch_dtype` or `dtype`, and the RoPE theta
//! either top-level (`rope_theta`) or nested (`rope_parameters.rope_theta`). Features the
//! router's prefill does not implement (sliding window, RoPE scaling other than Llama 3's,
//! MLP biases, another architecture) are rejected once, here, with the field named.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ModelError, Result};

/// The decoder family, from `model_type` (or a GGUF's `general.architecture`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Qwen3 / LMT-60: per-head RMSNorm on q and k before RoPE.
    #[default]
    Qwen3,
    /// Qwen2 / Qwen2.5: biases on q, k and v.
    Qwen2,
    /// Llama 2/3, SmolLM, TinyLlama: plain attention.
    Llama,
}

impl Family {
    /// The `model_type` spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Qwen3 => "qwen3",
            Self::Qwen2 => "qwen2",
            Self::Llama => "llama",
        }
    }

    /// The family of a `model_type` (or GGUF architecture) name.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Qwen3, Self::Qwen2, Self::Llama].into_iter().find(|f| f.name() == name)
    }
}

/// Llama 3's RoPE frequency scaling (`rope_type: "llama3"`), as transformers applies it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Llama3Rope {
    /// `factor`.
    pub factor: f64,
    /// `low_freq_factor`.
    pub low_freq_factor: f64,
    /// `high_freq_factor`.
    pub high_freq_factor: f64,
    /// `original_max_position_embeddings`.
    pub original_max_position_embeddings: f64,
}

/// Upper bounds of the sizes [`ModelConfig::check`] checks, in its order: vocab, hidden, MLP,
/// layers, query heads, key/value heads, head width.
const MAX_SIZES: [usize; 7] = [1 << 20, 1 << 16, 1 << 18, 1024, 1024, 1024, 1024];

/// The architecture of a decoder, as far as prefill needs it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ModelConfig {
    /// The family (from `model_type`).
    #[serde(skip)]
    pub family: Family,
    /// Token vocabulary size (rows of the embedding table).
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Number of decoder blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (GQA when fewer than query heads; defaults to the query heads).
    #[serde(default)]
    pub num_key_value_heads: usize,
    /// Per-head width. Qwen3 sets it explicitly and it need not be hidden/heads.
    #[serde(default)]
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base, resolved from `rope_theta` or `rope_parameters.rope_theta`.
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// Llama 3 RoPE scaling, when the config asks for it.
    #[serde(skip)]
    pub rope_llama3: Option<Llama3Rope>,
    /// `attention_bias` as written (Qwen2 has q/k/v biases whatever it says).
    #[serde(default)]
    pub attention_bias: bool,
    /// Whether `lm_head` shares the embedding (used by `features --logits`).
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// On-disk dtype as declared by the config (`dtype` in transformers 5, `torch_dtype`
    /// before; some versions write both, and `dtype` wins).
    #[serde(default)]
    pub dtype: Option<String>,
    /// Longest position the model was trained for (informational).
    #[serde(default)]
    pub max_position_embeddings: Option<usize>,
}

impl ModelConfig {
    /// Parses and validates a `config.json`. `file` names the source in error messages.
    pub fn from_json(bytes: &[u8], file: &str) -> Result<Self> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| ModelError::config(file, format!("not valid JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| ModelError::config(file, "expected a JSON object at the top level"))?;
        let err = |m: String| ModelError::config(file, m);

        let family = match obj.get("model_type").and_then(Value::as_str) {
            Some(t) => Family::from_name(t).ok_or_else(|| {
                err(format!(
                    "field 'model_type' is '{t}'; supported: qwen3 (Qwen3 / LMT-60), qwen2 \
                     (Qwen2, Qwen2.5), llama (Llama, SmolLM, TinyLlama)"
                ))
            })?,
            None => return Err(err("field 'model_type' is missing".into())),
        };
        if let Some(act) = obj.get("hidden_act").and_then(Value::as_str)
            && act != "silu"
        {
            return Err(err(format!("field 'hidden_act' is '{act}'; only 'silu' is supported")));
        }
        if obj.get("use_sliding_window").and_then(Value::as_bool) == Some(true) {
            return Err(err(
                "field 'use_sliding_window' is true; sliding-window attention is not supported"
                    .into(),
            ));
        }
        if let Some(types) = obj.get("layer_types").and_then(Value::as_array)
            && let Some(bad) = types.iter().find(|t| t.as_str() != Some("full_attention"))
        {
            return Err(err(format!(
                "field 'layer_types' contains {bad}; only 'full_attention' layers are supported"
            )));
        }
        if obj.get("mlp_bias").and_then(Value::as_bool) == Some(true) {
            return Err(err("field 'mlp_bias' is true; biased MLPs are not supported".into()));
        }
        let mut rope_llama3 = rope_scaling(obj.get("rope_scaling"), "rope_scaling").map_err(err)?;

        let mut config: ModelConfig = serde_json::from_value(value.clone())
            .map_err(|e| err(format!("missing or mistyped field: {e}")))?;
        config.family = family;
        if config.dtype.is_none() {
            config.dtype = obj.get("torch_dtype").and_then(Value::as_str).map(str::to_string);
        }

        // transformers 5 nests RoPE settings under `rope_parameters`.
        if let Some(params) = obj.get("rope_parameters").filter(|v| !v.is_null()) {
            if let Some(l3) = rope_scaling(Some(params), "rope_parameters").map_err(err)? {
                rope_llama3 = Some(l3);
            }
            if let Some(theta) = params.get("rope_theta").and_then(Value::as_f64) {
                config.rope_theta = Some(theta);
            }
        }
        config.rope_llama3 = rope_llama3;
        if config.rope_theta.is_none() && family != Family::Llama {
            return Err(err(
                "field 'rope_theta' is missing (looked top-level and under 'rope_parameters')"
                    .into(),
            ));
        }
        // An explicit 0 is an error, not a request for the default.
        for field in ["num_key_value_heads", "head_dim"] {
            if obj.get(field).and_then(Value::as_u64) == Some(0) {
                return Err(err(format!("field '{field}' must be positive")));
            }
        }
        if config.head_dim == 0 && family == Family::Qwen3 {
            return Err(err("missing or mistyped field: missing field `head_dim`".into()));
        }
        config.fill_defaults();
        config.check().map_err(err)?;
        Ok(config)
    }

    /// Fills what a checkpoint may leave unset (0 or `None` here) with transformers' defaults,
    /// the same for `config.json` and GGUF metadata: key/value heads = query heads, `head_dim`
    /// = hidden / heads, and for Llama a RoPE base of 10,000 (`LlamaConfig`'s default).
    pub(crate) fn fill_defaults(&mut self) {
        if self.num_key_value_heads == 0 {
            self.num_key_value_heads = self.num_attention_heads;
        }
        if self.head_dim == 0 {
            self.head_dim = self.hidden_size / self.num_attention_heads.max(1);
        }
        if self.rope_theta.is_none() && self.family == Family::Llama {
            self.rope_theta = Some(10_000.0);
        }
    }

    /// `(in, out)` widths of a projection, named by its path inside a layer
    /// (`self_attn.q_proj`) or by its last part (`q_proj`).
    pub fn projection_dims(&self, name: &str) -> (usize, usize) {
        let (h, d, i) = (self.hidden_size, self.head_dim, self.intermediate_size);
        let (nq, nkv) = (self.num_attention_heads, self.num_key_value_heads);
        match name.rsplit('.').next().unwrap_or(name) {
            "q_proj" => (h, nq * d),
            "k_proj" | "v_proj" => (h, nkv * d),
            "o_proj" => (nq * d, h),
            "gate_proj" | "up_proj" => (h, i),
            _ => (i, h), // down_proj
        }
    }

    /// Whether q and k are RMS-normed per head before RoPE (Qwen3).
    pub fn qk_norm(&self) -> bool {
        self.family == Family::Qwen3
    }

    /// Whether the q, k and v projections carry biases.
    pub fn qkv_bias(&self) -> bool {
        self.family == Family::Qwen2 || self.attention_bias
    }

    /// Whether the output projection carries a bias.
    pub fn o_bias(&self) -> bool {
        self.family != Family::Qwen2 && self.attention_bias
    }

    /// RoPE base.
    pub fn theta(&self) -> f64 {
        self.rope_theta.unwrap_or(1_000_000.0)
    }

    /// Query heads per key/value head.
    pub fn group_size(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }

    /// Parameters excluding the embedding table (and any `lm_head`).
    pub fn non_embedding_params(&self) -> usize {
        let (h, d, i) = (self.hidden_size, self.head_dim, self.intermediate_size);
        let (nq, nkv) = (self.num_attention_heads, self.num_key_value_heads);
        let norms = if self.qk_norm() { 2 * d } else { 0 };
        let biases = if self.qkv_bias() { (nq + 2 * nkv) * d } else { 0 }
            + if self.o_bias() { h } else { 0 };
        let attn = h * nq * d + 2 * h * nkv * d + nq * d * h + norms + biases;
        let mlp = 3 * h * i;
        self.num_hidden_layers * (attn + mlp + 2 * h) + h
    }

    /// Parameters of the embedding table.
    pub fn embedding_params(&self) -> usize {
        self.vocab_size * self.hidden_size
    }

    /// Checks the numbers are usable (positive sizes, heads divisible, even head_dim, ...).
    pub fn check(&self) -> std::result::Result<(), String> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("field '{name}' must be positive"));
        }
        // Upper bounds above every real checkpoint up to 70B (Llama 3 70B: hidden 8,192, MLP
        // 28,672, 80 layers, 64 heads; Qwen2.5-72B: vocab 152,064, MLP 29,568): a crafted
        // config.json or GGUF is refused here, before anything is allocated from it.
        for ((name, v), max) in positive.iter().zip(MAX_SIZES) {
            if *v > max {
                return Err(format!(
                    "field '{name}' ({v}) is above {max}, beyond any checkpoint this project runs"
                ));
            }
        }
        // The largest tensors in f32 bytes must be addressable here (wasm32 has 32-bit sizes).
        let h = self.hidden_size;
        let products = [
            ("vocab_size × hidden_size", self.vocab_size, h),
            ("hidden_size × intermediate_size", h, self.intermediate_size),
            (
                "num_attention_heads × head_dim × hidden_size",
                self.num_attention_heads * self.head_dim,
                h,
            ),
        ];
        for (what, a, b) in products {
            if a.checked_mul(b).and_then(|n| n.checked_mul(4)).is_none() {
                return Err(format!("{what} ({a} × {b}) is too large for this platform"));
            }
        }
        if !self.num_attention_heads.is_multiple_of(self.num_key_value_heads) {
            return Err(format!(
                "field 'num_attention_heads' ({}) must be a multiple of 'num_key_value_heads' ({})",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(format!("field 'head_dim' ({}) must be even for RoPE", self.head_dim));
        }
        if !(self.rms_norm_eps > 0.0 && self.rms_norm_eps.is_finite()) {
            return Err(format!("field 'rms_norm_eps' ({}) must be positive", self.rms_norm_eps));
        }
        if !self.theta().is_finite() || self.theta() <= 1.0 {
            return Err(format!("field 'rope_theta' ({}) must be > 1", self.theta()));
        }
        Ok(())
    }

    /// The Qwen3-0.6B / LMT-60-0.6B architecture (docs/method.md, The small model), for benchmarks with random
    /// weights.
    pub fn qwen3_0_6b() -> Self {
        Self {
            family: Family::Qwen3,
            vocab_size: 151_936,
            hidden_size: 1024,
            intermediate_size: 3072,
            num_hidden_layers: 28,
            num_attention_heads: 16,
            num_key_value_heads: 8,
            head_dim: 128,
            rms_norm_eps: 1e-6,
            rope_theta: Some(1_000_000.0),
            rope_llama3: None,
            attention_bias: false,
            tie_word_embeddings: true,
            dtype: Some("bfloat16".into()),
            max_position_embeddings: Some(32_768),
        }
    }

    /// A stable identity of the architecture and its numbers, used to tie a router folder to the
    /// base model it was trained on: FNV-1a (64-bit) over a canonical text of the numbers that
    /// change the math (`qwen3;v{vocab};h{hidden};i{mlp};l{layers};q{heads};kv{kv heads};
    /// d{head_dim};eps{eps};theta{theta}`), with the family's name first and, for options that
    /// change the math beyond Qwen3's defaults, `;bias` and `;rope3{...}` appended (so every
    /// Qwen3 fingerprint is what it was before other families existed). Weights are not hashed:
    /// a fine-tuned checkpoint of the same architecture has the same fingerprint.
    pub fn fingerprint(&self) -> String {
        let mut canonical = format!(
            "{};v{};h{};i{};l{};q{};kv{};d{};eps{:e};theta{:e}",
            self.family.name(),
            self.vocab_size,
            self.hidden_size,
            self.intermediate_size,
            self.num_hidden_layers,
            self.num_attention_heads,
            self.num_key_value_heads,
            self.head_dim,
            self.rms_norm_eps,
            self.theta()
        );
        if self.attention_bias {
            canonical.push_str(";bias");
        }
        if let Some(r) = &self.rope_llama3 {
            canonical.push_str(&format!(
                ";rope3{:e},{:e},{:e},{:e}",
                r.factor, r.low_freq_factor, r.high_freq_factor, r.original_max_position_embeddings
            ));
        }
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in canonical.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }
}

/// `rope_scaling` (or a nested `rope_parameters`) may be absent, null, the default type, or
/// Llama 3's scaling (returned).
fn rope_scaling(v: Option<&Value>, field: &str) -> std::result::Result<Option<Llama3Rope>, String> {
    let Some(v) = v.filter(|v| !v.is_null()) else { return Ok(None) };
    let kind = v.get("rope_type").or_else(|| v.get("type")).and_then(Value::as_str);
    match kind {
        None | Some("default") => Ok(None),
        Some("llama3") => {
            let num = |k: &str| {
                v.get(k)
                    .and_then(Value::as_f64)
                    .ok_or_else(|| format!("field '{field}.{k}' is missing (rope_type llama3)"))
            };
            Ok(Some(Llama3Rope {
                factor: num("factor")?,
                low_freq_factor: num("low_freq_factor")?,
                high_freq_factor: num("high_freq_factor")?,
                original_max_position_embeddings: num("original_max_position_embeddings")?,
            }))
        }
        Some(other) => Err(format!(
            "field '{field}' asks for RoPE scaling type '{other}'; only the default RoPE and \
             'llama3' are supported"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> serde_json::Map<String, Value> {
        serde_json::from_str(
            r#"{"model_type":"qwen3","vocab_size":512,"hidden_size":64,"intermediate_size":96,
            "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":32,
            "rms_norm_eps":1e-6,"rope_theta":1000000.0,"torch_dtype":"float32"}"#,
        )
        .unwrap()
    }

    fn parse(m: &serde_json::Map<String, Value>) -> Result<ModelConfig> {
        ModelConfig::from_json(serde_json::to_string(m).unwrap().as_bytes(), "config.json")
    }

    #[test]
    fn both_dtype_spellings_and_nested_rope() {
        let c = parse(&base()).unwrap();
        assert_eq!(c.dtype.as_deref(), Some("float32"));
        let mut m = base();
        m.remove("torch_dtype");
        m.remove("rope_theta");
        m.insert("dtype".into(), "bfloat16".into());
        m.insert(
            "rope_parameters".into(),
            serde_json::json!({"rope_type": "default", "rope_theta": 10000.0}),
        );
        let c = parse(&m).unwrap();
        assert_eq!(c.dtype.as_deref(), Some("bfloat16"));
        assert_eq!(c.theta(), 10000.0);
        // Both spellings at once (as some transformers versions write): `dtype` wins.
        m.insert("torch_dtype".into(), "float32".into());
        assert_eq!(parse(&m).unwrap().dtype.as_deref(), Some("bfloat16"));
    }

    #[test]
    fn sizes_beyond_any_real_checkpoint_are_refused_naming_the_field() {
        for (field, value) in [
            ("num_hidden_layers", 1_000_000_000_000u64),
            ("vocab_size", 1 << 21),
            ("hidden_size", 1 << 17),
            ("intermediate_size", 1 << 19),
            ("num_attention_heads", 4096),
            ("head_dim", 4096),
        ] {
            let mut m = base();
            m.insert(field.into(), value.into());
            let e = parse(&m).unwrap_err().to_string();
            assert!(e.starts_with("config.json: field '") && e.contains(field), "{field}: {e}");
        }
        // The largest real shapes pass (Llama 3 70B's).
        let mut m = base();
        for (k, v) in [
            ("hidden_size", 8192),
            ("intermediate_size", 28672),
            ("num_hidden_layers", 80),
            ("num_attention_heads", 64),
            ("num_key_value_heads", 8),
            ("head_dim", 128),
            ("vocab_size", 128_256),
        ] {
            m.insert(k.into(), v.into());
        }
        parse(&m).unwrap();
    }

    #[test]
    fn unsupported_features_name_the_field() {
        let cases: Vec<(&str, Value, &str)> = vec![
            ("use_sliding_window", Value::Bool(true), "use_sliding_window"),
            (
                "rope_scaling",
                serde_json::json!({"rope_type": "yarn", "factor": 4.0}),
                "rope_scaling",
            ),
            ("model_type", "gemma".into(), "model_type"),
            ("mlp_bias", Value::Bool(true), "mlp_bias"),
            (
                "layer_types",
                serde_json::json!(["full_attention", "sliding_attention"]),
                "layer_types",
            ),
        ];
        for (k, v, needle) in cases {
            let mut m = base();
            m.insert(k.into(), v);
            let e = parse(&m).unwrap_err().to_string();
            assert!(e.starts_with("config.json: ") && e.contains(needle), "{k}: {e}");
        }
        let mut m = base();
        m.remove("head_dim");
        let e = parse(&m).unwrap_err().to_string();
        assert!(e.contains("head_dim"), "{e}");
        let mut m = base();
        m.insert("num_key_value_heads".into(), 3.into());
        assert!(parse(&m).unwrap_err().to_string().contains("num_key_value_heads"));
        assert!(
            ModelConfig::from_json(b"{not json", "x/config.json")
                .unwrap_err()
                .to_string()
                .starts_with("x/config.json: not valid JSON")
        );
    }

    #[test]
    fn families_fill_their_defaults() {
        let mut m = base();
        m.insert("model_type".into(), "qwen2".into());
        m.remove("head_dim");
        let c = parse(&m).unwrap();
        assert_eq!(
            (c.family, c.head_dim, c.qkv_bias(), c.o_bias(), c.qk_norm()),
            (Family::Qwen2, 16, true, false, false)
        );
        let mut m = base();
        m.insert("model_type".into(), "llama".into());
        m.remove("rope_theta");
        m.remove("num_key_value_heads");
        m.insert("attention_bias".into(), true.into());
        let c = parse(&m).unwrap();
        assert_eq!(
            (c.theta(), c.num_key_value_heads, c.qkv_bias(), c.o_bias()),
            (10_000.0, 4, true, true)
        );
        // Qwen3 still needs head_dim, and another family changes the fingerprint.
        let mut m = base();
        m.remove("head_dim");
        assert!(parse(&m).unwrap_err().to_string().contains("head_dim"));
        let q3 = parse(&base()).unwrap();
        let mut m = base();
        m.insert("model_type".into(), "llama".into());
        assert_ne!(parse(&m).unwrap().fingerprint(), q3.fingerprint());
    }

    #[test]
    fn llama3_rope_scaling_is_read_and_fingerprinted() {
        let mut m = base();
        m.insert("model_type".into(), "llama".into());
        m.insert(
            "rope_scaling".into(),
            serde_json::json!({"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
        );
        let c = parse(&m).unwrap();
        assert_eq!(c.rope_llama3.unwrap().factor, 32.0);
        m.remove("rope_scaling");
        assert_ne!(parse(&m).unwrap().fingerprint(), c.fingerprint());
    }

    /// Routers written before other families existed still match their Qwen3 base.
    #[test]
    fn qwen3_fingerprints_are_unchanged() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/models/tiny-default");
        let bytes = std::fs::read(format!("{dir}/config.json")).unwrap();
        let c = ModelConfig::from_json(&bytes, "config.json").unwrap();
        let router = concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/demo/router/router.json");
        let r: Value = serde_json::from_slice(&std::fs::read(router).unwrap()).unwrap();
        assert_eq!(r["base_fingerprint"].as_str(), Some(c.fingerprint().as_str()));
    }

    #[test]
    fn qwen3_0_6b_counts_match_the_reference() {
        let c = ModelConfig::qwen3_0_6b();
        // docs/method.md (The small model): 440M non-embedding parameters.
        let n = c.non_embedding_params() as f64 / 1e6;
        assert!((n - 440.0).abs() < 1.0, "{n}");
    }
}
