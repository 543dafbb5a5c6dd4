//! safetensors files: the one reader (header length, header entries checked against the file
//! size, tensors borrowed from the bytes), used by the native door on memory-mapped files and by
//! the browser on byte ranges, the sharded index, and the one writer (f32 tensors).
//!
//! Layout: a u64 little-endian header length `n`, `n` bytes of JSON (`name → {dtype, shape,
//! data_offsets}` plus an optional `__metadata__`), then the data; offsets are relative to the
//! end of the header.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use ::safetensors::Dtype;

use super::dtype::Stored;
use super::{Layout, Source};
use crate::error::{ModelError, Result};

/// The name of a single-file checkpoint's weights.
pub const SINGLE: &str = "model.safetensors";
/// The name of a sharded checkpoint's index.
pub const INDEX: &str = "model.safetensors.index.json";

/// The shard file names of a sharded checkpoint, from its `model.safetensors.index.json`
/// bytes (`index` names it in errors), sorted and without repeats. Names must be plain file
/// names inside the folder: a path that would leave it is an error.
pub fn shard_names(bytes: &[u8], index: &str) -> Result<Vec<String>> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ModelError::weights(index, format!("not valid JSON: {e}")))?;
    let map = value
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| ModelError::weights(index, "missing object 'weight_map'"))?;
    let mut files = BTreeSet::new();
    for (tensor, file) in map {
        let file = file.as_str().ok_or_else(|| {
            ModelError::weights(index, format!("weight_map['{tensor}'] is not a file name"))
        })?;
        if file.contains('/') || file.contains('\\') || file.starts_with('.') {
            return Err(ModelError::weights(
                index,
                format!("weight_map['{tensor}'] = '{file}' is not a plain file name"),
            ));
        }
        files.insert(file.to_string());
    }
    Ok(files.into_iter().collect())
}

/// One tensor's entry in a safetensors header: where its bytes are in the file.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Stored type.
    pub dtype: Stored,
    /// Stored shape.
    pub shape: Vec<usize>,
    /// Absolute byte range in the file.
    pub start: u64,
    /// End of the byte range (exclusive).
    pub end: u64,
}

/// Where a safetensors header ends (its 8 length bytes plus its JSON), from the file's first
/// 8 bytes and its size: a header longer than the file means a truncated file.
pub fn header_end(first: &[u8], file_size: u64, file: &str) -> Result<u64> {
    let end = 8 + header_len(first, file)?;
    if end > file_size {
        return Err(ModelError::weights(file, format!("truncated: the header needs {end} bytes")));
    }
    Ok(end)
}

/// Length of a safetensors header, from the file's first 8 bytes (`file` names it in errors).
fn header_len(first: &[u8], file: &str) -> Result<u64> {
    let bytes: [u8; 8] = first
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ModelError::weights(file, "not a valid safetensors file (too short)"))?;
    let n = u64::from_le_bytes(bytes);
    if n > 100_000_000 {
        return Err(ModelError::weights(file, "not a valid safetensors file (header too large)"));
    }
    Ok(n)
}

/// The tensor entries of a safetensors header (the JSON after the 8 length bytes), checked
/// against the file's size: an entry past the end means a truncated file. A dtype we do not
/// decode is an error naming the tensor.
pub fn header_entries(header: &[u8], file_size: u64, file: &str) -> Result<Vec<(String, Entry)>> {
    let bad = |m: String| ModelError::weights(file, format!("not a valid safetensors file: {m}"));
    let map: BTreeMap<String, serde_json::Value> = serde_json::from_slice(header).map_err(|e| {
        ModelError::weights(
            file,
            format!(
                "not a valid safetensors file (corrupt or truncated?): header is not JSON ({e})"
            ),
        )
    })?;
    let base = 8 + header.len() as u64;
    let mut out = Vec::new();
    for (name, v) in map.into_iter().filter(|(k, _)| k != "__metadata__") {
        let info: HeaderInfo =
            serde_json::from_value(v).map_err(|e| bad(format!("tensor '{name}': {e}")))?;
        let (off0, off1) = info.data_offsets;
        let numel = info.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64));
        let need = numel.and_then(|n| n.checked_mul(info.dtype.bitsize() as u64 / 8));
        if off0 > off1 || need != Some(off1 - off0) {
            return Err(bad(format!(
                "tensor '{name}': data_offsets [{off0}, {off1}] do not hold a {:?} tensor of shape {:?}",
                info.dtype, info.shape
            )));
        }
        let (start, end) = match (base.checked_add(off0), base.checked_add(off1)) {
            (Some(s), Some(e)) => (s, e),
            _ => return Err(bad(format!("tensor '{name}': data_offsets out of range"))),
        };
        if end > file_size {
            return Err(ModelError::weights(
                file,
                format!(
                    "truncated: tensor '{name}' ends at byte {end}, the file has {file_size} bytes"
                ),
            ));
        }
        let dtype = Stored::from_safetensors(info.dtype).ok_or_else(|| {
            ModelError::weights(
                file,
                format!(
                    "tensor '{name}' has dtype {:?}; only F32, BF16 and F16 are supported",
                    info.dtype
                ),
            )
        })?;
        out.push((name, Entry { dtype, shape: info.shape, start, end }));
    }
    Ok(out)
}

