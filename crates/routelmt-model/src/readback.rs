//! Reading results back from the device: the one place that does. [`Pending`] holds a
//! batch's results in input order, as device tensors (wgpu, WebGPU, burn on the CPU) or as host
//! rows (the CPU kernels), until it is read, synchronously natively or asynchronously (the
//! browser's only way: WebGPU cannot read synchronously).

use burn::tensor::Tensor;

use crate::error::{ModelError, Result};

/// One chunk of results.
// A handful per batch: the size of a burn tensor handle does not matter here.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Part {
    /// `[rows, width]` on the device, not read yet.
    Device(Tensor<2>),
    /// `rows × width` values already on the host, row-major.
    Host(Vec<f32>),
}

/// A batch's results, `width` values per row, in input order, not read back yet.
#[derive(Debug)]
pub struct Pending {
    /// The chunks, in order.
    pub parts: Vec<Part>,
    /// Values per row.
    pub width: usize,
}

impl Pending {
    /// The rows, read back (native only: the browser reads with [`Self::read_async`]).
    pub fn read(self) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::new();
        for part in self.parts {
            let flat = match part {
                Part::Host(v) => v,
                Part::Device(t) => read(t)?,
            };
            out.extend(split_rows(&flat, self.width));
        }
        Ok(out)
    }

    /// The rows, read back without blocking (works natively too).
    pub async fn read_async(self) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::new();
        for part in self.parts {
            let flat = match part {
                Part::Host(v) => v,
                Part::Device(t) => read_async(t).await?,
            };
            out.extend(split_rows(&flat, self.width));
        }
        Ok(out)
    }
}

fn failed(e: impl std::fmt::Debug) -> ModelError {
    ModelError::Device(format!("read-back failed: {e:?}"))
}

/// A tensor's values on the host as f32, converted from any float dtype (native only: the
/// browser reads asynchronously, except from the CPU device, which [`read_host`] serves).
#[cfg(not(target_arch = "wasm32"))]
pub fn read<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    read_host(t)
}

/// A tensor's values on the host as f32 (native only: the browser reads asynchronously).
#[cfg(target_arch = "wasm32")]
pub fn read<const D: usize>(_t: Tensor<D>) -> Result<Vec<f32>> {
    Err(ModelError::Device("synchronous read-back is unavailable in the browser".into()))
}

/// A tensor's values as f32 by a synchronous read, which burn's CPU device (flex) allows in the
/// browser too: for host-side conversions of a model on the CPU.
pub fn read_host<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().map_err(failed)
}

/// A tensor's values on the host as f32 without blocking (the browser's only way; works
/// natively too).
pub async fn read_async<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    let data = t.into_data_async().await.map_err(failed)?;
    data.convert::<f32>().try_into_vec::<f32>().map_err(failed)
}

/// Host values of a `[rows, width]` tensor as one vector per row.
pub fn split_rows(flat: &[f32], width: usize) -> impl Iterator<Item = Vec<f32>> + '_ {
    flat.chunks(width.max(1)).map(<[f32]>::to_vec)
}
