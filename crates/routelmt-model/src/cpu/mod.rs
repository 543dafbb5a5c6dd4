//! The CPU prefill for inference: the decoder's arithmetic on host memory, with weights
//! fused and packed once at load, in f32, f16 or q8 ([`Precision`]). This module is the
//! orchestration (converting burn's decoder, the block's steps, the profile); the arithmetic
//! is `routelmt-kernels`'.
//!
//! What it does differently from the burn decoder (which stays for training and for wgpu):
//! - **No padding.** The tokens of every sequence in a batch are stacked into one `[tokens,
//!   hidden]` matrix, so each projection is one 2-D GEMM over all real tokens; attention runs
//!   per sequence on its real length.
//! - **Fused projections.** q/k/v are one `[hidden, (H + 2·KV)·D]` weight and gate/up one
//!   `[hidden, 2·I]` weight, packed for the micro-kernel at load
//!   ([`routelmt_kernels::PackedMatrix`]).
//! - **The last block for the last token only.** The routed layer's state is only needed at
//!   each sequence's last token, so the final block computes keys and values for every token
//!   but the query, attention output, o_proj and MLP for one row per sequence.
//!
//! The arithmetic follows transformers (RMSNorm in f32 as `x · rsqrt(mean(x²) + eps) · w`,
//! `rotate_half` RoPE, softmax over `q·kᵀ / √D` with the causal mask, SiLU-gated MLP), so
//! the states match the burn decoder and transformers within the parity bounds.

use routelmt_kernels::{
    AttnShape, HostRope, PackedMatrix, Stopwatch, add_rows, attend, for_rows, qk_norm_rope,
    rms_norm_rows, select_rows, silu_up_rows,
};
pub use routelmt_kernels::{Isa, threads};

use crate::config::ModelConfig;
use crate::decoder::Decoder;
use crate::decoder::block::{Attention, DecoderLayer, Mlp};
use crate::decoder::norm::RmsNorm;
use crate::embedding::HostEmbedding;
use crate::error::Result;
use crate::precision::Precision;
use crate::tensors::Tensors;

/// Host values of a burn tensor on the flex device this converts from.
fn host<const D: usize>(t: burn::tensor::Tensor<D>) -> Vec<f32> {
    crate::readback::read_host(t).expect("a float tensor on the CPU device")
}

