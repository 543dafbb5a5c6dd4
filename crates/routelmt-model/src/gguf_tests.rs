//! GGUF reading against the `gguf` Python package and transformers: the metadata of every
//! value type, every supported tensor type decoded as gguf-py decodes it, v2 and v3 headers,
//! truncated and unsupported files, and tiny Llama / Qwen2 / Qwen3 GGUFs whose hidden states,
//! next tokens and token ids match transformers loading the same files
//! (`tests/fixtures/gguf/make_gguf_fixtures.py`).

use std::path::PathBuf;

use serde_json::Value;

use crate::formats::dtype::{self as quant, Stored};
use crate::formats::gguf::{self, GgufFile};
use crate::tests::{fixtures, max_abs_diff};

fn gguf_dir() -> PathBuf {
    fixtures().join("gguf")
}

fn read(name: &str) -> Vec<u8> {
    let p = gguf_dir().join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn json(name: &str) -> Value {
    serde_json::from_slice(&read(name)).unwrap()
}

fn meta_matches(got: &gguf::Value, want: &Value) -> bool {
    match (got, want) {
        (gguf::Value::UInt(g), w) => w.as_u64() == Some(*g),
        (gguf::Value::Int(g), w) => w.as_i64() == Some(*g),
        (gguf::Value::Float(g), w) => w.as_f64() == Some(*g),
        (gguf::Value::Bool(g), w) => w.as_bool() == Some(*g),
        (gguf::Value::Str(g), w) => w.as_str() == Some(g.as_str()),
        (gguf::Value::Array(g), Value::Array(w)) => {
            g.len() == w.len() && g.iter().zip(w).all(|(a, b)| meta_matches(a, b))
        }
        _ => false,
    }
}

#[test]
fn quants_file_decodes_like_gguf_py_in_both_versions() {
    let want = json("quants.json");
    for (name, version) in [("quants.gguf", 3), ("quants-v2.gguf", 2)] {
        let bytes = read(name);
        let f = GgufFile::parse(&bytes, name).unwrap();
        assert_eq!(f.version, version);
        for m in want["metadata"].as_array().unwrap() {
            let key = m["key"].as_str().unwrap();
            let got = f.get(key).unwrap_or_else(|| panic!("{name}: missing {key}"));
            assert!(meta_matches(got, &m["value"]), "{name}: {key}: {got:?} vs {}", m["value"]);
        }
        for t in want["tensors"].as_array().unwrap() {
            let tname = t["name"].as_str().unwrap();
            let info = f.infos.iter().find(|i| i.name == tname).unwrap();
            let shape: Vec<usize> = serde_json::from_value(t["shape"].clone()).unwrap();
            assert_eq!(info.shape(), shape, "{tname}");
            let stored = Stored::from_ggml(info.ggml_type).unwrap();
            let n: usize = shape.iter().product();
            let start = want["data_offset"].as_u64().unwrap() as usize
                + t["offset"].as_u64().unwrap() as usize;
            let raw = &bytes[start..start + stored.bytes_for(n).unwrap()];
            let got = quant::decode(stored, raw, n).unwrap();
            let rows: Vec<Vec<f32>> = serde_json::from_value(t["values"].clone()).unwrap();
            let expect: Vec<f32> = rows.concat();
            let d = max_abs_diff(&got, &expect);
            let scale = expect.iter().fold(1f32, |m, v| m.max(v.abs()));
            assert!(d <= 1e-6 * scale, "{name} {tname} ({}): max abs diff {d:e}", stored.name());
        }
    }
}

#[test]
fn bad_files_are_errors_naming_the_problem() {
    let bytes = read("quants.gguf");
    let cut = &bytes[..bytes.len() - 100];
    let e = GgufFile::parse(cut, "cut.gguf").unwrap_err().to_string();
    assert!(e.starts_with("cut.gguf: truncated: tensor '") && e.contains("q6_k"), "{e}");
    let e = GgufFile::parse(&bytes[..200], "head.gguf").unwrap_err().to_string();
    assert!(e.starts_with("head.gguf: truncated GGUF"), "{e}");
    let e = GgufFile::parse(b"GGML\x03\0\0\0", "x.gguf").unwrap_err().to_string();
    assert!(e.contains("not a GGUF file"), "{e}");
    let mut v4 = bytes.clone();
    v4[4] = 4;
    let e = GgufFile::parse(&v4, "v4.gguf").unwrap_err().to_string();
    assert!(e.contains("version 4 is not supported"), "{e}");
    // The test architecture is not a decoder this project runs.
    let f = GgufFile::parse(&bytes, "quants.gguf").unwrap();
    let e = crate::formats::gguf_hf::config(&f).unwrap_err().to_string();
    assert!(e.contains("'general.architecture' is 'test'"), "{e}");
    // An unsupported tensor type is named with its type, at the tensor.
    let mut q3 = bytes.clone();
    let pos = find_type_field(&q3, "q4_0");
    q3[pos..pos + 4].copy_from_slice(&11u32.to_le_bytes()); // Q3_K
    let f = GgufFile::parse(&q3, "q3.gguf").unwrap();
    let cfg = crate::tests::tiny_config();
    let e = crate::formats::gguf_hf::tensors(&f, &cfg).err().unwrap().to_string();
    assert!(e.contains("tensor 'q4_0' has type Q3_K"), "{e}");
}

/// Byte position of the u32 type field of tensor `name` in a GGUF file's tensor table.
fn find_type_field(bytes: &[u8], name: &str) -> usize {
    let mut key = (name.len() as u64).to_le_bytes().to_vec();
    key.extend_from_slice(name.as_bytes());
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len();
    let dims = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    at + 4 + 8 * dims
}

/// A GGUF v3 file from metadata `(key, type, value bytes)` and tensors `(name, ne, type,
/// offset)`, with `data` bytes after the table (aligned to 32).
fn craft(
    kvs: &[(&str, u32, Vec<u8>)],
    tensors: &[(&str, Vec<u64>, u32, u64)],
    data: usize,
) -> Vec<u8> {
    let s = |t: &str| [(t.len() as u64).to_le_bytes().to_vec(), t.as_bytes().to_vec()].concat();
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend((tensors.len() as u64).to_le_bytes());
    b.extend((kvs.len() as u64).to_le_bytes());
    for (k, ty, v) in kvs {
        b.extend(s(k));
        b.extend(ty.to_le_bytes());
        b.extend(v);
    }
    for (name, ne, ty, off) in tensors {
        b.extend(s(name));
        b.extend((ne.len() as u32).to_le_bytes());
        ne.iter().for_each(|d| b.extend(d.to_le_bytes()));
        b.extend(ty.to_le_bytes());
        b.extend(off.to_le_bytes());
    }
    b.resize(b.len().div_ceil(32) * 32 + data, 0);
    b
}

#[test]
fn crafted_tables_are_refused_with_the_field_named() {
    let u32v = |v: u32| v.to_le_bytes().to_vec();
    let ok = craft(&[("a", 4, u32v(1))], &[("t", vec![8], 0, 0)], 32);
    GgufFile::parse(&ok, "ok.gguf").unwrap();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (craft(&[("a", 4, u32v(1)), ("a", 4, u32v(2))], &[], 0), "metadata key 'a' appears twice"),
        (craft(&[], &[("t", vec![8], 0, 0), ("t", vec![8], 0, 0)], 64), "tensor 't' appears twice"),
        (
            craft(&[("general.alignment", 4, u32v(1 << 30))], &[], 0),
            "'general.alignment' must be a power of two up to 1048576",
        ),
        (craft(&[("general.alignment", 4, u32v(0))], &[], 0), "'general.alignment' must be"),
        // 2^32 · 2^32 elements: the product overflows (it used to wrap to a 0-byte tensor).
        (craft(&[], &[("t", vec![1 << 32, 1 << 32], 0, 0)], 32), "tensor 't' has dimensions"),
        (craft(&[], &[("t", vec![1 << 20], 0, 0)], 32), "truncated: tensor 't' ends"),
    ];
    for (bytes, want) in cases {
        let e = GgufFile::parse(&bytes, "x.gguf").unwrap_err().to_string();
        assert!(e.starts_with("x.gguf: ") && e.contains(want), "{want}: {e}");
    }
    // A tensor count far beyond what the file holds is refused before anything is allocated.
    let mut big = craft(&[], &[], 0);
    big[8..16].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    let e = GgufFile::parse(&big, "x.gguf").unwrap_err().to_string();
    assert!(e.contains("tensor count") && e.contains("needs at least"), "{e}");
    // Arrays nested deeper than four levels.
    let mut nested = Vec::new();
    for _ in 0..6 {
        nested.extend(9u32.to_le_bytes());
        nested.extend(1u64.to_le_bytes());
    }
    nested.extend(4u32.to_le_bytes());
    nested.extend(1u64.to_le_bytes());
    nested.extend(7u32.to_le_bytes());
    let deep = craft(&[("deep", 9, nested)], &[], 0);
    let e = GgufFile::parse(&deep, "x.gguf").unwrap_err().to_string();
    assert!(e.contains("metadata 'deep' nests arrays deeper than 4"), "{e}");
}

