//! Per-user limits on the routes that cost us calls to Unitel and WeChat, as the system we
//! replace had (10 orders and 20 payments a minute per openid). Counted per process: with
//! N instances a user gets up to N times the limit, which still bounds abuse.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::http::ApiError;

const WINDOW: Duration = Duration::from_secs(60);
/// Beyond this many tracked (route, user) pairs, expired windows are dropped.
const PRUNE_ABOVE: usize = 10_000;

/// When the current window of a (route, user) pair began, and how many requests it saw.
type Windows = HashMap<(&'static str, String), (Instant, u32)>;

#[derive(Default)]
pub struct RateLimiter {
    windows: Mutex<Windows>,
}

impl RateLimiter {
    /// Counts one request of `key` on `route`; refuses it past `per_minute` in the current
    /// one-minute window.
    pub fn check(&self, route: &'static str, key: &str, per_minute: u32) -> Result<(), ApiError> {
        let now = Instant::now();
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if windows.len() > PRUNE_ABOVE {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let (start, count) = windows.entry((route, key.to_owned())).or_insert((now, 0));
        if now.duration_since(*start) >= WINDOW {
            *start = now;
            *count = 0;
        }
        if *count >= per_minute {
            return Err(ApiError::TooManyRequests);
        }
        *count += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_limit_then_refuses_per_route_and_user() {
        let limiter = RateLimiter::default();
        for _ in 0..3 {
            limiter.check("orders", "a", 3).unwrap();
        }
        assert!(matches!(
            limiter.check("orders", "a", 3),
            Err(ApiError::TooManyRequests)
        ));
        limiter.check("orders", "b", 3).unwrap();
        limiter.check("payments", "a", 3).unwrap();
    }
}
