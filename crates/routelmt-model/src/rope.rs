//! Rotary position embedding in the Hugging Face `rotate_half` convention (transformers
//! `apply_rotary_pos_emb`): the first and second halves of `head_dim` form the rotated pairs.
//! burn's built-in `RotaryEncoding` pairs neighbouring channels instead, which is wrong for HF
//! weights, hence this file.
//!
//! Angles follow transformers' f32 arithmetic: `inv_freq[i] = 1 / θ^(2i/d)` and
//! `angle = position · inv_freq`, both in f32.

use burn::tensor::{Device, Tensor, TensorData};

/// `cos` and `sin` tables for positions `0..seq_len`, each `[seq_len, head_dim]`, on the host.
pub fn tables(seq_len: usize, head_dim: usize, theta: f64) -> (Vec<f32>, Vec<f32>) {
    let half = head_dim / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| {
            let exponent = (2 * i) as f32 / head_dim as f32;
            1.0 / (theta as f32).powf(exponent)
        })
        .collect();
    let mut cos = Vec::with_capacity(seq_len * head_dim);
    let mut sin = Vec::with_capacity(seq_len * head_dim);
    for pos in 0..seq_len {
        // transformers concatenates (freqs, freqs): both halves share the angles.
        for _ in 0..2 {
            for f in &inv_freq {
                let angle = pos as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
    }
    (cos, sin)
}

/// Device-side RoPE tables for one forward pass.
#[derive(Debug, Clone)]
pub struct Rope {
    cos: Tensor<4>,
    sin: Tensor<4>,
}

impl Rope {
    /// Tables for positions `0..seq_len`, shaped `[1, 1, seq_len, head_dim]` for broadcasting.
    pub fn new(seq_len: usize, head_dim: usize, theta: f64, device: &Device) -> Self {
        let (cos, sin) = tables(seq_len, head_dim, theta);
        let shape = [1, 1, seq_len, head_dim];
        Self {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
        }
    }

    /// Rotates queries or keys.
    ///
    /// # Shapes
    /// - x: `[batch, heads, seq, head_dim]`
    /// - output: same
    pub fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, _, d] = x.dims();
        let half = d / 2;
        // rotate_half(x) = cat(-x[..., half:], x[..., :half])
        let x1 = x.clone().narrow(3, 0, half);
        let x2 = x.clone().narrow(3, half, half);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        x * self.cos.clone() + rotated * self.sin.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_zero_is_identity_and_halves_share_angles() {
        let (cos, sin) = tables(3, 8, 10_000.0);
        assert!(cos[..8].iter().all(|c| *c == 1.0) && sin[..8].iter().all(|s| *s == 0.0));
        // position 1, i = 0: angle 1 rad in both halves
        assert_eq!(cos[8], 1f32.cos());
        assert_eq!(cos[8 + 4], 1f32.cos());
        // i = 1: inv_freq = 1/10000^(2/8) = 0.1
        assert!((sin[9] - 0.1f32.sin()).abs() < 1e-7);
    }
}
