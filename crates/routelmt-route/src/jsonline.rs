//! One JSONL line at a time: [`JsonLines`], the streaming line reader over any [`BufRead`] that
//! every JSONL input of the workspace is read with (CLI and trainer alike), JSON-object parsing
//! with errors that name the line, and an editor that sets top-level fields of a line while
//! keeping every other byte as written (so `route` and `labels` give records back unchanged
//! plus their new fields: no float is re-printed, no key re-ordered).

use std::io::{BufRead, Read};
use std::ops::Range;

use serde_json::{Map, Value};

use crate::error::{RecordError, RecordErrorKind};

/// Reads JSONL line by line with one reused buffer: memory is one line, time is linear in the
/// input. Blank (whitespace-only) lines are skipped but still counted, so line numbers in
/// errors are the ones an editor shows. A UTF-8 byte-order mark on line 1 is ignored.
///
/// Two ways to read: [`JsonLines::next_line`] lends each line from the reused buffer (no
/// allocation per line), and the [`Iterator`] implementation yields owned
/// The longest JSONL line read (64 MiB: a record with a 100,000-token `input_ids` list is
/// under 1 MiB).
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// `(line number, text)` pairs for code that keeps lines or wants iterator adapters. Errors
/// (I/O, invalid UTF-8, a line over [`MAX_LINE_BYTES`]) are [`RecordError`]s naming the line.
pub struct JsonLines<R> {
    reader: R,
    buf: Vec<u8>,
    line: usize,
}

impl<R: BufRead> JsonLines<R> {
    /// Wraps a reader.
    pub fn new(reader: R) -> Self {
        Self { reader, buf: Vec::with_capacity(4096), line: 0 }
    }

    /// The next non-blank line as `(line number, text without its line ending)`, `None` at the
    /// end of the input.
    pub fn next_line(&mut self) -> Option<Result<(usize, &str), RecordError>> {
        let (start, end) = loop {
            self.buf.clear();
            // At most one byte past the limit is read, so a file without line breaks never
            // needs more memory than that.
            let mut bounded = (&mut self.reader).take(MAX_LINE_BYTES as u64 + 1);
            match bounded.read_until(b'\n', &mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(source) => return Some(Err(RecordErrorKind::Io { source }.at(self.line + 1))),
            }
            self.line += 1;
            if self.buf.len() > MAX_LINE_BYTES {
                return Some(Err(RecordErrorKind::TooLong { limit: MAX_LINE_BYTES }.at(self.line)));
            }
            let mut start = 0;
            if self.line == 1 && self.buf.starts_with(b"\xEF\xBB\xBF") {
                start = 3;
            }
            let mut end = self.buf.len();
            while end > start && matches!(self.buf[end - 1], b'\n' | b'\r') {
                end -= 1;
            }
            if self.buf[start..end].iter().any(|b| !b.is_ascii_whitespace()) {
                break (start, end);
            }
        };
        let line = self.line;
        Some(
            std::str::from_utf8(&self.buf[start..end])
                .map(|text| (line, text))
                .map_err(|e| RecordErrorKind::Utf8 { byte: start + e.valid_up_to() + 1 }.at(line)),
        )
    }
}

impl<R: BufRead> Iterator for JsonLines<R> {
    type Item = Result<(usize, String), RecordError>;

    /// The next non-blank line as an owned `(line number, text)`.
    fn next(&mut self) -> Option<Self::Item> {
        self.next_line().map(|item| item.map(|(line, text)| (line, text.to_string())))
    }
}

/// The JSON type of a value, for error messages.
pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses one line as a JSON object. `NaN`/`Infinity` (which Python's `json` writes but JSON
/// does not allow) and out-of-range numbers give [`RecordErrorKind::NonFinite`] naming the field;
/// other syntax errors give the column.
pub fn parse_object(text: &str, line: usize) -> Result<Map<String, Value>, RecordError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(RecordErrorKind::NotObject { found: json_type(&other) }.at(line)),
        Err(e) => Err(non_finite_member(text, line).unwrap_or_else(|| {
            let full = e.to_string();
            // serde_json appends " at line L column C"; the line is always 1 here.
            let message = full.rsplit_once(" at line ").map_or(full.as_str(), |(m, _)| m);
            RecordErrorKind::Json { column: e.column(), message: message.to_string() }.at(line)
        })),
    }
}

