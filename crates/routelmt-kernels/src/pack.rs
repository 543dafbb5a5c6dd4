//! Weights packed once at load: [`PackedMatrix`], its store formats and their widening to f32.
//!
//! Layout (BLIS-style): `W` (`[K, N]`) is cut into panels of [`NR`] = 32 columns, each stored
//! `K` rows of 32 values, so the micro-kernel streams one panel with unit stride.
//!
//! Weights are stored as f32, f16, q8 (per-column blocks of 32 steps of `K` as int8 with an
//! f32 scale, GGUF `Q8_0`'s blocking) or q4 (the same blocks as 4-bit values with an f16 scale
//! and an f16 minimum, rounded as GGUF `Q4_0` or `Q4_1` rounds, whichever is closer for the
//! block, so both kinds of file are kept exactly). f16, q8 and q4 panel blocks are widened to
//! f32 in a per-thread buffer just before use ([`PackedMatrix::block`]), so all four share one
//! micro-kernel; q8 and q4 on AVX-512 VNNI also have their own int8 kernels (`int8.rs`).

use half::f16;
use half::slice::HalfFloatSliceExt;

/// Columns per packed panel.
pub(crate) const NR: usize = 32;
/// Steps of `K` per cache block (a multiple of the q8 block).
pub(crate) const KC: usize = 256;
/// Steps of `K` per q8 scale.
pub(crate) const QBLOCK: usize = 32;

/// How a [`PackedMatrix`] stores its values (the model's `Precision` maps onto it one to one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PackFormat {
    /// 4 bytes per weight.
    #[default]
    F32,
    /// IEEE half: 2 bytes per weight.
    F16,
    /// int8 with one f32 scale per 32 weights of a column: 1.125 bytes per weight.
    Q8,
    /// 4-bit with an f16 scale and an f16 minimum per 32 weights of a column (GGUF `Q4_0`'s
    /// or `Q4_1`'s values, whichever is closer per block): 0.625 bytes per weight.
    Q4,
}

impl PackFormat {
    /// Name for reports: `f32`, `f16` or `q8`.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Q8 => "q8",
            Self::Q4 => "q4",
        }
    }
}

impl std::fmt::Display for PackFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone)]
pub(crate) enum Store {
    F32(Vec<f32>),
    F16(Vec<f16>),
    /// Block `b = panel * kblocks + kb` holds 32 steps of `K` × 32 columns as 8 groups of 4
    /// steps: `q[b * 1024 + (kk / 4) * 128 + c * 4 + kk % 4]` (the 4 bytes a VNNI lane sums),
    /// each int8 value stored as `u8` with zero point 128 (`q + 128`: the unsigned operand of
    /// `vpdpbusd`). `scales[b * NR + c]`.
    Q8 {
        q: Vec<u8>,
        scales: Vec<f32>,
    },
    /// The q8 blocks' order at 4 bits: block `b` is 512 bytes, 8 groups of 64; the value q8
    /// would store at index `j` of group `g` (`j < 128`) is the low nibble of byte
    /// `b * 512 + g * 64 + j % 64` for `j < 64`, else its high nibble. So the low nibbles of a
    /// group are its first 16 columns' VNNI lanes and the high nibbles the other 16. A nibble
    /// `q` means `q · d + m`, with `d[b * NR + c]` and `m[b * NR + c]` (a `Q4_0` block has
    /// `m = -8 · d`).
    Q4 {
        q: Vec<u8>,
        d: Vec<f16>,
        m: Vec<f16>,
    },
}

/// A `[K, N]` weight packed into panels of 32 columns, each `K` rows of 32 values (in f32, f16
/// or q8: [`PackFormat`]), for [`crate::matmul`].
#[derive(Clone)]
pub struct PackedMatrix {
    pub(crate) k: usize,
    pub(crate) n: usize,
    pub(crate) store: Store,
}

impl std::fmt::Debug for PackedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedMatrix({} x {}, {})", self.k, self.n, self.format())
    }
}