#[derive(serde::Deserialize)]
struct HeaderInfo {
    dtype: Dtype,
    shape: Vec<usize>,
    data_offsets: (u64, u64),
}

/// The tensors of one whole safetensors file, borrowed from its bytes (`file` names it in
/// errors).
pub fn sources<'a>(file: &'a str, bytes: &'a [u8]) -> Result<Vec<(String, Source<'a>)>> {
    let end = header_end(bytes, bytes.len() as u64, file)? as usize;
    let entries = header_entries(&bytes[8..end], bytes.len() as u64, file)?;
    let source_of = |(name, e): (String, Entry)| {
        let data = &bytes[e.start as usize..e.end as usize];
        (name, source(file, e, data))
    };
    Ok(entries.into_iter().map(source_of).collect())
}

/// A tensor's [`Source`] from its entry and its bytes (`data` is `entry.start..entry.end`).
pub fn source<'a>(file: &'a str, entry: Entry, data: &'a [u8]) -> Source<'a> {
    Source {
        file,
        dtype: entry.dtype,
        shape: entry.shape,
        data: Cow::Borrowed(data),
        layout: Layout::Plain,
    }
}

/// A safetensors file of f32 tensors `(name, shape, row-major values)`, the one writer
/// (`file` names it in errors).
pub fn write(file: &str, tensors: &[(&str, Vec<usize>, &[f32])]) -> Result<Vec<u8>> {
    let fail = |e: ::safetensors::SafeTensorError| ModelError::weights(file, e.to_string());
    let bytes: Vec<Vec<u8>> =
        tensors.iter().map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            Ok((
                *name,
                ::safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), b)
                    .map_err(fail)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    ::safetensors::serialize(views, None::<HashMap<String, String>>).map_err(fail)
}

/// The tensors of a checkpoint's safetensors files by name, from their headers alone: where
/// each tensor's bytes are, so a loader reads only the tensors it uses (the browser reads one
/// tensor group's byte ranges at a time; the native door slices its memory maps).
#[derive(Debug, Default)]
pub struct ShardIndex {
    files: Vec<String>,
    entries: BTreeMap<String, (usize, Entry)>,
}

impl ShardIndex {
    /// Adds a file from its header bytes (after the 8 length bytes) and its size. A tensor
    /// name given twice is an error naming both files.
    pub fn add_header(&mut self, file: &str, header: &[u8], file_size: u64) -> Result<()> {
        let i = self.files.len();
        self.files.push(file.to_string());
        for (name, entry) in header_entries(header, file_size, file)? {
            if let Some((j, _)) = self.entries.insert(name.clone(), (i, entry)) {
                return Err(ModelError::weights(
                    file,
                    format!("tensor '{name}' also appears in {}", self.files[j]),
                ));
            }
        }
        Ok(())
    }

    /// Adds a whole file (native: a memory map).
    pub fn add_file(&mut self, file: &str, bytes: &[u8]) -> Result<()> {
        let end = header_end(bytes, bytes.len() as u64, file)? as usize;
        self.add_header(file, &bytes[8..end], bytes.len() as u64)
    }

    /// The files, in the order they were added.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// Where tensor `name` is: (file index, entry); a missing tensor is an error naming the
    /// files.
    pub fn entry(&self, name: &str) -> Result<&(usize, Entry)> {
        self.entries.get(name).ok_or_else(|| {
            ModelError::weights(self.files.join(", "), format!("missing tensor '{name}'"))
        })
    }

    /// Every tensor as a [`Source`], given the bytes of every file in order (native).
    pub fn sources<'a>(&'a self, files: &[&'a [u8]]) -> Vec<(String, Source<'a>)> {
        self.entries
            .iter()
            .map(|(name, (i, e))| {
                let data = &files[*i][e.start as usize..e.end as usize];
                (name.clone(), source(&self.files[*i], e.clone(), data))
            })
            .collect()
    }

    /// The named tensors as [`Source`]s, given each one's bytes (`entry(name)`'s range).
    pub fn sources_of<'a>(
        &'a self,
        tensors: &'a [(String, Vec<u8>)],
    ) -> Result<Vec<(String, Source<'a>)>> {
        tensors
            .iter()
            .map(|(name, data)| {
                let (i, e) = self.entry(name)?;
                Ok((name.clone(), source(&self.files[*i], e.clone(), data)))
            })
            .collect()
    }

    /// The names not in `used`, sorted.
    pub fn unused(&self, used: &BTreeSet<String>) -> Vec<String> {
        self.entries.keys().filter(|k| !used.contains(*k)).cloned().collect()
    }
}
