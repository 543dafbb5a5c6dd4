//! The one door every stored tensor comes through: HF safetensors folders, GGUF files, PEFT
//! adapters and router heads alike (as candle's `VarBuilder`). A read names the tensor and the
//! shape it must have; the door checks the shape, decodes the stored type to f32 (f32, f16,
//! bf16 and the GGUF block quantizations of [`crate::formats::dtype`]), undoes a file's row layout
//! (llama.cpp's RoPE row permutation of Llama q/k weights) and, for Linear weights, transposes
//! HF's `[out, in]` to burn's `[in, out]`. A missing tensor, a wrong shape or an unsupported
//! type is an error naming the file and tensor.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor, TensorData};
use half::{bf16, f16};

use crate::embedding::{
    EMBEDDING_SLICE_ROWS, EmbeddingData, HostEmbedding, Q8_BLOCK, q4_append, q8_append, table_quant,
};
use crate::error::{ModelError, Result};
use crate::formats::dtype::{self, Stored};
use crate::formats::{Layout, Source};
use crate::limits::MAX_BUFFER_BYTES;
use crate::precision::Precision;

/// Values for tensors a checkpoint does not have: the random-weight benchmark model is built
/// by the same code as a loaded one, from these.
#[derive(Debug, Clone)]
struct RandomFill {
    state: u64,
}

impl RandomFill {
    /// xorshift64*, 24 bits as a uniform in [0, 1).
    fn uniform(&mut self) -> f32 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        (self.state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 24) as f32
    }

    /// N(0, std²) by Box–Muller.
    fn normal(&mut self, std: f32) -> f32 {
        let u1 = self.uniform().max(1e-7);
        let u2 = self.uniform();
        std * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }

    /// Norm weights are ones, biases zero, matrices N(0, 0.02).
    fn values(&mut self, name: &str, len: usize, matrix: bool) -> Vec<f32> {
        if matrix {
            (0..len).map(|_| self.normal(0.02)).collect()
        } else if name.contains("norm") {
            vec![1.0; len]
        } else {
            vec![0.0; len]
        }
    }
}

/// The tensors available to a load, by name: all of a checkpoint's, or one group's at a time
/// when the bytes are fetched per group (the browser). Records which were used.
pub struct Tensors<'a> {
    by_name: BTreeMap<String, Source<'a>>,
    used: BTreeSet<String>,
    dtypes: BTreeSet<String>,
    fill: Option<RandomFill>,
}

impl<'a> Tensors<'a> {
    /// Tensors from sources by name; a name given twice is an error naming both files.
    pub fn new(sources: impl IntoIterator<Item = (String, Source<'a>)>) -> Result<Self> {
        let mut by_name = BTreeMap::new();
        for (name, src) in sources {
            let file = src.file;
            if let Some(prev) = by_name.insert(name.clone(), src) {
                return Err(ModelError::weights(
                    file,
                    format!("tensor '{name}' also appears in {}", prev.file),
                ));
            }
        }
        Ok(Self { by_name, used: BTreeSet::new(), dtypes: BTreeSet::new(), fill: None })
    }

    /// No stored tensors: every read is answered with seeded random values (matrices
    /// N(0, 0.02), norms one, biases zero; an embedding table uniform in ±0.035 as bf16).
    pub fn random(seed: u64) -> Self {
        let mut ts = Self::new(std::iter::empty()).expect("no sources, no duplicates");
        ts.fill = Some(RandomFill { state: seed | 1 });
        ts
    }

    /// Names present but not read by the load (e.g. `lm_head.weight`).
    pub fn unused(&self) -> Vec<String> {
        self.by_name.keys().filter(|k| !self.used.contains(*k)).cloned().collect()
    }

    /// The names read so far, sorted.
    pub fn used_names(&self) -> Vec<String> {
        self.used.iter().cloned().collect()
    }

    /// How many tensors were read.
    pub fn used_count(&self) -> usize {
        self.used.len()
    }

    /// The stored types read so far (`f32`, `bf16`, `q4_1`, ...).
    pub fn dtypes(&self) -> &BTreeSet<String> {
        &self.dtypes
    }

    /// Whether a tensor of this name is present.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// The stored tensor `name`, if present (not marked as used).
    pub fn get(&self, name: &str) -> Option<&Source<'a>> {
        self.by_name.get(name)
    }

    fn files(&self) -> String {
        let files: BTreeSet<&str> = self.by_name.values().map(|s| s.file).collect();
        files.into_iter().collect::<Vec<_>>().join(", ")
    }

    /// Frees the bytes of a read tensor a loader handed over (owned bytes; borrowed ones, a
    /// memory map's, stay).
    fn release(&mut self, name: &str) {
        if let Some(src) = self.by_name.get_mut(name)
            && matches!(src.data, Cow::Owned(_))
        {
            src.data = Cow::Owned(Vec::new());
        }
    }

