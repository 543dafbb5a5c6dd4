//! The columns an evaluation needs, filled one record at a time so a million-record file is
//! never held as records: two scores, the source length when a router asks for it, and the
//! numeric fields the routers and guards name (~8 bytes per value per record).

use std::io::BufRead;

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::error::{RecordError, RecordErrorKind};
use crate::jsonline::JsonLines;
use crate::record::{Record, Slot, check_schema, numeric};

/// Which optional columns to keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// Keep the source length in Unicode scalar values (the `length` router).
    pub src_chars: bool,
    /// Keep these numeric fields (`field:NAME` routers and guards).
    pub fields: Vec<String>,
}

impl Needs {
    /// Adds a field once.
    pub fn field(&mut self, name: &str) {
        if !self.fields.iter().any(|f| f == name) {
            self.fields.push(name.to_string());
        }
    }
}

/// Columnar evaluation data, in input order.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    /// `score_small` per record.
    pub score_small: Vec<f64>,
    /// `score_large` per record.
    pub score_large: Vec<f64>,
    src_chars: Option<Vec<f64>>,
    fields: Vec<(String, Vec<f64>)>,
}

impl Dataset {
    /// An empty dataset keeping the columns in `needs`.
    pub fn new(needs: &Needs) -> Self {
        Dataset {
            score_small: Vec::new(),
            score_large: Vec::new(),
            src_chars: needs.src_chars.then(Vec::new),
            fields: needs.fields.iter().map(|f| (f.clone(), Vec::new())).collect(),
        }
    }

    /// Appends one record (`line` names it in errors: a missing source or field).
    pub fn push(&mut self, record: &Record, line: usize) -> Result<(), RecordError> {
        // Validate everything before touching a column, so an error leaves columns aligned.
        let chars = match &self.src_chars {
            Some(_) => Some(
                record
                    .src_chars()
                    .ok_or_else(|| RecordErrorKind::Missing { field: "src".into() }.at(line))?,
            ),
            None => None,
        };
        let mut values = Vec::with_capacity(self.fields.len());
        for (name, _) in &self.fields {
            values.push(record.number(name, line)?);
        }
        self.score_small.push(record.score_small);
        self.score_large.push(record.score_large);
        if let (Some(col), Some(c)) = (&mut self.src_chars, chars) {
            col.push(c as f64);
        }
        for ((_, col), v) in self.fields.iter_mut().zip(values) {
            col.push(v);
        }
        Ok(())
    }

    /// Streams JSONL records from `reader` into columns. Each line is read through a borrowed
    /// view (no map, no copies of texts, unneeded values skipped) and validated exactly like
    /// [`Record`]; a line the view cannot read goes through the full parser for its error.
    pub fn from_reader<R: BufRead>(reader: R, needs: &Needs) -> Result<Self, RecordError> {
        let mut data = Dataset::new(needs);
        let mut lines = JsonLines::new(reader);
        while let Some(item) = lines.next_line() {
            let (line, text) = item?;
            match serde_json::from_str::<View<'_>>(text) {
                Ok(view) => data.push_view(&view, line)?,
                Err(_) => {
                    let record = Record::from_json_line(text, line)?;
                    data.push(&record, line)?;
                }
            }
        }
        Ok(data)
    }

    fn push_view(&mut self, view: &View<'_>, line: usize) -> Result<(), RecordError> {
        let get = |name: &str| view.get(name);
        let (small, large) = check_schema(get, line)?;
        let chars = match &self.src_chars {
            Some(_) => match view.get("src") {
                Slot::Str(s) => Some(s.chars().count()),
                _ => return Err(RecordErrorKind::Missing { field: "src".into() }.at(line)),
            },
            None => None,
        };
        let mut values = Vec::with_capacity(self.fields.len());
        for (name, _) in &self.fields {
            values.push(numeric(get, name, small, large, line)?);
        }
        self.score_small.push(small);
        self.score_large.push(large);
        if let (Some(col), Some(c)) = (&mut self.src_chars, chars) {
            col.push(c as f64);
        }
        for ((_, col), v) in self.fields.iter_mut().zip(values) {
            col.push(v);
        }
        Ok(())
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.score_small.len()
    }

    /// True if there are no records.
    pub fn is_empty(&self) -> bool {
        self.score_small.is_empty()
    }

    /// Source lengths (as f64), if kept.
    pub fn src_chars(&self) -> Option<&[f64]> {
        self.src_chars.as_deref()
    }

    /// A kept numeric column by name.
    pub fn field(&self, name: &str) -> Option<&[f64]> {
        match name {
            "score_small" => Some(&self.score_small),
            "score_large" => Some(&self.score_large),
            _ => self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice()),
        }
    }

    /// `score_large − score_small` per record.
    pub fn gains(&self) -> Vec<f64> {
        self.score_large.iter().zip(&self.score_small).map(|(l, s)| l - s).collect()
    }
}

