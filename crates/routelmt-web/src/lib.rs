//! RouteLMT in the browser: one `Router` class for JavaScript, a front door like the CLI onto
//! the same model, router folders and routing code. Records in and out have the CLI's JSON
//! schema; every method is async; errors reject with an `Error` whose message is the one-line
//! text the CLI prints. Runs in a window or a worker, on WebGPU or the wasm CPU backend.
//!
//! ```js
//! import init, { Router } from "./pkg/routelmt_web.js";
//! await init();
//! const router = await Router.load({ model: "https://host/LMT-60-0.6B/", router: "https://host/my-router/" });
//! const routed = await router.route([{ id: 1, src: "Hallo Welt", src_lang: "de", tgt_lang: "en" }], { budget: 0.3 });
//! ```

use routelmt_model::{
    LoadOptions, Model, Precision, PrepareOptions, Prepared, Scorer, Tokenizer, one_line,
};

use crate::error::WebError;
use routelmt_route::{Budget, Calibration, Direction, Rule};
use serde::Serialize;
use serde_json::{Map, Value, json};
use wasm_bindgen::prelude::*;

mod device;
mod error;
mod files;

/// Runs the static constructors (the `inventory` registrations of burn's GPU compiler) once,
/// when the module starts. wasm-ld links this module "command-style": unless the module calls
/// `__wasm_call_ctors` itself, it wraps *every* exported function in a call to all of them,
/// which cost about 35 ms on each call into the package (measured in Chromium's profiler) and
/// re-registered them each time. Calling it here, once, turns that wrapping off. Not in the
/// threaded build, which has no constructors (no wgpu) and its own start-up code.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
#[wasm_bindgen(start)]
#[allow(unsafe_code)]
fn run_static_constructors() {
    unsafe extern "C" {
        fn __wasm_call_ctors();
    }
    // SAFETY: wasm-ld defines `__wasm_call_ctors` for every module; it takes no arguments and
    // runs the constructors, and wasm-bindgen calls a `start` function exactly once, right
    // after instantiation and before any export.
    unsafe { __wasm_call_ctors() }
}

/// `initThreadPool(n)`: starts `n` Web Workers for the wasm CPU path's threads. Only in the
/// threaded build (`+atomics`, web/pkg/threads), which needs a cross-origin isolated page.
#[cfg(target_feature = "atomics")]
pub use wasm_bindgen_rayon::init_thread_pool;

use files::Source;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &str = r#"
/** A base URL of a Hugging Face-layout folder (a `.../resolve/main/` prefix works), the URL of one `.gguf` file, or picked files (a folder's files, or one `.gguf` File). */
export type Source = string | File | File[] | FileList;
/** Download and read progress. */
export interface Progress { phase: "model" | "router" | "tokenizer" | "load"; file: string; loaded: number; total: number }
export interface LoadOptions {
  model: Source;
  router?: Source;
  /** tokenizer.json's folder or files (with tokenizer_config.json for the chat template), if not in `model`. */
  tokenizer?: Source;
  device?: "auto" | "webgpu" | "cpu";
  /** How the decoder's weights are held in memory: "auto" (on the wasm CPU q4 for a 4-bit GGUF, else q8; f32 on WebGPU), "f32", "f16" (wasm CPU only), "q8" or "q4" (the embedding table is held likewise as q8 or q4). */
  weights?: "auto" | "f32" | "f16" | "q8" | "q4";
  onProgress?: (p: Progress) => void;
}
/** A request: `id` and either `input_ids` or `src`, `src_lang`, `tgt_lang`; other fields are kept. */
export interface RouteRequest { id: unknown; src?: string; src_lang?: string; tgt_lang?: string; input_ids?: number[]; [field: string]: unknown }
export interface Features { id: unknown; n_tokens: number; hidden: number[] }
export interface FeaturesOptions { layer?: number }
export interface RouteOptions { budget?: number; threshold?: number }
export type Scored = RouteRequest & { score: number; pred_quality?: number };
export type Routed = Scored & { route: "large" | "small" };
export interface Info {
  device: "webgpu" | "cpu"; reason: string; adapter: string | null;
  limits: { maxStorageBufferBindingSize: number; maxBufferSize: number; needed: number } | null;
  shader_f16: boolean; model: Record<string, unknown>; params: { non_embedding: number; embedding: number };
  weights: "f32" | "f16" | "q8" | "q4"; embedding_dtype: string; weight_bytes: number | null; embedding_bytes: number;
  wasm_memory_bytes: number | null; router: Record<string, unknown> | null;
}
"#;