    /// The stored tensor `name`, checked against `shape`, and marked as used.
    fn source(&mut self, name: &str, shape: &[usize]) -> Result<&Source<'a>> {
        let src = self.by_name.get(name).ok_or_else(|| {
            ModelError::weights(
                self.files(),
                format!("missing tensor '{name}' (expected shape {shape:?})"),
            )
        })?;
        if src.shape != shape {
            return Err(ModelError::weights(
                src.file,
                format!("tensor '{name}' has shape {:?}, expected {shape:?}", src.shape),
            ));
        }
        self.dtypes.insert(src.dtype.name().to_string());
        self.used.insert(name.to_string());
        Ok(src)
    }

    /// Row-major f32 values of `name` in Hugging Face's layout, checked against `shape`.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        if let Some(fill) = self.fill.as_mut().filter(|_| !self.by_name.contains_key(name)) {
            self.used.insert(name.to_string());
            self.dtypes.insert("random f32".into());
            return Ok(fill.values(name, shape.iter().product(), shape.len() == 2));
        }
        let src = self.source(name, shape)?;
        let values = dtype::decode(src.dtype, &src.data, src.len())
            .map_err(|m| ModelError::weights(src.file, format!("tensor '{name}': {m}")))?;
        let layout = src.layout;
        self.release(name);
        Ok(match layout {
            Layout::Plain => values,
            Layout::RopeInterleaved { heads } => unpermute_rows(&values, shape, heads),
        })
    }

    /// The embedding table: held as `weights` says ([`table_quant`]: q8 or q4, a GGUF `Q8_0`
    /// table kept as stored and others quantized a slice of rows at a time, no f32 copy of the
    /// table); else in its stored precision where that is f32, bf16 or f16, and quantized
    /// tables decoded to f32.
    pub fn embedding(
        &mut self,
        name: &str,
        vocab: usize,
        h: usize,
        weights: Option<Precision>,
    ) -> Result<HostEmbedding> {
        let quant = table_quant(weights, h);
        if let Some(fill) = self.fill.as_mut().filter(|_| !self.by_name.contains_key(name)) {
            let table: Vec<bf16> =
                (0..vocab * h).map(|_| bf16::from_f32((fill.uniform() - 0.5) * 0.07)).collect();
            self.used.insert(name.to_string());
            self.dtypes.insert("random bf16".into());
            let data = match quant {
                Some(p) => {
                    let mut t = QuantTable::new(p == Precision::Q4, table.len());
                    t.push_values(&table.iter().map(|x| x.to_f32()).collect::<Vec<f32>>());
                    t.finish()
                }
                None => EmbeddingData::Bf16(table),
            };
            return Ok(HostEmbedding::new(vocab, h, data));
        }
        let dtype = self.source(name, &[vocab, h])?.dtype;
        let src = &self.by_name[name];
        let data = match dtype {
            _ if quant.is_some() => {
                // A slice of EMBEDDING_SLICE_ROWS rows is whole blocks of every stored type.
                let rows = EMBEDDING_SLICE_ROWS;
                let chunk_bytes = dtype.bytes_for(rows * h).expect("whole blocks");
                let mut table = QuantTable::new(quant == Some(Precision::Q4), vocab * h);
                for (i, bytes) in src.data.chunks(chunk_bytes).enumerate() {
                    let n = (vocab - i * rows).min(rows) * h;
                    table.push(dtype, bytes, n).map_err(|m| {
                        ModelError::weights(src.file, format!("tensor '{name}': {m}"))
                    })?;
                }
                table.finish()
            }
            Stored::BF16 | Stored::F16 => {
                let halves = src.data.chunks_exact(2).map(|c| [c[0], c[1]]);
                if dtype == Stored::BF16 {
                    EmbeddingData::Bf16(halves.map(bf16::from_le_bytes).collect())
                } else {
                    EmbeddingData::F16(halves.map(f16::from_le_bytes).collect())
                }
            }
            _ => EmbeddingData::F32(self.take(name, &[vocab, h])?),
        };
        self.release(name);
        Ok(HostEmbedding::new(vocab, h, data))
    }

    /// A 1-D tensor on `device`.
    pub fn vector(&mut self, name: &str, len: usize, device: &Device) -> Result<Tensor<1>> {
        let v = self.take(name, &[len])?;
        Ok(Tensor::from_data(TensorData::new(v, [len]), device))
    }

    /// An HF `[out, in]` Linear weight `{name}.weight` (and `{name}.bias` when `bias`) as a
    /// burn `[in, out]` Linear.
    pub fn linear(
        &mut self,
        name: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
        device: &Device,
    ) -> Result<Linear> {
        let weight_name = format!("{name}.weight");
        if 4 * d_in * d_out > MAX_BUFFER_BYTES {
            let file = self.by_name.get(&weight_name).map_or("", |s| s.file);
            return Err(ModelError::weights(
                file,
                format!(
                    "tensor '{weight_name}' would need a device buffer over {} MiB",
                    MAX_BUFFER_BYTES >> 20
                ),
            ));
        }
        let v = self.take(&weight_name, &[d_out, d_in])?;
        let t = transpose(&v, d_out, d_in);
        let weight = Tensor::from_data(TensorData::new(t, [d_in, d_out]), device);
        let bias = if bias {
            Some(Param::from_tensor(self.vector(&format!("{name}.bias"), d_out, device)?))
        } else {
            None
        };
        Ok(Linear { weight: Param::from_tensor(weight), bias })
    }
}

