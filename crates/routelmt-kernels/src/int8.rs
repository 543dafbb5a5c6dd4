//! The int8 path for q8 and q4 weights on a CPU with AVX-512 VNNI: the activations are rounded
//! to int8 per row and block of 32 steps (one f32 scale each, as llama.cpp's `Q8_0 × Q8_0` and
//! `Q4_0 × Q8_0` dots do), `vpdpbusd` sums 4 products per lane in i32, and each block's sum is
//! scaled into f32. q4 nibbles are split into bytes in registers (`vpand`, `vpsrlw`) and run
//! the same instruction. Elsewhere q8/q4 weights are widened to f32 and run on the f32 tiles.

#[cfg(any(not(target_arch = "wasm32"), target_feature = "atomics"))]
use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use half::f16;

#[cfg(target_arch = "x86_64")]
use crate::pack::{NR, Store};
use crate::pack::{PackedMatrix, QBLOCK};
#[cfg(target_arch = "x86_64")]
use crate::tile::{add_tile, x86::spill_avx512};

/// Activations quantized for the int8 kernel: per row and block of 32 steps, int8 values with
/// an f32 scale, in `MR`-row micro-panels: `a[((t * kblocks + kb) * 8 + g) * MR + i]` holds
/// row `t·MR + i`'s 4 bytes of group `g`; `s[(t * kblocks + kb) * MR + i]` its scale and
/// `zero` (same index) `-128 · Σ a`, which removes the weights' zero point from the sum.
// Read only by the x86-64 int8 kernel; elsewhere `Isa::int8` is false and this is never built.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct QuantA {
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
pub(crate) fn round_small(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (x + MAGIC) - MAGIC
}

pub(crate) fn quantize_a(a: &[f32], m: usize, k: usize, mr: usize) -> QuantA {
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
pub(crate) const MR_Q8: usize = 6;

/// The AVX-512 VNNI tile: 6 rows × 32 columns over all of `K`, int8 products summed in i32
/// per block of 32 steps (`vpdpbusd`), then scaled into f32 sums.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
#[allow(clippy::too_many_arguments)]
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

/// The AVX-512 VNNI tile for q4 weights: each group's 64 bytes split into their low nibbles
/// (columns 0–15) and high nibbles (16–31), unsigned 0..15, summed against the int8
/// activations by `vpdpbusd`; per block, `Σ (q · d + m) · a = d · Σ q · a + m · Σ a`, with
/// `Σ a = -za / 128` (`za` is `-128 · Σ a`) and `d`, `m` widened from f16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[allow(clippy::too_many_arguments)]
fn tile_q4_avx512(
    a: &[i32],
    sa: &[f32],
    za: &[i32],
    q: &[u8],
    (d, m): (&[f16], &[f16]),
    c: &mut [f32],
    ldc: usize,
    rows: usize,
    cols: usize,
) {
    use std::arch::x86_64::*;
    const MR: usize = MR_Q8;
    const BYTES: usize = QBLOCK * NR / 2;
    let mut f = [_mm512_setzero_ps(); 2 * MR];
    let low = _mm512_set1_epi8(0x0F);
    let blocks = sa.len() / MR;
    for kb in 0..blocks {
        let qb: &[u8; BYTES] = q[kb * BYTES..][..BYTES].try_into().expect("block");
        let zab: &[i32; MR] = za[kb * MR..][..MR].try_into().expect("a zero sums");
        let db: &[f16; NR] = d[kb * NR..][..NR].try_into().expect("scales");
        let mb: &[f16; NR] = m[kb * NR..][..NR].try_into().expect("minimums");
        let ab: &[i32; 8 * MR] = a[kb * 8 * MR..][..8 * MR].try_into().expect("a block");
        let sab: &[f32; MR] = sa[kb * MR..][..MR].try_into().expect("a scales");
        let mut acc = [_mm512_setzero_si512(); 2 * MR];
        for g in 0..8 {
            // SAFETY: group g spans bytes g·64 .. g·64 + 64 of the 512-byte block.
            let v = unsafe { _mm512_loadu_si512(qb.as_ptr().add(g * 2 * NR).cast()) };
            let b0 = _mm512_and_si512(v, low);
            let b1 = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
            for i in 0..MR {
                let av = _mm512_set1_epi32(ab[g * MR + i]);
                acc[2 * i] = _mm512_dpbusd_epi32(acc[2 * i], b0, av);
                acc[2 * i + 1] = _mm512_dpbusd_epi32(acc[2 * i + 1], b1, av);
            }
        }
        // SAFETY: `db` and `mb` hold 32 halves each; each load reads 16 (32 bytes).
        let (d0, d1, m0, m1) = unsafe {
            let half = |p: *const f16| _mm512_cvtph_ps(_mm256_loadu_si256(p.cast()));
            (
                half(db.as_ptr()),
                half(db.as_ptr().add(16)),
                half(mb.as_ptr()),
                half(mb.as_ptr().add(16)),
            )
        };
        for i in 0..MR {
            let si = _mm512_set1_ps(sab[i]);
            let sum = _mm512_set1_ps(sab[i] * (-zab[i] / 128) as f32);
            f[2 * i] =
                _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[2 * i]), _mm512_mul_ps(d0, si), f[2 * i]);
            f[2 * i] = _mm512_fmadd_ps(m0, sum, f[2 * i]);
            f[2 * i + 1] = _mm512_fmadd_ps(
                _mm512_cvtepi32_ps(acc[2 * i + 1]),
                _mm512_mul_ps(d1, si),
                f[2 * i + 1],
            );
            f[2 * i + 1] = _mm512_fmadd_ps(m1, sum, f[2 * i + 1]);
        }
    }
    add_tile(&spill_avx512::<MR>(&f), c, ldc, rows, cols);
}