/// A record as a JSON object, to which results are added.
type Record = Map<String, Value>;

/// Prompts per device pass.
const BATCH: usize = 16;

fn js_err(message: impl AsRef<str>) -> JsError {
    JsError::new(message.as_ref())
}

fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsError> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| js_err(format!("cannot return the result: {e}")))
}

/// An option's value; `None` when absent, undefined or null.
fn field(options: &JsValue, name: &str) -> Option<JsValue> {
    let v = match options.is_object() {
        true => js_sys::Reflect::get(options, &JsValue::from_str(name)).ok()?,
        false => return None,
    };
    (!v.is_undefined() && !v.is_null()).then_some(v)
}

fn number_option(options: &JsValue, name: &str) -> Result<Option<f64>, JsError> {
    field(options, name)
        .map(|v| v.as_f64().ok_or_else(|| js_err(format!("option '{name}' must be a number"))))
        .transpose()
}

/// The loaded model, with the router's adapter merged when a router was given.
enum Loaded {
    Plain(Box<Model>),
    Routed(Box<Scorer>),
}

impl Loaded {
    fn model(&self) -> &Model {
        match self {
            Self::Plain(m) => m,
            Self::Routed(s) => s.model(),
        }
    }
}

/// A small model, optionally with a trained router, ready to route in this page or worker.
#[wasm_bindgen]
pub struct Router {
    loaded: Loaded,
    tokenizer: Option<Tokenizer>,
    device: device::Chosen,
    model_source: String,
    format: &'static str,
    weights: Precision,
    dtypes: Vec<String>,
}

/// The `weights` load option: how the decoder's weights are held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Weights {
    /// q8 on the wasm CPU, f32 on WebGPU.
    Auto,
    /// As asked.
    Fixed(Precision),
}

impl Weights {
    fn parse(s: Option<String>) -> Result<Self, JsError> {
        match s.as_deref().unwrap_or("auto") {
            "auto" => Ok(Self::Auto),
            other => other
                .parse()
                .map(Self::Fixed)
                .map_err(|e: String| js_err(format!("option 'weights': {e}"))),
        }
    }

    /// The precision on a device of `kind` ("cpu" or "webgpu") for a model whose projections
    /// are stored 4-bit or not: `auto` is q4 on the wasm CPU for a 4-bit file, else q8 there,
    /// and f32 on WebGPU.
    fn resolve(self, kind: &str, four_bit: bool) -> Precision {
        match self {
            Self::Fixed(p) => p,
            Self::Auto if kind == "cpu" && four_bit => Precision::Q4,
            Self::Auto if kind == "cpu" => Precision::Q8,
            Self::Auto => Precision::F32,
        }
    }
}

