//! Reading the files of a model folder and a router folder in the browser, through the JS
//! helpers in `js/io.js` (fetch with byte progress and the Cache API, or picked `File`s), and
//! turning them into the model crate's values with the same strict checks as natively.

use burn::tensor::Device;
use routelmt_model::checkpoint::{
    CHAT_TEMPLATE_JINJA, CONFIG_JSON, GgufCheckpoint, INDEX, RangeLoad, SINGLE, TOKENIZER_CONFIG,
    TOKENIZER_JSON, TensorIndex, shard_names,
};
use routelmt_model::formats::dtype::Stored;
use routelmt_model::formats::safetensors::header_end;
use routelmt_model::router::{ADAPTER_CONFIG, ADAPTER_WEIGHTS, HEAD_FILE, ROUTER_JSON};
use routelmt_model::{
    LayerEdit, LoadOptions, LoadReport, Model, ModelConfig, Named, Router, RouterFiles, Tokenizer,
};
use wasm_bindgen::prelude::*;

use crate::error::{Result, WebError};

#[wasm_bindgen(module = "/js/io.js")]
extern "C" {
    #[wasm_bindgen(catch, js_name = openSource)]
    async fn open_source(
        source: &JsValue,
        name: &str,
        phase: &str,
        on_progress: &JsValue,
        optional: bool,
    ) -> std::result::Result<JsValue, JsValue>;

    #[wasm_bindgen(js_name = sizeOf)]
    fn size_of(handle: &JsValue) -> f64;

    #[wasm_bindgen(catch, js_name = readRange)]
    async fn read_range(
        handle: &JsValue,
        start: f64,
        end: f64,
    ) -> std::result::Result<JsValue, JsValue>;

    #[wasm_bindgen(js_name = ggufName)]
    fn gguf_name(source: &JsValue) -> Option<String>;

    #[wasm_bindgen(js_name = describeSource)]
    pub fn describe_source(source: &JsValue) -> String;

    #[wasm_bindgen(catch, js_name = clearCache)]
    pub async fn clear_cache() -> std::result::Result<JsValue, JsValue>;
}

/// An opened file: read in byte ranges, never whole.
struct Opened {
    name: String,
    handle: JsValue,
    size: u64,
}

impl Opened {
    async fn range(&self, start: u64, end: u64) -> Result<Vec<u8>> {
        let v = read_range(&self.handle, start as f64, end as f64)
            .await
            .map_err(|e| WebError::Js(format!("{}: {}", self.name, js_message(&e))))?;
        Ok(js_sys::Uint8Array::new(&v).to_vec())
    }
}

/// Where files come from: a base URL or picked files, with the progress callback.
pub struct Source<'a> {
    /// The JS value: a string (base URL) or a list of `File`s.
    pub value: &'a JsValue,
    /// Progress phase reported to `onProgress`: "model", "router" or "tokenizer".
    pub phase: &'static str,
    /// The `onProgress` callback (or undefined).
    pub on_progress: &'a JsValue,
}

/// A JS exception as a message.
pub fn js_message(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"))
}

