//! Text to token ids: the LMT-60 instruction and its 60 languages ([`prompt`]), the model's
//! own chat template, sandboxed in minijinja ([`chat`]), the tokenizer ([`tokenizer`]) and
//! request records to prepared prompts ([`request`]).

pub mod chat;
pub mod prompt;
pub mod request;
pub mod tokenizer;
