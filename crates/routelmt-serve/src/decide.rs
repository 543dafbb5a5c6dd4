//! Routing decisions in arrival order: a fixed threshold, or the streaming budget controller
//! of `routelmt-route` (large share within `p ± b` over every window of `W` decisions). With a
//! Redis store, the controller's hard band is kept in Redis by one atomic script, so the
//! decisions of every replica form one sequence whose windows all hold the band; each replica
//! keeps its own quantile tracker, fed with the fleet's realized share.

use routelmt_route::controller::{BudgetController, ControllerConfig};
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
    /// The band script, for one decision (the request gets 503).
    #[error("budget store: {0}")]
    Script(redis::RedisError),
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

/// The shared band: the fleet's last `W − 1` decisions in Redis.
pub struct RedisBand {
    conn: redis::Connection,
    keys: [String; 3],
    script: redis::Script,
}

/// Keys: [recent decisions list, large count in it, decision counter]. Args: W, lo, hi,
/// preferred. Returns {large, count, recent length, sequence number}.
const BAND_SCRIPT: &str = r"
local w = tonumber(ARGV[1])
local lo = tonumber(ARGV[2])
local hi = tonumber(ARGV[3])
local pref = tonumber(ARGV[4])
local n = redis.call('LLEN', KEYS[1])
local c = tonumber(redis.call('GET', KEYS[2]) or '0')
local r = math.max(0, w - 1 - n)
local large = pref
if c + 1 > hi then large = 0 elseif c + r < lo then large = 1 end
if w > 1 then
  redis.call('RPUSH', KEYS[1], large)
  c = c + large
  n = n + 1
  if n > w - 1 then
    c = c - tonumber(redis.call('LPOP', KEYS[1]))
    n = n - 1
  end
  redis.call('SET', KEYS[2], c)
end
local seq = redis.call('INCR', KEYS[3])
return {large, c, n, seq}
";

impl RedisBand {
    /// Connects to `url` (`redis://HOST:PORT`); keys start with `prefix`.
    pub fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let failed = |err| StoreError::Connect { url: redacted(url), err };
        let client = redis::Client::open(url).map_err(failed)?;
        let timeout = std::time::Duration::from_secs(2);
        let conn = client.get_connection_with_timeout(timeout).map_err(failed)?;
        conn.set_read_timeout(Some(timeout)).map_err(failed)?;
        let keys = [format!("{prefix}:recent"), format!("{prefix}:large"), format!("{prefix}:seq")];
        Ok(Self { conn, keys, script: redis::Script::new(BAND_SCRIPT) })
    }

    /// Applies the band to a preference; returns (large, fleet share of the recent decisions,
    /// sequence number).
    fn decide(
        &mut self,
        cfg: &ControllerConfig,
        preferred: bool,
    ) -> Result<(bool, f64, u64), StoreError> {
        let (lo, hi) = cfg.band();
        let (large, c, n, seq): (i64, i64, i64, u64) = self
            .script
            .key(&self.keys[0])
            .key(&self.keys[1])
            .key(&self.keys[2])
            .arg(cfg.window)
            .arg(lo)
            .arg(hi)
            .arg(i64::from(preferred))
            .invoke(&mut self.conn)
            .map_err(StoreError::Script)?;
        let share = if n > 0 { c as f64 / n as f64 } else { cfg.budget };
        Ok((large == 1, share, seq))
    }
}

enum Kind {
    Threshold(f64),
    Controller { ctl: Box<BudgetController>, band: Option<Box<RedisBand>>, share: Option<f64> },
}

/// Decides requests one at a time, in order.
pub struct Decider {
    kind: Kind,
    direction: Direction,
    seq: u64,
}

impl Decider {
    /// A fixed threshold on the score (`direction` Asc: lowest scores go large).
    pub fn threshold(tau: f64, direction: Direction) -> Self {
        Self { kind: Kind::Threshold(tau), direction, seq: 0 }
    }

    /// The streaming controller, with the band shared through `band` when given.
    pub fn controller(
        cfg: ControllerConfig,
        direction: Direction,
        band: Option<RedisBand>,
    ) -> Result<Self, routelmt_route::RouteError> {
        let ctl = BudgetController::new(cfg)?;
        Ok(Self {
            kind: Kind::Controller { ctl: Box::new(ctl), band: band.map(Box::new), share: None },
            direction,
            seq: 0,
        })
    }

    /// The target share, for a controller.
    pub fn budget(&self) -> Option<f64> {
        match &self.kind {
            Kind::Controller { ctl, .. } => Some(ctl.config().budget),
            Kind::Threshold(_) => None,
        }
    }

    /// Decides one request from its router score. A store error fails this decision (the
    /// caller answers 503) and leaves the sequence as it was.
    pub fn decide(&mut self, score: f32) -> Result<Routed, StoreError> {
        let s = self.direction.score(f64::from(score));
        let (large, threshold) = match &mut self.kind {
            Kind::Threshold(tau) => {
                let t = self.direction.score(*tau);
                self.seq += 1;
                (s > t, t)
            }
            Kind::Controller { ctl, band: None, .. } => {
                let d = ctl.decide(s);
                self.seq += 1;
                (d.route == Route::Large, d.threshold)
            }
            Kind::Controller { ctl, band: Some(band), share } => {
                let (preferred, threshold) = ctl.prefer(s, *share);
                let cfg = *ctl.config();
                let (large, fleet_share, seq) = band.decide(&cfg, preferred)?;
                ctl.record(large, preferred);
                *share = Some(fleet_share);
                self.seq = seq;
                (large, threshold)
            }
        };
        let side = if large { Side::Large } else { Side::Small };
        Ok(Routed { score, side, threshold, seq: self.seq })
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
        let e = RedisBand::connect("redis://:s3cret@127.0.0.1:1/", "t").err().unwrap();
        let m = e.to_string();
        assert!(!m.contains("s3cret") && m.contains("redis://:***@127.0.0.1:1/"), "{m}");
    }
}
