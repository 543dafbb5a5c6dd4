//! The CPU prefill's matrix product: `C[M, N] = A[M, K] · W[K, N]`, with `W` a weight packed
//! once at load ([`PackedMatrix`]) and `A` the activations, packed per call.
//!
//! Layout (BLIS-style): `W` is cut into panels of [`NR`] = 32 columns, each stored `K` rows of
//! 32 values, so the micro-kernel streams one panel with unit stride. `A` is cut into
//! micro-panels of `MR` rows, stored column by column (`K` steps of `MR` values). The work is
//! blocked by [`KC`] steps of `K`, so one panel block (32 KiB in f32) stays in L1 while every
//! micro-panel of `A` passes over it. Threads (rayon) take groups of panels: each output
//! column is computed by one thread in a fixed order, so results do not depend on the
//! number of threads.
//!
//! Weights are stored as f32, f16 or q8 (per-column blocks of 32 steps of `K` as int8 with an
//! f32 scale, GGUF `Q8_0`'s blocking). f16 and q8 panel blocks are widened to f32 in a
//! per-thread buffer just before use, so all three share one micro-kernel.
//!
//! Micro-kernels: AVX-512 (8 × 32 tiles: 16 accumulators of 16 lanes) and AVX2 + FMA (6 × 16)
//! with `std::arch` intrinsics, chosen at run time on x86-64; plain Rust over fixed-size arrays
//! elsewhere (4 × 16; wasm32 `simd128`, aarch64 NEON). The x86 kernels fuse multiply-adds;
//! the portable one multiplies and adds (a software `fmaf` would be far slower on wasm32).
//!
//! q8 weights on a CPU with AVX-512 VNNI run an int8 kernel instead: the activations are
//! rounded to int8 per row and block of 32 steps (one f32
//! scale each, as llama.cpp's `Q8_0 × Q8_0` dot does), `vpdpbusd` sums 4 products per lane in
//! i32, and each block's sum is scaled into f32. Elsewhere q8 weights are widened to f32.

use std::cell::RefCell;

use half::f16;
use half::slice::HalfFloatSliceExt;
#[cfg(any(not(target_arch = "wasm32"), target_feature = "atomics"))]
use rayon::prelude::*;

/// Columns per packed panel.
pub const NR: usize = 32;
/// Steps of `K` per cache block (a multiple of the q8 block).
pub const KC: usize = 256;
/// Steps of `K` per q8 scale.
pub const QBLOCK: usize = 32;

/// How a packed weight stores its values (`--weights`, router.json's `weights`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 4 bytes per weight.
    #[default]
    F32,
    /// IEEE half: 2 bytes per weight.
    F16,
    /// int8 with one f32 scale per 32 weights of a column: 1.125 bytes per weight.
    Q8,
}

impl Precision {
    /// The name used by `--weights` and router.json.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Q8 => "q8",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            "q8" => Ok(Self::Q8),
            o => Err(format!("unknown weights '{o}' (expected f32, f16 or q8)")),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone)]
enum Store {
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
}

/// A `[K, N]` weight packed into column panels (see the module docs).
#[derive(Clone)]
pub struct PackedMatrix {
    k: usize,
    n: usize,
    store: Store,
}

impl std::fmt::Debug for PackedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedMatrix({} x {}, {})", self.k, self.n, self.precision())
    }
}

