//! Causal attention of one query over its sequence's keys and values, read from fused q/k/v
//! rows (`[tokens, (H + 2·KV)·D]`): softmax over `q·kᵀ / √D` as transformers computes it, with
//! grouped-query heads (`H / KV` query heads share one key/value head).

use crate::isa::Isa;

/// Where queries, keys and values sit in a fused q/k/v row, and the attention constants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttnShape {
    /// Values per fused row: `nq + 2 · nkv`.
    pub width: usize,
    /// Query values per row (`H · D`), first in the row.
    pub nq: usize,
    /// Key values per row (`KV · D`), after the queries; the values follow the keys.
    pub nkv: usize,
    /// Head dimension `D`.
    pub d: usize,
    /// Query heads per key/value head (`H / KV`).
    pub group: usize,
    /// The score scale, `D^-0.5`.
    pub scale: f32,
}

impl AttnShape {
    /// The shape for `heads` query heads and `kv_heads` key/value heads of `head_dim` values.
    pub fn new(heads: usize, kv_heads: usize, head_dim: usize) -> Self {
        let (nq, nkv) = (heads * head_dim, kv_heads * head_dim);
        Self {
            width: nq + 2 * nkv,
            nq,
            nkv,
            d: head_dim,
            group: heads / kv_heads,
            scale: (head_dim as f32).powf(-0.5),
        }
    }
}

/// `a·b + c`: one fused instruction where the caller is compiled with FMA (`FUSED`), two
/// roundings otherwise (a software `fmaf` would be far slower, e.g. on wasm32).
#[inline(always)]
fn madd<const FUSED: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FUSED { a.mul_add(b, c) } else { a * b + c }
}

/// One query's causal attention over its sequence (every head), into `out` (`[H·D]`).
#[inline(always)]
fn attend_query<const FUSED: bool>(
    qkv: &[f32],
    s: &AttnShape,
    start: usize,
    i: usize,
    out: &mut [f32],
) {
    let d = s.d;
    let q = &qkv[(start + i) * s.width..][..s.nq];
    let mut scores = vec![0f32; i + 1];
    for (head, o) in out.chunks_exact_mut(d).enumerate() {
        let kvh = head / s.group;
        let qh = &q[head * d..][..d];
        for (j, sc) in scores.iter_mut().enumerate() {
            let kj = &qkv[(start + j) * s.width + s.nq + kvh * d..][..d];
            *sc = dot::<FUSED>(qh, kj) * s.scale;
        }
        softmax(&mut scores);
        o.fill(0.0);
        for (j, p) in scores.iter().enumerate() {
            let vj = &qkv[(start + j) * s.width + s.nq + s.nkv + kvh * d..][..d];
            for (oo, vv) in o.iter_mut().zip(vj) {
                *oo = madd::<FUSED>(*p, *vv, *oo);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn attend_avx2(qkv: &[f32], s: &AttnShape, start: usize, i: usize, out: &mut [f32]) {
    attend_query::<true>(qkv, s, start, i, out)
}

/// One query's causal attention, every head, into `out` (`[H·D]`): the query at row
/// `start + i` of `qkv` attends to rows `start..=start + i` (its sequence starts at row
/// `start`). Compiled for the widest vectors `isa` allows.
pub fn attend(isa: Isa, qkv: &[f32], s: &AttnShape, start: usize, i: usize, out: &mut [f32]) {
    match isa {
        // SAFETY: both kernels were chosen after detecting AVX2 and FMA (`Isa::detect`,
        // `Isa::supported`).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 | Isa::Avx2 => unsafe { attend_avx2(qkv, s, start, i, out) },
        _ => attend_query::<false>(qkv, s, start, i, out),
    }
}

#[inline(always)]
fn dot<const FUSED: bool>(a: &[f32], b: &[f32]) -> f32 {
    // Sixteen partial sums, so that the compiler vectorizes without reassociating.
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] = madd::<FUSED>(x[i], y[i], acc[i]);
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for (x, y) in ra.iter().zip(rb) {
        s = madd::<FUSED>(*x, *y, s);
    }
    s
}

fn softmax(s: &mut [f32]) {
    let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in s.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in s.iter_mut() {
        *v /= sum;
    }
}