#[wasm_bindgen]
impl Router {
    /// Loads a model folder (and a router folder trained on it) from URLs or picked files.
    /// Downloads are streamed with progress and kept in the Cache API; the same strict checks
    /// as the CLI apply (missing file, truncated safetensors, wrong shape, router made for
    /// another base model).
    pub async fn load(
        #[wasm_bindgen(unchecked_param_type = "LoadOptions")] options: JsValue,
    ) -> Result<Router, JsError> {
        console_error_panic_hook::set_once();
        let progress = field(&options, "onProgress").unwrap_or(JsValue::UNDEFINED);
        let Some(model_value) = field(&options, "model") else {
            return Err(js_err("option 'model' is required: a base URL or a list of files"));
        };
        let want =
            device::Want::parse(field(&options, "device").and_then(|d| d.as_string()).as_deref())?;
        let model = Source { value: &model_value, phase: "model", on_progress: &progress };
        let mut opened = files::ModelFiles::open(&model).await?;
        let config = opened.config.clone();
        let chosen = device::choose(want).await?;
        let weights = Weights::parse(field(&options, "weights").and_then(|w| w.as_string()))?
            .resolve(chosen.kind, opened.four_bit());
        let router = match field(&options, "router") {
            Some(value) => {
                let source = Source { value: &value, phase: "router", on_progress: &progress };
                Some(files::router(&source, &config, &chosen.device).await?)
            }
            None => None,
        };
        // tokenizer.json from the `tokenizer` option, else the model's own (a GGUF file's, or
        // the folder's if it has one).
        let tokenizer = match field(&options, "tokenizer") {
            Some(value) => {
                let source = Source { value: &value, phase: "tokenizer", on_progress: &progress };
                files::tokenizer(&source, false).await?
            }
            None if opened.tokenizer.is_some() => opened.tokenizer.take(),
            None => {
                let source =
                    Source { value: &model_value, phase: "tokenizer", on_progress: &progress };
                files::tokenizer(&source, true).await?
            }
        };
        // A router's prompts use the chat template as it was trained (`chat_template` in
        // router.json).
        let mode =
            router.as_ref().map_or(routelmt_model::ChatMode::Auto, |r| r.config.chat_template);
        let tokenizer = tokenizer.map(|t| t.with_mode(mode));
        let format = opened.format;
        let opts = LoadOptions { lm_head: false, weights: Some(weights) };
        let edit = router.as_ref().and_then(|r| r.merge_edit(&chosen.device));
        let (loaded_model, report) = opened.load(&model, opts, edit, &chosen.device).await?;
        let loaded = match router {
            Some(r) => Loaded::Routed(Box::new(
                Scorer::new(loaded_model, r, None).map_err(WebError::from)?,
            )),
            None => Loaded::Plain(Box::new(loaded_model)),
        };
        Ok(Router {
            loaded,
            tokenizer,
            device: chosen,
            model_source: model.describe(),
            format,
            weights,
            dtypes: report.dtypes.into_iter().collect(),
        })
    }

    /// Last-prompt-token hidden states, as `routelmt features` writes them.
    #[wasm_bindgen(unchecked_return_type = "Features[]")]
    pub async fn features(
        &self,
        #[wasm_bindgen(unchecked_param_type = "RouteRequest[]")] records: JsValue,
        #[wasm_bindgen(unchecked_param_type = "FeaturesOptions | undefined")] options: JsValue,
    ) -> Result<JsValue, JsError> {
        let model = self.loaded.model();
        let layers = model.config.num_hidden_layers;
        let layer = match number_option(&options, "layer")? {
            None => layers,
            Some(l) if l >= 0.0 && l.fract() == 0.0 && l as usize <= layers => l as usize,
            Some(l) => {
                return Err(js_err(format!(
                    "layer {l} out of range: 0 (embeddings) to {layers} (final)"
                )));
            }
        };
        let (_, prepared) = self.prepare(records, None)?;
        let ids: Vec<Vec<u32>> = prepared.iter().map(|p| p.ids.clone()).collect();
        let hidden = model
            .last_hidden(&ids, layer, BATCH)
            .map_err(WebError::from)?
            .read_async()
            .await
            .map_err(WebError::from)?;
        let out: Vec<Value> = prepared
            .into_iter()
            .zip(hidden)
            .map(|(p, h)| json!({"id": p.id, "n_tokens": p.ids.len(), "hidden": h}))
            .collect();
        to_js(&out)
    }

    /// Records with `score` added (and `pred_quality` for a `both` head), as `routelmt score`.
    #[wasm_bindgen(unchecked_return_type = "Scored[]")]
    pub async fn score(
        &self,
        #[wasm_bindgen(unchecked_param_type = "RouteRequest[]")] records: JsValue,
    ) -> Result<JsValue, JsError> {
        let (scored, _) = self.scored(records).await?;
        to_js(&scored)
    }

    /// Records with `score` and `route` ("large" | "small"): the top `budget` share of this
    /// batch goes large, or those above `threshold`; with neither, the router folder's
    /// calibrated threshold decides.
    #[wasm_bindgen(unchecked_return_type = "Routed[]")]
    pub async fn route(
        &self,
        #[wasm_bindgen(unchecked_param_type = "RouteRequest[]")] records: JsValue,
        #[wasm_bindgen(unchecked_param_type = "RouteOptions | undefined")] options: JsValue,
    ) -> Result<JsValue, JsError> {
        let mut rule = self.rule(&options)?;
        let (mut scored, scores) = self.scored(records).await?;
        let routes = rule.decide_column(&scores, None).map_err(WebError::from)?;
        for (record, route) in scored.iter_mut().zip(routes) {
            record.insert("route".into(), Value::from(route.as_str()));
        }
        to_js(&scored)
    }

