//! Row operations of the CPU decoder on row-major `[rows, width]` host buffers, run in
//! parallel over rows where threads exist: RMSNorm, residual adds, SiLU·up, row selection,
//! and per-head q/k RMSNorm with RoPE on fused q/k/v rows. The arithmetic follows
//! transformers (RMSNorm in f32 as `x · rsqrt(mean(x²) + eps) · w`, `rotate_half` RoPE).

#[cfg(any(not(target_arch = "wasm32"), target_feature = "atomics"))]
use rayon::prelude::*;

use crate::attention::AttnShape;

/// Runs `f(index, chunk)` over `width`-sized chunks of `out`, in parallel where threads exist
/// (the one place that chooses rayon natively and a plain loop in wasm32).
pub fn for_rows(out: &mut [f32], width: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    #[cfg(any(not(target_arch = "wasm32"), target_feature = "atomics"))]
    out.par_chunks_mut(width.max(1)).enumerate().for_each(|(i, c)| f(i, c));
    #[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
    out.chunks_mut(width.max(1)).enumerate().for_each(|(i, c)| f(i, c));
}

/// Threads the CPU kernels spread their work over (1 in the single-threaded wasm build).
pub fn threads() -> usize {
    #[cfg(any(not(target_arch = "wasm32"), target_feature = "atomics"))]
    return rayon::current_num_threads();
    #[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
    1
}

/// transformers' RMSNorm on one vector, in place (`w`: the norm's weight).
#[inline]
pub fn rms_norm(x: &mut [f32], w: &[f32], eps: f32) {
    let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let inv = 1.0 / (ms + eps).sqrt();
    for (v, w) in x.iter_mut().zip(w) {
        *v = *v * inv * w;
    }
}

/// [`rms_norm`] on every `width`-wide row of `x`.
pub fn rms_norm_rows(x: &mut [f32], w: &[f32], eps: f32, width: usize) {
    for_rows(x, width, |_, row| rms_norm(row, w, eps));
}

/// `x += y`, row-parallel.
pub fn add_rows(x: &mut [f32], y: &[f32], width: usize) {
    for_rows(x, width, |r, row| {
        for (a, b) in row.iter_mut().zip(&y[r * width..]) {
            *a += b;
        }
    });
}

/// The rows `rows` of `x` (`width` wide), in that order.
pub fn select_rows(x: &[f32], width: usize, rows: &[usize]) -> Vec<f32> {
    rows.iter().flat_map(|&r| x[r * width..(r + 1) * width].iter().copied()).collect()
}

/// The MLP's activation: `out[r] = silu(gate) · up` where row `r` of `gate_up` is `[gate, up]`,
/// each `width` wide (`out` is `[rows, width]`).
pub fn silu_up_rows(out: &mut [f32], gate_up: &[f32], width: usize) {
    for_rows(out, width, |r, a| {
        let row = &gate_up[r * 2 * width..][..2 * width];
        let (gate, up) = row.split_at(width);
        for ((o, g), u) in a.iter_mut().zip(gate).zip(up) {
            *o = g / (1.0 + (-g).exp()) * u;
        }
    });
}

/// RoPE tables on the host, `[position, head_dim]` each.
#[derive(Debug, Clone, Copy)]
pub struct HostRope<'a> {
    /// `cos(position · inv_freq)`, the frequencies repeated for both halves of a head.
    pub cos: &'a [f32],
    /// `sin(position · inv_freq)`, laid out as `cos`.
    pub sin: &'a [f32],
    /// Half the head dimension.
    pub half: usize,
}

impl HostRope<'_> {
    /// `x·cos + rotate_half(x)·sin` at `pos`, in place.
    #[inline]
    pub fn apply(&self, x: &mut [f32], pos: usize) {
        let d = 2 * self.half;
        let (cos, sin) = (&self.cos[pos * d..][..d], &self.sin[pos * d..][..d]);
        for i in 0..self.half {
            let (a, b) = (x[i], x[i + self.half]);
            x[i] = a * cos[i] - b * sin[i];
            x[i + self.half] = b * cos[i + self.half] + a * sin[i + self.half];
        }
    }
}

/// On fused q/k/v rows (`[tokens, width]`, laid out as `shape` says): each query and key head's
/// RMSNorm (Qwen3's q/k norms, `(weight, eps)`, where the model has them), then RoPE at the
/// row's position `positions[row]`. Values are left alone.
pub fn qk_norm_rope(
    qkv: &mut [f32],
    shape: &AttnShape,
    positions: &[usize],
    q_norm: Option<(&[f32], f32)>,
    k_norm: Option<(&[f32], f32)>,
    rope: &HostRope<'_>,
) {
    let (nq, nkv, d) = (shape.nq, shape.nkv, shape.d);
    for_rows(qkv, shape.width, |row, v| {
        let pos = positions[row];
        let (q, kv) = v.split_at_mut(nq);
        let k = &mut kv[..nkv];
        for head in q.chunks_exact_mut(d) {
            if let Some((w, eps)) = q_norm {
                rms_norm(head, w, eps);
            }
            rope.apply(head, pos);
        }
        for head in k.chunks_exact_mut(d) {
            if let Some((w, eps)) = k_norm {
                rms_norm(head, w, eps);
            }
            rope.apply(head, pos);
        }
    });
}
