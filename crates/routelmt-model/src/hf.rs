//! Native front door to a Hugging Face model folder: `config.json`, `model.safetensors` or a
//! sharded `model.safetensors.index.json`, and `tokenizer.json`. Weight files are memory-mapped.

use std::fs::File;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use memmap2::Mmap;

use crate::config::Qwen3Config;
use crate::error::{ModelError, Result};
use crate::loader::{LoadReport, Shard, load_model};
use crate::model::Qwen3Model;
use crate::router::{ADAPTER_CONFIG, ADAPTER_WEIGHTS, HEAD_FILE, ROUTER_JSON, Router, RouterFiles};
use crate::scorer::Scorer;
use crate::tokenizer::Tokenizer;

fn io(path: &Path, source: std::io::Error) -> ModelError {
    ModelError::Io { path: path.display().to_string(), source }
}

/// Reads and validates `DIR/config.json`.
pub fn read_config(dir: &Path) -> Result<Qwen3Config> {
    let path = dir.join("config.json");
    let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
    Qwen3Config::from_json(&bytes, &path.display().to_string())
}

/// Loads `tokenizer.json` from `path` (a file, or a folder holding one).
pub fn read_tokenizer(path: &Path) -> Result<Tokenizer> {
    let file = if path.is_dir() { path.join("tokenizer.json") } else { path.to_path_buf() };
    let bytes = std::fs::read(&file).map_err(|e| io(&file, e))?;
    Tokenizer::from_bytes(&bytes, &file.display().to_string())
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

/// Loads config and weights of a folder onto `device`.
pub fn load_folder(dir: &Path, device: &Device) -> Result<(Qwen3Model, LoadReport)> {
    let config = read_config(dir)?;
    let files = weight_files(dir)?;
    let maps = files.iter().map(|p| map_file(p)).collect::<Result<Vec<_>>>()?;
    let shards: Vec<Shard<'_>> = files
        .iter()
        .zip(&maps)
        .map(|(p, m)| Shard { name: p.display().to_string(), bytes: &m[..] })
        .collect();
    load_model(&config, &shards, device)
}

/// Reads a router folder (see [`crate::router`]) and checks it against the base model.
/// A missing `router.json` or `head.safetensors`, or half an adapter, is an error naming the
/// file.
pub fn read_router(dir: &Path, base: &Qwen3Config, device: &Device) -> Result<Router> {
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
pub fn load_scorer(model_dir: &Path, router_dir: &Path, device: &Device) -> Result<Scorer> {
    let config = read_config(model_dir)?;
    let router = read_router(router_dir, &config, device)?;
    let (model, _) = load_folder(model_dir, device)?;
    Ok(Scorer::new(model, router))
}