    /// The device (and why), the adapter and its limits, the model and the router.
    #[wasm_bindgen(unchecked_return_type = "Info")]
    pub fn info(&self) -> Result<JsValue, JsError> {
        let model = self.loaded.model();
        let c = &model.config;
        let router = match &self.loaded {
            Loaded::Routed(s) => serde_json::to_value(&s.router().config).ok(),
            Loaded::Plain(_) => None,
        };
        to_js(&json!({
            "device": self.device.kind,
            "reason": self.device.reason,
            "adapter": self.device.adapter,
            "limits": self.device.limits,
            "shader_f16": self.device.shader_f16,
            // Threads of the wasm CPU kernels: more than 1 only in the threaded build, after
            // `initThreadPool` (the GPU path does not use them).
            "cpu_threads": routelmt_model::cpu::threads(),
            "model": {
                "source": self.model_source,
                "format": self.format,
                "architecture": c.family.name(),
                "layers": c.num_hidden_layers,
                "hidden_size": c.hidden_size,
                "attention_heads": c.num_attention_heads,
                "kv_heads": c.num_key_value_heads,
                "head_dim": c.head_dim,
                "vocab_size": c.vocab_size,
                "fingerprint": c.fingerprint(),
                "dtype_on_disk": self.dtypes,
                "tokenizer": self.tokenizer.is_some(),
            },
            "params": { "non_embedding": c.non_embedding_params(), "embedding": c.embedding_params() },
            // How the decoder's weights are held (the `weights` option), and the embedding table.
            "weights": self.weights.name(),
            "embedding_dtype": model.embed_tokens.dtype(),
            "weight_bytes": model.cpu_decoder().map(|c| c.weight_bytes()),
            "embedding_bytes": model.embed_tokens.host_bytes(),
            "wasm_memory_bytes": wasm_memory_bytes(),
            "router": router,
        }))
    }
}

impl Router {
    fn scorer(&self) -> Result<&Scorer, JsError> {
        match &self.loaded {
            Loaded::Routed(s) => Ok(s),
            Loaded::Plain(_) => Err(js_err("no router loaded: pass `router` to Router.load")),
        }
    }

    /// Parses and prepares records; returns the JSON objects (to add fields to) and the
    /// prepared requests. A bad record rejects the whole call, naming it.
    fn prepare(
        &self,
        records: JsValue,
        style: Option<routelmt_model::PromptStyle>,
    ) -> Result<(Vec<Record>, Vec<Prepared>), JsError> {
        let values: Vec<Value> = serde_wasm_bindgen::from_value(records)
            .map_err(|e| js_err(format!("records must be an array of objects: {e}")))?;
        let opts = PrepareOptions {
            style: style.unwrap_or_default(),
            allow_ids: true,
            vocab: Some(self.loaded.model().config.vocab_size),
        };
        let source: &dyn routelmt_model::TokenizerSource = match &self.tokenizer {
            Some(t) => t,
            None => &NoTokenizer,
        };
        let mut objects = Vec::with_capacity(values.len());
        let mut prepared = Vec::with_capacity(values.len());
        for (i, v) in values.into_iter().enumerate() {
            let at = |m: String| js_err(format!("record {}: {m}", i + 1));
            let Value::Object(obj) = v else { return Err(at("expected a JSON object".into())) };
            let p = routelmt_model::text::request::prepare_value(
                Value::Object(obj.clone()),
                source,
                opts,
            )
            .map_err(|e| at(one_line(&e)))?;
            objects.push(obj);
            prepared.push(p);
        }
        Ok((objects, prepared))
    }