/// A top-level member whose value is a non-finite number token, if any.
fn non_finite_member(text: &str, line: usize) -> Option<RecordError> {
    let spans = scan_object(text)?;
    spans.members.iter().find_map(|m| {
        let value = &text[m.value.clone()];
        let bare = value.trim_start_matches(['-', '+']);
        let non_finite = matches!(bare, "NaN" | "nan" | "Infinity" | "inf" | "Inf")
            // Only classifies a token serde_json rejected (`1e400`); values always come from
            // serde_json's own, correctly rounded parser.
            || (value.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
                && value.parse::<f64>().is_ok_and(|x| !x.is_finite()));
        non_finite.then(|| {
            RecordErrorKind::NonFinite {
                field: decode_key(&text[m.key.clone()]).unwrap_or_default(),
                value: value.to_string(),
            }
            .at(line)
        })
    })
}

/// A required finite number.
pub fn number_field(obj: &Map<String, Value>, name: &str, line: usize) -> Result<f64, RecordError> {
    match obj.get(name) {
        None => Err(RecordErrorKind::Missing { field: name.to_string() }.at(line)),
        Some(v) => number_value(v, name, line),
    }
}

/// A JSON value that must be a finite number.
pub(crate) fn number_value(v: &Value, name: &str, line: usize) -> Result<f64, RecordError> {
    match v {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if x.is_finite() {
                Ok(x)
            } else {
                Err(RecordErrorKind::NonFinite { field: name.to_string(), value: n.to_string() }
                    .at(line))
            }
        }
        other => {
            Err(RecordErrorKind::NotNumber { field: name.to_string(), found: json_type(other) }
                .at(line))
        }
    }
}

/// A required string field.
pub fn string_field<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    line: usize,
) -> Result<&'a str, RecordError> {
    match obj.get(name) {
        None => Err(RecordErrorKind::Missing { field: name.to_string() }.at(line)),
        Some(Value::String(s)) => Ok(s),
        Some(other) => {
            Err(RecordErrorKind::NotString { field: name.to_string(), found: json_type(other) }
                .at(line))
        }
    }
}

/// Sets top-level fields of a JSON object line, keeping every other byte as written: the value
/// of an existing key is replaced in place (every occurrence, should the key be duplicated),
/// a new key is appended after the last member in the separator style of the line (`", "` and
/// `": "` as Python writes, or compact). Returns `None` if `line` is not a JSON object.
pub fn set_fields(line: &str, fields: &[(&str, Value)]) -> Option<String> {
    let spans = scan_object(line)?;
    let keys: Vec<Option<String>> =
        spans.members.iter().map(|m| decode_key(&line[m.key.clone()])).collect();
    let mut replacements: Vec<(Range<usize>, String)> = Vec::new();
    let mut appended = String::new();
    let (comma, colon) = separators(line, &spans);
    for (key, value) in fields {
        let text = serde_json::to_string(value).ok()?;
        let mut found = false;
        for (m, k) in spans.members.iter().zip(&keys) {
            if k.as_deref() == Some(*key) {
                replacements.push((m.value.clone(), text.clone()));
                found = true;
            }
        }
        if !found {
            if !(spans.members.is_empty() && appended.is_empty()) {
                appended.push_str(comma);
            }
            appended.push_str(&serde_json::to_string(key).ok()?);
            appended.push_str(colon);
            appended.push_str(&text);
        }
    }
    let insert_at = spans.members.last().map_or(spans.open + 1, |m| m.value.end);
    replacements.push((insert_at..insert_at, appended));
    replacements.sort_by_key(|(r, _)| (r.start, r.end));
    let mut out = String::with_capacity(line.len() + 64);
    let mut pos = 0;
    for (range, text) in &replacements {
        out.push_str(&line[pos..range.start]);
        out.push_str(text);
        pos = range.end;
    }
    out.push_str(&line[pos..]);
    Some(out)
}

