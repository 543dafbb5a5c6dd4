//! Evaluation records in the project's JSONL schema (`docs/metrics.md`, Records): one line
//! per source segment with `id`, `src`, `src_lang`, `tgt_lang`, `score_small`, `score_large`,
//! optionally `ref`, `hyp_small`, `hyp_large`, `gain` and any other fields (numeric fields such
//! as `metric_small.COMETKiwi-src` are router scores made elsewhere). Unknown fields are kept.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{RecordError, RecordErrorKind};
use crate::jsonline::{json_type, parse_object};

/// How far a given `gain` may be from `score_large − score_small`: `1e-6` relative to the
/// larger score magnitude, absolute below 1 (files round-trip through 32-bit floats and
/// decimal printing, so exact equality would reject honest data).
pub const GAIN_TOLERANCE: f64 = 1e-6;

/// One evaluation record. `gain` is always `score_large − score_small` as computed here (a
/// `gain` field in the input is checked against it, then dropped in favour of the computed
/// value so that every metric uses one definition).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// Segment id (a string, or a number written as text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Source text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    /// Source language code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_lang: Option<String>,
    /// Target language code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tgt_lang: Option<String>,
    /// Quality of the small model's translation (higher is better).
    pub score_small: f64,
    /// Quality of the large model's translation (higher is better).
    pub score_large: f64,
    /// `score_large − score_small`.
    pub gain: f64,
    /// Reference translation.
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The small model's translation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hyp_small: Option<String>,
    /// The large model's translation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hyp_large: Option<String>,
    /// Every other field, unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Record {
    /// Parses one JSONL line (`line` is its 1-based number, used in errors).
    pub fn from_json_line(text: &str, line: usize) -> Result<Self, RecordError> {
        Self::from_object(parse_object(text, line)?, line)
    }

    /// Builds a record from a parsed JSON object, validating scores, `gain` and the types of
    /// the schema's text fields.
    pub fn from_object(mut obj: Map<String, Value>, line: usize) -> Result<Self, RecordError> {
        let (score_small, score_large) = check_schema(|name| slot(obj.get(name)), line)?;
        for name in ["score_small", "score_large", "gain"] {
            obj.remove(name);
        }
        // Types were checked above: strings or null (numbers too for `id`).
        let mut text = |name: &str| match obj.remove(name) {
            Some(Value::String(s)) => Some(s),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        Ok(Record {
            id: text("id"),
            src: text("src"),
            src_lang: text("src_lang"),
            tgt_lang: text("tgt_lang"),
            reference: text("ref"),
            hyp_small: text("hyp_small"),
            hyp_large: text("hyp_large"),
            score_small,
            score_large,
            gain: score_large - score_small,
            extra: obj,
        })
    }

    /// A numeric field by name: `score_small`, `score_large`, `gain` or any other field.
    /// Missing or non-numeric is an error naming `line`.
    pub fn number(&self, name: &str, line: usize) -> Result<f64, RecordError> {
        fn known(v: &Option<String>) -> Slot<'_> {
            v.as_deref().map_or(Slot::Absent, Slot::Str)
        }
        let get = |n: &str| match n {
            "id" => known(&self.id),
            "src" => known(&self.src),
            "src_lang" => known(&self.src_lang),
            "tgt_lang" => known(&self.tgt_lang),
            "ref" => known(&self.reference),
            "hyp_small" => known(&self.hyp_small),
            "hyp_large" => known(&self.hyp_large),
            _ => slot(self.extra.get(n)),
        };
        numeric(get, name, self.score_small, self.score_large, line)
    }

    /// Source length in Unicode scalar values (Python's `len(src)`), if there is a source.
    pub fn src_chars(&self) -> Option<usize> {
        self.src.as_deref().map(|s| s.chars().count())
    }
}

