//! What a chat request asks to translate: an explicit `routelmt: {src, src_lang, tgt_lang}`
//! object, else the last user message read back as the LMT instruction
//! ([`parse_instruction`], either style), else the last user message as it stands, scored in
//! the model's chat template.

use routelmt_model::text::prompt::parse_instruction;
use routelmt_model::{ModelError, PromptStyle, Tokenizer};
use serde_json::Value;
use thiserror::Error;

/// The text the router scores.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A translation request.
    Translation {
        /// Source text.
        src: String,
        /// Source language code.
        src_lang: String,
        /// Target language code.
        tgt_lang: String,
    },
    /// Any other message.
    Message(String),
}

impl Target {
    /// The target of a user message: the LMT instruction's parts if it is one, else the
    /// message itself.
    pub fn of_message(text: String) -> Self {
        match parse_instruction(&text) {
            Some(i) => Target::Translation {
                src: i.text.to_string(),
                src_lang: i.src_lang.to_string(),
                tgt_lang: i.tgt_lang.to_string(),
            },
            None => Target::Message(text),
        }
    }

    /// Length in characters of the text to translate, or of the message.
    pub fn chars(&self) -> usize {
        match self {
            Target::Translation { src, .. } => src.chars().count(),
            Target::Message(m) => m.chars().count(),
        }
    }

    /// Token ids: the LMT prompt in the router's style, or the message in the chat template.
    pub fn token_ids(&self, tok: &Tokenizer, style: PromptStyle) -> Result<Vec<u32>, ModelError> {
        match self {
            Target::Translation { src, src_lang, tgt_lang } => {
                tok.encode_request(src, src_lang, tgt_lang, style).map(|(_, ids)| ids)
            }
            Target::Message(m) => {
                let prompt = match tok.chat_template() {
                    Some(t) => t.render_user(m),
                    None => Ok(m.clone()),
                };
                prompt.and_then(|p| tok.encode(&p))
            }
        }
    }
}

/// A chat request that names nothing to route; the message names the field.
#[derive(Debug, Error)]
pub enum TargetError {
    /// A `routelmt` object whose field is missing or not a string.
    #[error("'routelmt.{0}' must be a string")]
    Field(&'static str),
    /// No `messages`.
    #[error("missing field 'messages'")]
    NoMessages,
    /// `messages` is not an array, or is empty.
    #[error("'messages' must be a non-empty array")]
    BadMessages,
    /// No message has the role `user`.
    #[error("'messages' has no user message")]
    NoUserMessage,
    /// The last user message has neither a string content nor text parts.
    #[error("the last user message has no text content")]
    NoText,
}

/// The text content of a message (a string, or the text parts of a list).
fn content_text(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            (!texts.is_empty()).then(|| texts.join("\n"))
        }
        _ => None,
    }
}

/// What `request` (a chat completion body) asks to route.
pub fn routed_text(request: &Value) -> Result<Target, TargetError> {
    if let Some(r) = request.get("routelmt").filter(|v| !v.is_null()) {
        let field = |k: &'static str| -> Result<String, TargetError> {
            r.get(k).and_then(Value::as_str).map(String::from).ok_or(TargetError::Field(k))
        };
        return Ok(Target::Translation {
            src: field("src")?,
            src_lang: field("src_lang")?,
            tgt_lang: field("tgt_lang")?,
        });
    }
    let messages = match request.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(_) => return Err(TargetError::BadMessages),
        None => return Err(TargetError::NoMessages),
    };
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .ok_or(TargetError::NoUserMessage)?;
    let text = last_user.get("content").and_then(content_text).ok_or(TargetError::NoText)?;
    Ok(Target::of_message(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_three_ways_to_name_a_translation() {
        let explicit = json!({"messages": [{"role": "user", "content": "x"}],
            "routelmt": {"src": "Hallo", "src_lang": "de", "tgt_lang": "en"}});
        let want = Target::Translation {
            src: "Hallo".into(),
            src_lang: "de".into(),
            tgt_lang: "en".into(),
        };
        assert_eq!(routed_text(&explicit).unwrap(), want);
        for end in ['.', ':'] {
            let msg = format!(
                "Translate the following text from German into English{end}\nGerman: Hallo\nEnglish:"
            );
            let implicit = json!({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": msg}]});
            assert_eq!(routed_text(&implicit).unwrap(), want);
        }
        let plain =
            json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]});
        assert_eq!(routed_text(&plain).unwrap(), Target::Message("hi".into()));
    }

    #[test]
    fn bad_requests_name_the_field() {
        let e = |request: Value| routed_text(&request).unwrap_err().to_string();
        assert_eq!(e(json!({})), "missing field 'messages'");
        assert!(e(json!({"messages": []})).contains("non-empty"));
        let m = e(json!({"messages": [{"role": "user"}], "routelmt": {"src": 1}}));
        assert_eq!(m, "'routelmt.src' must be a string");
        assert!(
            e(json!({"messages": [{"role": "assistant", "content": "a"}]}))
                .contains("no user message")
        );
    }
}