fn separators(line: &str, spans: &ObjectSpans) -> (&'static str, &'static str) {
    let Some(first) = spans.members.first() else { return (",", ":") };
    let colon = if line[first.key.end..first.value.start].contains(' ') { ": " } else { ":" };
    let comma = match spans.members.get(1) {
        Some(second) if line[first.value.end..second.key.start].contains(' ') => ", ",
        Some(_) => ",",
        None if colon == ": " => ", ",
        None => ",",
    };
    (comma, colon)
}

fn decode_key(raw: &str) -> Option<String> {
    if raw.contains('\\') {
        serde_json::from_str(raw).ok()
    } else {
        raw.get(1..raw.len().checked_sub(1)?).map(str::to_string)
    }
}

/// Byte spans of the top-level members of a JSON object.
struct ObjectSpans {
    open: usize,
    members: Vec<Member>,
}

struct Member {
    /// The key, quotes included.
    key: Range<usize>,
    value: Range<usize>,
}

/// Scans the top level of a JSON object. Tolerant by design (bare words are values), so it
/// also locates `NaN` in text serde_json rejected; on valid JSON it is exact.
fn scan_object(text: &str) -> Option<ObjectSpans> {
    let b = text.as_bytes();
    let open = skip_ws(b, 0);
    if b.get(open) != Some(&b'{') {
        return None;
    }
    let mut members = Vec::new();
    let mut i = skip_ws(b, open + 1);
    if b.get(i) == Some(&b'}') {
        return Some(ObjectSpans { open, members });
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let key_start = i;
        i = scan_string(b, i)?;
        let key = key_start..i;
        i = skip_ws(b, i);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        let value_start = i;
        i = scan_value(b, i)?;
        members.push(Member { key, value: value_start..i });
        i = skip_ws(b, i);
        match b.get(i)? {
            b',' => i = skip_ws(b, i + 1),
            b'}' => return Some(ObjectSpans { open, members }),
            _ => return None,
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// `b[i]` is the opening quote; returns the index after the closing quote.
fn scan_string(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    loop {
        match b.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

fn scan_value(b: &[u8], mut i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => scan_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            loop {
                match b.get(i)? {
                    b'"' => {
                        i = scan_string(b, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let start = i;
            while i < b.len() && !matches!(b[i], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                i += 1;
            }
            (i > start).then_some(i)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(input: &str) -> Vec<(usize, String)> {
        let mut r = JsonLines::new(input.as_bytes());
        let mut out = Vec::new();
        while let Some(l) = r.next_line() {
            let (n, t) = l.unwrap();
            out.push((n, t.to_string()));
        }
        out
    }

    #[test]
    fn a_line_over_the_limit_is_an_error_naming_it_and_is_not_read_whole() {
        // A second line of 64 MiB + 1 bytes without a line break, then more bytes.
        let input = std::io::Cursor::new(b"{\"a\":1}\n".to_vec())
            .chain(std::io::repeat(b' ').take(MAX_LINE_BYTES as u64 + 1))
            .chain(std::io::repeat(b'x').take(1 << 30));
        let mut r = JsonLines::new(std::io::BufReader::new(input));
        assert_eq!(r.next_line().unwrap().unwrap(), (1, "{\"a\":1}"));
        let e = r.next_line().unwrap().unwrap_err().to_string();
        assert_eq!(e, "line 2: longer than 67108864 bytes (one JSON record per line)");
        assert!(r.buf.capacity() <= 2 * MAX_LINE_BYTES, "{}", r.buf.capacity());
    }

    #[test]
    fn reader_skips_blank_lines_and_counts_them() {
        let got = lines("\u{feff}{\"a\":1}\r\n\n   \n{\"b\":2}\n{\"c\":3}");
        assert_eq!(
            got,
            vec![
                (1, "{\"a\":1}".to_string()),
                (4, "{\"b\":2}".to_string()),
                (5, "{\"c\":3}".to_string())
            ]
        );
    }

    #[test]
    fn iterator_yields_owned_lines_and_typed_errors() {
        let input = "\u{feff}{\"a\":1}\r\n\n   \n{\"b\":2}\n{\"c\":3}";
        let owned: Vec<(usize, String)> =
            JsonLines::new(input.as_bytes()).map(Result::unwrap).collect();
        assert_eq!(owned, lines(input));

        struct Failing;
        impl std::io::Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk gone"))
            }
        }
        let e = JsonLines::new(std::io::BufReader::new(Failing)).next().unwrap().unwrap_err();
        assert_eq!(e.to_string(), "line 1: cannot read: disk gone");
        assert_eq!((e.line(), e.message()), (1, "cannot read: disk gone".to_string()));
        assert!(matches!(e.kind(), RecordErrorKind::Io { .. }));
        assert_eq!(std::error::Error::source(&e).unwrap().to_string(), "disk gone");
    }

    #[test]
    fn reader_reports_invalid_utf8_with_line() {
        let input: &[u8] = b"{\"a\":1}\n{\"b\":\"\xff\"}\n";
        let mut r = JsonLines::new(input);
        r.next_line().unwrap().unwrap();
        let e = r.next_line().unwrap().unwrap_err();
        assert_eq!(e.line(), 2);
        assert!(e.to_string().contains("line 2: not valid UTF-8"), "{e}");
    }

    #[test]
    fn parse_errors_name_line_and_field() {
        let e = parse_object(r#"{"id": "x", "score_small": NaN}"#, 7).unwrap_err();
        assert_eq!(e.to_string(), "line 7: field `score_small` is NaN, not a finite number");
        let e = parse_object(r#"{"a": 1, "score_large": -Infinity}"#, 3).unwrap_err();
        assert_eq!(e.to_string(), "line 3: field `score_large` is -Infinity, not a finite number");
        let e = parse_object(r#"{"a": 1e400}"#, 2).unwrap_err();
        assert_eq!(e.to_string(), "line 2: field `a` is 1e400, not a finite number");
        let e = parse_object(r#"{"a": 1,}"#, 5).unwrap_err();
        assert!(e.to_string().starts_with("line 5: invalid JSON at column 9"), "{e}");
        let e = parse_object("[1, 2]", 4).unwrap_err();
        assert_eq!(e.to_string(), "line 4: expected a JSON object, found an array");
    }

    #[test]
    fn set_fields_appends_in_the_line_style_and_keeps_bytes() {
        let line = r#"{"id": "a", "x": 0.10000000000000001, "nested": {"b": [1, "]"]}}"#;
        let out = set_fields(line, &[("route", json!("large"))]).unwrap();
        assert_eq!(
            out,
            r#"{"id": "a", "x": 0.10000000000000001, "nested": {"b": [1, "]"]}, "route": "large"}"#
        );
        let compact = r#"{"id":"a","x":1}"#;
        assert_eq!(
            set_fields(compact, &[("route", json!("small"))]).unwrap(),
            r#"{"id":"a","x":1,"route":"small"}"#
        );
        assert_eq!(
            set_fields("{}", &[("a", json!(1)), ("b", json!(2))]).unwrap(),
            r#"{"a":1,"b":2}"#
        );
        assert_eq!(set_fields(" { } ", &[("a", json!(1))]).unwrap(), r#" {"a":1 } "#);
    }

    #[test]
    fn set_fields_replaces_existing_values_in_place() {
        let line = r#"{"route": "small", "k\"ey": 1, "z": 3, "route": "x"}"#;
        let out = set_fields(line, &[("route", json!("large")), ("k\"ey", json!(2.5))]).unwrap();
        assert_eq!(out, r#"{"route": "large", "k\"ey": 2.5, "z": 3, "route": "large"}"#);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["k\"ey"], json!(2.5));
    }

    #[test]
    fn set_fields_rejects_non_objects() {
        assert!(set_fields("[1]", &[("a", json!(1))]).is_none());
        assert!(set_fields("", &[("a", json!(1))]).is_none());
    }
}
