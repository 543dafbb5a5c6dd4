//! The portable tile: plain Rust over fixed-size arrays, which the compiler vectorizes for
//! whatever it targets (wasm32 `simd128`, aarch64 NEON, baseline x86-64 SSE2).

use super::{Job, add_tile, run_job};
use crate::pack::NR;

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

/// 4 × 16 where SIMD registers are many (aarch64 NEON has 32); 4 × 8 on wasm32, whose engines
/// map `v128` onto x86-64's 16 XMM registers: 16 accumulators there spill to the stack.
pub(crate) fn run_portable(job: Job<'_>) {
    #[cfg(target_arch = "wasm32")]
    run_job!(job, tile_portable::<4, 8>, 4, 8);
    #[cfg(not(target_arch = "wasm32"))]
    run_job!(job, tile_portable::<4, 16>, 4, 16);
}
