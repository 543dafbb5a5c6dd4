//! Native front door to a checkpoint: a Hugging Face model folder (`config.json`,
//! `model.safetensors` or a sharded `model.safetensors.index.json`, `tokenizer.json`,
//! `tokenizer_config.json` with the chat template) or a GGUF file (config, weights, tokenizer
//! and chat template in one). Headers are read from memory maps; the weights are then read one
//! tensor group at a time (a block, or a piece of the embedding table) with positioned reads,
//! as the browser reads byte ranges ([`RangeLoad`]), so a load holds the model as it is kept
//! (packed, for `--weights`) plus one group's stored bytes: no mapped pages of the whole file
//! stay resident while the model is built.

use std::fs::File;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use memmap2::Mmap;

use crate::checkpoint::{
    self, CHAT_TEMPLATE_JINJA, GgufCheckpoint, INDEX, RangeLoad, SINGLE, TOKENIZER_CONFIG,
    TOKENIZER_JSON, TensorIndex,
};
use crate::config::ModelConfig;
use crate::decoder::build::{LoadOptions, LoadReport};
use crate::error::{ModelError, Result};
use crate::formats::Named;
use crate::model::{LayerEdit, Model};
use crate::precision::Precision;
use crate::router::scorer::Scorer;
use crate::router::{ADAPTER_CONFIG, ADAPTER_WEIGHTS, HEAD_FILE, ROUTER_JSON, Router, RouterFiles};
use crate::text::chat::ChatMode;
use crate::text::tokenizer::Tokenizer;

fn io(path: &Path, source: std::io::Error) -> ModelError {
    ModelError::Io { path: path.display().to_string(), source }
}

/// Whether `path` is a GGUF file (by its magic bytes) rather than a folder.
pub fn is_gguf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    path.is_file()
        && File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok()
        && checkpoint::is_gguf(&magic)
}

/// A file's bytes and its path as a name, or `None` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<(Vec<u8>, String)>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some((b, path.display().to_string()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path, e)),
    }
}

/// A file's bytes and its path as a name.
fn read_named(path: &Path) -> Result<(Vec<u8>, String)> {
    let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
    Ok((bytes, path.display().to_string()))
}

fn named(file: &Option<(Vec<u8>, String)>) -> Option<Named<'_>> {
    file.as_ref().map(|(b, n)| Named::new(n, b))
}

/// Runs `f` on a GGUF file's checkpoint view (the file memory-mapped).
fn with_gguf<T>(path: &Path, f: impl FnOnce(&GgufCheckpoint<'_>) -> Result<T>) -> Result<T> {
    let map = map_file(path)?;
    let name = path.display().to_string();
    f(&GgufCheckpoint::parse(Named::new(&name, &map))?)
}

/// Reads and validates the config of a checkpoint: `DIR/config.json`, or a GGUF's metadata.
pub fn read_config(path: &Path) -> Result<ModelConfig> {
    if is_gguf(path) {
        return with_gguf(path, |g| Ok(g.config.clone()));
    }
    if path.is_file() {
        return Err(ModelError::config(
            path.display().to_string(),
            "not a model folder or a GGUF file",
        ));
    }
    let (bytes, name) = read_named(&path.join(checkpoint::CONFIG_JSON))?;
    ModelConfig::from_json(&bytes, &name)
}

/// Loads `tokenizer.json` from `path` (a file, or a folder holding one) with the chat template
/// of the `tokenizer_config.json` (or `chat_template.jinja`) beside it, if any.
pub fn read_tokenizer(path: &Path) -> Result<Tokenizer> {
    let (file, dir) = if path.is_dir() {
        (path.join(TOKENIZER_JSON), path.to_path_buf())
    } else {
        (path.to_path_buf(), path.parent().map(Path::to_path_buf).unwrap_or_default())
    };
    let (json, name) = read_named(&file)?;
    let cfg = read_optional(&dir.join(TOKENIZER_CONFIG))?;
    let jinja = read_optional(&dir.join(CHAT_TEMPLATE_JINJA))?;
    Tokenizer::from_folder(Named::new(&name, &json), named(&cfg), named(&jinja))
}

/// The tokenizer of a model: `over` (a tokenizer.json or its folder) when given, else the
/// model folder's, else the GGUF file's own; chat template use set by `mode`.
pub fn model_tokenizer(model: &Path, over: Option<&Path>, mode: ChatMode) -> Result<Tokenizer> {
    let tok = match over {
        Some(p) => read_tokenizer(p)?,
        None if is_gguf(model) => with_gguf(model, |g| g.tokenizer())?,
        None => read_tokenizer(model)?,
    };
    Ok(tok.with_mode(mode))
}

/// The safetensors files of a folder, in load order.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join(SINGLE);
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join(INDEX);
    if !index.is_file() {
        return Err(ModelError::weights(
            dir.display().to_string(),
            "no model.safetensors or model.safetensors.index.json in this folder",
        ));
    }
    let (bytes, name) = read_named(&index)?;
    let paths: Vec<PathBuf> =
        checkpoint::shard_names(&bytes, &name)?.into_iter().map(|f| dir.join(f)).collect();
    if let Some(missing) = paths.iter().find(|p| !p.is_file()) {
        return Err(ModelError::weights(
            name,
            format!("shard {} listed in the index does not exist", missing.display()),
        ));
    }
    Ok(paths)
}

