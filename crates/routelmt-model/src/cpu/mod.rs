//! The CPU prefill for inference: the decoder's arithmetic on host memory, with weights
//! fused and packed once at load, in f32, f16 or q8 ([`Precision`]).
//!
//! What it does differently from the burn decoder (which stays for training and for wgpu):
//! - **No padding.** The tokens of every sequence in a batch are stacked into one `[tokens,
//!   hidden]` matrix, so each projection is one 2-D GEMM over all real tokens; attention runs
//!   per sequence on its real length.
//! - **Fused projections.** q/k/v are one `[hidden, (H + 2·KV)·D]` weight and gate/up one
//!   `[hidden, 2·I]` weight, packed for the micro-kernel at load ([`gemm::PackedMatrix`]).
//! - **The last block for the last token only.** The routed layer's state is only needed at
//!   each sequence's last token, so the final block computes keys and values for every token
//!   but the query, attention output, o_proj and MLP for one row per sequence.
//!
//! The arithmetic follows transformers (RMSNorm in f32 as `x · rsqrt(mean(x²) + eps) · w`,
//! `rotate_half` RoPE, softmax over `q·kᵀ / √D` with the causal mask, SiLU-gated MLP), so
//! the states match the burn decoder and transformers within the parity bounds.

pub mod gemm;

use std::time::Instant;

#[cfg(any(not(target_arch = "wasm32"), target_feature = "atomics"))]
use rayon::prelude::*;

pub use gemm::{Isa, PackedMatrix, Precision};

use crate::config::ModelConfig;
use crate::decoder::Decoder;
use crate::decoder::block::DecoderLayer;
use crate::decoder::norm::RmsNorm;
use crate::embedding::HostEmbedding;

