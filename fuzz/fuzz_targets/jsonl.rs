//! JSONL records: a whole file read as a data set (labels, evaluation: gains, lengths and a
//! numeric field), and each line as one record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use routelmt_route::{Dataset, JsonLines, Needs, Record};

fuzz_target!(|data: &[u8]| {
    let needs = Needs { src_chars: true, fields: vec!["score".into(), "cost".into()] };
    if let Ok(d) = Dataset::from_reader(data, &needs) {
        let _ = d.gains();
        let _ = d.src_chars();
        let _ = d.field("score");
    }
    let mut lines = JsonLines::new(data);
    while let Some(Ok((line, text))) = lines.next_line() {
        if let Ok(r) = Record::from_json_line(text, line) {
            let _ = r.src_chars();
            let _ = r.number("score_small", line);
        }
    }
});
