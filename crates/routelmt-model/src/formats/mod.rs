//! Bytes to named tensors, knowing no model: the stored element types and their decoding
//! ([`dtype`]), safetensors files ([`safetensors`]: one reader for the native door and the
//! browser, and the one writer), GGUF files ([`gguf`]: header, metadata, tensor table, no
//! architecture knowledge) and a GGUF file seen as a Hugging Face checkpoint ([`gguf_hf`]:
//! config, HF tensor names with llama.cpp's row layout, tokenizer). Both formats' headers give
//! [`Entry`]s, gathered by name in one [`TensorIndex`]. Each reader checks every size and offset
//! against the file and names the file and tensor in errors.

pub mod dtype;
pub mod gguf;
pub mod gguf_hf;
pub mod safetensors;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use self::dtype::Stored;
use crate::error::{ModelError, Result};

/// A file's bytes and the name to use in errors.
#[derive(Debug, Clone, Copy)]
pub struct Named<'a> {
    /// The file's name (or path), for messages.
    pub name: &'a str,
    /// The whole file.
    pub bytes: &'a [u8],
}

impl<'a> Named<'a> {
    /// Bytes with a name.
    pub fn new(name: &'a str, bytes: &'a [u8]) -> Self {
        Self { name, bytes }
    }
}

/// How a tensor's rows are laid out on disk relative to Hugging Face's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Hugging Face's row-major layout.
    Plain,
    /// llama.cpp's `permute` of a Llama q or k projection: within each of `heads` heads, HF
    /// row `c * d/2 + i` (half `c`, pair `i`) is stored at row `2i + c`.
    RopeInterleaved {
        /// Heads the rows are grouped into (query heads for q, key/value heads for k).
        heads: usize,
    },
}

/// One tensor as stored, with the file it came from.
#[derive(Debug, Clone)]
pub struct Source<'a> {
    /// The file's name, for messages.
    pub file: &'a str,
    /// Stored type.
    pub dtype: Stored,
    /// Row-major shape in Hugging Face's order (`[out, in]` for a Linear weight).
    pub shape: Vec<usize>,
    /// The tensor's bytes (little-endian; rows of blocks for quantized types).
    pub data: Cow<'a, [u8]>,
    /// Row layout on disk.
    pub layout: Layout,
}

impl Source<'_> {
    /// Elements in the tensor.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One tensor's entry in a file's header (a safetensors header or a GGUF tensor table): where
/// its bytes are in the file, how they are stored.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Stored type.
    pub dtype: Stored,
    /// Row-major shape in Hugging Face's order.
    pub shape: Vec<usize>,
    /// Absolute byte range in the file.
    pub start: u64,
    /// End of the byte range (exclusive).
    pub end: u64,
    /// Row layout on disk.
    pub layout: Layout,
}

/// A tensor's [`Source`] from its entry and its bytes (`data` is `entry.start..entry.end`).
pub fn source<'a>(file: &'a str, entry: Entry, data: &'a [u8]) -> Source<'a> {
    Source {
        file,
        dtype: entry.dtype,
        shape: entry.shape,
        data: Cow::Borrowed(data),
        layout: entry.layout,
    }
}

/// A checkpoint's tensors by Hugging Face name, from the files' headers alone (safetensors
/// shards, or one GGUF file's tensor table): where each tensor's bytes are, so a loader reads
/// only the tensors it uses (the browser reads one tensor group's byte ranges at a time; the
/// native door slices its memory maps).
#[derive(Debug, Default)]
pub struct TensorIndex {
    files: Vec<String>,
    entries: BTreeMap<String, (usize, Entry)>,
}

impl TensorIndex {
    /// Adds a file's entries. A tensor name given twice is an error naming both files.
    pub fn add_entries(&mut self, file: &str, entries: Vec<(String, Entry)>) -> Result<()> {
        let i = self.files.len();
        self.files.push(file.to_string());
        for (name, entry) in entries {
            if let Some((j, _)) = self.entries.insert(name.clone(), (i, entry)) {
                let other = if j == i { "the same file" } else { &self.files[j] };
                return Err(ModelError::weights(
                    file,
                    format!("tensor '{name}' also appears in {other}"),
                ));
            }
        }
        Ok(())
    }

    /// Adds a safetensors file from its header bytes (after the 8 length bytes) and its size.
    pub fn add_header(&mut self, file: &str, header: &[u8], file_size: u64) -> Result<()> {
        self.add_entries(file, self::safetensors::header_entries(header, file_size, file)?)
    }

    /// Adds a whole safetensors file (native: a memory map).
    pub fn add_file(&mut self, file: &str, bytes: &[u8]) -> Result<()> {
        let end = self::safetensors::header_end(bytes, bytes.len() as u64, file)? as usize;
        self.add_header(file, &bytes[8..end], bytes.len() as u64)
    }

    /// The files, in the order they were added.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// Where tensor `name` is: (file index, entry); a missing tensor is an error naming the
    /// files.
    pub fn entry(&self, name: &str) -> Result<&(usize, Entry)> {
        self.entries.get(name).ok_or_else(|| {
            ModelError::weights(self.files.join(", "), format!("missing tensor '{name}'"))
        })
    }

    /// Every tensor as a [`Source`], given the bytes of every file in order (native).
    pub fn sources<'a>(&'a self, files: &[&'a [u8]]) -> Vec<(String, Source<'a>)> {
        self.entries
            .iter()
            .map(|(name, (i, e))| {
                let data = &files[*i][e.start as usize..e.end as usize];
                (name.clone(), source(&self.files[*i], e.clone(), data))
            })
            .collect()
    }

    /// The named tensors as [`Source`]s owning their bytes (each `entry(name)`'s range), so a
    /// loader frees each tensor's bytes once it is read.
    pub fn sources_of(&self, tensors: Vec<(String, Vec<u8>)>) -> Result<Vec<(String, Source<'_>)>> {
        tensors
            .into_iter()
            .map(|(name, data)| {
                let (i, e) = self.entry(&name)?;
                let mut src = source(&self.files[*i], e.clone(), &[]);
                src.data = Cow::Owned(data);
                Ok((name, src))
            })
            .collect()
    }

    /// The names not in `used`, sorted.
    pub fn unused(&self, used: &BTreeSet<String>) -> Vec<String> {
        self.entries.keys().filter(|k| !used.contains(*k)).cloned().collect()
    }
}