/// A linear layer's `[in, out]` weight and bias on the host, taking the layer (its tensors are
/// freed as they are read).
fn linear(l: burn::nn::Linear) -> (Vec<f32>, usize, usize, Option<Vec<f32>>) {
    let [k, n] = l.weight.dims();
    (host(l.weight.into_value()), k, n, l.bias.map(|b| host(b.into_value())))
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
    /// Packs a burn block, one projection group at a time (q/k/v, o, gate/up, down), each
    /// burn tensor freed once read: the conversion holds the block plus one group's copies.
    fn from_burn(l: DecoderLayer, precision: Precision) -> Self {
        let format = precision.format();
        let DecoderLayer { self_attn, mlp, input_layernorm, post_attention_layernorm } = l;
        let Attention { q_proj, k_proj, v_proj, o_proj, q_norm, k_norm, .. } = self_attn;
        let Mlp { gate_proj, up_proj, down_proj } = mlp;
        let (qkv, qkv_bias) = {
            let (q, hidden, nq, qb) = linear(q_proj);
            let (k, _, nk, kb) = linear(k_proj);
            let (v, _, nv, vb) = linear(v_proj);
            let fused = concat_columns(&[(&q, nq), (&k, nk), (&v, nv)], hidden);
            drop((q, k, v));
            let bias = concat_bias(&[(qb, nq), (kb, nk), (vb, nv)]);
            (PackedMatrix::pack(&fused, hidden, nq + nk + nv, format), bias)
        };
        let (o, o_bias) = {
            let (o, no_in, no, ob) = linear(o_proj);
            (PackedMatrix::pack(&o, no_in, no, format), ob)
        };
        let gate_up = {
            let (g, hidden, ni, gb) = linear(gate_proj);
            let (u, _, _, ub) = linear(up_proj);
            assert!(gb.is_none() && ub.is_none(), "MLP projections have no bias");
            let fused = concat_columns(&[(&g, ni), (&u, ni)], hidden);
            drop((g, u));
            PackedMatrix::pack(&fused, hidden, 2 * ni, format)
        };
        let down = {
            let (d, di, dn, db) = linear(down_proj);
            assert!(db.is_none(), "MLP projections have no bias");
            PackedMatrix::pack(&d, di, dn, format)
        };
        Self {
            qkv,
            qkv_bias,
            o,
            o_bias,
            gate_up,
            down,
            input_norm: norm(&input_layernorm),
            post_norm: norm(&post_attention_layernorm),
            q_norm: q_norm.as_ref().map(norm),
            k_norm: k_norm.as_ref().map(norm),
        }
    }

    /// Packs block `p` (`model.layers.N`) straight from its stored tensors, one projection
    /// group at a time, with no burn tensors: the peak is one group's f32 values. Reads the
    /// tensors in the order the burn loader does (so a random fill gives the same block).
    fn from_tensors(
        c: &ModelConfig,
        p: &str,
        ts: &mut Tensors<'_>,
        precision: Precision,
    ) -> Result<Self> {
        let format = precision.format();
        let (qkv_bias, o_bias) = (c.qkv_bias(), c.o_bias());
        // An HF `[out, in]` weight and its bias.
        let mut lin = |name: &str, bias: bool| -> Result<(Vec<f32>, usize, Option<Vec<f32>>)> {
            let (d_in, d_out) = c.projection_dims(name);
            let w = ts.take(&format!("{p}.{name}.weight"), &[d_out, d_in])?;
            let b = if bias { Some(ts.take(&format!("{p}.{name}.bias"), &[d_out])?) } else { None };
            Ok((w, d_in, b))
        };
        let (qkv, qkv_bias) = {
            let (q, hidden, qb) = lin("self_attn.q_proj", qkv_bias)?;
            let (k, _, kb) = lin("self_attn.k_proj", qkv_bias)?;
            let (v, _, vb) = lin("self_attn.v_proj", qkv_bias)?;
            let columns: Vec<&[f32]> =
                q.chunks(hidden).chain(k.chunks(hidden)).chain(v.chunks(hidden)).collect();
            let bias = [qb, kb, vb].into_iter().collect::<Option<Vec<_>>>().map(|b| b.concat());
            (PackedMatrix::pack_columns(&columns, hidden, format), bias)
        };
        let (o, o_bias) = {
            let (o, d_in, ob) = lin("self_attn.o_proj", o_bias)?;
            (PackedMatrix::pack_columns(&o.chunks(d_in).collect::<Vec<_>>(), d_in, format), ob)
        };
        let gate_up = {
            let (g, hidden, _) = lin("mlp.gate_proj", false)?;
            let (u, _, _) = lin("mlp.up_proj", false)?;
            let columns: Vec<&[f32]> = g.chunks(hidden).chain(u.chunks(hidden)).collect();
            PackedMatrix::pack_columns(&columns, hidden, format)
        };
        let down = {
            let (d, d_in, _) = lin("mlp.down_proj", false)?;
            PackedMatrix::pack_columns(&d.chunks(d_in).collect::<Vec<_>>(), d_in, format)
        };
        let eps = c.rms_norm_eps as f32;
        let mut norm = |name: &str, len: usize| -> Result<(Vec<f32>, f32)> {
            Ok((ts.take(&format!("{p}.{name}.weight"), &[len])?, eps))
        };
        let (q_norm, k_norm) = if c.qk_norm() {
            (
                Some(norm("self_attn.q_norm", c.head_dim)?),
                Some(norm("self_attn.k_norm", c.head_dim)?),
            )
        } else {
            (None, None)
        };
        let input_norm = norm("input_layernorm", c.hidden_size)?;
        let post_norm = norm("post_attention_layernorm", c.hidden_size)?;
        Ok(Self { qkv, qkv_bias, o, o_bias, gate_up, down, input_norm, post_norm, q_norm, k_norm })
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
    /// Whether the clock is read (see [`routelmt_kernels::Stopwatch`]).
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
        let mut cpu = Self::new(config, precision);
        for l in layers {
            cpu.push(l);
        }
        cpu.with_norm(&final_norm)
    }

    /// An empty decoder for `config`, to [`Self::push`] blocks into as they load, then
    /// [`Self::with_norm`].
    pub fn new(config: &ModelConfig, precision: Precision) -> Self {
        Self {
            layers: Vec::with_capacity(config.num_hidden_layers),
            norm: (Vec::new(), 0.0),
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

    /// Packs the next block (freeing its burn tensors as they are read).
    pub fn push(&mut self, layer: DecoderLayer) {
        self.layers.push(Layer::from_burn(layer, self.precision));
    }

    /// Packs the next block, `p` (`model.layers.N`), straight from its stored tensors in `ts`
    /// (no burn tensors; each tensor's source bytes freed once decoded).
    pub fn push_tensors(&mut self, c: &ModelConfig, p: &str, ts: &mut Tensors<'_>) -> Result<()> {
        self.layers.push(Layer::from_tensors(c, p, ts, self.precision)?);
        Ok(())
    }

    /// Blocks packed so far.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether no block is packed yet.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// Sets the final norm.
    pub fn with_norm(mut self, final_norm: &RmsNorm) -> Self {
        self.norm = norm(final_norm);
        self
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
        let rope = HostRope { cos: &cos, sin: &sin, half: self.head_dim / 2 };
        let positions: Vec<usize> = lens.iter().flat_map(|&len| 0..len).collect();
        for (i, l) in self.layers[..n_blocks].iter().enumerate() {
            let last = i + 1 == n_blocks;
            let seqs =
                Seqs { starts: &starts, lens: &lens, positions: &positions, last_only: last };
            x = self.block(l, x, &seqs, &rope, &mut prof);
        }
        if layer == self.layers.len() {
            let t = Stopwatch::start(prof.timed);
            rms_norm_rows(&mut x, &self.norm.0, self.norm.1, h);
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
        let split = routelmt_kernels::matmul_split(self.isa, a, m, w, bias, &mut out, prof.timed);
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
        rope: &HostRope<'_>,
        prof: &mut Profile,
    ) -> Vec<f32> {
        let h = self.hidden;
        let shape = AttnShape::new(self.heads, self.kv_heads, self.head_dim);
        let nq = shape.nq;
        let tokens = x.len() / h;

        // 1. Norm, fused q/k/v, q/k norms and RoPE.
        let mut t = Stopwatch::start(prof.timed);
        let mut xn = x.clone();
        rms_norm_rows(&mut xn, &l.input_norm.0, l.input_norm.1, h);
        prof.elementwise += t.secs();
        let mut qkv = self.gemm(&xn, tokens, &l.qkv, l.qkv_bias.as_deref(), prof);
        t = Stopwatch::start(prof.timed);
        let q_norm = l.q_norm.as_ref().map(|(w, eps)| (w.as_slice(), *eps));
        let k_norm = l.k_norm.as_ref().map(|(w, eps)| (w.as_slice(), *eps));
        qk_norm_rope(&mut qkv, &shape, seqs.positions, q_norm, k_norm, rope);
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
        rms_norm_rows(&mut xn, &l.post_norm.0, l.post_norm.1, h);
        prof.elementwise += t.secs();
        let gu = self.gemm(&xn, rows, &l.gate_up, None, prof);
        t = Stopwatch::start(prof.timed);
        let mut act = vec![0f32; rows * self.inter];
        silu_up_rows(&mut act, &gu, self.inter);
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
