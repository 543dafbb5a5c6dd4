//! GGUF files (versions 2 and 3, little-endian), as llama.cpp writes them: the header, the
//! metadata and the tensor table, each tensor's bytes checked against the file. No
//! architecture knowledge (that is [`super::gguf_hf`]). Bytes in (the native front door
//! memory-maps the file); no I/O here.
//!
//! Layout: magic `GGUF`, u32 version, u64 tensor count, u64 metadata count, the metadata
//! (key string, u32 type, value), the tensor infos (name, u32 dims, u64 `ne[i]` fastest first,
//! u32 ggml type, u64 offset), padding to `general.alignment` (default 32), then the data.
//! Strings are a u64 length and UTF-8 bytes.

use std::collections::BTreeMap;

use super::dtype::Stored;
use crate::error::{ModelError, Result};

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Any unsigned integer type.
    UInt(u64),
    /// Any signed integer type.
    Int(i64),
    /// f32 or f64 (f32 widened exactly).
    Float(f64),
    /// bool.
    Bool(bool),
    /// UTF-8 string.
    Str(String),
    /// Array of values (possibly nested).
    Array(Vec<Value>),
}

impl Value {
    /// An integer value as u64 (negative values are not).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::UInt(v) => Some(v),
            Self::Int(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// A number as f64.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::Float(v) => Some(v),
            Self::UInt(v) => Some(v as f64),
            Self::Int(v) => Some(v as f64),
            _ => None,
        }
    }

    /// A string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A bool value.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Self::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// An array value.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Self::Array(v) => Some(v),
            _ => None,
        }
    }
}

/// One entry of the tensor table.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    /// The GGUF name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions, fastest first (`ne[0]` is the row length).
    pub ne: Vec<u64>,
    /// The ggml type id.
    pub ggml_type: u32,
    /// Byte offset from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// Row-major shape (`ne` reversed), as Hugging Face writes it.
    pub fn shape(&self) -> Vec<usize> {
        self.ne.iter().rev().map(|&d| d as usize).collect()
    }
}

/// A parsed GGUF file borrowing its bytes.
#[derive(Debug)]
pub struct GgufFile<'a> {
    /// The file's name, for messages.
    pub file: &'a str,
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata by key.
    pub metadata: BTreeMap<String, Value>,
    /// The tensor table, in file order.
    pub infos: Vec<TensorInfo>,
    data: &'a [u8],
}