impl PackedMatrix {
    /// Packs a row-major `[k, n]` matrix (burn's `Linear` layout: input rows, output columns).
    pub fn pack(w: &[f32], k: usize, n: usize, precision: Precision) -> Self {
        assert_eq!(w.len(), k * n, "pack: {k} x {n} matrix expected");
        let panels = n.div_ceil(NR);
        let at = |kk: usize, col: usize| if col < n { w[kk * n + col] } else { 0.0 };
        let store = match precision {
            Precision::F32 | Precision::F16 => {
                let mut out = vec![0f32; panels * k * NR];
                for p in 0..panels {
                    for kk in 0..k {
                        let row = &mut out[(p * k + kk) * NR..][..NR];
                        for (c, v) in row.iter_mut().enumerate() {
                            *v = at(kk, p * NR + c);
                        }
                    }
                }
                if precision == Precision::F32 {
                    Store::F32(out)
                } else {
                    let mut half = vec![f16::ZERO; out.len()];
                    half.convert_from_f32_slice(&out);
                    Store::F16(half)
                }
            }
            Precision::Q8 => {
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
    pub fn precision(&self) -> Precision {
        match self.store {
            Store::F32(_) => Precision::F32,
            Store::F16(_) => Precision::F16,
            Store::Q8 { .. } => Precision::Q8,
        }
    }

    /// Bytes held by the packed values (and scales).
    pub fn bytes(&self) -> usize {
        match &self.store {
            Store::F32(v) => v.len() * 4,
            Store::F16(v) => v.len() * 2,
            Store::Q8 { q, scales } => q.len() + scales.len() * 4,
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
    fn block<'a>(&'a self, p: usize, k0: usize, kc: usize, buf: &'a mut [f32]) -> &'a [f32] {
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

/// Register tile `MR × W` over `kc` steps, portably: `a` is `kc` steps of `MR` values, `b` is
/// `kc` rows of [`NR`] of which columns `off..off + W` are used. Adds the sums into `c` (row
/// stride `ldc`) for the `rows × cols` that exist.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tile_portable<const MR: usize, const W: usize>(
    a: &[f32],
    b: &[f32],
    off: usize,
    c: &mut [f32],
    ldc: usize,
    rows: usize,
    cols: usize,
) {
    let mut acc = [[0f32; W]; MR];
    for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        let bw: &[f32; W] = bp[off..off + W].try_into().expect("W columns");
        for i in 0..MR {
            let ai = ap[i];
            for j in 0..W {
                acc[i][j] += ai * bw[j];
            }
        }
    }
    add_tile(&acc, c, ldc, rows, cols);
}

/// Adds the first `rows × cols` of a register tile into `c` (row stride `ldc`).
#[inline(always)]
fn add_tile<const MR: usize, const W: usize>(
    tile: &[[f32; W]; MR],
    c: &mut [f32],
    ldc: usize,
    rows: usize,
    cols: usize,
) {
    for (i, row) in tile.iter().enumerate().take(rows) {
        for (d, v) in c[i * ldc..][..cols].iter_mut().zip(row) {
            *d += v;
        }
    }
}

/// The AVX-512 tile: 8 rows × 32 columns in 16 registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(unsafe_code, clippy::too_many_arguments)]
fn tile_avx512(
    a: &[f32],
    b: &[f32],
    _off: usize,
    c: &mut [f32],
    ldc: usize,
    rows: usize,
    cols: usize,
) {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_ps(); 16];
    for (ap, bp) in a.chunks_exact(8).zip(b.chunks_exact(NR)) {
        let ap: &[f32; 8] = ap.try_into().expect("8 rows");
        let bp: &[f32; NR] = bp.try_into().expect("NR columns");
        // SAFETY: `bp` holds 32 values; the two loads read 16 each.
        let (b0, b1) =
            unsafe { (_mm512_loadu_ps(bp.as_ptr()), _mm512_loadu_ps(bp.as_ptr().add(16))) };
        for i in 0..8 {
            let ai = _mm512_set1_ps(ap[i]);
            acc[2 * i] = _mm512_fmadd_ps(ai, b0, acc[2 * i]);
            acc[2 * i + 1] = _mm512_fmadd_ps(ai, b1, acc[2 * i + 1]);
        }
    }
    if rows == 8 && cols == 32 {
        // The whole tile exists: add it into `c` in registers (the same `c + sum` as below).
        for (i, pair) in acc.chunks_exact(2).enumerate() {
            let row = &mut c[i * ldc..][..32];
            // SAFETY: `row` holds 32 values; each load and store covers 16 of them.
            unsafe {
                let p = row.as_mut_ptr();
                _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), pair[0]));
                _mm512_storeu_ps(p.add(16), _mm512_add_ps(_mm512_loadu_ps(p.add(16)), pair[1]));
            }
        }
        return;
    }
    add_tile(&spill_avx512::<8>(&acc), c, ldc, rows, cols);
}

/// A tile of `MR` rows held as pairs of 16-lane registers, written out as `[[f32; 32]; MR]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(unsafe_code)]
fn spill_avx512<const MR: usize>(acc: &[std::arch::x86_64::__m512]) -> [[f32; 32]; MR] {
    use std::arch::x86_64::*;
    let mut tile = [[0f32; 32]; MR];
    for (row, pair) in tile.iter_mut().zip(acc.chunks_exact(2)) {
        // SAFETY: `row` holds 32 values; the two stores write 16 each.
        unsafe {
            _mm512_storeu_ps(row.as_mut_ptr(), pair[0]);
            _mm512_storeu_ps(row.as_mut_ptr().add(16), pair[1]);
        }
    }
    tile
}

/// The AVX2 tile: 6 rows × 16 columns in 12 registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(unsafe_code, clippy::too_many_arguments)]
fn tile_avx2(
    a: &[f32],
    b: &[f32],
    off: usize,
    c: &mut [f32],
    ldc: usize,
    rows: usize,
    cols: usize,
) {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_ps(); 12];
    for (ap, bp) in a.chunks_exact(6).zip(b.chunks_exact(NR)) {
        let ap: &[f32; 6] = ap.try_into().expect("6 rows");
        let bw: &[f32; 16] = bp[off..off + 16].try_into().expect("16 columns");
        // SAFETY: `bw` holds 16 values; the two loads read 8 each.
        let (b0, b1) =
            unsafe { (_mm256_loadu_ps(bw.as_ptr()), _mm256_loadu_ps(bw.as_ptr().add(8))) };
        for i in 0..6 {
            let ai = _mm256_set1_ps(ap[i]);
            acc[2 * i] = _mm256_fmadd_ps(ai, b0, acc[2 * i]);
            acc[2 * i + 1] = _mm256_fmadd_ps(ai, b1, acc[2 * i + 1]);
        }
    }
    if rows == 6 && cols == 16 {
        // The whole tile exists: add it into `c` in registers (the same `c + sum` as below).
        for (i, pair) in acc.chunks_exact(2).enumerate() {
            let row = &mut c[i * ldc..][..16];
            // SAFETY: `row` holds 16 values; each load and store covers 8 of them.
            unsafe {
                let p = row.as_mut_ptr();
                _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), pair[0]));
                _mm256_storeu_ps(p.add(8), _mm256_add_ps(_mm256_loadu_ps(p.add(8)), pair[1]));
            }
        }
        return;
    }
    let mut tile = [[0f32; 16]; 6];
    for (i, row) in tile.iter_mut().enumerate() {
        // SAFETY: `row` holds 16 values; the two stores write 8 each.
        unsafe {
            _mm256_storeu_ps(row.as_mut_ptr(), acc[2 * i]);
            _mm256_storeu_ps(row.as_mut_ptr().add(8), acc[2 * i + 1]);
        }
    }
    add_tile(&tile, c, ldc, rows, cols);
}