/// What a record holds under a name, as far as validation is concerned. Both the full
/// [`Record`] parser and the allocation-light view of `dataset.rs` validate through
/// [`check_schema`] and [`numeric`], so they accept and reject exactly the same lines.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Slot<'a> {
    Absent,
    Null,
    Number(f64),
    Str(&'a str),
    /// A boolean, array or object, by its JSON type name.
    Other(&'static str),
}

/// The slot of a parsed JSON value.
pub(crate) fn slot(v: Option<&Value>) -> Slot<'_> {
    match v {
        None => Slot::Absent,
        Some(Value::Null) => Slot::Null,
        Some(Value::Number(n)) => Slot::Number(n.as_f64().unwrap_or(f64::NAN)),
        Some(Value::String(s)) => Slot::Str(s),
        Some(other) => Slot::Other(json_type(other)),
    }
}

/// The schema's text fields (besides `id`, which may also be a number).
pub(crate) const TEXT_FIELDS: [&str; 6] =
    ["src", "src_lang", "tgt_lang", "ref", "hyp_small", "hyp_large"];

fn not_number(name: &str, found: &'static str, line: usize) -> RecordError {
    RecordErrorKind::NotNumber { field: name.to_string(), found }.at(line)
}

/// A required finite number from a slot.
fn required_number(s: Slot<'_>, name: &str, line: usize) -> Result<f64, RecordError> {
    match s {
        Slot::Absent => Err(RecordErrorKind::Missing { field: name.to_string() }.at(line)),
        Slot::Number(x) if x.is_finite() => Ok(x),
        Slot::Number(x) => {
            Err(RecordErrorKind::NonFinite { field: name.to_string(), value: x.to_string() }
                .at(line))
        }
        Slot::Null => Err(not_number(name, "null", line)),
        Slot::Str(_) => Err(not_number(name, "a string", line)),
        Slot::Other(t) => Err(not_number(name, t, line)),
    }
}

/// Validates one record: both scores present and finite, `gain` (if any) equal to their
/// difference within [`GAIN_TOLERANCE`], `id` a string or number, the text fields strings
/// (null counts as absent). Returns `(score_small, score_large)`.
pub(crate) fn check_schema<'a>(
    get: impl Fn(&str) -> Slot<'a>,
    line: usize,
) -> Result<(f64, f64), RecordError> {
    let small = required_number(get("score_small"), "score_small", line)?;
    let large = required_number(get("score_large"), "score_large", line)?;
    match get("gain") {
        Slot::Absent | Slot::Null => {}
        s => {
            let given = required_number(s, "gain", line)?;
            let expected = large - small;
            let scale = 1f64.max(small.abs()).max(large.abs());
            if (given - expected).abs() > GAIN_TOLERANCE * scale {
                return Err(
                    RecordErrorKind::GainMismatch { gain: given, large, small, expected }.at(line)
                );
            }
        }
    }
    let not_string =
        |name: &str, found| RecordErrorKind::NotString { field: name.into(), found }.at(line);
    if let Slot::Other(t) = get("id") {
        return Err(not_string("id", t));
    }
    for name in TEXT_FIELDS {
        match get(name) {
            Slot::Number(_) => return Err(not_string(name, "a number")),
            Slot::Other(t) => return Err(not_string(name, t)),
            Slot::Absent | Slot::Null | Slot::Str(_) => {}
        }
    }
    Ok((small, large))
}

