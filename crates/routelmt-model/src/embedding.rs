//! The token embedding table, kept on the host (docs/architecture.md, decision 4).
//!
//! 151,936 × 1,024 f32 is 594 MiB, beyond WebGPU's 128 MiB binding limit, so the table never
//! goes to the device: the rows a batch needs are gathered here and uploaded as
//! `[batch, seq, hidden]`. Rows stay in the checkpoint's dtype (bf16 halves host memory), or
//! are held as q8 (int8 with one f32 scale per 32 values of a row, as GGUF's `Q8_0`: a quarter
//! of f32) when the model loads with q8 weights, and are widened to f32 as they are gathered.

use half::{bf16, f16};

use crate::precision::Precision;

/// Embedding rows in their on-disk precision.
#[derive(Debug, Clone)]
pub enum EmbeddingData {
    /// f32 rows.
    F32(Vec<f32>),
    /// bf16 rows.
    Bf16(Vec<bf16>),
    /// f16 rows.
    F16(Vec<f16>),
    /// q8 rows: `q[i]·d[i / 32]`, blocks of 32 along each row (the row width a multiple of 32).
    Q8 {
        /// The int8 values.
        q: Vec<i8>,
        /// One scale per 32 values.
        d: Vec<f32>,
    },
    /// q4 rows: value `i` is `n·d[i / 32] + m[i / 32]` with `n` the low nibble of `q[i / 2]`
    /// for even `i`, else the high one; blocks of 32 along each row, rounded as the q4 weights
    /// are (`routelmt_kernels::q4_block`).
    Q4 {
        /// Two 4-bit values per byte.
        q: Vec<u8>,
        /// One scale per 32 values.
        d: Vec<f16>,
        /// One minimum per 32 values.
        m: Vec<f16>,
    },
}

/// How a table of rows `dim` wide is held for `weights` (see
/// [`Precision::quantized_embedding`]): q8 or q4 as the weights are, when `dim` is whole
/// blocks of [`Q8_BLOCK`]; `None`: in its stored type.
pub fn table_quant(weights: Option<Precision>, dim: usize) -> Option<Precision> {
    weights.filter(|p| p.quantized_embedding() && dim.is_multiple_of(Q8_BLOCK))
}

/// Appends the q4 of `values` (whole blocks of [`Q8_BLOCK`]) to `q`, `d` and `m` (see
/// [`EmbeddingData::Q4`]).
pub fn q4_append(values: &[f32], q: &mut Vec<u8>, d: &mut Vec<f16>, m: &mut Vec<f16>) {
    for block in values.chunks(Q8_BLOCK) {
        let (nibs, bd, bm) = routelmt_kernels::q4_block(block);
        q.extend(nibs.chunks(2).map(|p| p[0] | (p[1] << 4)));
        d.push(bd);
        m.push(bm);
    }
}

/// Values per q8 scale.
pub const Q8_BLOCK: usize = 32;

/// Rows per slice when a table is converted a slice at a time: whole blocks of every stored
/// type (the largest block is 256 values).
pub const EMBEDDING_SLICE_ROWS: usize = 256;

/// Appends the q8 of `values` (whole blocks of [`Q8_BLOCK`]) to `q` and `d` (see
/// [`EmbeddingData::q8_from`]).
pub fn q8_append(values: &[f32], q: &mut Vec<i8>, d: &mut Vec<f32>) {
    for block in values.chunks(Q8_BLOCK) {
        let amax = block.iter().fold(0f32, |m, x| m.max(x.abs()));
        let scale = amax / 127.0;
        let inv = if scale != 0.0 { 1.0 / scale } else { 0.0 };
        q.extend(block.iter().map(|x| (x * inv).round() as i8));
        d.push(scale);
    }
}