/// Which micro-kernel this machine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// 8 × 32 tiles, 512-bit registers.
    Avx512,
    /// 6 × 16 tiles, AVX2 + FMA.
    Avx2,
    /// 4 × 16 tiles, whatever the compiler targets (wasm `simd128`, NEON, SSE2).
    Portable,
}

impl Isa {
    /// The best kernel this CPU supports (`ROUTELMT_ISA=avx2|portable` lowers it, for tests
    /// and benchmarks).
    pub fn detect() -> Self {
        let cap = std::env::var("ROUTELMT_ISA").ok();
        #[cfg(target_arch = "x86_64")]
        {
            let allow = |name: &str| match cap.as_deref() {
                None => true,
                Some("avx512") => true,
                Some("avx2") => name != "avx512",
                Some(_) => false,
            };
            let avx2 =
                std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
            if allow("avx512") && avx2 && std::is_x86_feature_detected!("avx512f") {
                return Self::Avx512;
            }
            if allow("avx2") && avx2 {
                return Self::Avx2;
            }
        }
        let _ = cap;
        Self::Portable
    }

    /// Whether this CPU can run the kernel.
    pub fn supported(self) -> bool {
        match self {
            Self::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => {
                std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => Self::Avx2.supported() && std::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Whether int8 weights run on the int8 kernel (AVX-512 VNNI) rather than widened to f32.
    pub fn int8(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if self == Self::Avx512 {
            return std::is_x86_feature_detected!("avx512vnni");
        }
        false
    }

    /// Rows per micro-panel of `A`.
    pub fn mr(self) -> usize {
        match self {
            Self::Avx512 => 8,
            Self::Avx2 => 6,
            Self::Portable => 4,
        }
    }

    /// Name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Avx512 if self.int8() => "avx512+vnni",
            Self::Avx512 => "avx512",
            Self::Avx2 => "avx2+fma",
            Self::Portable => "portable",
        }
    }
}

/// Arguments of one panel group's work, shared by the ISA-specific entry points.
struct Job<'a> {
    buf: &'a mut [f32],
    apack: &'a [f32],
    kfull: usize,
    m: usize,
    w: &'a PackedMatrix,
    panels: std::ops::Range<usize>,
    out: &'a mut [f32],
    ldo: usize,
}