/// Whether `bytes` start with the GGUF magic.
pub fn is_gguf(bytes: &[u8]) -> bool {
    bytes.starts_with(b"GGUF")
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    file: &'a str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(|| {
            ModelError::weights(
                self.file,
                format!("truncated GGUF: {what} at byte {} runs past the end of the file", self.at),
            )
        })?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }

    fn len(&mut self, what: &str) -> Result<usize> {
        let n = self.u64(what)?;
        // Every element takes at least one byte, so a count beyond the file is corrupt.
        usize::try_from(n).ok().filter(|&n| n <= self.bytes.len()).ok_or_else(|| {
            ModelError::weights(self.file, format!("corrupt GGUF: {what} count {n} is impossible"))
        })
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.len(what)?;
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| {
            ModelError::weights(self.file, format!("corrupt GGUF: {what} is not UTF-8"))
        })
    }

    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Result<Value> {
        let w = |n: usize, r: &mut Self| -> Result<u64> {
            let b = r.take(n, key)?;
            let mut buf = [0u8; 8];
            buf[..n].copy_from_slice(b);
            Ok(u64::from_le_bytes(buf))
        };
        let sign = |v: u64, bits: u32| ((v << (64 - bits)) as i64) >> (64 - bits);
        Ok(match ty {
            0 => Value::UInt(w(1, self)?),
            1 => Value::Int(sign(w(1, self)?, 8)),
            2 => Value::UInt(w(2, self)?),
            3 => Value::Int(sign(w(2, self)?, 16)),
            4 => Value::UInt(w(4, self)?),
            5 => Value::Int(sign(w(4, self)?, 32)),
            6 => Value::Float(f64::from(f32::from_bits(w(4, self)? as u32))),
            7 => Value::Bool(w(1, self)? != 0),
            8 => Value::Str(self.string(key)?),
            9 if depth < 4 => {
                let item = self.u32(key)?;
                let n = self.len(key)?;
                let mut items = Vec::with_capacity(n.min(1 << 20));
                for _ in 0..n {
                    items.push(self.value(item, key, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::UInt(w(8, self)?),
            11 => Value::Int(w(8, self)? as i64),
            12 => Value::Float(f64::from_bits(w(8, self)?)),
            other => {
                return Err(ModelError::weights(
                    self.file,
                    format!("corrupt GGUF: metadata '{key}' has unknown value type {other}"),
                ));
            }
        })
    }
}

impl<'a> GgufFile<'a> {
    /// Parses the header, metadata and tensor table; checks every tensor lies inside the file.
    pub fn parse(bytes: &'a [u8], file: &'a str) -> Result<Self> {
        let mut r = Reader { bytes, at: 0, file };
        if r.take(4, "magic")? != b"GGUF" {
            return Err(ModelError::weights(file, "not a GGUF file (no GGUF magic)"));
        }
        let version = r.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(ModelError::weights(
                file,
                format!("GGUF version {version} is not supported (2 and 3 are)"),
            ));
        }
        let n_tensors = r.len("tensor count")?;
        let n_kv = r.len("metadata count")?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = r.string("metadata key")?;
            let ty = r.u32(&key)?;
            let v = r.value(ty, &key, 0)?;
            metadata.insert(key, v);
        }
        let mut tensors = Vec::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let name = r.string("tensor name")?;
            let dims = r.u32(&name)? as usize;
            if dims > 4 {
                return Err(ModelError::weights(
                    file,
                    format!("corrupt GGUF: tensor '{name}' has {dims} dimensions"),
                ));
            }
            let ne = (0..dims).map(|_| r.u64(&name)).collect::<Result<Vec<_>>>()?;
            let ggml_type = r.u32(&name)?;
            let offset = r.u64(&name)?;
            tensors.push(TensorInfo { name, ne, ggml_type, offset });
        }
        let align = match metadata.get("general.alignment") {
            None => 32,
            Some(v) => v.as_u64().filter(|a| a.is_power_of_two()).ok_or_else(|| {
                ModelError::weights(file, "metadata 'general.alignment' is not a power of two")
            })? as usize,
        };
        let start = r.at.div_ceil(align) * align;
        let data = bytes.get(start..).unwrap_or(&[]);
        let parsed = Self { file, version, metadata, infos: tensors, data };
        for t in &parsed.infos {
            parsed.tensor_bytes(t)?;
        }
        Ok(parsed)
    }

    /// A metadata value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str> {
        self.get("general.architecture").and_then(Value::as_str).ok_or_else(|| {
            ModelError::config(self.file, "metadata key 'general.architecture' is missing")
        })
    }

    /// The bytes of one tensor, checked against the end of the file.
    pub fn tensor_bytes(&self, t: &TensorInfo) -> Result<&'a [u8]> {
        let n: u64 = t.ne.iter().product();
        let size = match Stored::from_ggml(t.ggml_type) {
            Ok(s) => s.bytes_for(n as usize).ok_or_else(|| {
                ModelError::weights(
                    self.file,
                    format!("tensor '{}' of {n} elements is not whole {} blocks", t.name, s.name()),
                )
            })? as u64,
            // Unsupported types are reported when the tensor is read; skip the size check.
            Err(_) => return Ok(&[]),
        };
        let end = t.offset.checked_add(size).filter(|&e| e <= self.data.len() as u64);
        let end = end.ok_or_else(|| {
            ModelError::weights(
                self.file,
                format!(
                    "truncated: tensor '{}' ends {} bytes into the data section, which has {}",
                    t.name,
                    t.offset.saturating_add(size),
                    self.data.len()
                ),
            )
        })?;
        Ok(&self.data[t.offset as usize..end as usize])
    }

    /// The ggml types of the tensors, with counts (`q4_1: 210`), for reports.
    pub fn type_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for t in &self.infos {
            let name = match Stored::from_ggml(t.ggml_type) {
                Ok(s) => s.name().to_string(),
                Err(n) => n.to_lowercase(),
            };
            *counts.entry(name).or_insert(0) += 1;
        }
        counts
    }
}
