//! How a sandbox is set up: where it listens, whom it calls back, and the platform timings
//! that tests scale down.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

#[derive(Clone)]
pub struct SandboxConfig {
    /// Port 0 picks a free port.
    pub wechat_addr: SocketAddr,
    /// Port 0 picks a free port.
    pub unitel_addr: SocketAddr,
    /// Callbacks go to `callback_base + container.path`, e.g. `http://127.0.0.1:3000`.
    pub callback_base: String,
    /// The only `sub_mch_id` bound to the simulated cloud environment.
    pub merchant_id: String,
    pub unitel_username: String,
    /// Never printed: `Debug` redacts it.
    pub unitel_password: String,
    /// Lifetime of a Unitel bearer token (the real one lives about 120 s).
    pub token_ttl: Duration,
    /// Waits between callback attempts after the first; when they run out, delivery stops.
    pub callback_retry_delays: Vec<Duration>,
    /// `closeorder` refuses orders younger than this (the real platform: 5 minutes).
    pub close_min_age: Duration,
    /// How long an accepted refund stays PROCESSING before it succeeds and is called back.
    pub refund_delay: Duration,
    /// How long one callback attempt may take before it counts as failed: the platform
    /// waits 5 s, and a service answering inside that must not be timed out earlier here.
    pub callback_timeout: Duration,
    /// When `downloadbill` serves a day's bill.
    pub bills_ready: BillsReady,
}

/// When the trade bill of a day can be downloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillsReady {
    /// As WeChat Pay: the bill of day D (China date) from 10:00 China time on D+1 (the
    /// platform starts at 09:00 and recommends 10:00); before that, `Bill Creating`.
    Platform,
    /// Any day up to and including today at once, for tests and demos.
    Immediately,
}

impl SandboxConfig {
    /// Random ports on 127.0.0.1, merchant `1712734762`, Unitel user `elife` /
    /// `elife-secret`, tokens for 120 s, a callback schedule in milliseconds rather than
    /// minutes, no minimum age for closing an order, and bills ready at once.
    pub fn for_tests(callback_base: impl Into<String>) -> Self {
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        SandboxConfig {
            wechat_addr: loopback,
            unitel_addr: loopback,
            callback_base: callback_base.into(),
            merchant_id: "1712734762".to_owned(),
            unitel_username: "elife".to_owned(),
            unitel_password: "elife-secret".to_owned(),
            token_ttl: Duration::from_secs(120),
            callback_retry_delays: [50, 100, 200, 500, 1_000, 2_000, 5_000, 5_000, 5_000, 5_000]
                .into_iter()
                .map(Duration::from_millis)
                .collect(),
            close_min_age: Duration::ZERO,
            refund_delay: Duration::from_millis(100),
            callback_timeout: Duration::from_secs(5),
            bills_ready: BillsReady::Immediately,
        }
    }

    /// The schedule WeChat Pay documents for its own notifications
    /// (15s/15s/30s/3m/10m/20m/30m/30m/30m/60m/3h/3h/3h/6h/6h).
    pub fn platform_retry_delays() -> Vec<Duration> {
        [
            15, 15, 30, 180, 600, 1_200, 1_800, 1_800, 1_800, 3_600, 10_800, 10_800, 10_800,
            21_600, 21_600,
        ]
        .into_iter()
        .map(Duration::from_secs)
        .collect()
    }
}

impl fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("wechat_addr", &self.wechat_addr)
            .field("unitel_addr", &self.unitel_addr)
            .field("callback_base", &self.callback_base)
            .field("merchant_id", &self.merchant_id)
            .field("unitel_username", &self.unitel_username)
            .field("unitel_password", &"[redacted]")
            .field("token_ttl", &self.token_ttl)
            .field("callback_retry_delays", &self.callback_retry_delays)
            .field("close_min_age", &self.close_min_age)
            .field("refund_delay", &self.refund_delay)
            .field("callback_timeout", &self.callback_timeout)
            .field("bills_ready", &self.bills_ready)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let config = SandboxConfig::for_tests("http://127.0.0.1:3000");
        let printed = format!("{config:?}");
        assert!(!printed.contains("elife-secret"));
        assert!(printed.contains("[redacted]"));
    }
}
