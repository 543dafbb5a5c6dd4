//! RMSNorm as in transformers' `Qwen3RMSNorm`: `x * rsqrt(mean(x²) + eps) * weight`, in f32,
//! with no `+1` offset on the weight. Used for the block norms, the final norm and the
//! per-head `q_norm`/`k_norm` (over `head_dim`).

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};

/// Root-mean-square normalization over the last dimension.
#[derive(Module, Debug)]
pub struct RmsNorm {
    /// Per-channel scale, HF name `weight`.
    pub weight: Param<Tensor<1>>,
    /// Added to the mean square before the root.
    pub eps: f64,
}

impl RmsNorm {
    /// A norm from its weight vector.
    pub fn new(weight: Tensor<1>, eps: f64) -> Self {
        Self { weight: Param::from_tensor(weight), eps }
    }

    /// A norm with all-ones weight (random-weight benchmarks).
    pub fn ones(dim: usize, eps: f64, device: &Device) -> Self {
        Self::new(Tensor::ones([dim], device), eps)
    }

    /// Normalizes over the last dimension.
    ///
    /// # Shapes
    /// - input: `[..., D]`
    /// - output: `[..., D]`
    pub fn forward<const N: usize>(&self, x: Tensor<N>) -> Tensor<N> {
        let inv_rms = x.clone().powi_scalar(2).mean_dim(N - 1).add_scalar(self.eps).sqrt().recip();
        x * inv_rms * self.weight.val().unsqueeze::<N>()
    }
}
