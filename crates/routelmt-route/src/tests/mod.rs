//! Crate-level tests: goldens from the independent Python implementation of the metrics
//! (`tests/fixtures/route/make_goldens.py`, and scipy for exact parsing), and property tests
//! of metrics and policies. Unit tests of one file live in that file's `mod tests`.

mod golden;
mod props;