/// Runs `f(index, chunk)` over `width`-sized chunks of `out`, in parallel where threads exist
/// (the one place that chooses rayon natively and a plain loop in wasm32).
fn for_rows(out: &mut [f32], width: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
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

/// Host values of a burn tensor as f32 (any float dtype; a synchronous read, which the flex
/// device this converts from allows in the browser too).
fn host<const D: usize>(t: burn::tensor::Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().expect("an f32 tensor")
}

/// A linear layer's `[in, out]` weight and bias on the host.
fn linear(l: &burn::nn::Linear) -> (Vec<f32>, usize, usize, Option<Vec<f32>>) {
    let [k, n] = l.weight.dims();
    (host(l.weight.val()), k, n, l.bias.as_ref().map(|b| host(b.val())))
}

/// Concatenates row-major `[k, n_i]` matrices along columns into `[k, Σ n_i]`.
fn concat_columns(parts: &[(&[f32], usize)], k: usize) -> Vec<f32> {
    let n: usize = parts.iter().map(|p| p.1).sum();
    let mut out = Vec::with_capacity(k * n);
    for row in 0..k {
        for (w, width) in parts {
            out.extend_from_slice(&w[row * width..(row + 1) * width]);
        }
    }
    out
}

/// Concatenated optional biases (zeros for parts without one); `None` if no part has one.
fn concat_bias(parts: &[(Option<Vec<f32>>, usize)]) -> Option<Vec<f32>> {
    if parts.iter().all(|p| p.0.is_none()) {
        return None;
    }
    Some(parts.iter().flat_map(|(b, n)| b.clone().unwrap_or_else(|| vec![0.0; *n])).collect())
}

fn norm(n: &RmsNorm) -> (Vec<f32>, f32) {
    (host(n.weight.val()), n.eps as f32)
}

/// One decoder block with fused, packed weights.
#[derive(Clone)]
struct Layer {
    qkv: PackedMatrix,
    qkv_bias: Option<Vec<f32>>,
    o: PackedMatrix,
    o_bias: Option<Vec<f32>>,
    gate_up: PackedMatrix,
    down: PackedMatrix,
    input_norm: (Vec<f32>, f32),
    post_norm: (Vec<f32>, f32),
    q_norm: Option<(Vec<f32>, f32)>,
    k_norm: Option<(Vec<f32>, f32)>,
}

impl Layer {
    fn from_burn(l: &DecoderLayer, precision: Precision) -> Self {
        let a = &l.self_attn;
        let (q, hidden, nq, qb) = linear(&a.q_proj);
        let (k, _, nk, kb) = linear(&a.k_proj);
        let (v, _, nv, vb) = linear(&a.v_proj);
        let qkv = concat_columns(&[(&q, nq), (&k, nk), (&v, nv)], hidden);
        let (o, no_in, no, ob) = linear(&a.o_proj);
        let (g, _, ni, gb) = linear(&l.mlp.gate_proj);
        let (u, _, _, ub) = linear(&l.mlp.up_proj);
        let (d, di, dn, db) = linear(&l.mlp.down_proj);
        assert!(gb.is_none() && ub.is_none() && db.is_none(), "MLP projections have no bias");
        let gate_up = concat_columns(&[(&g, ni), (&u, ni)], hidden);
        Self {
            qkv: PackedMatrix::pack(&qkv, hidden, nq + nk + nv, precision),
            qkv_bias: concat_bias(&[(qb, nq), (kb, nk), (vb, nv)]),
            o: PackedMatrix::pack(&o, no_in, no, precision),
            o_bias: ob,
            gate_up: PackedMatrix::pack(&gate_up, hidden, 2 * ni, precision),
            down: PackedMatrix::pack(&d, di, dn, precision),
            input_norm: norm(&l.input_layernorm),
            post_norm: norm(&l.post_attention_layernorm),
            q_norm: a.q_norm.as_ref().map(norm),
            k_norm: a.k_norm.as_ref().map(norm),
        }
    }

    fn bytes(&self) -> usize {
        let vecs = [&self.input_norm.0, &self.post_norm.0];
        self.qkv.bytes()
            + self.o.bytes()
            + self.gate_up.bytes()
            + self.down.bytes()
            + vecs.iter().map(|v| v.len() * 4).sum::<usize>()
            + [&self.qkv_bias, &self.o_bias]
                .iter()
                .flat_map(|b| b.iter())
                .map(|b| b.len() * 4)
                .sum::<usize>()
    }
}

/// Where one prefill spent its time, in seconds, summed over blocks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    /// Packed matrix products (q/k/v, o, gate/up, down), including packing the activations.
    pub gemm: f64,
    /// Scores, softmax and weighted values.
    pub attention: f64,
    /// RMSNorms, q/k norms, RoPE, SiLU·up, residual adds, embedding gather and row selection.
    pub elementwise: f64,
    /// Of [`Self::gemm`]: packing or quantizing the activations.
    pub gemm_packing: f64,
    /// Of [`Self::gemm`]: copying column stripes into the output, with the bias.
    pub gemm_copies: f64,
    /// The matrix products' shapes `[m, k, n]` with how many ran, in first-run order.
    pub gemm_shapes: Vec<([usize; 3], usize)>,
    /// Whether the clock is read (see [`Stopwatch`]).
    timed: bool,
}

impl Profile {
    /// Matrix products run.
    pub fn gemm_calls(&self) -> usize {
        self.gemm_shapes.iter().map(|(_, n)| n).sum()
    }

    /// Multiply-adds in them, times two.
    pub fn gemm_flops(&self) -> f64 {
        self.gemm_shapes.iter().map(|([m, k, n], c)| 2.0 * (m * k * n * c) as f64).sum()
    }
}

/// Reads the clock only when a profile was asked for: the model core reads no clock on the
/// inference path (wasm32 has none; `Instant::now` panics there).
struct Stopwatch(Option<Instant>);

impl Stopwatch {
    fn start(on: bool) -> Self {
        Self(on.then(Instant::now))
    }

    fn secs(&self) -> f64 {
        self.0.map_or(0.0, |t| t.elapsed().as_secs_f64())
    }
}

