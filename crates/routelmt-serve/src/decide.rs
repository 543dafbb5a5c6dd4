//! Routing decisions in arrival order: a fixed threshold, or the streaming budget controller
//! of `routelmt-route` (large share within `p ± b` over every window of `W` decisions). With a
//! Redis store, the controller's hard band is kept in Redis by one atomic script, so the
//! decisions of every replica form one sequence whose windows all hold the band; each replica
//! keeps its own quantile tracker, fed with the fleet's realized share.

use routelmt_route::controller::{BudgetController, ControllerConfig};
use routelmt_route::policy::Direction;

/// One decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decided {
    /// True: the large side.
    pub large: bool,
    /// The threshold the score was compared with (in the score's direction).
    pub threshold: f64,
    /// Position in the decision sequence (the fleet's, with a store), from 1.
    pub seq: u64,
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
    pub fn connect(url: &str, prefix: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("budget store {url}: {e}"))?;
        let timeout = std::time::Duration::from_secs(2);
        let conn = client
            .get_connection_with_timeout(timeout)
            .map_err(|e| format!("budget store {url}: {e}"))?;
        conn.set_read_timeout(Some(timeout)).map_err(|e| format!("budget store {url}: {e}"))?;
        let keys = [format!("{prefix}:recent"), format!("{prefix}:large"), format!("{prefix}:seq")];
        Ok(Self { conn, keys, script: redis::Script::new(BAND_SCRIPT) })
    }

    /// Applies the band to a preference; returns (large, fleet share of the recent decisions,
    /// sequence number).
    fn decide(
        &mut self,
        cfg: &ControllerConfig,
        preferred: bool,
    ) -> Result<(bool, f64, u64), String> {
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
            .map_err(|e| format!("budget store: {e}"))?;
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
    ) -> Result<Self, String> {
        let ctl = BudgetController::new(cfg).map_err(|e| e.to_string())?;
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
    pub fn decide(&mut self, score: f64) -> Result<Decided, String> {
        let s = self.direction.score(score);
        match &mut self.kind {
            Kind::Threshold(tau) => {
                let t = self.direction.score(*tau);
                self.seq += 1;
                Ok(Decided { large: s > t, threshold: t, seq: self.seq })
            }
            Kind::Controller { ctl, band: None, .. } => {
                let d = ctl.decide(s);
                self.seq += 1;
                let large = d.route == routelmt_route::policy::Route::Large;
                Ok(Decided { large, threshold: d.threshold, seq: self.seq })
            }
            Kind::Controller { ctl, band: Some(band), share } => {
                let (preferred, threshold) = ctl.prefer(s, *share);
                let cfg = *ctl.config();
                let (large, fleet_share, seq) = band.decide(&cfg, preferred)?;
                ctl.record(large, preferred);
                *share = Some(fleet_share);
                self.seq = seq;
                Ok(Decided { large, threshold, seq })
            }
        }
    }
}
