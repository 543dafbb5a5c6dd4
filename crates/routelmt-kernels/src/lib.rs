//! The CPU prefill's kernels, on plain host slices (no burn, no model types): the packed
//! matrix product in f32, f16 or q8 with per-ISA micro-kernels, causal attention, and the row
//! operations of a decoder block. `routelmt-model`'s `cpu` module converts a burn decoder into
//! packed weights and runs its blocks on these.
//!
//! Results do not depend on the number of threads: every output value is computed by one
//! thread in a fixed order. Builds for wasm32 (`simd128`; threads only with `+atomics`).
//!
//! Module map:
//! - `pack`: store formats ([`PackFormat`]), [`PackedMatrix`] (32-column panels, packed once
//!   at load), q8 quantization and the widening of f16/q8 panel blocks to f32.
//! - `gemm`: [`matmul`] / [`matmul_split`]: packing the activations into micro-panels, the
//!   blocked loops (`Job`, `run_job!`), dispatch to the ISA's tile, threads over column
//!   panels, and the gather of their stripes into the output with the bias.
//! - `tile`: the f32 register tiles, `tile/portable.rs` (4 × 16; 4 × 8 on wasm32) and
//!   `tile/x86.rs` (AVX-512 8 × 32, AVX2 + FMA 6 × 16).
//! - `int8`: q8 weights on AVX-512 VNNI: activations rounded to int8 per block of 32, the
//!   `vpdpbusd` tile.
//! - `isa`: [`Isa`], the micro-kernel this CPU runs (detected at run time, `ROUTELMT_ISA`
//!   lowers it).
//! - `attention`: [`attend`], one query's causal softmax attention over fused q/k/v rows
//!   ([`AttnShape`]).
//! - `ops`: row operations: [`for_rows`] (rayon or a plain loop), [`threads`], [`rms_norm`]
//!   and [`rms_norm_rows`], [`add_rows`], [`select_rows`], [`silu_up_rows`], host RoPE
//!   ([`HostRope`]) and [`qk_norm_rope`].
//! - `clock`: [`Stopwatch`], a clock read only when a profile was asked for.

// The one crate of the workspace that uses `unsafe`: `std::arch` intrinsics and calls into
// `#[target_feature]` functions after run-time detection. Every block says why it is sound
// (`// SAFETY:`). Allowed here because Cargo cannot override one workspace lint per crate.
#![allow(unsafe_code)]

mod attention;
mod clock;
mod gemm;
mod int8;
mod isa;
mod ops;
mod pack;
mod tile;

pub use attention::{AttnShape, attend};
pub use clock::Stopwatch;
pub use gemm::{GemmSplit, matmul, matmul_split};
pub use isa::Isa;
pub use ops::{
    HostRope, add_rows, for_rows, qk_norm_rope, rms_norm, rms_norm_rows, select_rows, silu_up_rows,
    threads,
};
pub use pack::{PackFormat, PackedMatrix, q4_block};

#[cfg(test)]
mod tests;
