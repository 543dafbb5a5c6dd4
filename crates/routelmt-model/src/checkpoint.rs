//! A checkpoint from named bytes, sans I/O: what the native door ([`crate::hf`]: files and
//! memory maps) and the browser (fetches, picked files, byte ranges) share, so neither holds
//! loading logic of its own. A checkpoint is a Hugging Face folder (`config.json`,
//! `model.safetensors` or a sharded index, `tokenizer.json` with `tokenizer_config.json` or
//! `chat_template.jinja`) or one GGUF file holding all of it.
//!
//! A folder's weights load one tensor group at a time ([`FolderLoad`]): the doors read the
//! safetensors headers into a [`ShardIndex`], then for each group the byte ranges it names, so
//! the browser holds one group's bytes at a time and never reads tensors the model does not use.

use std::collections::BTreeSet;

use burn::tensor::Device;

use crate::config::ModelConfig;
use crate::decoder::build::{LoadOptions, LoadReport, ModelBuilder};
use crate::error::Result;
use crate::formats::Named;
use crate::formats::gguf::GgufFile;
pub use crate::formats::gguf::is_gguf;
use crate::formats::gguf_hf;
pub use crate::formats::safetensors::{INDEX, SINGLE, ShardIndex, shard_names};
use crate::model::Model;
use crate::tensors::Tensors;
use crate::text::chat::ChatTemplate;
use crate::text::tokenizer::Tokenizer;

/// A folder's config file.
pub const CONFIG_JSON: &str = "config.json";
/// A folder's tokenizer.
pub const TOKENIZER_JSON: &str = "tokenizer.json";
/// The tokenizer settings beside it (special tokens, chat template).
pub const TOKENIZER_CONFIG: &str = "tokenizer_config.json";
/// A separate chat template, which transformers 5 prefers when present.
pub const CHAT_TEMPLATE_JINJA: &str = "chat_template.jinja";

/// A GGUF file as a checkpoint: its parsed table and the config from its metadata.
#[derive(Debug)]
pub struct GgufCheckpoint<'a> {
    /// The parsed file.
    pub file: GgufFile<'a>,
    /// The decoder config from the metadata.
    pub config: ModelConfig,
}

impl<'a> GgufCheckpoint<'a> {
    /// Parses the file and its config.
    pub fn parse(named: Named<'a>) -> Result<Self> {
        let file = GgufFile::parse(named.bytes, named.name)?;
        let config = gguf_hf::config(&file)?;
        Ok(Self { file, config })
    }

    /// Every tensor under its Hugging Face name.
    pub fn tensors(&self) -> Result<Tensors<'a>> {
        Tensors::new(gguf_hf::tensors(&self.file, &self.config)?)
    }

    /// The tokenizer the file describes (`tokenizer.ggml.*`), built as transformers builds it,
    /// with the file's chat template.
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        let (json, specials) = gguf_hf::tokenizer_json(&self.file)?;
        let tok = Tokenizer::from_bytes(json.to_string().as_bytes(), self.file.file)?;
        let chat = match gguf_hf::chat_template(&self.file) {
            Some(source) => {
                let origin = format!("{} (tokenizer.chat_template)", self.file.file);
                Some(ChatTemplate::new(source, specials, &origin)?)
            }
            None => None,
        };
        Ok(tok.with_chat(chat))
    }

    /// The model on `device`.
    pub fn load(&self, opts: LoadOptions, device: &Device) -> Result<(Model, LoadReport)> {
        Model::load(&self.config, &mut self.tensors()?, opts, device)
    }
}

/// One tensor's bytes a group needs: read `start..end` of file `file` (an index into
/// [`ShardIndex::files`]).
#[derive(Debug, Clone)]
pub struct Want {
    /// HF tensor name.
    pub name: String,
    /// Index of the file in [`ShardIndex::files`].
    pub file: usize,
    /// First byte in the file.
    pub start: u64,
    /// End byte (exclusive).
    pub end: u64,
}

/// A folder's weights loaded one tensor group at a time (see the module docs).
pub struct FolderLoad<'c> {
    index: ShardIndex,
    builder: ModelBuilder<'c>,
    config: &'c ModelConfig,
    device: Device,
    used: BTreeSet<String>,
}

impl<'c> FolderLoad<'c> {
    /// A load of `config` from the files of `index` onto `device`.
    pub fn new(
        config: &'c ModelConfig,
        index: ShardIndex,
        opts: LoadOptions,
        device: &Device,
    ) -> Self {
        let builder = ModelBuilder::new(config, device).with_options(opts);
        Self { index, builder, config, device: device.clone(), used: BTreeSet::new() }
    }

    /// Tensor groups, in load order.
    pub fn groups(&self) -> usize {
        self.builder.groups()
    }

    /// The files, for messages.
    pub fn files(&self) -> String {
        self.index.files().join(", ")
    }

    /// The byte ranges group `group` needs; a missing tensor is an error naming the files.
    pub fn wants(&self, group: usize) -> Result<Vec<Want>> {
        self.builder
            .names(group)
            .into_iter()
            .map(|name| {
                let (file, e) = self.index.entry(&name)?;
                Ok(Want { file: *file, start: e.start, end: e.end, name })
            })
            .collect()
    }

    /// Adds group `group` from the bytes of its [`Self::wants`] (name, bytes).
    pub fn add(&mut self, group: usize, bytes: &[(String, Vec<u8>)]) -> Result<()> {
        let mut tensors = Tensors::new(self.index.sources_of(bytes)?)?;
        self.builder.add(group, &mut tensors)?;
        self.used.extend(bytes.iter().map(|(n, _)| n.clone()));
        Ok(())
    }

    /// The model, once every group was added; tensors never read are in the report.
    pub fn finish(self) -> Result<(Model, LoadReport)> {
        let unused = self.index.unused(&self.used);
        Ok(Model::from_built(self.builder.finish(unused)?, self.config, &self.device))
    }
}

/// Loads a folder's weights at once from the bytes of all its safetensors files (native: the
/// memory maps), in the order of `index`.
pub fn load_folder(
    config: &ModelConfig,
    index: &ShardIndex,
    files: &[&[u8]],
    opts: LoadOptions,
    device: &Device,
) -> Result<(Model, LoadReport)> {
    let mut ts = Tensors::new(index.sources(files))?;
    Model::load(config, &mut ts, opts, device)
}
