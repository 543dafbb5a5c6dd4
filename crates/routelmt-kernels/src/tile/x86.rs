//! The x86-64 tiles, with `std::arch` intrinsics, chosen at run time ([`crate::Isa::detect`]):
//! AVX-512 (8 × 32 tiles: 16 accumulators of 16 lanes) and AVX2 + FMA (6 × 16).

use super::{Job, add_tile, run_job};
use crate::pack::NR;

/// The AVX-512 tile: 8 rows × 32 columns in 16 registers.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
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
#[target_feature(enable = "avx512f")]
pub(crate) fn spill_avx512<const MR: usize>(acc: &[std::arch::x86_64::__m512]) -> [[f32; 32]; MR] {
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
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
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

/// The f32 GEMM's blocked loops around the AVX-512 tile.
#[target_feature(enable = "avx512f,avx2,fma")]
pub(crate) fn run_avx512(job: Job<'_>) {
    run_job!(job, tile_avx512, 8, 32)
}

/// The f32 GEMM's blocked loops around the AVX2 tile.
#[target_feature(enable = "avx2,fma")]
pub(crate) fn run_avx2(job: Job<'_>) {
    run_job!(job, tile_avx2, 6, 16)
}
