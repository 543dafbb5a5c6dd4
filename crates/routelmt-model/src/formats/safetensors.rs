//! safetensors files: the one reader (header length, header entries checked against the file
//! size, tensors borrowed from the bytes), used by the native door on memory-mapped files and by
//! the browser on byte ranges, the sharded index's file names, and the one writer (f32 tensors).
//!
//! Layout: a u64 little-endian header length `n`, `n` bytes of JSON (`name → {dtype, shape,
//! data_offsets}` plus an optional `__metadata__`), then the data; offsets are relative to the
//! end of the header.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ::safetensors::Dtype;

use super::dtype::Stored;
use super::{Entry, Layout, Source, source};
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
        out.push((name, Entry { dtype, shape: info.shape, start, end, layout: Layout::Plain }));
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
