//! Reading the files of a model folder and a router folder in the browser, through the JS
//! helpers in `js/io.js` (fetch with byte progress and the Cache API, or picked `File`s), and
//! turning them into the model crate's values with the same strict checks as natively.

use std::collections::BTreeMap;

use burn::tensor::Device;
use std::borrow::Cow;

use routelmt_model::loader::{
    Entry, Layout, ModelBuilder, Source as TensorSource, Tensors, header_entries, header_len,
    shard_names,
};
use routelmt_model::quant::Stored;
use routelmt_model::router::{ADAPTER_CONFIG, ADAPTER_WEIGHTS, HEAD_FILE, ROUTER_JSON};
use routelmt_model::{LoadReport, Model, ModelConfig, Router, RouterFiles, Tokenizer};
use wasm_bindgen::prelude::*;

#[wasm_bindgen(module = "/js/io.js")]
extern "C" {
    #[wasm_bindgen(catch, js_name = openSource)]
    async fn open_source(
        source: &JsValue,
        name: &str,
        phase: &str,
        on_progress: &JsValue,
        optional: bool,
    ) -> Result<JsValue, JsValue>;

    #[wasm_bindgen(js_name = sizeOf)]
    fn size_of(handle: &JsValue) -> f64;

    #[wasm_bindgen(catch, js_name = readRange)]
    async fn read_range(handle: &JsValue, start: f64, end: f64) -> Result<JsValue, JsValue>;

    #[wasm_bindgen(js_name = describeSource)]
    pub fn describe_source(source: &JsValue) -> String;

    #[wasm_bindgen(catch, js_name = clearCache)]
    pub async fn clear_cache() -> Result<JsValue, JsValue>;
}

/// An opened file: read in byte ranges, never whole.
struct Opened {
    name: String,
    handle: JsValue,
    size: u64,
}