/// The blocked loops around a tile function of `MR` rows and `W` columns.
macro_rules! run_job {
    ($job:expr, $tile:expr, $mr:expr, $w:expr) => {{
        let Job { buf, apack, kfull, m, w, panels, out, ldo } = $job;
        for k0 in (0..kfull).step_by(KC) {
            let kc = KC.min(kfull - k0);
            for (j, p) in panels.clone().enumerate() {
                let b = w.block(p, k0, kc, buf);
                let cols = NR.min(w.n - p * NR);
                let c = &mut out[j * NR..];
                for (t, i0) in (0..m).step_by($mr).enumerate() {
                    let a = &apack[(t * kfull + k0) * $mr..][..kc * $mr];
                    let rows = $mr.min(m - i0);
                    let mut off = 0;
                    while off < cols {
                        $tile(a, b, off, &mut c[i0 * ldo + off..], ldo, rows, $w.min(cols - off));
                        off += $w;
                    }
                }
            }
        }
    }};
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn run_avx512(job: Job<'_>) {
    run_job!(job, tile_avx512, 8, 32)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn run_avx2(job: Job<'_>) {
    run_job!(job, tile_avx2, 6, 16)
}

/// 4 × 16 where SIMD registers are many (aarch64 NEON has 32); 4 × 8 on wasm32, whose engines
/// map `v128` onto x86-64's 16 XMM registers: 16 accumulators there spill to the stack.
fn run_portable(job: Job<'_>) {
    #[cfg(target_arch = "wasm32")]
    run_job!(job, tile_portable::<4, 8>, 4, 8);
    #[cfg(not(target_arch = "wasm32"))]
    run_job!(job, tile_portable::<4, 16>, 4, 16);
}

#[allow(unsafe_code)]
fn dispatch(isa: Isa, job: Job<'_>) {
    match isa {
        // SAFETY: `Isa::detect` returned these only after `is_x86_feature_detected!` confirmed
        // every feature the functions enable.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { run_avx512(job) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { run_avx2(job) },
        _ => run_portable(job),
    }
}

thread_local! {
    /// Per-thread buffer for widened f16/q8 panel blocks.
    static BUF: RefCell<Vec<f32>> = RefCell::new(vec![0f32; KC * NR]);
}

/// Packs `a` (`[m, k]` row-major) into `MR`-row micro-panels, zero-padded to a multiple of MR.
fn pack_a(a: &[f32], m: usize, k: usize, mr: usize) -> Vec<f32> {
    let tiles = m.div_ceil(mr);
    let mut out = vec![0f32; tiles * k * mr];
    let fill = |t: usize, dst: &mut [f32]| {
        for i in 0..mr.min(m - t * mr) {
            let row = &a[(t * mr + i) * k..][..k];
            for (kk, v) in row.iter().enumerate() {
                dst[kk * mr + i] = *v;
            }
        }
    };
    super::for_rows(&mut out, k * mr, fill);
    out
}

/// Activations quantized for the int8 kernel: per row and block of 32 steps, int8 values with
/// an f32 scale, in `MR`-row micro-panels: `a[((t * kblocks + kb) * 8 + g) * MR + i]` holds
/// row `t·MR + i`'s 4 bytes of group `g`; `s[(t * kblocks + kb) * MR + i]` its scale and
/// `zero` (same index) `-128 · Σ a`, which removes the weights' zero point from the sum.
// Read only by the x86-64 int8 kernel; elsewhere `Isa::int8` is false and this is never built.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct QuantA {
    a: Vec<i32>,
    s: Vec<f32>,
    zero: Vec<i32>,
    kblocks: usize,
}

/// One micro-panel's quantized values, scales and zero sums, with its index.
type TileParts<'a> = (usize, ((&'a mut [i32], &'a mut [f32]), &'a mut [i32]));

