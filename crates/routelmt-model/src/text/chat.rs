//! The model's own chat template (`tokenizer_config.json`'s `chat_template`, a
//! `chat_template.jinja` file, or a GGUF's `tokenizer.chat_template`), rendered with minijinja
//! the way transformers renders it with Jinja2: `trim_blocks` and `lstrip_blocks` on, the
//! special-token strings (`bos_token`, `eos_token`, ...) in the context, Python string methods
//! (`.startswith`, `.split`, `.strip`, ...) available, `raise_exception` an error, and
//! `add_generation_prompt=True`. The router's prompt is one user message holding the LMT
//! instruction (docs/method.md, The prompt).

use std::collections::BTreeMap;

use minijinja::{Environment, Error as JinjaError, ErrorKind, Value as JinjaValue, context};
use serde_json::Value;

use crate::error::{ModelError, Result};

/// How the prompt is wrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ChatMode {
    /// The model's chat template when it has one (tokenizer_config.json, chat_template.jinja,
    /// or the GGUF's), else the bare instruction (default).
    #[default]
    Auto,
    /// The bare instruction, never a template.
    None,
}

crate::error::from_str_by_name!(ChatMode, "chat template mode", "auto" => Auto, "none" => None);

/// A compiled chat template and the special-token strings it may refer to.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    specials: BTreeMap<String, String>,
    origin: String,
}

const NAME: &str = "chat_template";

/// Template instructions one rendering may run: a model's template renders one user turn in a
/// few thousand; a template from an untrusted file that loops for ever stops here.
pub const TEMPLATE_FUEL: u64 = 1_000_000;

/// Bytes one rendering may write beyond the message itself (a real template adds a few
/// hundred).
pub const TEMPLATE_OUTPUT: usize = 1 << 20;

/// A writer that fails once more than `left` bytes were written.
struct Capped {
    out: Vec<u8>,
    left: usize,
    exceeded: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() > self.left {
            self.exceeded = true;
            return Err(std::io::Error::other("output limit"));
        }
        self.left -= buf.len();
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ChatTemplate {
    /// Compiles `source`; `specials` maps `bos_token`, `eos_token`, ... to their strings;
    /// `origin` names where the template came from, in errors.
    pub fn new(source: &str, specials: BTreeMap<String, String>, origin: &str) -> Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.add_function("raise_exception", |msg: String| -> std::result::Result<String, _> {
            Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_template_owned(NAME, source.to_string()).map_err(|e| {
            ModelError::config(origin, format!("chat template does not compile: {e}"))
        })?;
        Ok(Self { env, specials, origin: origin.to_string() })
    }

    /// Where the template came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The prompt for one user message, with the generation prompt appended.
    pub fn render_user(&self, message: &str) -> Result<String> {
        let tmpl = self.env.get_template(NAME).expect("added in new");
        let messages = vec![context! { role => "user", content => message }];
        let specials = JinjaValue::from_serialize(&self.specials);
        let ctx = context! { messages, add_generation_prompt => true, ..specials };
        let limit = TEMPLATE_OUTPUT + 4 * message.len();
        let mut out = Capped { out: Vec::new(), left: limit, exceeded: false };
        let rendered = tmpl.render_captured_to(ctx, &mut out);
        let fail = |m: String| {
            ModelError::config(&self.origin, format!("chat template failed to render: {m}"))
        };
        match rendered {
            Ok(_) => String::from_utf8(out.out).map_err(|_| fail("output is not UTF-8".into())),
            Err(_) if out.exceeded => Err(fail(format!("output exceeds {limit} bytes"))),
            Err(e) if e.kind() == ErrorKind::OutOfFuel => Err(fail(format!(
                "it ran more than {TEMPLATE_FUEL} instructions (a loop that does not end?)"
            ))),
            Err(e) => Err(fail(e.to_string())),
        }
    }
}

/// The special-token strings of a `tokenizer_config.json` (`bos_token`, `eos_token`,
/// `pad_token`, `unk_token`, as strings or `{"content": ...}` objects).
fn specials_of(cfg: &serde_json::Map<String, Value>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for key in ["bos_token", "eos_token", "pad_token", "unk_token"] {
        let s = match cfg.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Object(o)) => o.get("content").and_then(Value::as_str).map(String::from),
            _ => None,
        };
        if let Some(s) = s {
            out.insert(key.to_string(), s);
        }
    }
    out
}