impl Opened {
    async fn range(&self, start: u64, end: u64) -> Result<Vec<u8>, String> {
        let v = read_range(&self.handle, start as f64, end as f64)
            .await
            .map_err(|e| format!("{}: {}", self.name, js_message(&e)))?;
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
    pub async fn read(&self, name: &str, optional: bool) -> Result<Option<Vec<u8>>, String> {
        match self.open(name, optional).await? {
            Some(file) => Ok(Some(file.range(0, file.size).await?)),
            None => Ok(None),
        }
    }

    /// An opened file, or `None` when `optional` and the source has no such file.
    async fn open(&self, name: &str, optional: bool) -> Result<Option<Opened>, String> {
        let handle = open_source(self.value, name, self.phase, self.on_progress, optional)
            .await
            .map_err(|e| js_message(&e))?;
        if handle.is_null() || handle.is_undefined() {
            return Ok(None);
        }
        let size = size_of(&handle) as u64;
        Ok(Some(Opened { name: name.to_string(), handle, size }))
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
    pub async fn require(&self, name: &str) -> Result<Vec<u8>, String> {
        self.read(name, false).await?.ok_or_else(|| format!("{name}: missing"))
    }

    /// A name for messages: the URL or the picked files.
    pub fn describe(&self) -> String {
        describe_source(self.value)
    }
}

/// `config.json` of a model source.
pub async fn config(model: &Source<'_>) -> Result<ModelConfig, String> {
    let bytes = model.require("config.json").await?;
    ModelConfig::from_json(&bytes, "config.json").map_err(|e| routelmt_model::one_line(&e))
}

/// The tokenizer: `tokenizer.json` of `source` (`None` when `optional` and absent), with the
/// chat template of the `tokenizer_config.json` (or `chat_template.jinja`) beside it, if any.
pub async fn tokenizer(source: &Source<'_>, optional: bool) -> Result<Option<Tokenizer>, String> {
    let Some(bytes) = source.read("tokenizer.json", optional).await? else { return Ok(None) };
    let tokenizer = Tokenizer::from_bytes(&bytes, "tokenizer.json").map_err(err)?;
    let config = source.read("tokenizer_config.json", true).await?;
    let jinja = source.read("chat_template.jinja", true).await?;
    let jinja = match &jinja {
        Some(b) => {
            Some(std::str::from_utf8(b).map_err(|_| "chat_template.jinja: not UTF-8".to_string())?)
        }
        None => None,
    };
    let template = routelmt_model::chat::from_tokenizer_config(
        config.as_deref().map(|b| (b, "tokenizer_config.json")),
        jinja.map(|j| (j, "chat_template.jinja")),
    )
    .map_err(err)?;
    Ok(Some(tokenizer.with_chat(template)))
}

/// The weights of a model source (`model.safetensors`, or the sharded index and its shards),
/// loaded onto `device` one tensor group at a time: only the safetensors headers and one
/// group's bytes are in wasm memory at once, each tensor is uploaded as it is converted, and
/// tensors the model does not use (a stored `lm_head.weight`) are never read.
pub async fn model(
    source: &Source<'_>,
    config: &ModelConfig,
    device: &Device,
) -> Result<(Model, LoadReport), String> {
    let shards = open_shards(source).await?;
    let mut index: BTreeMap<String, (usize, Entry)> = BTreeMap::new();
    for (i, shard) in shards.iter().enumerate() {
        let n = header_len(&shard.range(0, 8.min(shard.size)).await?, &shard.name).map_err(err)?;
        let end = (8 + n).min(shard.size);
        let header = shard.range(8, end).await?;
        if 8 + n > shard.size {
            return Err(format!("{}: truncated: the header needs {} bytes", shard.name, 8 + n));
        }
        for (name, entry) in header_entries(&header, shard.size, &shard.name).map_err(err)? {
            if let Some((j, _)) = index.insert(name.clone(), (i, entry)) {
                return Err(format!(
                    "{}: tensor '{name}' also appears in {}",
                    shard.name, shards[j].name
                ));
            }
        }
    }
    let files = shards.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ");
    let mut builder = ModelBuilder::new(config, device);
    let mut wanted = std::collections::BTreeSet::new();
    for group in 0..builder.groups() {
        let mut bytes = Vec::new();
        for name in builder.names(group) {
            let (i, entry) =
                index.get(&name).ok_or_else(|| format!("{files}: missing tensor '{name}'"))?;
            bytes.push((
                name.clone(),
                *i,
                entry.clone(),
                shards[*i].range(entry.start, entry.end).await?,
            ));
            wanted.insert(name);
        }
        let sources = bytes.iter().map(|(name, i, e, data)| {
            let dtype = Stored::from_safetensors(e.dtype).ok_or_else(|| {
                format!(
                    "{}: tensor '{name}' has dtype {:?}; only F32, BF16 and F16 are supported",
                    shards[*i].name, e.dtype
                )
            })?;
            let src = TensorSource {
                file: &shards[*i].name,
                dtype,
                shape: e.shape.clone(),
                data: Cow::Borrowed(data.as_slice()),
                layout: Layout::Plain,
            };
            Ok((name.clone(), src))
        });
        let sources = sources.collect::<Result<Vec<_>, String>>()?;
        let mut tensors = Tensors::new(sources).map_err(err)?;
        builder.add(group, &mut tensors).map_err(err)?;
        source.progress("load", &files, group as f64 + 1.0, builder.groups() as f64);
    }
    let unused = index.keys().filter(|k| !wanted.contains(*k)).cloned().collect();
    builder.finish(unused).map_err(err)
}

fn err(e: routelmt_model::ModelError) -> String {
    routelmt_model::one_line(&e)
}

/// The safetensors files of a model source: `model.safetensors`, or the shards its index lists.
async fn open_shards(source: &Source<'_>) -> Result<Vec<Opened>, String> {
    if let Some(single) = source.open("model.safetensors", true).await? {
        return Ok(vec![single]);
    }
    let index_name = "model.safetensors.index.json";
    let index = source.read(index_name, true).await?.ok_or_else(|| {
        format!("{}: no model.safetensors or model.safetensors.index.json", source.describe())
    })?;
    let mut shards = Vec::new();
    for name in shard_names(&index, index_name).map_err(err)? {
        let shard = source.open(&name, false).await?;
        shards.push(shard.ok_or_else(|| format!("{name}: missing"))?);
    }
    Ok(shards)
}

/// A router folder, checked against the base model.
pub async fn router(
    source: &Source<'_>,
    base: &ModelConfig,
    device: &Device,
) -> Result<Router, String> {
    let router_json = source.require(ROUTER_JSON).await?;
    let head = source.require(HEAD_FILE).await?;
    let cfg = source.read(ADAPTER_CONFIG, true).await?;
    let weights = source.read(ADAPTER_WEIGHTS, true).await?;
    let adapter = match (&cfg, &weights) {
        (None, None) => None,
        (Some(c), Some(w)) => Some(((&c[..], ADAPTER_CONFIG), (&w[..], ADAPTER_WEIGHTS))),
        (None, Some(_)) => return Err(format!("{ADAPTER_CONFIG}: missing")),
        (Some(_), None) => return Err(format!("{ADAPTER_WEIGHTS}: missing")),
    };
    let files =
        RouterFiles { router_json: (&router_json, ROUTER_JSON), head: (&head, HEAD_FILE), adapter };
    Router::from_files(files, base, device).map_err(|e| routelmt_model::one_line(&e))
}
