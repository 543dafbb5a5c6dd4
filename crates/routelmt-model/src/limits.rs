//! Limits every device shares, as functions of the config: the largest device buffer the model
//! creates (WebGPU's default binding limit), the checks a batch must pass, and how a batch is
//! split into chunks that fit. Knows no tensors and no device.

use std::ops::Range;

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};

/// Largest device buffer the model creates (WebGPU's default `maxStorageBufferBindingSize`).
pub const MAX_BUFFER_BYTES: usize = 128 << 20;

/// Checks a layer index against transformers' `hidden_states` range and every sequence
/// against the vocabulary (non-empty, ids below `vocab_size`).
pub fn check_batch(config: &ModelConfig, batch: &[Vec<u32>], layer: usize) -> Result<()> {
    let n = config.num_hidden_layers;
    if layer > n {
        return Err(ModelError::Input(format!(
            "layer {layer} out of range: hidden_states indices are 0 (embeddings) to {n} (final)"
        )));
    }
    for (row, ids) in batch.iter().enumerate() {
        if ids.is_empty() {
            return Err(ModelError::Input(format!("row {row}: empty token sequence")));
        }
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= config.vocab_size) {
            return Err(ModelError::Input(format!(
                "row {row}: token id {bad} out of range for vocab_size {}",
                config.vocab_size
            )));
        }
    }
    Ok(())
}

/// Bytes of the largest device buffer a chunk of `rows` sequences padded to `seq` creates.
pub fn peak_buffer_bytes(c: &ModelConfig, rows: usize, seq: usize) -> usize {
    let per_row = [
        c.num_attention_heads * seq * seq,        // attention scores
        seq * c.intermediate_size,                // MLP activations
        seq * c.num_attention_heads * c.head_dim, // queries
        seq * c.hidden_size,                      // residual stream
    ];
    4 * rows * per_row.iter().max().copied().unwrap_or(0)
}

/// The longest single prompt whose buffers fit [`MAX_BUFFER_BYTES`] (a front door refuses a
/// longer one before queueing it).
pub fn max_prompt_tokens(c: &ModelConfig) -> usize {
    // The buffers grow with the length: the largest length that fits, by bisection.
    let (mut lo, mut hi) = (0usize, 1usize << 24);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if peak_buffer_bytes(c, 1, mid) <= MAX_BUFFER_BYTES {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

/// Splits `lens` (in order) into consecutive chunks of at most `max_rows` rows whose buffers
/// fit [`MAX_BUFFER_BYTES`]. Errors when one sequence alone does not fit.
pub fn plan_chunks(c: &ModelConfig, lens: &[usize], max_rows: usize) -> Result<Vec<Range<usize>>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < lens.len() {
        let mut end = start;
        let mut seq = 0;
        while end < lens.len() && end - start < max_rows.max(1) {
            let s = seq.max(lens[end]);
            if peak_buffer_bytes(c, end - start + 1, s) > MAX_BUFFER_BYTES {
                break;
            }
            seq = s;
            end += 1;
        }
        if end == start {
            return Err(ModelError::Input(format!(
                "a prompt of {} tokens needs a {} MiB device buffer, over the {} MiB limit; \
                 shorten it",
                lens[start],
                peak_buffer_bytes(c, 1, lens[start]) >> 20,
                MAX_BUFFER_BYTES >> 20
            )));
        }
        chunks.push(start..end);
        start = end;
    }
    Ok(chunks)
}

/// Checks that one chunk of `b` sequences padded to `t` tokens fits [`MAX_BUFFER_BYTES`].
pub fn check_chunk(c: &ModelConfig, b: usize, t: usize) -> Result<()> {
    if b == 0 {
        return Err(ModelError::Input("empty batch".into()));
    }
    if peak_buffer_bytes(c, b, t) > MAX_BUFFER_BYTES {
        return Err(ModelError::Input(format!(
            "batch of {b} × {t} tokens exceeds the {} MiB device buffer limit",
            MAX_BUFFER_BYTES >> 20
        )));
    }
    Ok(())
}