    /// Records with the scorer's fields added, and the routing scores.
    async fn scored(
        &self,
        records: JsValue,
    ) -> Result<(Vec<Map<String, Value>>, Vec<f64>), JsError> {
        let scorer = self.scorer()?;
        let (mut objects, prepared) = self.prepare(records, Some(scorer.prompt_style()))?;
        let ids: Vec<Vec<u32>> = prepared.iter().map(|p| p.ids.clone()).collect();
        let outputs = scorer
            .score(&ids, BATCH)
            .map_err(WebError::from)?
            .read_async()
            .await
            .map_err(WebError::from)?;
        let mut scores = Vec::with_capacity(outputs.len());
        for (obj, out) in objects.iter_mut().zip(&outputs) {
            for (name, value) in scorer.fields(out) {
                obj.insert(name.into(), value);
            }
            scores.push(f64::from(out[0]));
        }
        Ok((objects, scores))
    }

    /// The decision rule of `route`'s options.
    fn rule(&self, options: &JsValue) -> Result<Rule, JsError> {
        let scorer = self.scorer()?;
        let order = if scorer.lowest_first() { Direction::Asc } else { Direction::Desc };
        let err = |e: routelmt_route::RouteError| js_err(one_line(&e));
        match (number_option(options, "budget")?, number_option(options, "threshold")?) {
            (Some(_), Some(_)) => Err(js_err("give `budget` or `threshold`, not both")),
            (Some(p), None) => Ok(Rule::top_p(Budget::new(p).map_err(err)?, order)),
            (None, Some(t)) if t.is_finite() => Ok(Rule::threshold(t, order)),
            (None, Some(t)) => Err(js_err(format!("threshold must be a finite number, got {t}"))),
            (None, None) => {
                let Some(t) = &scorer.router().config.threshold else {
                    return Err(js_err(
                        "router.json has no calibrated threshold; give `budget` or `threshold`",
                    ));
                };
                let bytes = serde_json::to_vec(t).map_err(|e| js_err(e.to_string()))?;
                let cal = Calibration::from_json(&bytes, "router.json").map_err(err)?;
                Rule::from_calibration(&cal, "router.json", "score", scorer.lowest_first())
                    .map_err(err)
            }
        }
    }
}

/// The size of this module's linear memory (it only grows): the high-water mark of wasm memory.
fn wasm_memory_bytes() -> Option<f64> {
    #[cfg(target_arch = "wasm32")]
    {
        let memory: js_sys::WebAssembly::Memory = wasm_bindgen::memory().dyn_into().ok()?;
        let buffer = memory.buffer();
        js_sys::Reflect::get(&buffer, &JsValue::from_str("byteLength")).ok()?.as_f64()
    }
    #[cfg(not(target_arch = "wasm32"))]
    None
}

/// The tokenizer source of a model folder without `tokenizer.json`: requests must carry ids.
struct NoTokenizer;

impl routelmt_model::TokenizerSource for NoTokenizer {
    fn tokenizer(&self) -> Result<&Tokenizer, routelmt_model::ModelError> {
        Err(routelmt_model::ModelError::Input(
            "the model folder has no tokenizer.json: give `input_ids`, or pass `tokenizer` to \
             Router.load"
                .into(),
        ))
    }
}

/// The 60 LMT-60 languages as `[{code, name}]`, in the model card's order.
#[wasm_bindgen(unchecked_return_type = "{ code: string; name: string }[]")]
pub fn languages() -> Result<JsValue, JsError> {
    let list: Vec<Value> = routelmt_model::text::prompt::LANGUAGES
        .iter()
        .map(|(code, name)| json!({"code": code, "name": name}))
        .collect();
    to_js(&list)
}

/// The LMT instruction (the user message a translation model is sent) for a request; the
/// same text the router's prompt wraps in the chat template.
#[wasm_bindgen(js_name = userMessage)]
pub fn user_message(text: &str, src_lang: &str, tgt_lang: &str) -> Result<String, JsError> {
    routelmt_model::text::prompt::user_message(text, src_lang, tgt_lang, Default::default())
        .map_err(|e| js_err(one_line(&e)))
}

/// Removes every downloaded model and router file from the Cache API (a file is otherwise never
/// downloaded again from the same URL: call this after replacing a router or model there).
#[wasm_bindgen(js_name = clearCache)]
pub async fn clear_cache() -> Result<(), JsError> {
    files::clear_cache().await.map(|_| ()).map_err(|e| js_err(files::js_message(&e)))
}
