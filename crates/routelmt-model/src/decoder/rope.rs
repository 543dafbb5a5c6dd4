//! Rotary position embedding in the Hugging Face `rotate_half` convention (transformers
//! `apply_rotary_pos_emb`): the first and second halves of `head_dim` form the rotated pairs.
//! burn's built-in `RotaryEncoding` pairs neighbouring channels instead, which is wrong for HF
//! weights, hence this file.
//!
//! Angles follow transformers' f32 arithmetic: `inv_freq[i] = 1 / θ^(2i/d)` and
//! `angle = position · inv_freq`, both in f32.

use burn::tensor::{Device, Tensor, TensorData};

use crate::config::{Llama3Rope, ModelConfig};

/// The `head_dim / 2` inverse frequencies of a config: the default table, then Llama 3's
/// scaling when the config asks for it (transformers `_compute_llama3_parameters`, in f32).
pub fn inv_freq(config: &ModelConfig) -> Vec<f32> {
    let default = default_inv_freq(config.head_dim, config.theta());
    match &config.rope_llama3 {
        Some(r) => llama3(&default, r),
        None => default,
    }
}

fn default_inv_freq(head_dim: usize, theta: f64) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|i| {
            let exponent = (2 * i) as f32 / head_dim as f32;
            1.0 / (theta as f32).powf(exponent)
        })
        .collect()
}

fn llama3(inv_freq: &[f32], r: &Llama3Rope) -> Vec<f32> {
    let (factor, low, high) =
        (r.factor as f32, r.low_freq_factor as f32, r.high_freq_factor as f32);
    let old = r.original_max_position_embeddings as f32;
    let (low_wavelen, high_wavelen) = (old / low, old / high);
    inv_freq
        .iter()
        .map(|&f| {
            let wavelen = 2.0 * std::f32::consts::PI / f;
            let scaled = if wavelen > low_wavelen { f / factor } else { f };
            let medium = wavelen >= high_wavelen && wavelen <= low_wavelen;
            if medium {
                let smooth = (old / wavelen - low) / (high - low);
                (1.0 - smooth) * scaled / factor + smooth * scaled
            } else {
                scaled
            }
        })
        .collect()
}

/// `cos` and `sin` tables for positions `0..seq_len`, each `[seq_len, 2 * inv_freq.len()]`,
/// on the host.
pub fn tables(seq_len: usize, inv_freq: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let head_dim = 2 * inv_freq.len();
    let mut cos = Vec::with_capacity(seq_len * head_dim);
    let mut sin = Vec::with_capacity(seq_len * head_dim);
    for pos in 0..seq_len {
        // transformers concatenates (freqs, freqs): both halves share the angles.
        for _ in 0..2 {
            for f in inv_freq {
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
    pub fn new(seq_len: usize, config: &ModelConfig, device: &Device) -> Self {
        let head_dim = config.head_dim;
        let (cos, sin) = tables(seq_len, &inv_freq(config));
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
        let (cos, sin) = tables(3, &default_inv_freq(8, 10_000.0));
        assert!(cos[..8].iter().all(|c| *c == 1.0) && sin[..8].iter().all(|s| *s == 0.0));
        // position 1, i = 0: angle 1 rad in both halves
        assert_eq!(cos[8], 1f32.cos());
        assert_eq!(cos[8 + 4], 1f32.cos());
        // i = 1: inv_freq = 1/10000^(2/8) = 0.1
        assert!((sin[9] - 0.1f32.sin()).abs() < 1e-7);
    }

    #[test]
    fn llama3_scaling_keeps_high_and_divides_low_frequencies() {
        // Llama 3.2's settings: factor 32, low 1, high 4, original context 8192.
        let r = Llama3Rope {
            factor: 32.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192.0,
        };
        let base = default_inv_freq(64, 500_000.0);
        let scaled = llama3(&base, &r);
        assert_eq!(scaled[0], base[0]); // wavelength 2π < 2048: unchanged
        assert_eq!(scaled[31], base[31] / 32.0); // wavelength > 8192: divided by the factor
        let mid = (0..32).find(|&i| scaled[i] != base[i] && scaled[i] != base[i] / 32.0);
        assert!(mid.is_some(), "some frequency is smoothed between the two");
    }
}