/// Memory-maps a file read-only.
pub fn map_file(path: &Path) -> Result<Mmap> {
    let file = File::open(path).map_err(|e| io(path, e))?;
    // SAFETY: the map is read-only and private to this process; a checkpoint modified on disk
    // while mapped is outside what we support (as in every mmap-based loader). The one use of
    // `unsafe` in this crate.
    #[allow(unsafe_code)]
    unsafe { Mmap::map(&file) }.map_err(|e| io(path, e))
}

/// Loads config and weights of a checkpoint (folder or GGUF file) onto `device`.
pub fn load_folder(path: &Path, device: &Device) -> Result<(Model, LoadReport)> {
    load_with(path, LoadOptions::default(), device)
}

/// [`load_folder`] with options (e.g. an untied `lm_head` kept for logits, or the weights to
/// pack the model with as it loads).
pub fn load_with(path: &Path, opts: LoadOptions, device: &Device) -> Result<(Model, LoadReport)> {
    load_edited(path, opts, None, device)
}

/// [`load_with`] with `edit` applied to each block as it loads.
pub fn load_edited(
    path: &Path,
    opts: LoadOptions,
    edit: Option<LayerEdit<'_>>,
    device: &Device,
) -> Result<(Model, LoadReport)> {
    let (config, index, files) = if is_gguf(path) {
        let (config, index) = with_gguf(path, |g| Ok((g.config.clone(), g.index()?)))?;
        (config, index, vec![path.to_path_buf()])
    } else {
        let config = read_config(path)?;
        let files = weight_files(path)?;
        let mut index = TensorIndex::default();
        for p in &files {
            index.add_file(&p.display().to_string(), &map_file(p)?)?;
        }
        (config, index, files)
    };
    load_ranges(&config, index, &files, opts, edit, device)
}

/// Builds the model from `files` one tensor group at a time with positioned reads (see the
/// module docs); the embedding table in pieces when it is held quantized.
fn load_ranges(
    config: &ModelConfig,
    index: TensorIndex,
    paths: &[PathBuf],
    opts: LoadOptions,
    edit: Option<LayerEdit<'_>>,
    device: &Device,
) -> Result<(Model, LoadReport)> {
    let files =
        paths.iter().map(|p| File::open(p).map_err(|e| io(p, e))).collect::<Result<Vec<_>>>()?;
    let read = |file: usize, start: u64, end: u64| -> Result<Vec<u8>> {
        let mut buf = vec![0u8; usize::try_from(end - start).unwrap_or(usize::MAX)];
        read_exact_at(&files[file], &mut buf, start).map_err(|e| io(&paths[file], e))?;
        Ok(buf)
    };
    let mut load = RangeLoad::new(config, index, opts, edit, device);
    for group in 0..load.groups() {
        let mut bytes = Vec::new();
        for want in load.wants(group)? {
            match load.piece_bytes(&want) {
                Some(step) => {
                    let mut at = want.start;
                    while at < want.end {
                        let end = (at + step.max(1)).min(want.end);
                        load.add_piece(&want, &read(want.file, at, end)?)?;
                        at = end;
                    }
                }
                None => bytes.push((want.name.clone(), read(want.file, want.start, want.end)?)),
            }
        }
        load.add(group, bytes)?;
    }
    load.finish()
}

/// Fills `buf` from `file` at `offset`.
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = file;
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(buf)
    }
}

/// Reads a router folder (see [`crate::router`]) and checks it against the base model.
/// A missing `router.json` or `head.safetensors`, or half an adapter, is an error naming the
/// file.
pub fn read_router(dir: &Path, base: &ModelConfig, device: &Device) -> Result<Router> {
    if !dir.is_dir() {
        return Err(ModelError::config(dir.display().to_string(), "router folder does not exist"));
    }
    let router_json = read_named(&dir.join(ROUTER_JSON))?;
    let head = read_named(&dir.join(HEAD_FILE))?;
    let cfg = read_optional(&dir.join(ADAPTER_CONFIG))?;
    let weights = read_optional(&dir.join(ADAPTER_WEIGHTS))?;
    let files = RouterFiles::new(
        Named::new(&router_json.1, &router_json.0),
        Named::new(&head.1, &head.0),
        named(&cfg),
        named(&weights),
    )?;
    Router::from_files(files, base, device)
}

/// Loads a base model folder and a router folder trained on it, as a [`Scorer`] on `device`.
/// `weights` overrides the router's `weights` setting. The adapter is merged into each block
/// as it loads, and on the CPU the block is packed right then (the f32 decoder never exists
/// whole).
pub fn load_scorer(
    model_dir: &Path,
    router_dir: &Path,
    device: &Device,
    weights: Option<Precision>,
) -> Result<Scorer> {
    let config = read_config(model_dir)?;
    let router = read_router(router_dir, &config, device)?;
    let weights = weights.unwrap_or(router.config.weights);
    let opts = LoadOptions { lm_head: false, weights: Some(weights) };
    let (model, _) = load_edited(model_dir, opts, router.merge_edit(device), device)?;
    Scorer::new(model, router, Some(weights))
}
