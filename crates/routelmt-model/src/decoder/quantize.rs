//! `--weights` on devices other than the CPU kernels (wgpu): the burn decoder with its
//! projection weights stored as q8 (burn's quantized tensors: symmetric int8, one f32 scale
//! per block of 32 values; `PackedU32` storage, which wgpu runs). burn packs four int8 along
//! a weight's last dimension and needs blocks that are a multiple of four there, so the GPU
//! blocks run along the output columns of the `[in, out]` weight, where the CPU kernels (and
//! GGUF `Q8_0`) run them along the inputs; both are 32 int8 values per f32 scale. f16 is not offered there: the browser's SwiftShader adapter has
//! no `shader-f16`, so f16 weights are a CPU-kernel option only.

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::quantization::{QuantScheme, QuantStore, QuantValue, ScaleDtype};

use super::Decoder;
use crate::error::{ModelError, Result};
use crate::precision::Precision;

/// The q8 scheme: int8 symmetric, f32 scales per 32 values of a row, packed in u32 words.
pub fn q8_scheme() -> QuantScheme {
    scheme(QuantValue::Q8S)
}

/// The q4 scheme: 4-bit symmetric, f32 scales per 32 values of a row, packed in u32 words.
pub fn q4_scheme() -> QuantScheme {
    scheme(QuantValue::Q4S)
}

fn scheme(value: QuantValue) -> QuantScheme {
    QuantScheme::default()
        .with_value(value)
        .with_store(QuantStore::PackedU32(0))
        .per_block([32], ScaleDtype::F32)
}

fn quantize(l: &mut Linear, scheme: &QuantScheme) {
    let w = l.weight.val().quantize_dynamic(scheme);
    l.weight = Param::from_tensor(w);
}

/// The decoder with `weights` applied to every projection.
pub fn convert(mut decoder: Decoder, weights: Precision) -> Result<Decoder> {
    match weights {
        Precision::F32 => Ok(decoder),
        Precision::F16 => Err(ModelError::Input(
            "--weights f16 runs on the CPU (--device cpu) only; the GPU path takes f32 or q8"
                .into(),
        )),
        Precision::Q8 | Precision::Q4 => {
            let scheme = if weights == Precision::Q8 { q8_scheme() } else { q4_scheme() };
            for l in &mut decoder.layers {
                for (_, p) in l.projections_mut() {
                    quantize(p, &scheme);
                }
            }
            Ok(decoder)
        }
    }
}
