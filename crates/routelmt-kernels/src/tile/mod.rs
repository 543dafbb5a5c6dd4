//! Register tiles (micro-kernels) of the f32 GEMM, one file per instruction set, and the
//! per-ISA entry points that run the blocked loops ([`Job`], `run_job!`) around them; the
//! GEMM ([`crate::gemm`]) packs the operands and dispatches to them.
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

/// Arguments of one panel group's work, shared by the ISA-specific entry points.
pub(crate) struct Job<'a> {
    pub(crate) buf: &'a mut [f32],
    pub(crate) apack: &'a [f32],
    pub(crate) kfull: usize,
    pub(crate) m: usize,
    pub(crate) w: &'a crate::pack::PackedMatrix,
    pub(crate) panels: std::ops::Range<usize>,
    pub(crate) out: &'a mut [f32],
    pub(crate) ldo: usize,
}

/// The blocked loops around a tile function of `MR` rows and `W` columns (expanded in each
/// ISA's entry point, `tile/`, so that the loops compile with the tile's target features).
macro_rules! run_job {
    ($job:expr, $tile:expr, $mr:expr, $w:expr) => {{
        use $crate::pack::{KC, NR};
        let $crate::tile::Job { buf, apack, kfull, m, w, panels, out, ldo } = $job;
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

pub(crate) use run_job;
