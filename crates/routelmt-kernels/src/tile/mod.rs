//! Register tiles (micro-kernels) of the f32 GEMM, one file per instruction set, and the
//! per-ISA entry points that run [`crate::gemm`]'s blocked loops around them.
//!
//! A tile adds `A`'s micro-panel (`kc` steps of `MR` values) times one packed panel block
//! (`kc` rows of 32) into `MR × W` values of `C`. The x86 tiles fuse multiply-adds; the
//! portable one multiplies and adds (a software `fmaf` would be far slower on wasm32).

pub(crate) mod portable;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

/// Adds the first `rows × cols` of a register tile into `c` (row stride `ldc`).
#[inline(always)]
pub(crate) fn add_tile<const MR: usize, const W: usize>(
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