impl PackedMatrix {
    /// Packs a row-major `[k, n]` matrix (burn's `Linear` layout: input rows, output columns).
    pub fn pack(w: &[f32], k: usize, n: usize, format: PackFormat) -> Self {
        assert_eq!(w.len(), k * n, "pack: {k} x {n} matrix expected");
        Self::pack_with(k, n, format, |kk, col| w[kk * n + col])
    }

    /// Packs the `[k, n]` matrix whose column `c` is `columns[c]` (`k` values each): Hugging
    /// Face's `[out, in]` Linear weights give their rows, so q/k/v or gate/up pack fused
    /// straight from the stored tensors, with no transposed or concatenated copy.
    pub fn pack_columns(columns: &[&[f32]], k: usize, format: PackFormat) -> Self {
        assert!(columns.iter().all(|c| c.len() == k), "pack_columns: columns of {k} expected");
        Self::pack_with(k, columns.len(), format, |kk, col| columns[col][kk])
    }

    /// Packs the `[k, n]` matrix whose element `(kk, col)` is `value(kk, col)`.
    fn pack_with(
        k: usize,
        n: usize,
        format: PackFormat,
        value: impl Fn(usize, usize) -> f32,
    ) -> Self {
        let panels = n.div_ceil(NR);
        let at = |kk: usize, col: usize| if col < n { value(kk, col) } else { 0.0 };
        let store = match format {
            PackFormat::F32 | PackFormat::F16 => {
                let mut out = vec![0f32; panels * k * NR];
                for p in 0..panels {
                    for kk in 0..k {
                        let row = &mut out[(p * k + kk) * NR..][..NR];
                        for (c, v) in row.iter_mut().enumerate() {
                            *v = at(kk, p * NR + c);
                        }
                    }
                }
                if format == PackFormat::F32 {
                    Store::F32(out)
                } else {
                    let mut half = vec![f16::ZERO; out.len()];
                    half.convert_from_f32_slice(&out);
                    Store::F16(half)
                }
            }
            PackFormat::Q8 => {
                let kblocks = k.div_ceil(QBLOCK);
                let mut q = vec![128u8; panels * kblocks * QBLOCK * NR];
                let mut scales = vec![0f32; panels * kblocks * NR];
                for p in 0..panels {
                    for kb in 0..kblocks {
                        let block = p * kblocks + kb;
                        let rows = kb * QBLOCK..((kb + 1) * QBLOCK).min(k);
                        for c in 0..NR {
                            let amax = rows
                                .clone()
                                .map(|kk| at(kk, p * NR + c).abs())
                                .fold(0f32, f32::max);
                            let d = amax / 127.0;
                            let inv = if d == 0.0 { 0.0 } else { 1.0 / d };
                            scales[block * NR + c] = d;
                            for kk in rows.clone() {
                                let v = (at(kk, p * NR + c) * inv).round() as i32;
                                let at_q = block * QBLOCK * NR + q8_offset(kk - kb * QBLOCK, c);
                                q[at_q] = (v + 128) as u8;
                            }
                        }
                    }
                }
                Store::Q8 { q, scales }
            }
            PackFormat::Q4 => {
                let kblocks = k.div_ceil(QBLOCK);
                let mut q = vec![0u8; panels * kblocks * QBLOCK * NR / 2];
                let mut d = vec![f16::ZERO; panels * kblocks * NR];
                let mut m = vec![f16::ZERO; panels * kblocks * NR];
                let mut col = [0f32; QBLOCK];
                for p in 0..panels {
                    for kb in 0..kblocks {
                        let block = p * kblocks + kb;
                        let rows = kb * QBLOCK..((kb + 1) * QBLOCK).min(k);
                        for c in 0..NR {
                            let col = &mut col[..rows.len()];
                            for (v, kk) in col.iter_mut().zip(rows.clone()) {
                                *v = at(kk, p * NR + c);
                            }
                            let (nibs, bd, bm) = q4_block(col);
                            (d[block * NR + c], m[block * NR + c]) = (bd, bm);
                            for (i, nib) in nibs.into_iter().enumerate().take(col.len()) {
                                let (at_q, shift) = q4_offset(i, c);
                                q[block * QBLOCK * NR / 2 + at_q] |= nib << shift;
                            }
                        }
                    }
                }
                Store::Q4 { q, d, m }
            }
        };
        Self { k, n, store }
    }

