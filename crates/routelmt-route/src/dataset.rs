//! The columns an evaluation needs, filled one record at a time so a million-record file is
//! never held as records: two scores, the source length when a router asks for it, and the
//! numeric fields the routers and guards name (~8 bytes per value per record).

use std::io::BufRead;

use crate::error::RecordError;
use crate::record::{Record, RecordReader};

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
                    .ok_or_else(|| RecordError::Missing { line, field: "src".into() })?,
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

    /// Streams JSONL records from `reader` into columns.
    pub fn from_reader<R: BufRead>(reader: R, needs: &Needs) -> Result<Self, RecordError> {
        let mut data = Dataset::new(needs);
        for item in RecordReader::new(reader) {
            let (line, record) = item?;
            data.push(&record, line)?;
        }
        Ok(data)
    }

    /// Builds a dataset from records in memory (line numbers are 1-based positions).
    pub fn from_records<'a>(
        records: impl IntoIterator<Item = &'a Record>,
        needs: &Needs,
    ) -> Result<Self, RecordError> {
        let mut data = Dataset::new(needs);
        for (i, r) in records.into_iter().enumerate() {
            data.push(r, i + 1)?;
        }
        Ok(data)
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

#[cfg(test)]
mod tests {
    use super::*;

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
