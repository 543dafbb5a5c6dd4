//! A checkpoint from named bytes, sans I/O: what the native door ([`crate::hf`]: files and
//! memory maps) and the browser (fetches, picked files, byte ranges) share, so neither holds
//! loading logic of its own. A checkpoint is a Hugging Face folder (`config.json`,
//! `model.safetensors` or a sharded index, `tokenizer.json` with `tokenizer_config.json` or
//! `chat_template.jinja`) or one GGUF file holding all of it.
//!
//! Weights load one tensor group at a time ([`RangeLoad`]): the doors read the files' headers
//! (safetensors headers, or a GGUF file's head) into a [`TensorIndex`], then for each group the
//! byte ranges it names, so the browser holds one group's bytes at a time and never reads
//! tensors the model does not use.

use std::collections::BTreeSet;

use burn::tensor::Device;

use crate::config::ModelConfig;
use crate::decoder::build::{EMBED, LoadOptions, LoadReport};
use crate::error::{ModelError, Result};
use crate::formats::Named;
pub use crate::formats::TensorIndex;
use crate::formats::gguf::GgufFile;
pub use crate::formats::gguf::is_gguf;
use crate::formats::gguf_hf;
pub use crate::formats::safetensors::{INDEX, SINGLE, shard_names};
use crate::model::{LayerEdit, Model, ModelLoad};
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

    /// Parses the head of a file of `file_len` bytes (see [`GgufFile::parse_head`]): `None`
    /// when `head` is too short to hold the tensor table (read more). The tokenizer and the
    /// [`Self::index`] need only the head; the weights then load by byte ranges.
    pub fn parse_head(named: Named<'a>, file_len: u64) -> Result<Option<Self>> {
        let Some(file) = GgufFile::parse_head(named.bytes, file_len, named.name)? else {
            return Ok(None);
        };
        let config = gguf_hf::config(&file)?;
        Ok(Some(Self { file, config }))
    }

    /// Where each tensor is in the file, by Hugging Face name (for a [`RangeLoad`]).
    pub fn index(&self) -> Result<TensorIndex> {
        let mut index = TensorIndex::default();
        index.add_entries(self.file.file, gguf_hf::entries(&self.file, &self.config)?)?;
        Ok(index)
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

    /// The model on `device`, with `edit` applied to each block as it loads.
    pub fn load(
        &self,
        opts: LoadOptions,
        edit: Option<LayerEdit<'_>>,
        device: &Device,
    ) -> Result<(Model, LoadReport)> {
        Model::load_edited(&self.config, &mut self.tensors()?, opts, edit, device)
    }
}

/// Rows of the embedding table per piece read by [`RangeLoad::add_piece`] (8 MiB of bf16 at
/// hidden size 1,024); a multiple of [`crate::embedding::EMBEDDING_SLICE_ROWS`], so whole blocks
/// of every stored type.
pub const PIECE_ROWS: usize = 4096;

/// One tensor's bytes a group needs: read `start..end` of file `file` (an index into
/// [`TensorIndex::files`]).
#[derive(Debug, Clone)]
pub struct Want {
    /// HF tensor name.
    pub name: String,
    /// Index of the file in [`TensorIndex::files`].
    pub file: usize,
    /// First byte in the file.
    pub start: u64,
    /// End byte (exclusive).
    pub end: u64,
}

/// A checkpoint's weights loaded one tensor group at a time from byte ranges (see the module
/// docs): a folder's safetensors files or one GGUF file, as a [`TensorIndex`] says.
pub struct RangeLoad<'c, 'e> {
    index: TensorIndex,
    load: ModelLoad<'c, 'e>,
    used: BTreeSet<String>,
}

impl<'c, 'e> RangeLoad<'c, 'e> {
    /// A load of `config` from the files of `index` onto `device`, with `edit` applied to each
    /// block as it loads.
    pub fn new(
        config: &'c ModelConfig,
        index: TensorIndex,
        opts: LoadOptions,
        edit: Option<LayerEdit<'e>>,
        device: &Device,
    ) -> Self {
        let load = ModelLoad::new(config, opts, device).with_edit(edit);
        Self { index, load, used: BTreeSet::new() }
    }

    /// Tensor groups, in load order.
    pub fn groups(&self) -> usize {
        self.load.groups()
    }

    /// The files, for messages.
    pub fn files(&self) -> String {
        self.index.files().join(", ")
    }

    /// The byte ranges group `group` needs; a missing tensor is an error naming the files.
    pub fn wants(&self, group: usize) -> Result<Vec<Want>> {
        self.load
            .names(group)
            .into_iter()
            .map(|name| {
                let (file, e) = self.index.entry(&name)?;
                Ok(Want { file: *file, start: e.start, end: e.end, name })
            })
            .collect()
    }

    /// When `want` may be read in pieces of this many bytes and each given to
    /// [`Self::add_piece`] (then left out of [`Self::add`]): the embedding table of a load that
    /// holds it as q8 or q4, so only a piece of the stored table is in memory at a time.
    /// `None`: read it whole.
    pub fn piece_bytes(&self, want: &Want) -> Option<u64> {
        if want.name != EMBED || self.load.embedding_quant().is_none() {
            return None;
        }
        let (_, e) = self.index.entry(&want.name).ok()?;
        let h = self.load.config().hidden_size;
        e.dtype.bytes_for(PIECE_ROWS * h).ok().map(|b| b as u64)
    }

    /// Adds the next piece of `want` (whole blocks, in order; see [`Self::piece_bytes`]).
    pub fn add_piece(&mut self, want: &Want, bytes: &[u8]) -> Result<()> {
        let (file, e) = self.index.entry(&want.name)?;
        let file = &self.index.files()[*file];
        let (vocab, h) = (self.load.config().vocab_size, self.load.config().hidden_size);
        if e.shape != [vocab, h] {
            return Err(ModelError::weights(
                file,
                format!(
                    "tensor '{}' has shape {:?}, expected {:?}",
                    want.name,
                    e.shape,
                    [vocab, h]
                ),
            ));
        }
        let (elems, block) = e.dtype.block();
        if !bytes.len().is_multiple_of(block) {
            return Err(ModelError::weights(
                file,
                format!(
                    "tensor '{}': a piece of {} bytes is not whole blocks",
                    want.name,
                    bytes.len()
                ),
            ));
        }
        let dtype = e.dtype;
        self.used.insert(want.name.clone());
        let file = file.clone();
        self.load.add_embedding_rows(dtype, &file, bytes, bytes.len() / block * elems)
    }

    /// Adds group `group` from the bytes of its [`Self::wants`] (name, bytes), each tensor's
    /// bytes freed once it is read.
    pub fn add(&mut self, group: usize, bytes: Vec<(String, Vec<u8>)>) -> Result<()> {
        self.used.extend(bytes.iter().map(|(n, _)| n.clone()));
        let mut tensors = Tensors::new(self.index.sources_of(bytes)?)?;
        self.load.add(group, &mut tensors)
    }

    /// The model, once every group was added; tensors never read are in the report.
    pub fn finish(self) -> Result<(Model, LoadReport)> {
        let unused = self.index.unused(&self.used);
        self.load.finish(unused)
    }
}
