//! The LMT-60 translation prompt inside the Qwen3 chat template (docs/method.md, The prompt).
//!
//! The model card's user message is
//! `Translate the following text from {S} into {T}.\n{S}: {text}\n{T}:`; a later revision of
//! the LMT code ends the first line with `:` instead of `.` ([`PromptStyle::Colon`]). The chat
//! template with `add_generation_prompt=True` and no system message wraps it as
//! `<|im_start|>user\n{msg}<|im_end|>\n<|im_start|>assistant\n`.

use crate::error::{ModelError, Result};

/// The 60 LMT-60 languages: (code, English name), in the model card's order.
pub const LANGUAGES: [(&str, &str); 60] = [
    ("ar", "Arabic"),
    ("en", "English"),
    ("es", "Spanish"),
    ("de", "German"),
    ("fr", "French"),
    ("it", "Italian"),
    ("ja", "Japanese"),
    ("nl", "Dutch"),
    ("pl", "Polish"),
    ("pt", "Portuguese"),
    ("ru", "Russian"),
    ("tr", "Turkish"),
    ("zh", "Chinese"),
    ("bg", "Bulgarian"),
    ("bn", "Bengali"),
    ("cs", "Czech"),
    ("da", "Danish"),
    ("el", "Modern Greek"),
    ("fa", "Persian"),
    ("fi", "Finnish"),
    ("hi", "Hindi"),
    ("hu", "Hungarian"),
    ("id", "Indonesian"),
    ("ko", "Korean"),
    ("nb", "Norwegian Bokmål"),
    ("ro", "Romanian"),
    ("sk", "Slovak"),
    ("sv", "Swedish"),
    ("th", "Thai"),
    ("uk", "Ukrainian"),
    ("vi", "Vietnamese"),
    ("am", "Amharic"),
    ("az", "Azerbaijani"),
    ("bo", "Tibetan"),
    ("he", "Modern Hebrew"),
    ("hr", "Croatian"),
    ("hy", "Armenian"),
    ("is", "Icelandic"),
    ("jv", "Javanese"),
    ("ka", "Georgian"),
    ("kk", "Kazakh"),
    ("km", "Central Khmer"),
    ("ky", "Kirghiz"),
    ("lo", "Lao"),
    ("mvf", "Inner Mongolian"),
    ("mr", "Marathi"),
    ("ms", "Malay"),
    ("my", "Burmese"),
    ("ne", "Nepali"),
    ("ps", "Pashto"),
    ("si", "Sinhala"),
    ("sw", "Swahili"),
    ("ta", "Tamil"),
    ("te", "Telugu"),
    ("tg", "Tajik"),
    ("tl", "Tagalog"),
    ("ug", "Uighur"),
    ("ur", "Urdu"),
    ("uz", "Uzbek"),
    ("yue", "Yue Chinese"),
];

/// Which revision of the LMT instruction to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum PromptStyle {
    /// Hugging Face model card: `... into {T}.` (default).
    #[default]
    Card,
    /// Later LMT code revision: `... into {T}:`.
    Colon,
}

crate::error::from_str_by_name!(PromptStyle, "prompt style", "card" => Card, "colon" => Colon);

/// English name of a language code, or an error listing every supported code.
pub fn language_name(code: &str) -> Result<&'static str> {
    LANGUAGES.iter().find(|(c, _)| *c == code).map(|(_, n)| *n).ok_or_else(|| {
        ModelError::UnknownLanguage {
            code: code.to_string(),
            supported: LANGUAGES.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", "),
        }
    })
}

/// Code of a language's English name as [`LANGUAGES`] spells it (the inverse of
/// [`language_name`]).
pub fn language_code(name: &str) -> Option<&'static str> {
    LANGUAGES.iter().find(|(_, n)| *n == name).map(|(c, _)| *c)
}