/// `x` rounded to the nearest integer, ties to even, for `|x| ≤ 2²²`: adding and removing
/// 1.5·2²³ leaves no fraction bits. Two plain additions, so the loop around it vectorizes
/// (`f32::round` is a library call per value on baseline x86-64). llama.cpp's SIMD Q8_0
/// quantization rounds ties to even too.
#[inline(always)]
fn round_small(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (x + MAGIC) - MAGIC
}

fn quantize_a(a: &[f32], m: usize, k: usize, mr: usize) -> QuantA {
    let kblocks = k.div_ceil(QBLOCK);
    let tiles = m.div_ceil(mr);
    let mut qa = vec![0i32; tiles * kblocks * 8 * mr];
    let mut s = vec![0f32; tiles * kblocks * mr];
    let mut zero = vec![0i32; tiles * kblocks * mr];
    let per_tile = kblocks * 8 * mr;
    let fill = |(t, ((qt, st), zt)): TileParts<'_>| {
        for i in 0..mr.min(m - t * mr) {
            let row = &a[(t * mr + i) * k..][..k];
            for kb in 0..kblocks {
                let vals = &row[kb * QBLOCK..((kb + 1) * QBLOCK).min(k)];
                let amax = vals.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d = amax / 127.0;
                let inv = if d == 0.0 { 0.0 } else { 1.0 / d };
                st[kb * mr + i] = d;
                let mut bytes = [0u8; QBLOCK];
                let mut sum = 0i32;
                for (b, v) in bytes.iter_mut().zip(vals) {
                    let q = round_small(v * inv) as i32;
                    sum += q;
                    *b = q as i8 as u8;
                }
                zt[kb * mr + i] = -128 * sum;
                for g in 0..8 {
                    let word = i32::from_le_bytes(bytes[g * 4..g * 4 + 4].try_into().expect("4"));
                    qt[(kb * 8 + g) * mr + i] = word;
                }
            }
        }
    };
    #[cfg(any(not(target_arch = "wasm32"), target_feature = "atomics"))]
    qa.par_chunks_mut(per_tile)
        .zip(s.par_chunks_mut(kblocks * mr))
        .zip(zero.par_chunks_mut(kblocks * mr))
        .enumerate()
        .for_each(fill);
    #[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
    qa.chunks_mut(per_tile)
        .zip(s.chunks_mut(kblocks * mr))
        .zip(zero.chunks_mut(kblocks * mr))
        .enumerate()
        .for_each(fill);
    QuantA { a: qa, s, zero, kblocks }
}

/// Rows per micro-panel of the int8 kernel.
const MR_Q8: usize = 6;

