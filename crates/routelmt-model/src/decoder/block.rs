//! One decoder block (transformers `Qwen3DecoderLayer`, `Qwen2DecoderLayer`,
//! `LlamaDecoderLayer`), prefill only: `x + attn(input_layernorm(x))`, then
//! `x + mlp(post_attention_layernorm(x))`.
//!
//! Attention: q/k/v projections (with biases where the family has them), for Qwen3 a per-head
//! RMSNorm on q and k over `head_dim` **before** RoPE, grouped-query attention, scale `head_dim^-0.5`, causal mask, softmax in f32. With right
//! padding the causal mask alone keeps real tokens from seeing padding (pad keys sit after
//! every real query), so no key-padding mask is needed.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::Tensor;
use burn::tensor::activation::{silu, softmax};

use super::norm::RmsNorm;
use super::rope::Rope;

/// Self-attention (with Qwen3's q/k norms when present); field names mirror HF (`self_attn.q_proj`, ...).
#[derive(Module, Debug)]
pub struct Attention {
    /// `[hidden, heads * head_dim]` (burn's row layout: input first).
    pub q_proj: Linear,
    /// `[hidden, kv_heads * head_dim]`.
    pub k_proj: Linear,
    /// `[hidden, kv_heads * head_dim]`.
    pub v_proj: Linear,
    /// `[heads * head_dim, hidden]`.
    pub o_proj: Linear,
    /// Per-head norm of queries, over `head_dim` (Qwen3 only).
    pub q_norm: Option<RmsNorm>,
    /// Per-head norm of keys, over `head_dim` (Qwen3 only).
    pub k_norm: Option<RmsNorm>,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads.
    pub num_kv_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
}

impl Attention {
    /// Causal self-attention.
    ///
    /// # Shapes
    /// - x: `[batch, seq, hidden]` (already normed)
    /// - causal_bias: `[group * seq, seq]`, 0 where allowed and a large negative elsewhere
    /// - output: `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<3>, rope: &Rope, causal_bias: &Tensor<2>) -> Tensor<3> {
        let [b, t, _] = x.dims();
        let (h, kv, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let g = h / kv;

        // 1. Project and split heads: [B, T, H*D] -> [B, T, H, D], norm over D, -> [B, H, T, D].
        let norm = |n: &Option<RmsNorm>, x: Tensor<4>| match n {
            Some(n) => n.forward(x),
            None => x,
        };
        let q = norm(&self.q_norm, self.q_proj.forward(x.clone()).reshape([b, t, h, d]));
        let k = norm(&self.k_norm, self.k_proj.forward(x.clone()).reshape([b, t, kv, d]));
        let v = self.v_proj.forward(x).reshape([b, t, kv, d]).swap_dims(1, 2);
        let q = rope.apply(q.swap_dims(1, 2));
        let k = rope.apply(k.swap_dims(1, 2));

        // 2. GQA without copying K/V: query head j*g+i uses KV head j (HF `repeat_kv`), so
        //    [B, H, T, D] -> [B, KV, g*T, D] stacks each KV head's g query heads along rows.
        let q = q.reshape([b, kv, g * t, d]);

        // 3. Scores [B, KV, g*T, T], causal bias, softmax over keys, weighted values.
        let scale = (d as f64).powf(-0.5);
        let scores =
            q.matmul(k.swap_dims(2, 3)).mul_scalar(scale) + causal_bias.clone().unsqueeze::<4>();
        let out = softmax(scores, 3).matmul(v);

        // 4. Merge heads: [B, KV, g*T, D] -> [B, H, T, D] -> [B, T, H*D] -> o_proj.
        let out = out.reshape([b, h, t, d]).swap_dims(1, 2).reshape([b, t, h * d]);
        self.o_proj.forward(out)
    }
}

/// SwiGLU MLP: `down(silu(gate(x)) * up(x))`.
#[derive(Module, Debug)]
pub struct Mlp {
    /// `[hidden, intermediate]`.
    pub gate_proj: Linear,
    /// `[hidden, intermediate]`.
    pub up_proj: Linear,
    /// `[intermediate, hidden]`.
    pub down_proj: Linear,
}

impl Mlp {
    /// # Shapes
    /// - x: `[..., hidden]` -> `[..., hidden]`
    pub fn forward<const N: usize>(&self, x: Tensor<N>) -> Tensor<N> {
        let gate = silu(self.gate_proj.forward(x.clone()));
        self.down_proj.forward(gate * self.up_proj.forward(x))
    }
}

/// A decoder block; field names mirror HF (`model.layers.N.*`).
#[derive(Module, Debug)]
pub struct DecoderLayer {
    /// Attention sub-block.
    pub self_attn: Attention,
    /// MLP sub-block.
    pub mlp: Mlp,
    /// Norm before attention.
    pub input_layernorm: RmsNorm,
    /// Norm before the MLP.
    pub post_attention_layernorm: RmsNorm,
}

/// The seven projections of a decoder layer, by their path inside the layer (HF names): the
/// one list that loading, LoRA, quantization and the CPU kernels share.
pub const PROJECTIONS: [&str; 7] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

impl DecoderLayer {
    /// The projections in [`PROJECTIONS`] order, with their paths.
    pub fn projections(&self) -> [(&'static str, &Linear); 7] {
        let (a, m) = (&self.self_attn, &self.mlp);
        let all =
            [&a.q_proj, &a.k_proj, &a.v_proj, &a.o_proj, &m.gate_proj, &m.up_proj, &m.down_proj];
        let mut names = PROJECTIONS.into_iter();
        all.map(|l| (names.next().expect("seven names"), l))
    }

    /// [`Self::projections`], mutable.
    pub fn projections_mut(&mut self) -> [(&'static str, &mut Linear); 7] {
        let (a, m) = (&mut self.self_attn, &mut self.mlp);
        let all = [
            &mut a.q_proj,
            &mut a.k_proj,
            &mut a.v_proj,
            &mut a.o_proj,
            &mut m.gate_proj,
            &mut m.up_proj,
            &mut m.down_proj,
        ];
        let mut names = PROJECTIONS.into_iter();
        all.map(|l| (names.next().expect("seven names"), l))
    }

    /// # Shapes
    /// - x: `[batch, seq, hidden]` -> `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<3>, rope: &Rope, causal_bias: &Tensor<2>) -> Tensor<3> {
        let x =
            x.clone() + self.self_attn.forward(self.input_layernorm.forward(x), rope, causal_bias);
        x.clone() + self.mlp.forward(self.post_attention_layernorm.forward(x))
    }
}
