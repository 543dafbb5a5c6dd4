//! Learning the router (`docs/method.md`): LoRA on the small model's projections, trained
//! jointly with a linear head on the last prompt token's state to predict the gain
//! `score_large − score_small` (or the small model's quality, or both), with AdamW on MSE.
//!
//! In three parts, as burn's own learner is: one step (`step.rs`: a micro-batch's forward and
//! loss, validation), the loop ([`trainer`]: a [`TrainJob`] run with an event callback that
//! can stop it) and checkpoints (`checkpoint.rs`: save, restore, publish).
//!
//! Native only: reads training files, writes router folders and checkpoints. The result is a
//! router folder ([`routelmt_model::router`]) that every front door reads.

mod bench;
mod checkpoint;
pub mod data;
pub mod error;
mod settings;
mod step;
pub mod trainer;

pub use bench::time_steps;
pub use data::{Example, read_examples};
pub use error::{Result, Setting, TrainError};
pub use settings::TrainSettings;
pub use step::EpochReport;
pub use trainer::{Control, Event, TrainJob, TrainOutcome, train};
#[cfg(test)]
mod tests;