/// The chat template of a `tokenizer_config.json` (bytes; `file` names it in errors), or of a
/// separate `chat_template.jinja` (`jinja`) which transformers 5 prefers when both exist.
/// `None` when neither has one. A template given as a list of named templates uses `default`.
pub fn from_tokenizer_config(
    bytes: Option<(&[u8], &str)>,
    jinja: Option<(&str, &str)>,
) -> Result<Option<ChatTemplate>> {
    let cfg = match bytes {
        Some((b, file)) => {
            let v: Value = serde_json::from_slice(b)
                .map_err(|e| ModelError::config(file, format!("not valid JSON: {e}")))?;
            match v {
                Value::Object(m) => Some((m, file)),
                _ => return Err(ModelError::config(file, "expected a JSON object")),
            }
        }
        None => None,
    };
    let specials = cfg.as_ref().map(|(m, _)| specials_of(m)).unwrap_or_default();
    if let Some((source, file)) = jinja {
        return ChatTemplate::new(source, specials, file).map(Some);
    }
    let Some((m, file)) = cfg else { return Ok(None) };
    let source = match m.get("chat_template") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(list)) => {
            let default =
                list.iter().find(|t| t.get("name").and_then(Value::as_str) == Some("default"));
            match default.and_then(|t| t.get("template")).and_then(Value::as_str) {
                Some(s) => s.to_string(),
                None => {
                    return Err(ModelError::config(
                        file,
                        "field 'chat_template' is a list without a 'default' template",
                    ));
                }
            }
        }
        Some(_) => {
            return Err(ModelError::config(file, "field 'chat_template' is not a string"));
        }
    };
    ChatTemplate::new(&source, specials, file).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' \
        + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}\
        {{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn chatml_renders_one_user_turn_with_the_generation_prompt() {
        let t = ChatTemplate::new(CHATML, BTreeMap::new(), "t").unwrap();
        assert_eq!(
            t.render_user("Hi").unwrap(),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn python_methods_specials_and_trim_blocks_work() {
        let src = "{%- if messages[0].content.startswith('x') %}\n{{ bos_token }}{{ messages[0]\
            .content.split('-')[1].strip() }}\n{%- endif %}";
        let specials = BTreeMap::from([("bos_token".to_string(), "<s>".to_string())]);
        let t = ChatTemplate::new(src, specials, "t").unwrap();
        assert_eq!(t.render_user("x- y ").unwrap(), "<s>y");
    }

    #[test]
    fn raise_exception_and_bad_templates_are_errors_naming_the_origin() {
        let t =
            ChatTemplate::new("{{ raise_exception('no') }}", BTreeMap::new(), "cfg.json").unwrap();
        let e = t.render_user("x").unwrap_err().to_string();
        assert!(
            e.starts_with("cfg.json: chat template failed to render") && e.contains("no"),
            "{e}"
        );
        let e = ChatTemplate::new("{% if %}", BTreeMap::new(), "cfg.json").unwrap_err().to_string();
        assert!(e.contains("does not compile"), "{e}");
    }

    #[test]
    fn runaway_templates_stop_with_a_clear_error() {
        let specials = BTreeMap::new();
        let forever =
            "{% for i in range(50000) %}{% for j in range(50000) %}x{% endfor %}{% endfor %}";
        let t = ChatTemplate::new(forever, specials.clone(), "model.gguf").unwrap();
        let e = t.render_user("m").unwrap_err().to_string();
        assert!(
            e.starts_with("model.gguf: chat template failed to render: it ran more than"),
            "{e}"
        );
        let big = "{% for i in range(60000) %}{{ messages[0].content }}{% endfor %}";
        let t = ChatTemplate::new(big, specials, "model.gguf").unwrap();
        let e = t.render_user(&"y".repeat(100)).unwrap_err().to_string();
        assert!(e.contains("chat template failed to render: output exceeds"), "{e}");
    }

    #[test]
    fn tokenizer_config_forms() {
        let cfg = br#"{"chat_template": [{"name": "tool_use", "template": "T"},
            {"name": "default", "template": "D{{ eos_token }}"}], "eos_token": {"content": "</s>"}}"#;
        let t = from_tokenizer_config(Some((cfg, "c")), None).unwrap().unwrap();
        assert_eq!(t.render_user("m").unwrap(), "D</s>");
        assert!(from_tokenizer_config(Some((b"{}", "c")), None).unwrap().is_none());
        let t = from_tokenizer_config(Some((b"{}", "c")), Some(("J", "j"))).unwrap().unwrap();
        assert_eq!((t.render_user("m").unwrap().as_str(), t.origin()), ("J", "j"));
    }
}