/// `[rows, cols]` -> `[cols, rows]`, blocked for cache locality.
pub fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const B: usize = 32;
    let mut out = vec![0f32; v.len()];
    for r0 in (0..rows).step_by(B) {
        for c0 in (0..cols).step_by(B) {
            for r in r0..(r0 + B).min(rows) {
                for c in c0..(c0 + B).min(cols) {
                    out[c * rows + r] = v[r * cols + c];
                }
            }
        }
    }
    out
}

/// Undoes [`Layout::RopeInterleaved`] on a row-major `[rows, cols]` matrix (or a bias vector).
fn unpermute_rows(v: &[f32], shape: &[usize], heads: usize) -> Vec<f32> {
    let rows = shape[0];
    let cols = if shape.len() > 1 { shape[1] } else { 1 };
    let d = rows / heads.max(1);
    let half = d / 2;
    let mut out = vec![0f32; v.len()];
    for head in 0..heads {
        for c in 0..2 {
            for i in 0..half {
                let hf = head * d + c * half + i;
                let disk = head * d + 2 * i + c;
                out[hf * cols..(hf + 1) * cols].copy_from_slice(&v[disk * cols..(disk + 1) * cols]);
            }
        }
    }
    out
}

/// A quantized embedding table (q8, or q4 for q4 weights) built from slices of whole rows as
/// they arrive, in order: a GGUF `Q8_0` slice is kept as stored (q8 either way), others are
/// decoded and quantized one slice at a time, so the stored table is never whole in memory
/// when its bytes come in slices (the browser's loader).
#[derive(Debug, Default)]
pub struct QuantTable {
    q4: bool,
    q: Vec<i8>,
    d: Vec<f32>,
    nibbles: Vec<u8>,
    d4: Vec<f16>,
    m4: Vec<f16>,
    values: usize,
}

impl QuantTable {
    /// An empty table, q4 when `q4` (else q8), with room for `values` values.
    pub fn new(q4: bool, values: usize) -> Self {
        let mut t = Self { q4, ..Self::default() };
        if q4 {
            t.nibbles.reserve(values / 2);
        } else {
            t.q.reserve(values);
        }
        t
    }

    /// Appends `n` values stored as `dtype` in `bytes` (whole blocks of the type and of
    /// [`Q8_BLOCK`]); the error says what does not fit.
    pub fn push(
        &mut self,
        dtype: Stored,
        bytes: &[u8],
        n: usize,
    ) -> std::result::Result<(), String> {
        if !n.is_multiple_of(Q8_BLOCK) {
            return Err(format!("{n} values are not whole blocks of {Q8_BLOCK}"));
        }
        if dtype == Stored::Q8_0 {
            let want = dtype.bytes_for(n)?;
            if bytes.len() != want {
                return Err(format!(
                    "{} bytes stored, {want} expected for {n} q8_0 values",
                    bytes.len()
                ));
            }
            self.q4 = false;
            for b in bytes.chunks_exact(34) {
                self.d.push(f16::from_le_bytes([b[0], b[1]]).to_f32());
                self.q.extend(b[2..].iter().map(|&x| x as i8));
            }
            self.values += n;
        } else {
            self.push_values(&dtype::decode(dtype, bytes, n)?);
        }
        Ok(())
    }

    /// Appends values (whole blocks of [`Q8_BLOCK`]), quantized as q4 or q8.
    pub fn push_values(&mut self, values: &[f32]) {
        if self.q4 {
            q4_append(values, &mut self.nibbles, &mut self.d4, &mut self.m4);
        } else {
            q8_append(values, &mut self.q, &mut self.d);
        }
        self.values += values.len();
    }

    /// Values so far.
    pub(crate) fn values(&self) -> usize {
        self.values
    }

    /// The table's data.
    pub fn finish(self) -> EmbeddingData {
        if self.q4 {
            EmbeddingData::Q4 { q: self.nibbles, d: self.d4, m: self.m4 }
        } else {
            EmbeddingData::Q8 { q: self.q, d: self.d }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_interleaving_is_undone() {
        // One head of d = 4, two columns: HF rows r0..r3 stored as r0, r2, r1, r3.
        let hf: Vec<f32> = (0..8).map(|x| x as f32).collect();
        let disk = [0., 1., 4., 5., 2., 3., 6., 7.];
        assert_eq!(unpermute_rows(&disk, &[4, 2], 1), hf);
        // Two heads: each head permuted on its own.
        let disk2 = [0., 2., 1., 3., 4., 6., 5., 7.];
        assert_eq!(unpermute_rows(&disk2, &[8], 2), (0..8).map(|x| x as f32).collect::<Vec<_>>());
    }

    #[test]
    fn transpose_round_trips() {
        let v: Vec<f32> = (0..35 * 33).map(|x| x as f32).collect();
        let t = transpose(&v, 35, 33);
        assert_eq!(t[35], v[1]); // row 0, column 1 -> row 1, column 0
        assert_eq!(transpose(&t, 33, 35), v);
    }
}
