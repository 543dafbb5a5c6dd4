//! [`Stopwatch`]: a clock read only when timings were asked for.

use std::time::Instant;

/// Reads the clock only when a profile was asked for: the inference path reads no clock
/// (wasm32 has none; `Instant::now` panics there).
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch(Option<Instant>);

impl Stopwatch {
    /// Starts the clock if `on`; otherwise [`Self::secs`] is always zero.
    pub fn start(on: bool) -> Self {
        Self(on.then(Instant::now))
    }

    /// Seconds since [`Self::start`] (zero when not timed).
    pub fn secs(&self) -> f64 {
        self.0.map_or(0.0, |t| t.elapsed().as_secs_f64())
    }
}
