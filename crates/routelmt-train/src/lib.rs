//! Learning the router (RouteLMT §3): LoRA on the small model's projections, trained jointly
//! with a linear head on the last prompt token's state to predict the gain
//! `score_large − score_small` (or the small model's quality, or both), with AdamW on MSE.
//!
//! Native only: reads training files, writes router folders and checkpoints. The result is a
//! router folder ([`routelmt_model::router`]) that every front door reads.

pub mod data;
pub mod error;
pub mod trainer;

pub use data::{Example, read_examples};
pub use error::{Result, TrainError};
pub use trainer::{EpochReport, Event, TrainOutcome, TrainSettings, time_steps, train};
#[cfg(test)]
mod tests;