/// The decoder for CPU inference (see the module docs).
#[derive(Clone)]
pub struct CpuDecoder {
    layers: Vec<Layer>,
    norm: (Vec<f32>, f32),
    precision: Precision,
    isa: Isa,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    hidden: usize,
    inter: usize,
    inv_freq: Vec<f32>,
}

impl std::fmt::Debug for CpuDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuDecoder")
            .field("layers", &self.layers.len())
            .field("precision", &self.precision)
            .field("isa", &self.isa)
            .field("weight_bytes", &self.weight_bytes())
            .finish()
    }
}

impl CpuDecoder {
    /// Converts a burn decoder, block by block (each burn block is dropped once converted, so
    /// the peak is one f32 block above the result).
    pub fn from_decoder(config: &ModelConfig, decoder: Decoder, precision: Precision) -> Self {
        let Decoder { layers, norm: final_norm } = decoder;
        let layers = layers.into_iter().map(|l| Layer::from_burn(&l, precision)).collect();
        Self {
            layers,
            norm: norm(&final_norm),
            precision,
            isa: Isa::detect(),
            heads: config.num_attention_heads,
            kv_heads: config.num_key_value_heads,
            head_dim: config.head_dim,
            hidden: config.hidden_size,
            inter: config.intermediate_size,
            inv_freq: crate::decoder::rope::inv_freq(config),
        }
    }

    /// The same decoder running micro-kernel `isa` (which this CPU must support).
    pub fn with_isa(mut self, isa: Isa) -> Self {
        assert!(isa.supported(), "the {} kernel is not supported by this CPU", isa.name());
        self.isa = isa;
        self
    }

    /// How the weights are stored.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The micro-kernel in use.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Bytes of the decoder's weights (blocks and the final norm; not the embedding).
    pub fn weight_bytes(&self) -> usize {
        self.layers.iter().map(Layer::bytes).sum::<usize>() + self.norm.0.len() * 4
    }

    /// Last-real-token states at `layer` (0 = embeddings, `L` = final, normed), `[B, hidden]`
    /// row-major. Inputs must have passed `check_batch`.
    pub fn forward_last(
        &self,
        embed: &HostEmbedding,
        batch: &[Vec<u32>],
        layer: usize,
    ) -> Vec<f32> {
        self.run(embed, batch, layer, false).0
    }

