//! Routing decisions in arrival order: a fixed threshold, or the streaming budget controller
//! of `routelmt-route` (large share within `p ± b` over every window of `W` decisions). With a
//! Redis store, the controller's hard band is kept in Redis by one atomic script, so the
//! decisions of every replica form one sequence whose windows all hold the band; each replica
//! keeps its own quantile tracker, fed with the fleet's realized share.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use routelmt_route::controller::{BudgetController, ControllerConfig, DecisionWindow};
use routelmt_route::policy::{Direction, Route};
use thiserror::Error;

/// Which side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The small model.
    Small,
    /// The large model.
    Large,
}

impl Side {
    /// `small` or `large`.
    pub fn name(self) -> &'static str {
        match self {
            Side::Small => "small",
            Side::Large => "large",
        }
    }

    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::Small => Side::Large,
            Side::Large => Side::Small,
        }
    }
}

/// A routed request: the router's score and what was decided on it. The one record of a
/// decision, from the decider through the batcher to the metrics and the response headers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Routed {
    /// The router's score.
    pub score: f32,
    /// The side decided on.
    pub side: Side,
    /// The threshold the score was compared with (in the score's direction).
    pub threshold: f64,
    /// Position in the decision sequence (the fleet's, with a store), from 1.
    pub seq: u64,
    /// This replica's own decision number, from 1 (what [`Decider::served`] finds it by).
    pub own: u64,
}

/// The shared budget store failed (the Redis error is written into the message, see
/// [`crate::error`]).
#[derive(Debug, Error)]
pub enum StoreError {
    /// Connecting at start-up.
    #[error("budget store {url}: {err}")]
    Connect {
        /// The store's URL.
        url: String,
        /// What Redis said.
        err: redis::RedisError,
    },
    /// The band script, for one decision (the request gets 503 under `fail-closed`).
    #[error("budget store: {0}")]
    Script(redis::RedisError),
    /// The store was unreachable a moment ago; the next attempt is not due yet.
    #[error("budget store {url}: unreachable, retrying")]
    Down {
        /// The store's URL.
        url: String,
    },
}

/// A store URL fit for messages: the password in its user part replaced by `***`
/// (`redis://user:secret@host` → `redis://user:***@host`).
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let hidden = match userinfo.split_once(':') {
                Some((name, _)) => format!("{name}:***"),
                None => "***".to_string(),
            };
            format!("{scheme}://{hidden}@{host}{path}")
        }
        None => url.to_string(),
    }
}

/// What the gateway does while the budget store is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StorePolicy {
    /// Keep routing on this replica's own controller (which holds the band over its own
    /// decisions) and add those decisions to the store's list when it returns.
    #[default]
    Local,
    /// Refuse requests (503) until the store is back.
    FailClosed,
}

/// How long a connection attempt, a read or a write to the store may take.
const STORE_TIMEOUT: Duration = Duration::from_millis(250);

/// Wait between reconnection attempts while the store is down.
const STORE_RETRY: Duration = Duration::from_millis(500);

/// Idle keys expire after a day, so lists left by other windows or prefixes go away.
const STORE_TTL_SECS: u64 = 86_400;

/// The shared band: the fleet's last `W − 1` decisions in Redis, under keys that include `W`
/// (replicas on different windows never share a list). The connection is re-established when
/// it breaks, with short timeouts, at most every [`STORE_RETRY`].
pub struct RedisBand {
    client: redis::Client,
    url: String,
    conn: Option<redis::Connection>,
    retry_at: Instant,
    keys: [String; 3],
    script: redis::Script,
    record: redis::Script,
    amend_script: redis::Script,
    /// Decisions made on the local controller while the store was down (at most `W − 1`),
    /// with this replica's decision numbers, added to the store's list when it returns.
    pending: VecDeque<(u64, bool)>,
    /// Where this replica's recent decisions sit in the fleet's sequence: (own, seq), the last
    /// `W` of them.
    placed: VecDeque<(u64, u64)>,
    /// Amendments (fleet seq, large) that could not reach the store yet.
    pending_amends: Vec<(u64, bool)>,
    window: usize,
}

/// The Lua both scripts share: `push(w, n, c, large)` appends one decision to the recent list
/// (`KEYS[1]`, length `n`, `c` of them large) and trims it to `W − 1`; returns `n, c`.
macro_rules! band_push {
    () => {
        r"
local function push(w, n, c, large)
  if w > 1 then
    redis.call('RPUSH', KEYS[1], large)
    c = c + large
    n = n + 1
    while n > w - 1 do
      c = c - tonumber(redis.call('LPOP', KEYS[1]))
      n = n - 1
    end
  end
  return n, c
end
"
    };
}