/// A JSON value seen without building it: numbers as f64, strings borrowed from the line
/// (copied only when they contain escapes), arrays and objects skipped, known only by type.
enum Lazy<'a> {
    Null,
    Number(f64),
    Str(Cow<'a, str>),
    Other(&'static str),
}

impl<'de> Deserialize<'de> for Lazy<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Lazy<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Lazy<'de>, E> {
                Ok(Lazy::Null)
            }
            fn visit_none<E>(self) -> Result<Lazy<'de>, E> {
                Ok(Lazy::Null)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Lazy<'de>, E> {
                Ok(Lazy::Other("a boolean"))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Lazy<'de>, E> {
                Ok(Lazy::Number(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Lazy<'de>, E> {
                Ok(Lazy::Number(v as f64))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Lazy<'de>, E> {
                Ok(Lazy::Number(v))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Lazy<'de>, E> {
                Ok(Lazy::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Lazy<'de>, E> {
                Ok(Lazy::Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Lazy<'de>, E> {
                Ok(Lazy::Str(Cow::Owned(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Lazy<'de>, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Lazy::Other("an array"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Lazy<'de>, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Lazy::Other("an object"))
            }
        }
        d.deserialize_any(V)
    }
}

/// A map key, borrowed from the line unless it contains escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// The top-level members of one JSON object line, in order.
struct View<'a>(Vec<(Cow<'a, str>, Lazy<'a>)>);

impl View<'_> {
    /// The last member named `name` (a duplicate key overrides, as in serde_json's maps).
    fn get(&self, name: &str) -> Slot<'_> {
        match self.0.iter().rev().find(|(k, _)| k == name) {
            None => Slot::Absent,
            Some((_, Lazy::Null)) => Slot::Null,
            Some((_, Lazy::Number(x))) => Slot::Number(*x),
            Some((_, Lazy::Str(s))) => Slot::Str(s),
            Some((_, Lazy::Other(t))) => Slot::Other(t),
        }
    }
}

