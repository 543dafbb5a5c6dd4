//! Bytes to named tensors, knowing no model: the stored element types and their decoding
//! ([`dtype`]), safetensors files ([`safetensors`]: one reader for the native door and the
//! browser, and the one writer), GGUF files ([`gguf`]: header, metadata, tensor table, no
//! architecture knowledge) and a GGUF file seen as a Hugging Face checkpoint ([`gguf_hf`]:
//! config, HF tensor names with llama.cpp's row layout, tokenizer). Each reader checks every
//! size and offset against the bytes it was given and names the file and tensor in errors.

pub mod dtype;
pub mod gguf;
pub mod gguf_hf;
pub mod safetensors;

use std::borrow::Cow;

use self::dtype::Stored;

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
