//! The small model of RouteLMT: a Qwen3 decoder (prefill only) in burn, loaded from Hugging
//! Face folders, with the LMT-60 prompt and the Qwen3 tokenizer. Bytes in, tensors out: the
//! core does no file I/O and compiles for wasm32; [`hf`] (native only) reads folders.

pub mod block;
pub mod config;
#[cfg(not(target_arch = "wasm32"))]
pub mod device;
pub mod embedding;
pub mod error;
pub mod head;
#[cfg(not(target_arch = "wasm32"))]
pub mod hf;
pub mod loader;
pub mod model;
pub mod norm;
pub mod peft;
pub mod prompt;
pub mod request;
pub mod rope;
pub mod router;
pub mod scorer;
pub mod tokenizer;

pub use config::Qwen3Config;
pub use error::{ModelError, Result, one_line};
pub use head::{HeadKind, RouterHead};
pub use loader::{LoadReport, Shard, load_model};
pub use model::{MAX_BUFFER_BYTES, Qwen3Decoder, Qwen3Model, check_batch};
pub use peft::{LoraSettings, PeftAdapter};
pub use prompt::PromptStyle;
pub use request::{PrepareOptions, Prepared, RequestError, TokenizerSource};
pub use router::{Router, RouterConfig, RouterFiles};
pub use scorer::Scorer;
pub use tokenizer::Tokenizer;
#[cfg(test)]
mod tests;
