//! The token embedding table, kept on the host (docs/architecture.md, decision 4).
//!
//! 151,936 × 1,024 f32 is 594 MiB, beyond WebGPU's 128 MiB binding limit, so the table never
//! goes to the device: the rows a batch needs are gathered here and uploaded as
//! `[batch, seq, hidden]`. Rows stay in the checkpoint's dtype (bf16 halves host memory) and
//! are widened to f32 as they are gathered.

use half::{bf16, f16};

/// Embedding rows in their on-disk precision.
#[derive(Debug, Clone)]
pub enum EmbeddingData {
    /// f32 rows.
    F32(Vec<f32>),
    /// bf16 rows.
    Bf16(Vec<bf16>),
    /// f16 rows.
    F16(Vec<f16>),
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
        let len = match &data {
            EmbeddingData::F32(v) => v.len(),
            EmbeddingData::Bf16(v) => v.len(),
            EmbeddingData::F16(v) => v.len(),
        };
        assert_eq!(len, vocab * dim, "embedding data length");
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
        let per = match &self.data {
            EmbeddingData::F32(_) => 4,
            EmbeddingData::Bf16(_) | EmbeddingData::F16(_) => 2,
        };
        per * self.vocab * self.dim
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