#[test]
fn a_head_parses_once_it_holds_the_table_and_ranges_match_the_whole_file() {
    for name in ["tiny-qwen3.gguf", "tiny-llama.gguf", "quants.gguf"] {
        let bytes = read(name);
        let whole = GgufFile::parse(&bytes, name).unwrap();
        let mut len = 1;
        let head = loop {
            match GgufFile::parse_head(&bytes[..len], bytes.len() as u64, name).unwrap() {
                Some(h) => break h,
                None => len += 1 + len / 8,
            }
            assert!(len < bytes.len(), "{name}: the head never parsed");
        };
        assert_eq!(head.metadata, whole.metadata, "{name}");
        assert_eq!(head.infos.len(), whole.infos.len(), "{name}");
        for t in &whole.infos {
            let range = head.tensor_range(t).unwrap().unwrap();
            let data = &bytes[range.start as usize..range.end as usize];
            assert_eq!(data, whole.tensor_bytes(t).unwrap(), "{name} {}", t.name);
            // Bytes come from a file read whole only.
            assert!(head.tensor_bytes(t).is_err());
        }
        // A file cut short is still refused (the table says where tensors end).
        let cut = &bytes[..bytes.len() - 100];
        assert!(GgufFile::parse_head(cut, cut.len() as u64, name).is_err(), "{name}");
    }
}
