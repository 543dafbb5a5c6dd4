//! The prefill worker: one OS thread owns the scorer (model + router) and the decider. Requests
//! arrive on a channel; the worker takes up to `max_size` of them, waiting at most
//! `max_wait` after the first, scores them in one batched prefill, and decides each in arrival
//! order (so the budget controller sees one sequence). A batch that fails is rescored row by
//! row, so one bad request cannot fail its neighbours. A request whose client has gone away is
//! dropped before the prefill. A request served by the other side than decided (a fallback)
//! comes back on the same channel, and the decider counts what was served ([`Batcher::served`]).
//! If the worker thread ends (a panic included), [`Batcher::alive`]
//! says so and `/healthz` fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use routelmt_model::{ModelError, Scorer, one_line};
use thiserror::Error;
use tokio::sync::oneshot;

use crate::decide::{Decider, Routed, Side, StoreError};
use crate::metrics::Metrics;

/// A request the worker could not route (the client gets 503).
#[derive(Debug, Error)]
pub enum RoutingError {
    /// The worker thread is gone.
    #[error("the prefill worker stopped")]
    Stopped,
    /// More requests wait for a prefill than the queue holds (`limits.max_queue`).
    #[error("the prefill queue is full; retry shortly")]
    Full,
    /// Scoring this request failed (alone, after its batch failed).
    #[error("{}", one_line(.0))]
    Score(ModelError),
    /// The decision failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Job {
    ids: Vec<u32>,
    reply: oneshot::Sender<Result<Routed, RoutingError>>,
}

/// What the worker receives.
enum Msg {
    /// A request to score and decide.
    Route(Job),
    /// A decided request was served by the other side.
    Served(Routed, Side),
}

/// Handle to the prefill worker; cheap to clone.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Msg>,
    alive: Arc<AtomicBool>,
    queued: Arc<AtomicUsize>,
    max_queue: usize,
}

/// Clears the worker's `alive` flag when the worker thread ends, by return or by panic.
struct AliveGuard(Arc<AtomicBool>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl Batcher {
    /// Starts the worker thread.
    pub fn spawn(
        scorer: Scorer,
        decider: Decider,
        (max_size, max_wait, max_queue): (usize, Duration, usize),
        metrics: Arc<Metrics>,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<Msg>();
        let alive = Arc::new(AtomicBool::new(true));
        let queued = Arc::new(AtomicUsize::new(0));
        let guard = AliveGuard(alive.clone());
        let taken = queued.clone();
        std::thread::Builder::new()
            .name("routelmt-prefill".into())
            .spawn(move || {
                let _guard = guard;
                worker(rx, scorer, decider, max_size.max(1), max_wait, &metrics, &taken)
            })
            .expect("spawn the prefill thread");
        Self { tx, alive, queued, max_queue: max_queue.max(1) }
    }

    /// Whether the worker thread is still running.
    pub fn alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Scores and decides one request.
    pub async fn route(&self, ids: Vec<u32>) -> Result<Routed, RoutingError> {
        let (reply, rx) = oneshot::channel();
        if self.queued.fetch_add(1, Ordering::SeqCst) >= self.max_queue {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(RoutingError::Full);
        }
        self.tx.send(Msg::Route(Job { ids, reply })).map_err(|_| RoutingError::Stopped)?;
        rx.await.map_err(|_| RoutingError::Stopped)?
    }

    /// Tells the decider that `routed` was served by `side` (no-op when that is the side
    /// decided). Returns at once; the worker applies it before its next decision.
    pub fn served(&self, routed: &Routed, side: Side) {
        if side != routed.side {
            let _ = self.tx.send(Msg::Served(*routed, side));
        }
    }
}

fn worker(
    rx: mpsc::Receiver<Msg>,
    scorer: Scorer,
    mut decider: Decider,
    max_size: usize,
    max_wait: Duration,
    metrics: &Metrics,
    queued: &AtomicUsize,
) {
    let served = |decider: &mut Decider, routed: &Routed, side: Side| {
        if decider.served(routed, side) {
            metrics.amended(routed.side, side);
        }
    };
    while let Ok(first) = rx.recv() {
        let first = match first {
            Msg::Route(job) => job,
            Msg::Served(routed, side) => {
                served(&mut decider, &routed, side);
                continue;
            }
        };
        let deadline = Instant::now() + max_wait;
        let mut jobs = vec![first];
        while jobs.len() < max_size {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Msg::Route(j)) => jobs.push(j),
                Ok(Msg::Served(routed, side)) => served(&mut decider, &routed, side),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        queued.fetch_sub(jobs.len(), Ordering::SeqCst);
        // Clients that went away while their request waited get no prefill.
        let before = jobs.len();
        jobs.retain(|j| !j.reply.is_closed());
        metrics.dropped_before_prefill(before - jobs.len());
        if jobs.is_empty() {
            continue;
        }
        let started = Instant::now();
        let ids: Vec<Vec<u32>> = jobs.iter().map(|j| j.ids.clone()).collect();
        let scores: Vec<Result<f32, RoutingError>> =
            match scorer.score(&ids, max_size).and_then(|p| p.read()) {
                Ok(rows) => rows.into_iter().map(|r| Ok(r[0])).collect(),
                Err(_) => ids
                    .iter()
                    .map(|one| {
                        scorer
                            .score(std::slice::from_ref(one), 1)
                            .and_then(|p| p.read())
                            .map(|r| r[0][0])
                            .map_err(RoutingError::Score)
                    })
                    .collect(),
            };
        metrics.prefill(started.elapsed(), jobs.len());
        for (job, score) in jobs.into_iter().zip(scores) {
            let routed = score.and_then(|score| {
                let routed = decider.decide(score)?;
                metrics.decision(&routed, decider.budget());
                Ok(routed)
            });
            // A client that went away no longer waits for its answer.
            let _ = job.reply.send(routed);
        }
        metrics.store(decider.store());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alive_flag_falls_when_the_worker_thread_panics() {
        let alive = Arc::new(AtomicBool::new(true));
        let guard = AliveGuard(alive.clone());
        let t = std::thread::spawn(move || {
            let _guard = guard;
            panic!("a worker that dies");
        });
        assert!(t.join().is_err());
        assert!(!alive.load(Ordering::SeqCst));
    }
}