impl<'de> Deserialize<'de> for View<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = View<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<View<'de>, A::Error> {
                let mut members = Vec::with_capacity(a.size_hint().unwrap_or(16));
                while let Some((k, v)) = a.next_entry::<Key<'de>, Lazy<'de>>()? {
                    members.push((k.0, v));
                }
                Ok(View(members))
            }
        }
        d.deserialize_map(V).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The view path and the full `Record` path accept and reject the same lines with the
    /// same messages, for every fixture line and a set of hand-made bad ones.
    #[test]
    fn view_and_record_paths_agree() {
        let fixtures = [
            include_str!("../../../tests/fixtures/route/eval_small.jsonl"),
            include_str!("../../../tests/fixtures/route/bad_gain.jsonl"),
            include_str!("../../../tests/fixtures/route/bad_nan.jsonl"),
            include_str!("../../../tests/fixtures/route/bad_missing.jsonl"),
            include_str!("../../../tests/fixtures/route/bad_json.jsonl"),
            include_str!("../../../tests/fixtures/route/labels_in.jsonl"),
        ];
        let crafted = [
            r#"{"score_small": 1, "score_large": 2, "gain": null, "src": null, "q": 1}"#,
            r#"{"score_small": 1, "score_large": 2, "src": "a\u00e9\"b", "q": -0.5, "q": 3}"#,
            r#"{"score_small": 1, "score_large": 2, "src": "x", "q": "1"}"#,
            r#"{"score_small": 1, "score_large": 2, "src": "x", "q": [1, {"a": 2}]}"#,
            r#"{"score_small": 1, "score_large": 2, "src": "x", "q": true}"#,
            r#"{"score_small": 1, "score_large": 2, "src": "x", "q": null}"#,
            r#"{"score_small": 1, "score_large": 2, "src": 3, "q": 1}"#,
            r#"{"score_small": 1, "score_large": 2, "id": [1], "src": "x", "q": 1}"#,
            r#"{"score_small": 1, "score_large": 2, "id": 7, "src": "x", "q": 1}"#,
            r#"{"score_small": 1, "score_large": 2, "gain": "1", "src": "x", "q": 1}"#,
            r#"{"score_small": null, "score_large": 2}"#,
            r#"{"score_small": 1, "score_large": 1e999}"#,
            r#"{"score_small": 1, "score_large": 2, "src": "x", "q": 1} trailing"#,
            r#"[1, 2]"#,
            r#""text""#,
        ];
        let needs_list = [
            Needs::default(),
            Needs { src_chars: true, fields: vec![] },
            Needs { src_chars: false, fields: vec!["q".into(), "gain".into()] },
            Needs { src_chars: true, fields: vec!["qe".into(), "metric_small.QE-src".into()] },
            Needs { src_chars: false, fields: vec!["id".into()] },
            Needs { src_chars: false, fields: vec!["src".into()] },
        ];
        let lines = fixtures.iter().flat_map(|f| f.lines()).chain(crafted);
        for (i, text) in lines.enumerate() {
            for needs in &needs_list {
                let via_view = Dataset::from_reader(text.as_bytes(), needs);
                let via_record = Record::from_json_line(text, 1).and_then(|r| {
                    let mut d = Dataset::new(needs);
                    d.push(&r, 1).map(|()| d)
                });
                match (via_view, via_record) {
                    (Ok(a), Ok(b)) => {
                        assert_eq!(a.score_small, b.score_small, "{i}: {text}");
                        assert_eq!(a.score_large, b.score_large, "{i}: {text}");
                        assert_eq!(a.src_chars, b.src_chars, "{i}: {text}");
                        assert_eq!(a.fields, b.fields, "{i}: {text}");
                    }
                    (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{i}: {text}"),
                    (a, b) => panic!("{i}: {text}\nview: {a:?}\nrecord: {b:?}"),
                }
            }
        }
    }

    #[test]
    fn keeps_requested_columns_and_names_the_line_of_a_gap() {
        let input = concat!(
            r#"{"src": "ab", "score_small": 1, "score_large": 2, "q": 0.5}"#,
            "\n",
            r#"{"src": "日本語", "score_small": 0, "score_large": -1, "q": 0.25}"#,
            "\n"
        );
        let needs = Needs { src_chars: true, fields: vec!["q".into()] };
        let d = Dataset::from_reader(input.as_bytes(), &needs).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d.src_chars().unwrap(), &[2.0, 3.0]);
        assert_eq!(d.field("q").unwrap(), &[0.5, 0.25]);
        assert_eq!(d.gains(), vec![1.0, -1.0]);

        let gap = format!("{input}{}\n", r#"{"src": "x", "score_small": 0, "score_large": 0}"#);
        let e = Dataset::from_reader(gap.as_bytes(), &needs).unwrap_err();
        assert_eq!(e.to_string(), "line 3: missing field `q`");
        let nosrc = r#"{"score_small": 0, "score_large": 0, "q": 1}"#;
        let e = Dataset::from_reader(nosrc.as_bytes(), &needs).unwrap_err();
        assert_eq!(e.to_string(), "line 1: missing field `src`");
    }
}