    /// [`Self::forward_last`] with the time spent per kind of work (native only: it reads the
    /// clock).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn forward_profiled(
        &self,
        embed: &HostEmbedding,
        batch: &[Vec<u32>],
        layer: usize,
    ) -> (Vec<f32>, Profile) {
        self.run(embed, batch, layer, true)
    }

    fn run(
        &self,
        embed: &HostEmbedding,
        batch: &[Vec<u32>],
        layer: usize,
        timed: bool,
    ) -> (Vec<f32>, Profile) {
        let mut prof = Profile { timed, ..Profile::default() };
        let h = self.hidden;
        let t0 = Stopwatch::start(prof.timed);
        let lens: Vec<usize> = batch.iter().map(Vec::len).collect();
        let starts: Vec<usize> =
            lens.iter().scan(0, |acc, &l| Some(std::mem::replace(acc, *acc + l))).collect();
        let tokens: usize = lens.iter().sum();
        let mut x = vec![0f32; tokens * h];
        for (ids, &s) in batch.iter().zip(&starts) {
            for (i, &id) in ids.iter().enumerate() {
                embed.gather_row(id, &mut x[(s + i) * h..(s + i + 1) * h]);
            }
        }
        prof.elementwise += t0.secs();

        let n_blocks = layer.min(self.layers.len());
        let last_rows: Vec<usize> = starts.iter().zip(&lens).map(|(s, l)| s + l - 1).collect();
        if n_blocks == 0 {
            x = select_rows(&x, h, &last_rows);
        }
        let max_len = lens.iter().copied().max().unwrap_or(0);
        let (cos, sin) = crate::decoder::rope::tables(max_len, &self.inv_freq);
        let rope = Rope { cos: &cos, sin: &sin, half: self.head_dim / 2 };
        let positions: Vec<usize> = lens.iter().flat_map(|&len| 0..len).collect();
        for (i, l) in self.layers[..n_blocks].iter().enumerate() {
            let last = i + 1 == n_blocks;
            let seqs =
                Seqs { starts: &starts, lens: &lens, positions: &positions, last_only: last };
            x = self.block(l, x, &seqs, &rope, &mut prof);
        }
        if layer == self.layers.len() {
            let t = Stopwatch::start(prof.timed);
            rms_norm_rows(&mut x, &self.norm, h);
            prof.elementwise += t.secs();
        }
        (x, prof)
    }

    fn gemm(
        &self,
        a: &[f32],
        m: usize,
        w: &PackedMatrix,
        bias: Option<&[f32]>,
        prof: &mut Profile,
    ) -> Vec<f32> {
        let t = Stopwatch::start(prof.timed);
        let mut out = vec![0f32; m * w.n()];
        let split = gemm::matmul_split(self.isa, a, m, w, bias, &mut out, prof.timed);
        prof.gemm += t.secs();
        prof.gemm_packing += split.packing;
        prof.gemm_copies += split.copies;
        if prof.timed {
            let shape = [m, w.k(), w.n()];
            match prof.gemm_shapes.iter_mut().find(|(s, _)| *s == shape) {
                Some((_, n)) => *n += 1,
                None => prof.gemm_shapes.push((shape, 1)),
            }
        }
        out
    }

    /// One block. `x` is `[tokens, hidden]`; the result is the same, or `[B, hidden]` (each
    /// sequence's last token) when `seqs.last_only`.
    fn block(
        &self,
        l: &Layer,
        mut x: Vec<f32>,
        seqs: &Seqs<'_>,
        rope: &Rope<'_>,
        prof: &mut Profile,
    ) -> Vec<f32> {
        let (h, d) = (self.hidden, self.head_dim);
        let (nq, nkv) = (self.heads * d, self.kv_heads * d);
        let width = nq + 2 * nkv;
        let tokens = x.len() / h;

        // 1. Norm, fused q/k/v, q/k norms and RoPE.
        let mut t = Stopwatch::start(prof.timed);
        let mut xn = x.clone();
        rms_norm_rows(&mut xn, &l.input_norm, h);
        prof.elementwise += t.secs();
        let mut qkv = self.gemm(&xn, tokens, &l.qkv, l.qkv_bias.as_deref(), prof);
        t = Stopwatch::start(prof.timed);
        for_rows(&mut qkv, width, |row, v| {
            let pos = seqs.positions[row];
            let (q, kv) = v.split_at_mut(nq);
            let k = &mut kv[..nkv];
            for head in q.chunks_exact_mut(d) {
                if let Some(n) = &l.q_norm {
                    rms_norm(head, n);
                }
                rope.apply(head, pos);
            }
            for head in k.chunks_exact_mut(d) {
                if let Some(n) = &l.k_norm {
                    rms_norm(head, n);
                }
                rope.apply(head, pos);
            }
        });
        prof.elementwise += t.secs();

        // 2. Attention for every token, or each sequence's last one.
        t = Stopwatch::start(prof.timed);
        let queries: Vec<(usize, usize)> = if seqs.last_only {
            seqs.starts.iter().zip(seqs.lens).map(|(&s, &len)| (s, len - 1)).collect()
        } else {
            seqs.starts
                .iter()
                .zip(seqs.lens)
                .flat_map(|(&s, &len)| (0..len).map(move |i| (s, i)))
                .collect()
        };
        let mut attn = vec![0f32; queries.len() * nq];
        let shape = AttnShape {
            width,
            nq,
            nkv,
            d,
            group: self.heads / self.kv_heads,
            scale: (d as f32).powf(-0.5),
        };
        let isa = self.isa;
        for_rows(&mut attn, nq, |qi, out| {
            let (start, i) = queries[qi];
            attend(isa, &qkv, &shape, start, i, out);
        });
        prof.attention += t.secs();
        drop(qkv);

        // 3. o_proj and the residual (on the kept rows).
        let rows = queries.len();
        let o = self.gemm(&attn, rows, &l.o, l.o_bias.as_deref(), prof);
        t = Stopwatch::start(prof.timed);
        if seqs.last_only {
            let last: Vec<usize> = queries.iter().map(|(s, i)| s + i).collect();
            x = select_rows(&x, h, &last);
        }
        debug_assert_eq!(x.len(), rows * h);
        add_rows(&mut x, &o, h);

        // 4. MLP: down(silu(gate) · up), residual.
        let mut xn = x.clone();
        rms_norm_rows(&mut xn, &l.post_norm, h);
        prof.elementwise += t.secs();
        let gu = self.gemm(&xn, rows, &l.gate_up, None, prof);
        t = Stopwatch::start(prof.timed);
        let i_size = self.inter;
        let mut act = vec![0f32; rows * i_size];
        for_rows(&mut act, i_size, |r, a| {
            let row = &gu[r * 2 * i_size..][..2 * i_size];
            let (gate, up) = row.split_at(i_size);
            for ((o, g), u) in a.iter_mut().zip(gate).zip(up) {
                *o = g / (1.0 + (-g).exp()) * u;
            }
        });
        prof.elementwise += t.secs();
        let down = self.gemm(&act, rows, &l.down, None, prof);
        t = Stopwatch::start(prof.timed);
        add_rows(&mut x, &down, h);
        prof.elementwise += t.secs();
        x
    }
}