impl Source<'_> {
    /// The bytes of `name`, or `None` when `optional` and the source has no such file.
    pub async fn read(&self, name: &str, optional: bool) -> Result<Option<Vec<u8>>> {
        match self.open(name, optional).await? {
            Some(file) => Ok(Some(file.range(0, file.size).await?)),
            None => Ok(None),
        }
    }

    /// An opened file, or `None` when `optional` and the source has no such file. The name ""
    /// opens the source itself (a GGUF file's URL or `File`).
    async fn open(&self, name: &str, optional: bool) -> Result<Option<Opened>> {
        let handle = open_source(self.value, name, self.phase, self.on_progress, optional)
            .await
            .map_err(|e| WebError::Js(js_message(&e)))?;
        if handle.is_null() || handle.is_undefined() {
            return Ok(None);
        }
        let size = size_of(&handle) as u64;
        let name = if name.is_empty() { self.describe() } else { name.to_string() };
        Ok(Some(Opened { name, handle, size }))
    }

    /// Tells `onProgress` about a phase that is not a download (e.g. tensors uploaded).
    pub fn progress(&self, phase: &str, file: &str, loaded: f64, total: f64) {
        if let Some(f) = self.on_progress.dyn_ref::<js_sys::Function>() {
            let p = js_sys::Object::new();
            for (k, v) in [
                ("phase", JsValue::from_str(phase)),
                ("file", JsValue::from_str(file)),
                ("loaded", JsValue::from_f64(loaded)),
                ("total", JsValue::from_f64(total)),
            ] {
                let _ = js_sys::Reflect::set(&p, &JsValue::from_str(k), &v);
            }
            let _ = f.call1(&JsValue::NULL, &p);
        }
    }

    /// The bytes of a file the folder must have.
    pub async fn require(&self, name: &str) -> Result<Vec<u8>> {
        self.read(name, false).await?.ok_or_else(|| WebError::Missing(name.to_string()))
    }

    /// A name for messages: the URL or the picked files.
    pub fn describe(&self) -> String {
        describe_source(self.value)
    }
}

/// The tokenizer: `tokenizer.json` of `source` (`None` when `optional` and absent), with the
/// chat template of the `tokenizer_config.json` (or `chat_template.jinja`) beside it, if any.
pub async fn tokenizer(source: &Source<'_>, optional: bool) -> Result<Option<Tokenizer>> {
    let Some(json) = source.read(TOKENIZER_JSON, optional).await? else { return Ok(None) };
    let config = source.read(TOKENIZER_CONFIG, true).await?;
    let jinja = source.read(CHAT_TEMPLATE_JINJA, true).await?;
    let tok = Tokenizer::from_folder(
        Named::new(TOKENIZER_JSON, &json),
        config.as_deref().map(|b| Named::new(TOKENIZER_CONFIG, b)),
        jinja.as_deref().map(|b| Named::new(CHAT_TEMPLATE_JINJA, b)),
    )?;
    Ok(Some(tok))
}

/// The first bytes of a GGUF file read for its head; doubled until the tensor table fits.
const GGUF_HEAD: u64 = 1 << 20;

/// A model source opened: its config, where each tensor is, and (for a GGUF file) the
/// tokenizer and chat template it carries. Only headers have been read.
pub struct ModelFiles {
    /// The decoder config (`config.json`, or the GGUF metadata).
    pub config: ModelConfig,
    /// "hf" for a folder, "gguf" for one GGUF file.
    pub format: &'static str,
    /// The tokenizer a GGUF file carries.
    pub tokenizer: Option<Tokenizer>,
    index: TensorIndex,
    files: Vec<Opened>,
}

impl ModelFiles {
    /// Opens a model source: one GGUF file (a URL ending in `.gguf`, a `File`, or picked files
    /// holding one `.gguf`), else a Hugging Face folder.
    pub async fn open(source: &Source<'_>) -> Result<Self> {
        match gguf_name(source.value) {
            Some(name) => Self::open_gguf(source, &name).await,
            None => Self::open_folder(source).await,
        }
    }

    /// Whether the decoder's projections are stored 4-bit (a `Q4_0`, `Q4_1` or `Q4_K` GGUF),
    /// judged by the first block's query projection.
    pub fn four_bit(&self) -> bool {
        let first = self.index.entry("model.layers.0.self_attn.q_proj.weight");
        first.is_ok_and(|(_, e)| matches!(e.dtype, Stored::Q4_0 | Stored::Q4_1 | Stored::Q4_K))
    }

    async fn open_folder(source: &Source<'_>) -> Result<Self> {
        let bytes = source.require(CONFIG_JSON).await?;
        let config = ModelConfig::from_json(&bytes, CONFIG_JSON)?;
        let files = open_shards(source).await?;
        let mut index = TensorIndex::default();
        for shard in &files {
            let first = shard.range(0, 8.min(shard.size)).await?;
            let header = shard.range(8, header_end(&first, shard.size, &shard.name)?).await?;
            index.add_header(&shard.name, &header, shard.size)?;
        }
        Ok(Self { config, format: "hf", tokenizer: None, index, files })
    }

