//! What a chat request asks to translate: an explicit `routelmt: {src, src_lang, tgt_lang}`
//! object, else the last user message read as the LMT instruction
//! (`Translate the following text from {S} into {T}.\n{S}: {text}\n{T}:`, `.` or `:`), else the
//! last user message as it stands, scored in the model's chat template.

use routelmt_model::text::prompt::LANGUAGES;
use routelmt_model::{PromptStyle, Tokenizer};
use serde_json::Value;

/// The text the router scores.
#[derive(Debug, Clone, PartialEq)]
pub enum Routed {
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

impl Routed {
    /// Token ids: the LMT prompt in the router's style, or the message in the chat template.
    pub fn token_ids(&self, tok: &Tokenizer, style: PromptStyle) -> Result<Vec<u32>, String> {
        let ids = match self {
            Routed::Translation { src, src_lang, tgt_lang } => {
                tok.encode_request(src, src_lang, tgt_lang, style).map(|(_, ids)| ids)
            }
            Routed::Message(m) => {
                let prompt = match tok.chat_template() {
                    Some(t) => t.render_user(m),
                    None => Ok(m.clone()),
                };
                prompt.and_then(|p| tok.encode(&p))
            }
        };
        ids.map_err(|e| routelmt_model::one_line(&e))
    }
}

fn code_of(name: &str) -> Option<&'static str> {
    LANGUAGES.iter().find(|(_, n)| *n == name).map(|(c, _)| *c)
}

/// The LMT instruction's parts, if `msg` is one.
pub fn parse_instruction(msg: &str) -> Option<Routed> {
    let rest = msg.strip_prefix("Translate the following text from ")?;
    let (s, rest) = rest.split_once(" into ")?;
    let (t, rest) = rest.split_once('\n')?;
    let t = t.strip_suffix('.').or_else(|| t.strip_suffix(':'))?;
    let body = rest.strip_prefix(&format!("{s}: "))?;
    let src = body.strip_suffix(&format!("\n{t}:"))?;
    Some(Routed::Translation {
        src: src.to_string(),
        src_lang: code_of(s)?.to_string(),
        tgt_lang: code_of(t)?.to_string(),
    })
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

/// What `request` (a chat completion body) asks to route; an error names the field.
pub fn routed_text(request: &Value) -> Result<Routed, String> {
    if let Some(r) = request.get("routelmt").filter(|v| !v.is_null()) {
        let field = |k: &str| -> Result<String, String> {
            r.get(k)
                .and_then(Value::as_str)
                .map(String::from)
                .ok_or_else(|| format!("'routelmt.{k}' must be a string"))
        };
        return Ok(Routed::Translation {
            src: field("src")?,
            src_lang: field("src_lang")?,
            tgt_lang: field("tgt_lang")?,
        });
    }
    let messages = match request.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(_) => return Err("'messages' must be a non-empty array".into()),
        None => return Err("missing field 'messages'".into()),
    };
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .ok_or("'messages' has no user message")?;
    let text = last_user
        .get("content")
        .and_then(content_text)
        .ok_or("the last user message has no text content")?;
    Ok(parse_instruction(&text).unwrap_or(Routed::Message(text)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_three_ways_to_name_a_translation() {
        let explicit = json!({"messages": [{"role": "user", "content": "x"}],
            "routelmt": {"src": "Hallo", "src_lang": "de", "tgt_lang": "en"}});
        let want = Routed::Translation {
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
        assert_eq!(routed_text(&plain).unwrap(), Routed::Message("hi".into()));
    }

    #[test]
    fn bad_requests_name_the_field() {
        assert_eq!(routed_text(&json!({})).unwrap_err(), "missing field 'messages'");
        assert!(routed_text(&json!({"messages": []})).unwrap_err().contains("non-empty"));
        let e = routed_text(&json!({"messages": [{"role": "user"}], "routelmt": {"src": 1}}));
        assert_eq!(e.unwrap_err(), "'routelmt.src' must be a string");
        let e = routed_text(&json!({"messages": [{"role": "assistant", "content": "a"}]}));
        assert!(e.unwrap_err().contains("no user message"));
    }
}
