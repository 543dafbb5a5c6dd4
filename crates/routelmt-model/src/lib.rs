//! The small model of RouteLMT: one decoder (prefill only) in burn for the Qwen3, Qwen2 and
//! Llama families, loaded from Hugging Face folders or GGUF files, with the LMT-60 prompt in
//! the model's own chat template and its tokenizer. Bytes in, tensors out: the core does no
//! file I/O and compiles for wasm32; [`hf`] (native only) reads folders and files.

pub mod block;
pub mod chat;
pub mod config;
pub mod cpu;
#[cfg(not(target_arch = "wasm32"))]
pub mod device;
pub mod embedding;
pub mod error;
pub mod gguf;
pub mod gpu_weights;
pub mod head;
#[cfg(not(target_arch = "wasm32"))]
pub mod hf;
pub mod loader;
pub mod model;
pub mod norm;
pub mod peft;
pub mod precision;
pub mod prompt;
pub mod quant;
pub mod request;
pub mod rope;
pub mod router;
pub mod scorer;
pub mod tensors;
pub mod tokenizer;

pub use chat::ChatMode;
pub use config::{Family, ModelConfig};
pub use cpu::CpuDecoder;
pub use error::{ModelError, Result, one_line};
pub use head::{HeadKind, RouterHead};
pub use loader::{LoadOptions, LoadReport, Shard, load_model};
pub use model::{Decoder, MAX_BUFFER_BYTES, Model, check_batch};
pub use peft::{LoraSettings, PeftAdapter};
pub use precision::Precision;
pub use prompt::PromptStyle;
pub use request::{PrepareOptions, Prepared, RequestError, TokenizerSource};
pub use router::{Router, RouterConfig, RouterFiles};
pub use scorer::Scorer;
pub use tokenizer::Tokenizer;
#[cfg(test)]
mod cpu_tests;
#[cfg(test)]
mod gguf_tests;
#[cfg(test)]
mod smollm2_tests;
#[cfg(test)]
mod tests;