    /// Reads the file's head (growing it until the tensor table fits), then takes the config,
    /// the tokenizer and the tensor table from it; the weights stay in the file.
    async fn open_gguf(source: &Source<'_>, name: &str) -> Result<Self> {
        let file = source.open("", false).await?.ok_or_else(|| WebError::Missing(name.into()))?;
        let mut head = file.range(0, GGUF_HEAD.min(file.size)).await?;
        loop {
            if let Some(g) = GgufCheckpoint::parse_head(Named::new(&file.name, &head), file.size)? {
                let tokenizer = Some(g.tokenizer()?);
                let index = g.index()?;
                let config = g.config;
                return Ok(Self { config, format: "gguf", tokenizer, index, files: vec![file] });
            }
            let len = head.len() as u64;
            head.extend(file.range(len, (2 * len).min(file.size)).await?);
        }
    }

    /// Loads the weights onto `device` one tensor group at a time through the model crate's
    /// [`RangeLoad`]: only one group's bytes are in wasm memory at once, each block is edited
    /// (a router's adapter merged) and, on the wasm CPU, packed as it arrives, and tensors the
    /// model does not use (a stored `lm_head.weight`) are never read.
    pub async fn load(
        self,
        source: &Source<'_>,
        opts: LoadOptions,
        edit: Option<LayerEdit<'_>>,
        device: &Device,
    ) -> Result<(Model, LoadReport)> {
        let Self { config, index, files, .. } = self;
        let mut load = RangeLoad::new(&config, index, opts, edit, device);
        let names = load.files();
        for group in 0..load.groups() {
            let mut bytes = Vec::new();
            for want in load.wants(group)? {
                // The embedding table of a q8/q4 load comes in pieces, each quantized as it
                // arrives: the stored table is never whole in wasm memory.
                if let Some(piece) = load.piece_bytes(&want) {
                    let mut at = want.start;
                    while at < want.end {
                        let end = (at + piece).min(want.end);
                        load.add_piece(&want, &files[want.file].range(at, end).await?)?;
                        at = end;
                    }
                    continue;
                }
                bytes.push((want.name, files[want.file].range(want.start, want.end).await?));
            }
            load.add(group, bytes)?;
            source.progress("load", &names, group as f64 + 1.0, load.groups() as f64);
        }
        Ok(load.finish()?)
    }
}

/// The safetensors files of a model source: `model.safetensors`, or the shards its index lists.
async fn open_shards(source: &Source<'_>) -> Result<Vec<Opened>> {
    if let Some(single) = source.open(SINGLE, true).await? {
        return Ok(vec![single]);
    }
    let index = source
        .read(INDEX, true)
        .await?
        .ok_or_else(|| WebError::Input(format!("{}: no {SINGLE} or {INDEX}", source.describe())))?;
    let mut shards = Vec::new();
    for name in shard_names(&index, INDEX)? {
        let shard = source.open(&name, false).await?;
        shards.push(shard.ok_or(WebError::Missing(name))?);
    }
    Ok(shards)
}

/// A router folder, checked against the base model.
pub async fn router(source: &Source<'_>, base: &ModelConfig, device: &Device) -> Result<Router> {
    let router_json = source.require(ROUTER_JSON).await?;
    let head = source.require(HEAD_FILE).await?;
    let cfg = source.read(ADAPTER_CONFIG, true).await?;
    let weights = source.read(ADAPTER_WEIGHTS, true).await?;
    let files = RouterFiles::new(
        Named::new(ROUTER_JSON, &router_json),
        Named::new(HEAD_FILE, &head),
        cfg.as_deref().map(|b| Named::new(ADAPTER_CONFIG, b)),
        weights.as_deref().map(|b| Named::new(ADAPTER_WEIGHTS, b)),
    )?;
    Ok(Router::from_files(files, base, device)?)
}