/// One panel group of the int8 product (AVX-512 VNNI), q8 or q4 weights.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn run_int8_avx512(
    qa: &QuantA,
    m: usize,
    w: &PackedMatrix,
    panels: std::ops::Range<usize>,
    out: &mut [f32],
    ldo: usize,
) {
    let kb = qa.kblocks;
    for (j, p) in panels.enumerate() {
        let cols = NR.min(w.n - p * NR);
        for (t, i0) in (0..m).step_by(MR_Q8).enumerate() {
            let a = &qa.a[t * kb * 8 * MR_Q8..][..kb * 8 * MR_Q8];
            let sa = &qa.s[t * kb * MR_Q8..][..kb * MR_Q8];
            let za = &qa.zero[t * kb * MR_Q8..][..kb * MR_Q8];
            let rows = MR_Q8.min(m - i0);
            let c = &mut out[i0 * ldo + j * NR..];
            let blocks = p * kb..(p + 1) * kb;
            match &w.store {
                Store::Q8 { q, scales } => {
                    let qp = &q[blocks.start * QBLOCK * NR..blocks.end * QBLOCK * NR];
                    let sp = &scales[blocks.start * NR..blocks.end * NR];
                    tile_q8_avx512(a, sa, za, qp, sp, c, ldo, rows, cols);
                }
                Store::Q4 { q, d, m: mins } => {
                    let qp = &q[blocks.start * QBLOCK * NR / 2..blocks.end * QBLOCK * NR / 2];
                    let sp = blocks.start * NR..blocks.end * NR;
                    let dm = (&d[sp.clone()], &mins[sp]);
                    tile_q4_avx512(a, sa, za, qp, dm, c, ldo, rows, cols);
                }
                _ => unreachable!("q8 or q4 weights"),
            }
        }
    }
}

/// The int8 product of one panel group (only called when [`crate::Isa::int8`] holds).
pub(crate) fn run_int8(
    qa: &QuantA,
    m: usize,
    w: &PackedMatrix,
    panels: std::ops::Range<usize>,
    out: &mut [f32],
    ldo: usize,
) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `Isa::int8` confirmed AVX-512F, AVX-512BW and AVX-512 VNNI at run time.
    unsafe {
        run_int8_avx512(qa, m, w, panels, out, ldo)
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("no int8 kernel here: {} {m} {w:?} {panels:?} {} {ldo}", qa.kblocks, out.len())
}
