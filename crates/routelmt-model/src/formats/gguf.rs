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
        self.ne.iter().rev().map(|&d| usize::try_from(d).unwrap_or(usize::MAX)).collect()
    }
}

/// A parsed GGUF file borrowing its bytes: the whole file ([`GgufFile::parse`], the native
/// memory map), or only its head ([`GgufFile::parse_head`], the browser, which then reads each
/// tensor's byte range itself).
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
    /// Where the data section starts in the file.
    data_start: u64,
    /// The data section's length (to the end of the file).
    data_len: u64,
    /// The data section's bytes; empty for a head-only parse.
    data: &'a [u8],
}

/// Largest `general.alignment` accepted (llama.cpp writes 32; anything above 1 MiB is corrupt).
pub const MAX_ALIGNMENT: u64 = 1 << 20;

/// Deepest nesting of arrays in metadata (llama.cpp writes one level).
const MAX_DEPTH: usize = 4;

/// Bytes of the smallest tensor-table entry (empty name, no dimensions, type and offset).
const MIN_INFO_BYTES: usize = 8 + 4 + 4 + 8;

/// Bytes of the smallest metadata entry (empty key, type, one-byte value).
const MIN_KV_BYTES: usize = 8 + 4 + 1;

/// Whether `bytes` start with the GGUF magic.
pub fn is_gguf(bytes: &[u8]) -> bool {
    bytes.starts_with(b"GGUF")
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    file: &'a str,
    /// The file's full length: `bytes` may be only its head.
    file_len: u64,
    /// Set when a read ran past the end of `bytes` but not of the file (a head too short).
    short: bool,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(|| {
            let past = self.at as u64 + n as u64;
            if (self.bytes.len() as u64) < self.file_len && past <= self.file_len {
                self.short = true;
            }
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

    /// A count of items that take at least `min_bytes` each: more than the rest of the file
    /// holds is corrupt (so a crafted count never allocates beyond the file's size).
    fn count(&mut self, what: &str, min_bytes: usize) -> Result<usize> {
        let n = self.u64(what)?;
        let left = self.file_len.saturating_sub(self.at as u64);
        let need = n.saturating_mul(min_bytes as u64);
        usize::try_from(n).ok().filter(|_| need <= left).ok_or_else(|| {
            ModelError::weights(
                self.file,
                format!(
                    "truncated GGUF: {what} {n} needs at least {need} more bytes, the file has \
                     {left} (or the count is corrupt)"
                ),
            )
        })
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.count(&format!("{what} length"), 1)?;
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
            9 if depth >= MAX_DEPTH => {
                return Err(ModelError::weights(
                    self.file,
                    format!("corrupt GGUF: metadata '{key}' nests arrays deeper than {MAX_DEPTH}"),
                ));
            }
            9 => {
                let item = self.u32(key)?;
                let n = self.count(&format!("metadata '{key}' array length"), 1)?;
                let mut items = Vec::with_capacity(n.min(1 << 16));
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
    /// Parses the header, metadata and tensor table of a whole file; checks every tensor lies
    /// inside the file.
    pub fn parse(bytes: &'a [u8], file: &'a str) -> Result<Self> {
        let mut r = Reader { bytes, at: 0, file, file_len: bytes.len() as u64, short: false };
        let mut parsed = Self::read_table(&mut r)?;
        parsed.data = bytes.get(parsed.data_start as usize..).unwrap_or(&[]);
        Ok(parsed)
    }

    /// Parses the head of a file of `file_len` bytes: `Ok(None)` when `head` ends before the
    /// tensor table does (read more and try again), else the table, every tensor checked to
    /// lie inside the file. The tensors' bytes are then read by [`Self::tensor_range`].
    pub fn parse_head(head: &'a [u8], file_len: u64, file: &'a str) -> Result<Option<Self>> {
        let mut r = Reader { bytes: head, at: 0, file, file_len, short: false };
        match Self::read_table(&mut r) {
            Ok(parsed) => Ok(Some(parsed)),
            Err(_) if r.short => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn read_table(r: &mut Reader<'a>) -> Result<Self> {
        let file = r.file;
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
        let n_tensors = r.count("tensor count", MIN_INFO_BYTES)?;
        let n_kv = r.count("metadata count", MIN_KV_BYTES)?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = r.string("metadata key")?;
            let ty = r.u32(&key)?;
            let v = r.value(ty, &key, 0)?;
            if metadata.insert(key.clone(), v).is_some() {
                return Err(ModelError::weights(
                    file,
                    format!("corrupt GGUF: metadata key '{key}' appears twice"),
                ));
            }
        }
        let mut tensors: Vec<TensorInfo> = Vec::with_capacity(n_tensors);
        let mut names = std::collections::BTreeSet::new();
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
            if !names.insert(name.clone()) {
                return Err(ModelError::weights(
                    file,
                    format!("corrupt GGUF: tensor '{name}' appears twice"),
                ));
            }
            tensors.push(TensorInfo { name, ne, ggml_type, offset });
        }
        let align = match metadata.get("general.alignment") {
            None => 32,
            Some(v) => v
                .as_u64()
                .filter(|a| a.is_power_of_two() && *a <= MAX_ALIGNMENT)
                .ok_or_else(|| {
                    ModelError::weights(
                        file,
                        format!(
                            "metadata 'general.alignment' must be a power of two up to \
                                 {MAX_ALIGNMENT}"
                        ),
                    )
                })?,
        };
        let data_start = (r.at as u64).div_ceil(align) * align;
        let data_len = r.file_len.saturating_sub(data_start);
        let parsed =
            Self { file, version, metadata, infos: tensors, data_start, data_len, data: &[] };
        for t in &parsed.infos {
            parsed.tensor_range(t)?;
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

    /// Elements of a tensor (the product of its dimensions, checked).
    pub fn elements(&self, t: &TensorInfo) -> Result<usize> {
        t.ne.iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| {
                ModelError::weights(
                    self.file,
                    format!("corrupt GGUF: tensor '{}' has dimensions {:?}", t.name, t.ne),
                )
            })
    }

    /// The byte range of one tensor in the file, checked against the end of the file; `None`
    /// for a type we do not decode (reported when the tensor is read).
    pub fn tensor_range(&self, t: &TensorInfo) -> Result<Option<std::ops::Range<u64>>> {
        let n = self.elements(t)?;
        let size = match Stored::from_ggml(t.ggml_type) {
            Ok(s) => s
                .bytes_for(n)
                .map_err(|m| ModelError::weights(self.file, format!("tensor '{}': {m}", t.name)))?
                as u64,
            Err(_) => return Ok(None),
        };
        let end = t.offset.checked_add(size).filter(|&e| e <= self.data_len).ok_or_else(|| {
            ModelError::weights(
                self.file,
                format!(
                    "truncated: tensor '{}' ends {} bytes into the data section, which has {}",
                    t.name,
                    t.offset.saturating_add(size),
                    self.data_len
                ),
            )
        })?;
        Ok(Some(self.data_start + t.offset..self.data_start + end))
    }

    /// Bytes `range` of the file (a [`Self::tensor_range`]); only on a file parsed whole
    /// ([`Self::parse`]).
    pub fn bytes(&self, range: std::ops::Range<u64>) -> Result<&'a [u8]> {
        let whole = self.data.len() as u64 == self.data_len;
        let inside = range.start >= self.data_start && range.start <= range.end;
        let (a, b) =
            (range.start.wrapping_sub(self.data_start), range.end.wrapping_sub(self.data_start));
        match self.data.get(a as usize..b as usize) {
            Some(bytes) if whole && inside => Ok(bytes),
            _ => Err(ModelError::weights(
                self.file,
                format!("bytes {}..{} are not in the data that was read", range.start, range.end),
            )),
        }
    }

    /// The bytes of one tensor, checked against the end of the file (empty for a type we do
    /// not decode). Only on a file parsed whole ([`Self::parse`]).
    pub fn tensor_bytes(&self, t: &TensorInfo) -> Result<&'a [u8]> {
        match self.tensor_range(t)? {
            Some(range) => self.bytes(range),
            None => Ok(&[]),
        }
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