impl EmbeddingData {
    /// q8 of row-major values (`values.len()` a multiple of [`Q8_BLOCK`]), rounded as ggml's
    /// reference `Q8_0` quantizer rounds: `d = max|x| / 127`, `q = round(x / d)`.
    pub fn q8_from(values: &[f32]) -> Self {
        let mut q = Vec::with_capacity(values.len());
        let mut d = Vec::with_capacity(values.len() / Q8_BLOCK);
        q8_append(values, &mut q, &mut d);
        Self::Q8 { q, d }
    }

    fn len(&self) -> usize {
        match self {
            Self::F32(v) => v.len(),
            Self::Bf16(v) => v.len(),
            Self::F16(v) => v.len(),
            Self::Q8 { q, .. } => q.len(),
            Self::Q4 { q, .. } => 2 * q.len(),
        }
    }
}

/// A `[vocab, hidden]` table on the host.
#[derive(Debug, Clone)]
pub struct HostEmbedding {
    vocab: usize,
    dim: usize,
    data: EmbeddingData,
}

impl HostEmbedding {
    /// Wraps row-major data of `vocab * dim` values.
    pub fn new(vocab: usize, dim: usize, data: EmbeddingData) -> Self {
        assert_eq!(data.len(), vocab * dim, "embedding data length");
        let blocks = match &data {
            EmbeddingData::Q8 { d, .. } => Some(d.len()),
            EmbeddingData::Q4 { d, m, .. } => Some(d.len().min(m.len())),
            _ => None,
        };
        if let Some(blocks) = blocks {
            assert!(dim.is_multiple_of(Q8_BLOCK) && blocks * Q8_BLOCK == vocab * dim, "scales");
        }
        Self { vocab, dim, data }
    }

    /// Rows in the table.
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// Width of a row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Bytes held on the host.
    pub fn host_bytes(&self) -> usize {
        let n = self.vocab * self.dim;
        match &self.data {
            EmbeddingData::F32(_) => 4 * n,
            EmbeddingData::Bf16(_) | EmbeddingData::F16(_) => 2 * n,
            EmbeddingData::Q8 { .. } => n + 4 * n / Q8_BLOCK,
            EmbeddingData::Q4 { .. } => n / 2 + 4 * n / Q8_BLOCK,
        }
    }