/// A numeric field of a validated record: `score_small`, `score_large`, `gain` (always the
/// difference of the scores) or any other field. The text fields and `id` are never numbers.
pub(crate) fn numeric<'a>(
    get: impl Fn(&str) -> Slot<'a>,
    name: &str,
    small: f64,
    large: f64,
    line: usize,
) -> Result<f64, RecordError> {
    match name {
        "score_small" => Ok(small),
        "score_large" => Ok(large),
        "gain" => Ok(large - small),
        _ if name == "id" || TEXT_FIELDS.contains(&name) => match get(name) {
            Slot::Absent | Slot::Null => {
                Err(RecordErrorKind::Missing { field: name.into() }.at(line))
            }
            _ => Err(not_number(name, "a string", line)),
        },
        _ => required_number(get(name), name, line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonline::JsonLines;

    const LINE: &str = r#"{"id": "wmt.0", "src": "是否有途径", "src_lang": "zh", "tgt_lang": "en", "score_small": -1.0, "score_large": 0, "gain": 1.0, "metric_small.COMETKiwi-src": 0.8, "domain": "news"}"#;

    #[test]
    fn parses_schema_and_keeps_unknown_fields() {
        let r = Record::from_json_line(LINE, 1).unwrap();
        assert_eq!(r.id.as_deref(), Some("wmt.0"));
        assert_eq!(r.src_chars(), Some(5));
        assert_eq!((r.score_small, r.score_large, r.gain), (-1.0, 0.0, 1.0));
        assert_eq!(r.number("metric_small.COMETKiwi-src", 1).unwrap(), 0.8);
        assert_eq!(r.extra["domain"], "news");
        assert_eq!(r.number("gain", 1).unwrap(), 1.0);
        let e = r.number("nope", 9).unwrap_err();
        assert_eq!(e.to_string(), "line 9: missing field `nope`");
        let e = r.number("domain", 9).unwrap_err();
        assert_eq!(e.to_string(), "line 9: field `domain` must be a number, found a string");
    }

    #[test]
    fn gain_must_agree_with_scores() {
        let ok = r#"{"score_small": 0.1, "score_large": 0.3, "gain": 0.2}"#;
        assert!(Record::from_json_line(ok, 1).is_ok());
        let near = r#"{"score_small": 1000.0, "score_large": 1000.5, "gain": 0.5004}"#;
        assert!(Record::from_json_line(near, 1).is_ok(), "within 1e-6 relative to 1000");
        let bad = r#"{"score_small": 0.1, "score_large": 0.3, "gain": 0.25}"#;
        let e = Record::from_json_line(bad, 12).unwrap_err();
        assert!(e.to_string().starts_with("line 12: gain 0.25 disagrees"), "{e}");
    }

    #[test]
    fn missing_and_wrong_types_are_errors_naming_the_line() {
        let e = Record::from_json_line(r#"{"score_large": 1}"#, 3).unwrap_err();
        assert_eq!(e.to_string(), "line 3: missing field `score_small`");
        let e = Record::from_json_line(r#"{"score_small": "1", "score_large": 1}"#, 4).unwrap_err();
        assert_eq!(e.to_string(), "line 4: field `score_small` must be a number, found a string");
        let e = Record::from_json_line(r#"{"score_small": 1, "score_large": 1, "src": 5}"#, 5)
            .unwrap_err();
        assert_eq!(e.to_string(), "line 5: field `src` must be a string, found a number");
        let e = Record::from_json_line(r#"{"score_small": NaN, "score_large": 1}"#, 6).unwrap_err();
        assert_eq!(e.to_string(), "line 6: field `score_small` is NaN, not a finite number");
    }

    /// Records streamed through the crate's one line reader.
    fn records(input: &str) -> impl Iterator<Item = Result<(usize, Record), RecordError>> + '_ {
        JsonLines::new(input.as_bytes()).map(|item| {
            let (line, text) = item?;
            Record::from_json_line(&text, line).map(|r| (line, r))
        })
    }

    #[test]
    fn reader_streams_records_with_line_numbers() {
        let input = format!("{LINE}\n\n{LINE}\n");
        let got: Vec<usize> = records(&input).map(|r| r.unwrap().0).collect();
        assert_eq!(got, vec![1, 3]);
        let bad = format!("{LINE}\n{{\"score_small\": 1}}\n");
        let errs: Vec<_> = records(&bad).filter_map(|r| r.err()).collect();
        assert_eq!(errs[0].to_string(), "line 2: missing field `score_large`");
        assert_eq!((errs[0].line(), errs[0].message()), (2, "missing field `score_large`".into()));
    }

    #[test]
    fn serializes_back_with_ref_and_extras() {
        let r = Record::from_json_line(LINE, 1).unwrap();
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["gain"], 1.0);
        assert_eq!(v["metric_small.COMETKiwi-src"], 0.8);
        assert!(v.get("ref").is_none());
    }
}
