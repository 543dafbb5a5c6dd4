//! The matrix product `C[M, N] = A[M, K] · W[K, N]`, with `W` a weight packed once at load
//! ([`PackedMatrix`]) and `A` the activations, packed per call.
//!
//! `A` is cut into micro-panels of `MR` rows, stored column by column (`K` steps of `MR`
//! values). The work is blocked by [`KC`] steps of `K`, so one panel block (32 KiB in f32)
//! stays in L1 while every micro-panel of `A` passes over it. Threads (rayon) take groups of
//! panels: each output column is computed by one thread in a fixed order, so results do not
//! depend on the number of threads.
//!
//! The tiles live in `tile/` (one file per instruction set), the int8 path in `int8.rs`.

use std::cell::RefCell;

#[cfg(any(not(target_arch = "wasm32"), target_feature = "atomics"))]
use rayon::prelude::*;

use crate::Stopwatch;
use crate::int8::{MR_Q8, QuantA, quantize_a, run_int8};
use crate::isa::Isa;
use crate::ops::for_rows;
use crate::pack::{KC, NR, PackFormat, PackedMatrix};
use crate::tile::Job;
use crate::tile::portable::run_portable;
#[cfg(target_arch = "x86_64")]
use crate::tile::x86::{run_avx2, run_avx512};

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
    for_rows(&mut out, k * mr, fill);
    out
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
    let t = Stopwatch::start(clock);
    let packed = if isa.int8() && matches!(w.format(), PackFormat::Q8 | PackFormat::Q4) {
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
    let t = Stopwatch::start(clock);
    gather(&stripes, group, m, n, bias, out);
    split.copies = t.secs();
    split
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
    for_rows(out, n, gather);
}