/// The sequences of a stacked batch.
struct Seqs<'a> {
    starts: &'a [usize],
    lens: &'a [usize],
    /// Each stacked token's position in its sequence.
    positions: &'a [usize],
    last_only: bool,
}

/// RoPE tables, `[position, head_dim]`.
struct Rope<'a> {
    cos: &'a [f32],
    sin: &'a [f32],
    half: usize,
}

impl Rope<'_> {
    /// `x·cos + rotate_half(x)·sin` at `pos`, in place.
    fn apply(&self, x: &mut [f32], pos: usize) {
        let d = 2 * self.half;
        let (cos, sin) = (&self.cos[pos * d..][..d], &self.sin[pos * d..][..d]);
        for i in 0..self.half {
            let (a, b) = (x[i], x[i + self.half]);
            x[i] = a * cos[i] - b * sin[i];
            x[i + self.half] = b * cos[i + self.half] + a * sin[i + self.half];
        }
    }
}

/// Where queries, keys and values sit in a fused q/k/v row, and the attention constants.
struct AttnShape {
    width: usize,
    nq: usize,
    nkv: usize,
    d: usize,
    group: usize,
    scale: f32,
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

/// [`attend_query`] compiled for the widest vectors `isa` allows.
#[allow(unsafe_code)]
fn attend(isa: Isa, qkv: &[f32], s: &AttnShape, start: usize, i: usize, out: &mut [f32]) {
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

/// transformers' RMSNorm on one vector, in place.
fn rms_norm(x: &mut [f32], (w, eps): &(Vec<f32>, f32)) {
    let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let inv = 1.0 / (ms + eps).sqrt();
    for (v, w) in x.iter_mut().zip(w) {
        *v = *v * inv * w;
    }
}

fn rms_norm_rows(x: &mut [f32], n: &(Vec<f32>, f32), width: usize) {
    for_rows(x, width, |_, row| rms_norm(row, n));
}

/// `x += y`, row-parallel.
fn add_rows(x: &mut [f32], y: &[f32], width: usize) {
    for_rows(x, width, |r, row| {
        for (a, b) in row.iter_mut().zip(&y[r * width..]) {
            *a += b;
        }
    });
}

fn select_rows(x: &[f32], width: usize, rows: &[usize]) -> Vec<f32> {
    rows.iter().flat_map(|&r| x[r * width..(r + 1) * width].iter().copied()).collect()
}