    /// Rows (`K`, the input width).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns (`N`, the output width).
    pub fn n(&self) -> usize {
        self.n
    }

    /// How the values are stored.
    pub fn format(&self) -> PackFormat {
        match self.store {
            Store::F32(_) => PackFormat::F32,
            Store::F16(_) => PackFormat::F16,
            Store::Q8 { .. } => PackFormat::Q8,
            Store::Q4 { .. } => PackFormat::Q4,
        }
    }

    /// Bytes held by the packed values (and scales).
    pub fn bytes(&self) -> usize {
        match &self.store {
            Store::F32(v) => v.len() * 4,
            Store::F16(v) => v.len() * 2,
            Store::Q8 { q, scales } => q.len() + scales.len() * 4,
            Store::Q4 { q, d, m } => q.len() + (d.len() + m.len()) * 2,
        }
    }

    /// The matrix back as row-major `[k, n]` f32 (what the kernels compute with).
    pub fn unpack(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.k * self.n];
        let mut buf = vec![0f32; KC * NR];
        for p in 0..self.n.div_ceil(NR) {
            for k0 in (0..self.k).step_by(KC) {
                let kc = KC.min(self.k - k0);
                let block = self.block(p, k0, kc, &mut buf);
                for kk in 0..kc {
                    for c in 0..NR.min(self.n - p * NR) {
                        out[(k0 + kk) * self.n + p * NR + c] = block[kk * NR + c];
                    }
                }
            }
        }
        out
    }

    /// Panel `p`'s rows `k0..k0 + kc` as f32 `[kc, NR]`: borrowed for f32, widened into `buf`
    /// otherwise.
    pub(crate) fn block<'a>(
        &'a self,
        p: usize,
        k0: usize,
        kc: usize,
        buf: &'a mut [f32],
    ) -> &'a [f32] {
        match &self.store {
            Store::F32(v) => &v[(p * self.k + k0) * NR..][..kc * NR],
            Store::F16(v) => {
                let out = &mut buf[..kc * NR];
                v[(p * self.k + k0) * NR..][..kc * NR].convert_to_f32_slice(out);
                out
            }
            Store::Q8 { q, scales } => {
                let kblocks = self.k.div_ceil(QBLOCK);
                let out = &mut buf[..kc * NR];
                dequant_q8(q, scales, kblocks, p, k0, out);
                out
            }
            Store::Q4 { q, d, m } => {
                let kblocks = self.k.div_ceil(QBLOCK);
                let out = &mut buf[..kc * NR];
                dequant_q4(q, (d, m), kblocks, p, k0, out);
                out
            }
        }
    }
}

/// Where step `kk` (within its block) of column `c` sits in a q8 block.
#[inline(always)]
fn q8_offset(kk: usize, c: usize) -> usize {
    (kk / 4) * 4 * NR + c * 4 + kk % 4
}

/// Widens q8 rows `k0..k0 + out.len() / NR` of panel `p` (k0 a multiple of [`QBLOCK`]).
fn dequant_q8(q: &[u8], scales: &[f32], kblocks: usize, p: usize, k0: usize, out: &mut [f32]) {
    for (i, rows) in out.chunks_mut(QBLOCK * NR).enumerate() {
        let block = p * kblocks + k0 / QBLOCK + i;
        let s: &[f32; NR] = scales[block * NR..][..NR].try_into().expect("NR scales");
        let qs: &[u8; QBLOCK * NR] =
            q[block * QBLOCK * NR..][..QBLOCK * NR].try_into().expect("block");
        for (g, group) in rows.chunks_mut(4 * NR).enumerate() {
            let src = &qs[g * 4 * NR..][..4 * NR];
            for (j, dst) in group.chunks_exact_mut(NR).enumerate() {
                for c in 0..NR {
                    dst[c] = (src[c * 4 + j] as i32 - 128) as f32 * s[c];
                }
            }
        }
    }
}