/// The user message of the LMT-60 prompt.
pub fn user_message(
    text: &str,
    src_lang: &str,
    tgt_lang: &str,
    style: PromptStyle,
) -> Result<String> {
    let s = language_name(src_lang)?;
    let t = language_name(tgt_lang)?;
    let end = match style {
        PromptStyle::Card => '.',
        PromptStyle::Colon => ':',
    };
    Ok(format!("Translate the following text from {s} into {t}{end}\n{s}: {text}\n{t}:"))
}

/// The full chat-templated prompt, ready to tokenize with special tokens parsed.
pub fn build(text: &str, src_lang: &str, tgt_lang: &str, style: PromptStyle) -> Result<String> {
    let msg = user_message(text, src_lang, tgt_lang, style)?;
    Ok(format!("<|im_start|>user\n{msg}<|im_end|>\n<|im_start|>assistant\n"))
}

/// An LMT-60 user message read back into its parts ([`parse_instruction`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instruction<'a> {
    /// The text to translate.
    pub text: &'a str,
    /// Source language code.
    pub src_lang: &'static str,
    /// Target language code.
    pub tgt_lang: &'static str,
    /// Which revision of the instruction it was written in.
    pub style: PromptStyle,
}

/// The parts of `msg` if it is a [`user_message`] (either style) naming two of the
/// [`LANGUAGES`]; `None` for any other text. The text may span lines: only the first line and
/// the `\n{T}:` tail are fixed.
pub fn parse_instruction(msg: &str) -> Option<Instruction<'_>> {
    let rest = msg.strip_prefix("Translate the following text from ")?;
    let (s, rest) = rest.split_once(" into ")?;
    let (t, rest) = rest.split_once('\n')?;
    let (t, style) = match t.strip_suffix('.') {
        Some(t) => (t, PromptStyle::Card),
        None => (t.strip_suffix(':')?, PromptStyle::Colon),
    };
    let body = rest.strip_prefix(&format!("{s}: "))?;
    let text = body.strip_suffix(&format!("\n{t}:"))?;
    Some(Instruction { text, src_lang: language_code(s)?, tgt_lang: language_code(t)?, style })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_and_colon_forms() {
        let p = build("Hello world", "en", "zh", PromptStyle::Card).unwrap();
        assert_eq!(
            p,
            "<|im_start|>user\nTranslate the following text from English into Chinese.\n\
             English: Hello world\nChinese:<|im_end|>\n<|im_start|>assistant\n"
        );
        let p = build("x", "nb", "mvf", PromptStyle::Colon).unwrap();
        assert!(p.contains("from Norwegian Bokmål into Inner Mongolian:\n"), "{p}");
    }

    #[test]
    fn every_pair_round_trips_through_the_parser() {
        // The text may hold newlines and a line that looks like the tail (`\nChinese:`).
        let text = "Hello\nworld\nChinese: x";
        for style in [PromptStyle::Card, PromptStyle::Colon] {
            for (src_lang, _) in LANGUAGES {
                for (tgt_lang, _) in LANGUAGES {
                    let msg = user_message(text, src_lang, tgt_lang, style).unwrap();
                    let want = Instruction { text, src_lang, tgt_lang, style };
                    assert_eq!(parse_instruction(&msg), Some(want), "{msg}");
                }
            }
        }
    }

    #[test]
    fn other_text_is_not_an_instruction() {
        let unknown =
            "Translate the following text from Klingon into English.\nKlingon: x\nEnglish:";
        for msg in ["Hello", "Translate the following text from English into German.", unknown] {
            assert_eq!(parse_instruction(msg), None, "{msg}");
        }
    }

    #[test]
    fn unknown_code_lists_all_sixty() {
        let e = build("x", "en", "xx", PromptStyle::Card).unwrap_err().to_string();
        assert!(e.starts_with("unknown language code 'xx'; supported codes: ar, en,"), "{e}");
        assert!(e.ends_with("yue"));
        assert_eq!(e.matches(", ").count(), 59);
    }
}
