//! The small model of RouteLMT: one decoder (prefill only) in burn for the Qwen3, Qwen2 and
//! Llama families, loaded from Hugging Face folders or GGUF files, with the LMT-60 prompt in
//! the model's own chat template and its tokenizer, and the router (head, LoRA adapter,
//! scorer) on its last-token state. Bytes in, tensors out: everything but [`hf`] and
//! [`device`] does no I/O and compiles for wasm32.
//!
//! # Module map
//!
//! The data path reads top to bottom; a module imports only from the floors below it.
//!
//! | floor | modules | what |
//! |---|---|---|
//! | ground | [`error`], [`precision`], `embedding` | errors, `--weights` precision, the host embedding table |
//! | 2 | [`config`], [`readback`] | the decoder's architecture (HF `config.json` names, family defaults); reading results back from a device |
//! | 3 | [`limits`], [`formats`] | buffer limit and batch planning; bytes → named tensors (dtypes, safetensors, GGUF, GGUF as an HF checkpoint), no model knowledge |
//! | 4 | `tensors`, [`text`] | the one tensor door (shape checks, decoding, layout, transposes); prompt, chat template, tokenizer, requests |
//! | 5 | [`decoder`] | the burn decoder: blocks, norms, RoPE, the builder from stored tensors, q8 for wgpu |
//! | 6 | [`cpu`] | the CPU prefill on the `routelmt-kernels` crate, converted from the burn decoder |
//! | 7 | [`model`] | the facade: embedding + burn or CPU decoder, chunked last-token states, logits |
//! | 8 | [`checkpoint`] | a checkpoint (folder or GGUF) from named bytes, sans I/O: what the native door and the browser share |
//! | 9 | [`router`] | head, PEFT adapters, router folders, the scorer |
//! | 10 | [`hf`], [`device`] | native doors: folders and files (memory-mapped), device choice |

pub mod checkpoint;
pub mod config;
pub mod cpu;
pub mod decoder;
#[cfg(not(target_arch = "wasm32"))]
pub mod device;
pub(crate) mod embedding;
pub mod error;
pub mod formats;
#[cfg(not(target_arch = "wasm32"))]
pub mod hf;
pub mod limits;
pub mod model;
pub mod precision;
pub mod readback;
pub mod router;
pub(crate) mod tensors;
pub mod text;

pub use config::{Family, ModelConfig};
pub use cpu::CpuDecoder;
pub use decoder::Decoder;
pub use decoder::build::{LoadOptions, LoadReport};
pub use embedding::{EmbeddingData, HostEmbedding};
pub use error::{ModelError, Result, one_line};
pub use formats::Named;
pub use limits::{MAX_BUFFER_BYTES, check_batch};
pub use model::{LayerEdit, Model, ModelLoad};
pub use precision::Precision;
pub use readback::Pending;
pub use router::head::{HeadKind, RouterHead};
pub use router::peft::{LoraSettings, PeftAdapter};
pub use router::scorer::Scorer;
pub use router::{Router, RouterConfig, RouterFiles};
pub use text::chat::ChatMode;
pub use text::prompt::PromptStyle;
pub use text::request::{PrepareOptions, Prepared, RequestError, TokenizerSource};
pub use text::tokenizer::Tokenizer;
#[cfg(test)]
mod cpu_tests;
#[cfg(test)]
mod gguf_tests;
#[cfg(test)]
mod load_tests;
#[cfg(test)]
mod smollm2_tests;
#[cfg(test)]
mod tests;
