//! Native front door to a checkpoint: a Hugging Face model folder (`config.json`,
//! `model.safetensors` or a sharded `model.safetensors.index.json`, `tokenizer.json`,
//! `tokenizer_config.json` with the chat template) or a GGUF file (config, weights, tokenizer
//! and chat template in one). Weight files are memory-mapped.

use std::fs::File;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use memmap2::Mmap;

use crate::chat::{self, ChatMode};
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::gguf::GgufFile;
use crate::loader::{LoadOptions, LoadReport, load_tensors};
use crate::model::Model;
use crate::router::{ADAPTER_CONFIG, ADAPTER_WEIGHTS, HEAD_FILE, ROUTER_JSON, Router, RouterFiles};
use crate::scorer::Scorer;
use crate::tensors::{Tensors, safetensors_sources};
use crate::tokenizer::Tokenizer;

fn io(path: &Path, source: std::io::Error) -> ModelError {
    ModelError::Io { path: path.display().to_string(), source }
}

/// Whether `path` is a GGUF file (by its magic bytes) rather than a folder.
pub fn is_gguf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    path.is_file()
        && File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok()
        && crate::gguf::is_gguf(&magic)
}

/// Reads and validates the config of a checkpoint: `DIR/config.json`, or a GGUF's metadata.
pub fn read_config(path: &Path) -> Result<ModelConfig> {
    if is_gguf(path) {
        let map = map_file(path)?;
        let name = path.display().to_string();
        return GgufFile::parse(&map, &name)?.config();
    }
    if path.is_file() {
        return Err(ModelError::config(
            path.display().to_string(),
            "not a model folder or a GGUF file",
        ));
    }
    let file = path.join("config.json");
    let bytes = std::fs::read(&file).map_err(|e| io(&file, e))?;
    ModelConfig::from_json(&bytes, &file.display().to_string())
}

/// Loads `tokenizer.json` from `path` (a file, or a folder holding one) with the chat template
/// of the `tokenizer_config.json` (or `chat_template.jinja`) beside it, if any.
pub fn read_tokenizer(path: &Path) -> Result<Tokenizer> {
    let (file, dir) = if path.is_dir() {
        (path.join("tokenizer.json"), path.to_path_buf())
    } else {
        (path.to_path_buf(), path.parent().map(Path::to_path_buf).unwrap_or_default())
    };
    let bytes = std::fs::read(&file).map_err(|e| io(&file, e))?;
    let tok = Tokenizer::from_bytes(&bytes, &file.display().to_string())?;
    let optional = |name: &str| -> Result<Option<(Vec<u8>, String)>> {
        let p = dir.join(name);
        match std::fs::read(&p) {
            Ok(b) => Ok(Some((b, p.display().to_string()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&p, e)),
        }
    };
    let cfg = optional("tokenizer_config.json")?;
    let jinja = optional("chat_template.jinja")?;
    let jinja_text = match &jinja {
        Some((b, p)) => Some((
            std::str::from_utf8(b).map_err(|_| ModelError::config(p.clone(), "not UTF-8"))?,
            p.as_str(),
        )),
        None => None,
    };
    let template = chat::from_tokenizer_config(
        cfg.as_ref().map(|(b, p)| (b.as_slice(), p.as_str())),
        jinja_text,
    )?;
    Ok(tok.with_chat(template))
}

/// The tokenizer of a model: `over` (a tokenizer.json or its folder) when given, else the
/// model folder's, else the GGUF file's own; chat template use set by `mode`.
pub fn model_tokenizer(model: &Path, over: Option<&Path>, mode: ChatMode) -> Result<Tokenizer> {
    let tok = match over {
        Some(p) => read_tokenizer(p)?,
        None if is_gguf(model) => {
            let map = map_file(model)?;
            let name = model.display().to_string();
            Tokenizer::from_gguf(&GgufFile::parse(&map, &name)?)?
        }
        None => read_tokenizer(model)?,
    };
    Ok(tok.with_mode(mode))
}

/// The safetensors files of a folder, in load order.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if !index.is_file() {
        return Err(ModelError::weights(
            dir.display().to_string(),
            "no model.safetensors or model.safetensors.index.json in this folder",
        ));
    }
    let bytes = std::fs::read(&index).map_err(|e| io(&index, e))?;
    let files = crate::loader::shard_names(&bytes, &index.display().to_string())?;
    let paths: Vec<PathBuf> = files.into_iter().map(|f| dir.join(f)).collect();
    if let Some(missing) = paths.iter().find(|p| !p.is_file()) {
        return Err(ModelError::weights(
            index.display().to_string(),
            format!("shard {} listed in the index does not exist", missing.display()),
        ));
    }
    Ok(paths)
}