/// Keys as [`BAND_SCRIPT`]. Args: W, the fleet sequence number of a decision, its new side
/// (0/1), TTL. Changes the decision in the recent list if it is still there (the list holds the
/// decisions numbered up to the counter, in order). Returns 1 if it changed.
const AMEND_SCRIPT: &str = r"
local w = tonumber(ARGV[1])
if w <= 1 then return 0 end
local n = redis.call('LLEN', KEYS[1])
local last = tonumber(redis.call('GET', KEYS[3]) or '0')
local at = n - 1 - (last - tonumber(ARGV[2]))
if at < 0 or at >= n then return 0 end
local old = tonumber(redis.call('LINDEX', KEYS[1], at))
local new = tonumber(ARGV[3])
if old == new then return 0 end
redis.call('LSET', KEYS[1], at, new)
redis.call('INCRBY', KEYS[2], new - old)
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[4]) end
return 1
";

/// Keys: [recent decisions list, large count in it, decision counter]. Args: W, lo, hi,
/// preferred, TTL. Returns {large, count, recent length, sequence number}.
const BAND_SCRIPT: &str = concat!(
    band_push!(),
    r"
local w = tonumber(ARGV[1])
local lo = tonumber(ARGV[2])
local hi = tonumber(ARGV[3])
local pref = tonumber(ARGV[4])
local n = redis.call('LLEN', KEYS[1])
local c = tonumber(redis.call('GET', KEYS[2]) or '0')
local r = math.max(0, w - 1 - n)
local large = pref
if c + 1 > hi then large = 0 elseif c + r < lo then large = 1 end
n, c = push(w, n, c, large)
redis.call('SET', KEYS[2], c)
local seq = redis.call('INCR', KEYS[3])
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[5]) end
return {large, c, n, seq}
"
);

/// Keys as [`BAND_SCRIPT`]. Args: W, TTL, then decisions (0/1) made elsewhere, appended in
/// order with the same trimming. Returns the decision counter after them.
const RECORD_SCRIPT: &str = concat!(
    band_push!(),
    r"
local w = tonumber(ARGV[1])
local n = redis.call('LLEN', KEYS[1])
local c = tonumber(redis.call('GET', KEYS[2]) or '0')
for i = 3, #ARGV do
  n, c = push(w, n, c, tonumber(ARGV[i]))
  redis.call('INCR', KEYS[3])
end
redis.call('SET', KEYS[2], c)
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[2]) end
return tonumber(redis.call('GET', KEYS[3]) or '0')
"
);

impl RedisBand {
    /// The band of the store at `url` (`redis://`), keys under `prefix` and the window `W`.
    /// Connects now when `eager` (an unreachable store is then an error); else at the first
    /// decision.
    pub fn new(url: &str, prefix: &str, window: usize, eager: bool) -> Result<Self, StoreError> {
        let failed = |err| StoreError::Connect { url: redacted(url), err };
        let client = redis::Client::open(url).map_err(failed)?;
        let keys = ["recent", "large", "seq"].map(|k| format!("{prefix}:w{window}:{k}"));
        let mut band = Self {
            client,
            url: redacted(url),
            conn: None,
            retry_at: Instant::now(),
            keys,
            script: redis::Script::new(BAND_SCRIPT),
            record: redis::Script::new(RECORD_SCRIPT),
            amend_script: redis::Script::new(AMEND_SCRIPT),
            pending: VecDeque::new(),
            placed: VecDeque::new(),
            pending_amends: Vec::new(),
            window,
        };
        if eager {
            band.connection()?;
        }
        Ok(band)
    }

    /// Whether the last exchange with the store worked.
    pub fn up(&self) -> bool {
        self.conn.is_some()
    }

