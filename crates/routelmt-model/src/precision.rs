//! Placeholder until the kernels split lands: the precision lives with the CPU kernels.
pub use crate::cpu::Precision;
