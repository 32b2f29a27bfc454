//! Reading GitHub's rate-limit headers and deciding how long to wait.
//!
//! GitHub has a primary limit (`x-ratelimit-remaining` / `x-ratelimit-reset`, per hour) and
//! secondary limits (403/429 with `retry-after`). Waiting a few seconds inside the client is
//! fine; waiting for an hourly reset is not (it would block the scheduler), so longer waits are
//! returned to the caller as [`GithubError::RateLimited`](super::GithubError::RateLimited).

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use reqwest::header::HeaderMap;

/// The last rate-limit budget GitHub reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitSnapshot {
    /// Requests allowed per window (`x-ratelimit-limit`), when sent.
    pub limit: Option<u64>,
    /// Requests left in the window (`x-ratelimit-remaining`).
    pub remaining: u64,
    /// When the window resets (`x-ratelimit-reset`), when sent.
    pub reset: Option<DateTime<Utc>>,
    /// Which budget (`x-ratelimit-resource`: `core`, …), when sent.
    pub resource: Option<String>,
    /// When this snapshot was read.
    pub observed_at: DateTime<Utc>,
}

impl RateLimitSnapshot {
    /// Reads the `x-ratelimit-*` headers; `None` when `x-ratelimit-remaining` is absent
    /// (the simulator, GHES with rate limiting disabled).
    pub fn from_headers(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Self> {
        let remaining = header_u64(headers, "x-ratelimit-remaining")?;
        Some(RateLimitSnapshot {
            limit: header_u64(headers, "x-ratelimit-limit"),
            remaining,
            reset: header_u64(headers, "x-ratelimit-reset")
                .and_then(|secs| Utc.timestamp_opt(i64::try_from(secs).ok()?, 0).single()),
            resource: headers
                .get("x-ratelimit-resource")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            observed_at: now,
        })
    }

    /// If the budget is spent, how long until it resets (zero once the reset time passed).
    pub fn exhausted_for(&self, now: DateTime<Utc>) -> Option<Duration> {
        if self.remaining > 0 {
            return None;
        }
        let reset = self.reset?;
        Some((reset - now).to_std().unwrap_or(Duration::ZERO))
    }
}

/// How long a 403/429 response asks us to wait, if it is a rate limit at all.
///
/// `retry-after` (seconds) wins; otherwise `x-ratelimit-remaining: 0` means "until
/// `x-ratelimit-reset`". A 429 without either still is a rate limit: GitHub's guidance is to
/// wait at least a minute then. A 403 without either is a permission problem, not a limit.
pub fn rate_limit_wait(status: u16, headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    if status != 403 && status != 429 {
        return None;
    }
    if let Some(secs) = header_u64(headers, "retry-after") {
        return Some(Duration::from_secs(secs));
    }
    if let Some(wait) = RateLimitSnapshot::from_headers(headers, now).and_then(|s| {
        // A 403 with a spent budget but no reset header still is a limit: wait a minute.
        s.exhausted_for(now)
            .or((s.remaining == 0).then_some(Duration::from_secs(60)))
    }) {
        return Some(wait);
    }
    (status == 429).then_some(Duration::from_secs(60))
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn snapshot_reads_primary_limit_headers() {
        let now = Utc.timestamp_opt(1_000, 0).unwrap();
        let h = headers(&[
            ("x-ratelimit-limit", "5000"),
            ("x-ratelimit-remaining", "4999"),
            ("x-ratelimit-reset", "1600"),
            ("x-ratelimit-resource", "core"),
        ]);
        let snap = RateLimitSnapshot::from_headers(&h, now).unwrap();
        assert_eq!(snap.limit, Some(5000));
        assert_eq!(snap.remaining, 4999);
        assert_eq!(snap.reset, Utc.timestamp_opt(1600, 0).single());
        assert_eq!(snap.exhausted_for(now), None);
        assert!(RateLimitSnapshot::from_headers(&HeaderMap::new(), now).is_none());
    }

    #[test]
    fn waits_follow_retry_after_then_reset() {
        let now = Utc.timestamp_opt(1_000, 0).unwrap();
        let retry = headers(&[("retry-after", "7")]);
        assert_eq!(
            rate_limit_wait(429, &retry, now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            rate_limit_wait(403, &retry, now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(rate_limit_wait(500, &retry, now), None);

        let spent = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1030"),
        ]);
        assert_eq!(
            rate_limit_wait(403, &spent, now),
            Some(Duration::from_secs(30))
        );

        let forbidden = headers(&[("x-ratelimit-remaining", "12")]);
        assert_eq!(rate_limit_wait(403, &forbidden, now), None);
        assert_eq!(
            rate_limit_wait(429, &HeaderMap::new(), now),
            Some(Duration::from_secs(60))
        );
    }
}
