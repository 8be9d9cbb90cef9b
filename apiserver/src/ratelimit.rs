//! Per-identity rate limits: a token bucket per authenticated identity (name and scope), so one
//! city's script cannot crowd out the others. A request over the limit is answered 429 with
//! `Retry-After`.
//!
//! The limiter runs after authentication and keys on the identity, not on the peer address:
//! operators of a city often share one NAT address on the extranet. Unauthenticated requests
//! never reach it; they are answered 401 without touching the index, and are bounded by the
//! connection limit and the connection timeouts instead.
//!
//! Memory is bounded by the identities active recently: a bucket that has refilled completely
//! is the same as no bucket, so such buckets are dropped in a sweep at most once a second.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};

use crate::auth::{Identity, Scope};
use crate::problem::Problem;

/// Requests per second and burst of each identity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second; `0` turns the limit off.
    pub per_second: f64,
    /// Requests an idle identity may send at once.
    pub burst: u32,
}

impl RateLimit {
    /// No limit.
    pub const OFF: RateLimit = RateLimit { per_second: 0.0, burst: 0 };
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets keyed by identity.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<Buckets>,
}

#[derive(Debug)]
struct Buckets {
    by_identity: HashMap<(String, Scope), Bucket>,
    swept: Instant,
}

impl RateLimiter {
    /// A limiter allowing `limit` to each identity.
    pub fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter { limit, buckets: Mutex::new(Buckets { by_identity: HashMap::new(), swept: Instant::now() }) }
    }

    /// Whether the limit is on.
    pub fn enabled(&self) -> bool {
        self.limit.per_second > 0.0
    }

    /// Takes one request from `identity`'s bucket: `Ok(())`, or `Err(wait)` with how long until
    /// the next request would be allowed.
    pub fn check(&self, identity: &Identity) -> Result<(), Duration> {
        self.check_at(identity, Instant::now())
    }

    fn check_at(&self, identity: &Identity, now: Instant) -> Result<(), Duration> {
        if !self.enabled() {
            return Ok(());
        }
        let RateLimit { per_second, burst } = self.limit;
        let capacity = f64::from(burst.max(1));
        let mut buckets = self.buckets.lock().expect("rate-limit lock");
        if now.duration_since(buckets.swept) >= Duration::from_secs(1) {
            buckets
                .by_identity
                .retain(|_, b| b.tokens + now.duration_since(b.updated).as_secs_f64() * per_second < capacity);
            buckets.swept = now;
        }
        let bucket = buckets
            .by_identity
            .entry((identity.name.clone(), identity.scope.clone()))
            .or_insert(Bucket { tokens: capacity, updated: now });
        let refilled = bucket.tokens + now.duration_since(bucket.updated).as_secs_f64() * per_second;
        bucket.tokens = refilled.min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
        }
    }

    /// How many identities have a bucket (for tests of the eviction).
    pub fn tracked(&self) -> usize {
        self.buckets.lock().expect("rate-limit lock").by_identity.len()
    }
}

/// After authentication: the 429 answer (`Retry-After` in whole seconds, at least 1) when
/// `identity` is over its limit, else `None`.
pub fn over_limit(limiter: &RateLimiter, identity: &Identity) -> Option<Response> {
    let wait = limiter.check(identity).err()?;
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    tracing::debug!(identity = %identity.name, seconds, "rate limited");
    let mut response = Problem::too_many_requests(&identity.name, seconds).into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Method;

    fn identity(name: &str) -> Identity {
        Identity { name: name.into(), scope: Scope::Province, read_only: false, method: Method::Token }
    }

    #[test]
    fn burst_then_refill_per_identity() {
        let limiter = RateLimiter::new(RateLimit { per_second: 2.0, burst: 3 });
        let (a, b) = (identity("a"), identity("b"));
        let start = Instant::now();
        for _ in 0..3 {
            limiter.check_at(&a, start).unwrap();
        }
        let wait = limiter.check_at(&a, start).unwrap_err();
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500), "{wait:?}");
        limiter.check_at(&b, start).unwrap();
        limiter.check_at(&a, start + Duration::from_millis(500)).unwrap();
        limiter.check_at(&a, start + Duration::from_millis(500)).unwrap_err();
    }

    #[test]
    fn full_buckets_are_evicted() {
        let limiter = RateLimiter::new(RateLimit { per_second: 10.0, burst: 5 });
        let start = Instant::now();
        for i in 0..100 {
            limiter.check_at(&identity(&format!("caller-{i}")), start).unwrap();
        }
        assert_eq!(limiter.tracked(), 100);
        // One second later every bucket has refilled; the sweep drops them.
        limiter.check_at(&identity("late"), start + Duration::from_secs(2)).unwrap();
        assert_eq!(limiter.tracked(), 1);
    }

    #[test]
    fn off_never_limits() {
        let limiter = RateLimiter::new(RateLimit::OFF);
        let start = Instant::now();
        for _ in 0..1000 {
            limiter.check_at(&identity("a"), start).unwrap();
        }
        assert_eq!(limiter.tracked(), 0);
    }
}