/// The AVX-512 VNNI tile: 6 rows × 32 columns over all of `K`, int8 products summed in i32
/// per block of 32 steps (`vpdpbusd`), then scaled into f32 sums.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
#[allow(unsafe_code, clippy::too_many_arguments)]
fn tile_q8_avx512(
    a: &[i32],
    sa: &[f32],
    za: &[i32],
    q: &[u8],
    sb: &[f32],
    c: &mut [f32],
    ldc: usize,
    rows: usize,
    cols: usize,
) {
    use std::arch::x86_64::*;
    const MR: usize = MR_Q8;
    let mut f = [_mm512_setzero_ps(); 2 * MR];
    let blocks = sa.len() / MR;
    for kb in 0..blocks {
        let qb: &[u8; QBLOCK * NR] =
            q[kb * QBLOCK * NR..][..QBLOCK * NR].try_into().expect("block");
        let zab: &[i32; MR] = za[kb * MR..][..MR].try_into().expect("a zero sums");
        let sbb: &[f32; NR] = sb[kb * NR..][..NR].try_into().expect("scales");
        let ab: &[i32; 8 * MR] = a[kb * 8 * MR..][..8 * MR].try_into().expect("a block");
        let sab: &[f32; MR] = sa[kb * MR..][..MR].try_into().expect("a scales");
        let mut acc = [_mm512_setzero_si512(); 2 * MR];
        for i in 0..MR {
            acc[2 * i] = _mm512_set1_epi32(zab[i]);
            acc[2 * i + 1] = acc[2 * i];
        }
        for g in 0..8 {
            // SAFETY: group g spans bytes g·128 .. g·128 + 128 of the 1024-byte block.
            let (b0, b1) = unsafe {
                let p = qb.as_ptr().add(g * 4 * NR);
                (_mm512_loadu_si512(p.cast()), _mm512_loadu_si512(p.add(64).cast()))
            };
            for i in 0..MR {
                let av = _mm512_set1_epi32(ab[g * MR + i]);
                acc[2 * i] = _mm512_dpbusd_epi32(acc[2 * i], b0, av);
                acc[2 * i + 1] = _mm512_dpbusd_epi32(acc[2 * i + 1], b1, av);
            }
        }
        // SAFETY: `sbb` holds 32 values; the two loads read 16 each.
        let (s0, s1) =
            unsafe { (_mm512_loadu_ps(sbb.as_ptr()), _mm512_loadu_ps(sbb.as_ptr().add(16))) };
        for i in 0..MR {
            let si = _mm512_set1_ps(sab[i]);
            f[2 * i] =
                _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[2 * i]), _mm512_mul_ps(s0, si), f[2 * i]);
            f[2 * i + 1] = _mm512_fmadd_ps(
                _mm512_cvtepi32_ps(acc[2 * i + 1]),
                _mm512_mul_ps(s1, si),
                f[2 * i + 1],
            );
        }
    }
    add_tile(&spill_avx512::<MR>(&f), c, ldc, rows, cols);
}

/// One panel group of the int8 product (AVX-512 VNNI).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
fn run_q8_avx512(
    qa: &QuantA,
    m: usize,
    w: &PackedMatrix,
    panels: std::ops::Range<usize>,
    out: &mut [f32],
    ldo: usize,
) {
    let Store::Q8 { q, scales } = &w.store else { unreachable!("q8 weights") };
    let kb = qa.kblocks;
    for (j, p) in panels.enumerate() {
        let cols = NR.min(w.n - p * NR);
        let qp = &q[p * kb * QBLOCK * NR..][..kb * QBLOCK * NR];
        let sp = &scales[p * kb * NR..][..kb * NR];
        for (t, i0) in (0..m).step_by(MR_Q8).enumerate() {
            let a = &qa.a[t * kb * 8 * MR_Q8..][..kb * 8 * MR_Q8];
            let sa = &qa.s[t * kb * MR_Q8..][..kb * MR_Q8];
            let za = &qa.zero[t * kb * MR_Q8..][..kb * MR_Q8];
            let rows = MR_Q8.min(m - i0);
            tile_q8_avx512(a, sa, za, qp, sp, &mut out[i0 * ldo + j * NR..], ldo, rows, cols);
        }
    }
}

/// Panels per parallel task: [`GROUP_MANY`] from [`MANY_ROWS`] rows on, else [`GROUP_FEW`].
const GROUP_FEW: usize = 2;
const GROUP_MANY: usize = 4;

/// From this many rows on, tasks take [`GROUP_MANY`] panels.
const MANY_ROWS: usize = 288;

/// The activations, packed for the kernel that will run.
enum PackedA {
    F32(Vec<f32>),
    Int8(QuantA),
}

/// Parts of one [`matmul`]'s time, in seconds (zero unless the clock was asked for).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GemmSplit {
    /// Packing (f32) or quantizing (int8 kernel) the activations into micro-panels.
    pub packing: f64,
    /// Copying per-task column stripes into the output, with the bias.
    pub copies: f64,
}

/// `out[m, n] = a[m, k] · w` (+ `bias` per column), with `w` packed. `out` is overwritten.
///
/// Parallel tasks take groups of column panels, each computing all `m` rows of its columns
/// into its own stripe; the stripes are then copied into `out`.
pub fn matmul(
    isa: Isa,
    a: &[f32],
    m: usize,
    w: &PackedMatrix,
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    matmul_split(isa, a, m, w, bias, out, false);
}