    /// The stored precision's name (`f32`, `bf16`, `f16`, `q8`, `q4`).
    pub fn dtype(&self) -> &'static str {
        match &self.data {
            EmbeddingData::F32(_) => "f32",
            EmbeddingData::Bf16(_) => "bf16",
            EmbeddingData::F16(_) => "f16",
            EmbeddingData::Q8 { .. } => "q8",
            EmbeddingData::Q4 { .. } => "q4",
        }
    }

    /// Writes row `id` as f32 into `out` (`out.len() == dim`). The caller checks `id < vocab`.
    pub fn gather_row(&self, id: u32, out: &mut [f32]) {
        let start = id as usize * self.dim;
        let range = start..start + self.dim;
        match &self.data {
            EmbeddingData::F32(v) => out.copy_from_slice(&v[range]),
            EmbeddingData::Bf16(v) => {
                out.iter_mut().zip(&v[range]).for_each(|(o, x)| *o = x.to_f32())
            }
            EmbeddingData::F16(v) => {
                out.iter_mut().zip(&v[range]).for_each(|(o, x)| *o = x.to_f32())
            }
            EmbeddingData::Q8 { q, d } => {
                let scales = &d[start / Q8_BLOCK..(start + self.dim) / Q8_BLOCK];
                let rows = out.chunks_mut(Q8_BLOCK).zip(q[range].chunks(Q8_BLOCK));
                for ((o, q), &d) in rows.zip(scales) {
                    o.iter_mut().zip(q).for_each(|(o, &q)| *o = f32::from(q) * d);
                }
            }
            EmbeddingData::Q4 { q, d, m } => {
                let blocks = start / Q8_BLOCK..(start + self.dim) / Q8_BLOCK;
                let bytes = q[start / 2..(start + self.dim) / 2].chunks(Q8_BLOCK / 2);
                let rows = out.chunks_mut(Q8_BLOCK).zip(bytes);
                for ((o, bytes), (d, m)) in rows.zip(d[blocks.clone()].iter().zip(&m[blocks])) {
                    let (d, m) = (d.to_f32(), m.to_f32());
                    for (pair, &b) in o.chunks_mut(2).zip(bytes) {
                        pair[0] = f32::from(b & 0x0F) * d + m;
                        pair[1] = f32::from(b >> 4) * d + m;
                    }
                }
            }
        }
    }

    /// The `k` rows with the largest dot product with `h` (`h.len() == dim`), largest first,
    /// with the products: next-token logits when the table is an LM head. Rows are widened a
    /// row at a time (no f32 copy of the table); ties go to the lower id.
    pub fn top_dot(&self, h: &[f32], k: usize) -> (Vec<u32>, Vec<f32>) {
        let mut row = vec![0f32; self.dim];
        let mut best: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
        for id in 0..self.vocab as u32 {
            self.gather_row(id, &mut row);
            let dot: f32 = row.iter().zip(h).map(|(a, b)| a * b).sum();
            if best.len() == k && best.last().is_none_or(|&(v, _)| dot <= v) {
                continue;
            }
            let at = best.partition_point(|&(v, _)| v >= dot);
            best.insert(at, (dot, id));
            best.truncate(k);
        }
        best.into_iter().map(|(v, id)| (id, v)).unzip()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_rows_are_within_half_a_step_of_the_values() {
        let (vocab, dim) = (5, 64);
        let values: Vec<f32> =
            (0..vocab * dim).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
        let mut zeros = values.clone();
        zeros[..dim].fill(0.0); // an all-zero row has scale 0, values 0
        let t = HostEmbedding::new(vocab, dim, EmbeddingData::q8_from(&zeros));
        assert_eq!(t.host_bytes(), vocab * dim + vocab * dim / 8);
        let mut row = vec![0f32; dim];
        for id in 0..vocab {
            t.gather_row(id as u32, &mut row);
            let want = &zeros[id * dim..(id + 1) * dim];
            for (block, wb) in row.chunks(Q8_BLOCK).zip(want.chunks(Q8_BLOCK)) {
                let step = wb.iter().fold(0f32, |m, x| m.max(x.abs())) / 127.0;
                for (g, w) in block.iter().zip(wb) {
                    assert!((g - w).abs() <= step / 2.0 + 1e-6, "row {id}: {g} vs {w}");
                }
            }
        }
    }

    #[test]
    fn q4_rows_are_the_q4_weights_rounding_of_each_block() {
        let (vocab, dim) = (3, 96);
        let values: Vec<f32> =
            (0..vocab * dim).map(|i| ((i * 53 % 97) as f32 - 40.0) / 9.0).collect();
        let (mut q, mut d, mut m) = (Vec::new(), Vec::new(), Vec::new());
        q4_append(&values, &mut q, &mut d, &mut m);
        let t = HostEmbedding::new(vocab, dim, EmbeddingData::Q4 { q, d, m });
        assert_eq!((t.dtype(), t.host_bytes()), ("q4", vocab * dim * 5 / 8));
        let mut row = vec![0f32; dim];
        for id in 0..vocab {
            t.gather_row(id as u32, &mut row);
            let want = &values[id * dim..(id + 1) * dim];
            for (block, wb) in row.chunks(Q8_BLOCK).zip(want.chunks(Q8_BLOCK)) {
                let (nibs, d, m) = routelmt_kernels::q4_block(wb);
                let decoded: Vec<f32> =
                    nibs.iter().map(|&n| f32::from(n) * d.to_f32() + m.to_f32()).collect();
                assert_eq!(block, &decoded[..], "row {id}");
            }
        }
    }
}