/// One block of a column (up to 32 values) as nibbles with an f16 scale `d` and minimum `m`
/// (value `q · d + m`): GGUF `Q4_0`'s rounding (`d = max / -8` for the value of largest
/// magnitude, `q = min(15, trunc(x / d + 8.5))`, `m = -8 · d`) or `Q4_1`'s (`d = (max - min) /
/// 15`, `m = min`, `q = min(15, trunc((x - min) / d + 0.5))`), whichever gives the smaller
/// squared error (`Q4_0` on a tie). Like llama.cpp, the nibbles are computed with the f32
/// scale and the f16 ones stored. A block of a `Q4_0` or `Q4_1` file, dequantized, comes back
/// exactly.
pub fn q4_block(x: &[f32]) -> ([u8; QBLOCK], f16, f16) {
    let encode = |d: f32, min: f32, offset: f32| {
        let inv = if d == 0.0 { 0.0 } else { 1.0 / d };
        let mut nibs = [0u8; QBLOCK];
        for (n, v) in nibs.iter_mut().zip(x) {
            *n = (((v - min) * inv + offset) as i32).clamp(0, 15) as u8;
        }
        nibs
    };
    let error = |nibs: &[u8; QBLOCK], d: f16, m: f16| -> f64 {
        let (d, m) = (d.to_f32(), m.to_f32());
        x.iter().zip(nibs).map(|(v, &n)| f64::from(n as f32 * d + m - v).powi(2)).sum()
    };
    // Q4_0: symmetric around the value of largest magnitude.
    let max = x.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
    let d0 = max / -8.0;
    let nibs0 = encode(d0, 0.0, 8.5);
    let (d0, m0) = (f16::from_f32(d0), f16::from_f32(-8.0 * f16::from_f32(d0).to_f32()));
    // Q4_1: from the minimum to the maximum.
    let lo = x.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let d1 = (hi - lo) / 15.0;
    let nibs1 = encode(d1, lo, 0.5);
    let (d1, m1) = (f16::from_f32(d1), f16::from_f32(lo));
    if error(&nibs1, d1, m1) < error(&nibs0, d0, m0) { (nibs1, d1, m1) } else { (nibs0, d0, m0) }
}

/// Where step `kk` (within its block) of column `c` sits in a q4 block: byte and bit shift.
#[inline(always)]
fn q4_offset(kk: usize, c: usize) -> (usize, u32) {
    let j = c * 4 + kk % 4;
    ((kk / 4) * 2 * NR + j % (2 * NR), if j < 2 * NR { 0 } else { 4 })
}

/// Widens q4 rows `k0..k0 + out.len() / NR` of panel `p` (k0 a multiple of [`QBLOCK`]).
fn dequant_q4(
    q: &[u8],
    (d, m): (&[f16], &[f16]),
    kblocks: usize,
    p: usize,
    k0: usize,
    out: &mut [f32],
) {
    let (mut ds, mut ms) = ([0f32; NR], [0f32; NR]);
    for (i, rows) in out.chunks_mut(QBLOCK * NR).enumerate() {
        let block = p * kblocks + k0 / QBLOCK + i;
        d[block * NR..][..NR].convert_to_f32_slice(&mut ds);
        m[block * NR..][..NR].convert_to_f32_slice(&mut ms);
        let qs: &[u8; QBLOCK * NR / 2] =
            q[block * QBLOCK * NR / 2..][..QBLOCK * NR / 2].try_into().expect("block");
        for (g, group) in rows.chunks_mut(4 * NR).enumerate() {
            let src = &qs[g * 2 * NR..][..2 * NR];
            for (j, dst) in group.chunks_exact_mut(NR).enumerate() {
                for c in 0..NR {
                    let lane = c * 4 + j;
                    let byte = src[lane % (2 * NR)];
                    let nib = if lane < 2 * NR { byte & 0x0F } else { byte >> 4 };
                    dst[c] = nib as f32 * ds[c] + ms[c];
                }
            }
        }
    }
}