/// [`matmul`], also returning how long packing and copies took when `clock` is set.
pub fn matmul_split(
    isa: Isa,
    a: &[f32],
    m: usize,
    w: &PackedMatrix,
    bias: Option<&[f32]>,
    out: &mut [f32],
    clock: bool,
) -> GemmSplit {
    let (k, n) = (w.k, w.n);
    assert_eq!(a.len(), m * k, "matmul: A is not [{m}, {k}]");
    assert_eq!(out.len(), m * n, "matmul: C is not [{m}, {n}]");
    let mut split = GemmSplit::default();
    if m == 0 || n == 0 {
        return split;
    }
    let panels = n.div_ceil(NR);
    let t = super::Stopwatch::start(clock);
    let packed = if isa.int8() && w.precision() == Precision::Q8 {
        PackedA::Int8(quantize_a(a, m, k, MR_Q8))
    } else {
        PackedA::F32(pack_a(a, m, k, isa.mr()))
    };
    split.packing = t.secs();
    // All rows times panels `ps`, added into `stripe` (`m` rows of the panels' width).
    let run = |ps: std::ops::Range<usize>, stripe: &mut [f32]| {
        let ldo = ps.len() * NR;
        match &packed {
            PackedA::Int8(qa) => run_int8(qa, m, w, ps, stripe, ldo),
            PackedA::F32(apack) => BUF.with(|buf| {
                let buf = &mut buf.borrow_mut();
                let job = Job { buf, apack, kfull: k, m, w, panels: ps, out: stripe, ldo };
                dispatch(isa, job);
            }),
        }
    };
    // Tasks take groups of column panels: each streams its columns of the weights from memory
    // once and runs every row against them, into its own stripe, copied into `out` after.
    // (Splitting by rows instead made every task stream all the weights: 0.8× as fast at
    // 16 × 64 tokens.) Wider groups for many rows, more tasks for few.
    let group = if m >= MANY_ROWS { GROUP_MANY } else { GROUP_FEW };
    let groups = panels.div_ceil(group);
    let work = |g: usize| {
        let ps = g * group..((g + 1) * group).min(panels);
        let mut stripe = vec![0f32; m * ps.len() * NR];
        run(ps, &mut stripe);
        stripe
    };
    #[cfg(any(not(target_arch = "wasm32"), target_feature = "atomics"))]
    let stripes: Vec<Vec<f32>> = (0..groups).into_par_iter().map(work).collect();
    #[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
    let stripes: Vec<Vec<f32>> = (0..groups).map(work).collect();
    let t = super::Stopwatch::start(clock);
    gather(&stripes, group, m, n, bias, out);
    split.copies = t.secs();
    split
}

/// The int8 product of one panel group (only called when [`Isa::int8`] holds).
#[allow(unsafe_code)]
fn run_int8(
    qa: &QuantA,
    m: usize,
    w: &PackedMatrix,
    panels: std::ops::Range<usize>,
    out: &mut [f32],
    ldo: usize,
) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `Isa::int8` confirmed AVX-512F and AVX-512 VNNI at run time.
    unsafe {
        run_q8_avx512(qa, m, w, panels, out, ldo)
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("no int8 kernel here: {} {m} {w:?} {panels:?} {} {ldo}", qa.kblocks, out.len())
}