    /// Connects if there is no connection and an attempt is due (adding the decisions made
    /// meanwhile).
    fn connection(&mut self) -> Result<(), StoreError> {
        if self.conn.is_none() {
            let now = Instant::now();
            if now < self.retry_at {
                return Err(StoreError::Down { url: self.url.clone() });
            }
            self.retry_at = now + STORE_RETRY;
            let failed = |err| StoreError::Connect { url: self.url.clone(), err };
            let conn = self.client.get_connection_with_timeout(STORE_TIMEOUT).map_err(failed)?;
            conn.set_read_timeout(Some(STORE_TIMEOUT)).map_err(failed)?;
            conn.set_write_timeout(Some(STORE_TIMEOUT)).map_err(failed)?;
            self.conn = Some(conn);
            if !self.pending.is_empty() {
                let pending: Vec<i64> = self.pending.iter().map(|&(_, l)| i64::from(l)).collect();
                let mut invocation = self.record.key(&self.keys[0]);
                invocation.key(&self.keys[1]).key(&self.keys[2]);
                invocation.arg(self.window).arg(STORE_TTL_SECS).arg(pending);
                let conn = self.conn.as_mut().expect("set above");
                let recorded: Result<u64, _> = invocation.invoke(conn);
                let last = recorded.map_err(|e| {
                    self.conn = None;
                    StoreError::Script(e)
                })?;
                let k = self.pending.len() as u64;
                let placed: Vec<(u64, u64)> = (self.pending.drain(..).enumerate())
                    .map(|(i, (own, _))| (own, (last + 1 + i as u64).saturating_sub(k)))
                    .collect();
                placed.into_iter().for_each(|(own, seq)| self.place(own, seq));
            }
            let amends = std::mem::take(&mut self.pending_amends);
            for (i, &(seq, large)) in amends.iter().enumerate() {
                if let Err(e) = self.amend_seq(seq, large) {
                    self.pending_amends = amends[i..].to_vec();
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// A decision made on the local controller while the store was down.
    fn remember(&mut self, own: u64, large: bool) {
        self.pending.push_back((own, large));
        while self.pending.len() > self.window.saturating_sub(1) {
            self.pending.pop_front();
        }
    }

    /// Where this replica's decision `own` sits in the fleet's sequence.
    fn place(&mut self, own: u64, seq: u64) {
        self.placed.push_back((own, seq));
        while self.placed.len() > self.window {
            self.placed.pop_front();
        }
    }

    /// Sets this replica's decision `own` to `large` in the store's list (a fallback served it
    /// on the other side): in the decisions still waiting for the store, in the store when it
    /// answers, else once it returns. A decision already out of the window is left alone.
    fn amend(&mut self, own: u64, large: bool) {
        if let Some(p) = self.pending.iter_mut().find(|(o, _)| *o == own) {
            p.1 = large;
        } else if let Some(&(_, seq)) = self.placed.iter().find(|(o, _)| *o == own) {
            let reached = self.conn.is_some() && self.amend_seq(seq, large).is_ok();
            if !reached && self.pending_amends.len() < self.window {
                self.pending_amends.push((seq, large));
            }
        }
    }

    fn amend_seq(&mut self, seq: u64, large: bool) -> Result<(), StoreError> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(StoreError::Down { url: self.url.clone() });
        };
        let mut invocation = self.amend_script.key(&self.keys[0]);
        invocation.key(&self.keys[1]).key(&self.keys[2]);
        invocation.arg(self.window).arg(seq).arg(i64::from(large)).arg(STORE_TTL_SECS);
        let changed: Result<i64, _> = invocation.invoke(conn);
        changed.map(|_| ()).map_err(|e| {
            self.conn = None;
            StoreError::Script(e)
        })
    }

    fn decide(
        &mut self,
        cfg: &ControllerConfig,
        preferred: bool,
    ) -> Result<(bool, f64, u64), StoreError> {
        let (lo, hi) = cfg.band();
        self.connection()?;
        let conn = self.conn.as_mut().expect("connected");
        let mut invocation = self.script.key(&self.keys[0]);
        invocation.key(&self.keys[1]).key(&self.keys[2]);
        invocation.arg(cfg.window).arg(lo).arg(hi).arg(i64::from(preferred)).arg(STORE_TTL_SECS);
        let reply: Result<(i64, i64, i64, u64), _> = invocation.invoke(conn);
        let (large, c, n, seq) = reply.map_err(|e| {
            self.conn = None;
            StoreError::Script(e)
        })?;
        let share = if n > 0 { c as f64 / n as f64 } else { cfg.budget };
        Ok((large == 1, share, seq))
    }
}

/// A cap on the large share for threshold routing: at most `hi` large in every window of `W`
/// (served sides, after fallbacks), over the last `W − 1` decisions.
struct Cap {
    hi: usize,
    recent: DecisionWindow,
}

impl Cap {
    fn new(share: f64, window: usize) -> Self {
        let hi = (share * window as f64 + 1e-9).floor() as usize;
        Self { hi, recent: DecisionWindow::new(window.max(1) - 1) }
    }

    /// `preferred` (large), unless that would put more than `hi` large in the window.
    fn decide(&mut self, preferred: bool) -> bool {
        let large = preferred && self.recent.large() < self.hi;
        self.recent.push(large);
        large
    }
}

enum Kind {
    Threshold(f64, Option<Cap>),
    Controller {
        ctl: Box<BudgetController>,
        band: Option<(Box<RedisBand>, StorePolicy)>,
        share: Option<f64>,
    },
}

/// Decides requests one at a time, in order.
pub struct Decider {
    kind: Kind,
    direction: Direction,
    seq: u64,
    /// This replica's decisions so far.
    own: u64,
    /// Decisions made on the local controller because the store was down.
    local: u64,
}

impl Decider {
    /// A fixed threshold on the score (`direction` Asc: lowest scores go large), with an
    /// optional spend cap `(share, W)`: at most `⌊share · W⌋` requests served large in every
    /// window of `W` (a request over the cap goes small).
    pub fn threshold(tau: f64, direction: Direction, cap: Option<(f64, usize)>) -> Self {
        let cap = cap.map(|(share, w)| Cap::new(share, w));
        Self { kind: Kind::Threshold(tau, cap), direction, seq: 0, own: 0, local: 0 }
    }

    /// The streaming controller, with the band shared through `band` when given.
    pub fn controller(
        cfg: ControllerConfig,
        direction: Direction,
        band: Option<(RedisBand, StorePolicy)>,
    ) -> Result<Self, routelmt_route::RouteError> {
        let ctl = BudgetController::new(cfg)?;
        Ok(Self {
            kind: Kind::Controller {
                ctl: Box::new(ctl),
                band: band.map(|(b, p)| (Box::new(b), p)),
                share: None,
            },
            direction,
            seq: 0,
            own: 0,
            local: 0,
        })
    }

    /// Whether the budget store answered last time (`None` without a store), and how many
    /// decisions were made on the local controller while it did not.
    pub fn store(&self) -> Option<(bool, u64)> {
        match &self.kind {
            Kind::Controller { band: Some((band, _)), .. } => Some((band.up(), self.local)),
            _ => None,
        }
    }

    /// The target share, for a controller.
    pub fn budget(&self) -> Option<f64> {
        match &self.kind {
            Kind::Controller { ctl, .. } => Some(ctl.config().budget),
            Kind::Threshold(..) => None,
        }
    }

    /// Records that the request `routed` was served by `side` (a fallback to the other side):
    /// the budget then counts what was served. Returns whether the decision changed sides.
    pub fn served(&mut self, routed: &Routed, side: Side) -> bool {
        if side == routed.side || routed.own == 0 || routed.own > self.own {
            return false;
        }
        let (age, large) = (self.own - routed.own, side == Side::Large);
        match &mut self.kind {
            Kind::Threshold(_, None) => {}
            Kind::Threshold(_, Some(cap)) => {
                cap.recent.amend(age, large);
            }
            Kind::Controller { ctl, band, .. } => {
                ctl.amend(age, large);
                if let Some((band, _)) = band {
                    band.amend(routed.own, large);
                }
            }
        }
        true
    }

    /// Decides one request from its router score. A store error fails this decision (the
    /// caller answers 503) and leaves the sequence as it was.
    pub fn decide(&mut self, score: f32) -> Result<Routed, StoreError> {
        let s = self.direction.score(f64::from(score));
        let (large, threshold) = match &mut self.kind {
            Kind::Threshold(tau, cap) => {
                let t = self.direction.score(*tau);
                self.seq += 1;
                let preferred = s > t;
                (cap.as_mut().map_or(preferred, |c| c.decide(preferred)), t)
            }
            Kind::Controller { ctl, band: None, .. } => {
                let d = ctl.decide(s);
                self.seq += 1;
                (d.route == Route::Large, d.threshold)
            }
            Kind::Controller { ctl, band: Some((band, policy)), share } => {
                let (preferred, threshold) = ctl.prefer(s, *share);
                let cfg = *ctl.config();
                match band.decide(&cfg, preferred) {
                    Ok((large, fleet_share, seq)) => {
                        ctl.record(large, preferred);
                        *share = Some(fleet_share);
                        self.seq = seq;
                        band.place(self.own + 1, seq);
                        (large, threshold)
                    }
                    Err(e) if *policy == StorePolicy::FailClosed => return Err(e),
                    Err(_) => {
                        // The store is down: this replica's own band decides, and the store
                        // gets the decision when it returns.
                        let large = ctl.band_decision(preferred);
                        ctl.record(large, preferred);
                        band.remember(self.own + 1, large);
                        *share = None;
                        self.local += 1;
                        self.seq += 1;
                        (large, threshold)
                    }
                }
            }
        };
        self.own += 1;
        let side = if large { Side::Large } else { Side::Small };
        Ok(Routed { score, side, threshold, seq: self.seq, own: self.own })
    }
}

#[cfg(test)]
mod redact_tests {
    use super::*;

    #[test]
    fn store_urls_lose_their_password_in_messages() {
        assert_eq!(redacted("redis://:s3cret@10.0.0.1:6379/0"), "redis://:***@10.0.0.1:6379/0");
        assert_eq!(redacted("rediss://app:s3cret@host/"), "rediss://app:***@host/");
        assert_eq!(redacted("redis://tokenonly@host"), "redis://***@host");
        assert_eq!(redacted("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        // A connection that fails names the store without the password.
        let e = RedisBand::new("redis://:s3cret@127.0.0.1:1/", "t", 100, true).err().unwrap();
        let m = e.to_string();
        assert!(!m.contains("s3cret") && m.contains("redis://:***@127.0.0.1:1/"), "{m}");
    }
}