/// Memory-maps a file read-only.
pub fn map_file(path: &Path) -> Result<Mmap> {
    let file = File::open(path).map_err(|e| io(path, e))?;
    // SAFETY: the map is read-only and private to this process; a checkpoint modified on disk
    // while mapped is outside what we support (as in every mmap-based loader).
    #[allow(unsafe_code)]
    unsafe { Mmap::map(&file) }.map_err(|e| io(path, e))
}

/// Loads config and weights of a checkpoint (folder or GGUF file) onto `device`.
pub fn load_folder(path: &Path, device: &Device) -> Result<(Model, LoadReport)> {
    load_with(path, LoadOptions::default(), device)
}

/// [`load_folder`] with options (e.g. an untied `lm_head` kept for logits).
pub fn load_with(path: &Path, opts: LoadOptions, device: &Device) -> Result<(Model, LoadReport)> {
    let config = read_config(path)?;
    if is_gguf(path) {
        let map = map_file(path)?;
        let name = path.display().to_string();
        let file = GgufFile::parse(&map, &name)?;
        let mut ts = file.tensors(&config)?;
        return load_tensors(&config, &mut ts, opts, device);
    }
    let files = weight_files(path)?;
    let maps = files.iter().map(|p| map_file(p)).collect::<Result<Vec<_>>>()?;
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    let mut sources = Vec::new();
    for (name, map) in names.iter().zip(&maps) {
        sources.extend(safetensors_sources(name, map)?);
    }
    let mut ts = Tensors::new(sources)?;
    load_tensors(&config, &mut ts, opts, device)
}

/// Reads a router folder (see [`crate::router`]) and checks it against the base model.
/// A missing `router.json` or `head.safetensors`, or half an adapter, is an error naming the
/// file.
pub fn read_router(dir: &Path, base: &ModelConfig, device: &Device) -> Result<Router> {
    if !dir.is_dir() {
        return Err(ModelError::config(dir.display().to_string(), "router folder does not exist"));
    }
    let read = |name: &str| -> Result<(Vec<u8>, String)> {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
        Ok((bytes, path.display().to_string()))
    };
    let router_json = read(ROUTER_JSON)?;
    let head = read(HEAD_FILE)?;
    let (has_cfg, has_weights) =
        (dir.join(ADAPTER_CONFIG).is_file(), dir.join(ADAPTER_WEIGHTS).is_file());
    let adapter = match (has_cfg, has_weights) {
        (false, false) => None,
        _ => Some((read(ADAPTER_CONFIG)?, read(ADAPTER_WEIGHTS)?)),
    };
    let files = RouterFiles {
        router_json: (&router_json.0, &router_json.1),
        head: (&head.0, &head.1),
        adapter: adapter.as_ref().map(|(c, w)| ((&c.0[..], &c.1[..]), (&w.0[..], &w.1[..]))),
    };
    Router::from_files(files, base, device)
}

/// Loads a base model folder and a router folder trained on it, as a [`Scorer`] on `device`.
/// `weights` overrides the router's `weights` setting.
pub fn load_scorer(
    model_dir: &Path,
    router_dir: &Path,
    device: &Device,
    weights: Option<crate::Precision>,
) -> Result<Scorer> {
    let config = read_config(model_dir)?;
    let router = read_router(router_dir, &config, device)?;
    let (model, _) = load_folder(model_dir, device)?;
    Scorer::new(model, router, weights)
}