/// Copies per-task column stripes into `out`'s rows and adds the bias.
fn gather(
    stripes: &[Vec<f32>],
    group: usize,
    m: usize,
    n: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    // Stripes into rows, then the bias, one output row per task.
    let gather = |i: usize, row: &mut [f32]| {
        for (g, stripe) in stripes.iter().enumerate() {
            let c0 = g * group * NR;
            let width = stripe.len() / m;
            let cols = width.min(n - c0);
            row[c0..c0 + cols].copy_from_slice(&stripe[i * width..][..cols]);
        }
        if let Some(bias) = bias {
            for (o, b) in row.iter_mut().zip(bias) {
                *o += b;
            }
        }
    };
    super::for_rows(out, n, gather);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(a: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0f64; m * n];
        for i in 0..m {
            for kk in 0..k {
                for j in 0..n {
                    c[i * n + j] += a[i * k + kk] as f64 * w[kk * n + j] as f64;
                }
            }
        }
        c.into_iter().map(|v| v as f32).collect()
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) as f32 / u32::MAX as f32 - 0.5)
            .collect()
    }

    #[test]
    fn every_kernel_matches_a_float64_reference_on_ragged_shapes() {
        let isas = [Isa::detect(), Isa::Avx2, Isa::Portable];
        for &(m, k, n) in
            &[(1, 1, 1), (7, 33, 45), (13, 300, 70), (64, 513, 96), (9, 64, 32), (301, 70, 40)]
        {
            let (a, w) = (values(m * k, 1), values(k * n, 2));
            let want = reference(&a, &w, m, k, n);
            let bias = values(n, 3);
            for isa in isas {
                if !isa.supported() {
                    continue;
                }
                let packed = PackedMatrix::pack(&w, k, n, Precision::F32);
                assert_eq!(packed.unpack(), w);
                let mut c = vec![f32::NAN; m * n];
                matmul(isa, &a, m, &packed, Some(&bias), &mut c);
                for (i, (got, want)) in c.iter().zip(&want).enumerate() {
                    let want = want + bias[i % n];
                    assert!(
                        (got - want).abs() <= 1e-5 * (k as f32).sqrt(),
                        "{isa:?} {m}x{k}x{n} at {i}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn f16_and_q8_weights_compute_with_their_rounded_values() {
        for m in [5, 300] {
            let (k, n) = (100, 40);
            let (a, w) = (values(m * k, 4), values(k * n, 5));
            for precision in [Precision::F16, Precision::Q8] {
                let packed = PackedMatrix::pack(&w, k, n, precision);
                let rounded = packed.unpack();
                let max_err =
                    w.iter().zip(&rounded).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
                let bound =
                    if precision == Precision::F16 { 2.5e-4 } else { 0.5 / 127.0 * 0.5 + 1e-7 };
                assert!(max_err > 0.0 && max_err <= bound, "{precision}: rounding error {max_err}");
                let want = reference(&a, &rounded, m, k, n);
                for isa in [Isa::detect(), Isa::Portable] {
                    let mut c = vec![0f32; m * n];
                    matmul(isa, &a, m, &packed, None, &mut c);
                    // The int8 kernel also rounds the activations to int8 per block of 32.
                    let int8 = isa.int8() && precision == Precision::Q8;
                    let scale = want.iter().fold(0f32, |s, v| s.max(v.abs()));
                    let tol = if int8 { 1e-2 * scale } else { 1e-4 };
                    let worst =
                        c.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0f32, f32::max);
                    assert!(worst <= tol, "{precision} {isa:?}: max error {worst:e} > {tol:e}");
                }
            }
        }
        let (k, n) = (128, 64);
        let q = PackedMatrix::pack(&values(k * n, 7), k, n, Precision::Q8);
        assert_eq!(q.bytes() * 32, k * n * 36, "32 int8 and one f32 scale per 32 weights");
    }

    #[test]
    fn round_small_is_round_ties_even() {
        let mut xs: Vec<f32> = (-1300..=1300).map(|i| i as f32 * 0.1).collect();
        xs.extend((-300..=300).map(|i| i as f32 + 0.5)); // every tie in the int8 range
        xs.extend([0.49999997, -0.49999997, 126.99999, -127.0, 4194304.0, -4194303.5]);
        for x in xs {
            assert_eq!(round_small(x), x.round_ties_even(), "{x}");
        }
    }

    #[test]
    fn q8_requantization_of_q8_values_is_lossless() {
        // GGUF Q8_0 weights arrive dequantized (q · d); packing them again as q8 must give back
        // exactly the same values.
        let (k, n) = (64, 32);
        let w = values(k * n, 6);
        let once = PackedMatrix::pack(&w, k, n, Precision::Q8).unpack();
        let twice = PackedMatrix::pack(&once, k, n, Precision::Q8).unpack();
        assert_eq!(once, twice);
        // GGUF's own Q8_0: f16 scales `d`, int8 `q` with ±127 in every block (llama.cpp sets
        // d = amax / 127), stored along the input dimension: `w[kk, c] = q · d[block, c]`.
        let gguf: Vec<f32> = (0..k * n)
            .map(|i| {
                let (kk, c) = (i / n, i % n);
                let d = f16::from_f32(0.001 + 0.0137 * ((c * 7 + kk / 32) % 11) as f32).to_f32();
                let q = if kk % 32 == c % 32 { 127 } else { ((i * 37) % 255) as i32 - 127 };
                q as f32 * d
            })
            .collect();
        assert_eq!(PackedMatrix::pack(&gguf, k, n, Precision::Q8).unpack(), gguf);
    }
}
