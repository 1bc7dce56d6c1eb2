//! What a failed request's fate is, and how long to wait before trying again: the SDK retries
//! within a request (standard mode); this is the shipper's own retry across requests.

use crate::{config::Config, model::now_s};
use aws_sdk_cloudwatch::error::{ProvideErrorMetadata, SdkError};
use std::time::Duration;

/// What to do with a request that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    Retry,
    Reject,
}

pub(crate) const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalFailure",
    "InternalServiceError",
    "InternalException",
];

pub(crate) fn classify<E: ProvideErrorMetadata, R>(
    e: &SdkError<E, R>,
    status: Option<u16>,
) -> Fate {
    match e {
        SdkError::ServiceError(se) => service_fate(se.err().code().unwrap_or(""), status),
        // No credentials yet, timeouts, connection refused, a cut response: transient.
        _ => Fate::Retry,
    }
}

/// A service's answer: 5xx, 429 and throttling codes are transient; any other refusal is the
/// request's own fault and would fail again.
fn service_fate(code: &str, status: Option<u16>) -> Fate {
    match status {
        Some(s) if s >= 500 || s == 429 => Fate::Retry,
        _ if THROTTLING.contains(&code) => Fate::Retry,
        _ => Fate::Reject,
    }
}

/// The HTTP status of a failed call, when there was a response.
pub(crate) fn status<E>(
    e: &SdkError<E, aws_sdk_cloudwatch::config::http::HttpResponse>,
) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// Exponential backoff with full jitter.
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(cfg: &Config) -> Self {
        let initial = Duration::from_millis(cfg.backoff_initial_ms.max(1));
        Self {
            initial,
            max: Duration::from_millis(cfg.backoff_max_ms.max(cfg.backoff_initial_ms).max(1)),
            next: initial,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.next = self.initial;
    }

    pub(crate) fn step(&mut self) -> Duration {
        let cap = self.next;
        self.next = (self.next * 2).min(self.max);
        // Full jitter: uniform in [cap/2, cap] (never zero, so a dead endpoint is not spun on).
        let r = random() % 1000;
        cap / 2 + cap / 2 * r as u32 / 1000
    }
}

pub(super) fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_s() as u64);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff(initial_ms: u64, max_ms: u64) -> Backoff {
        Backoff::new(&Config {
            backoff_initial_ms: initial_ms,
            backoff_max_ms: max_ms,
            ..Config::default()
        })
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_and_resets() {
        let mut b = backoff(100, 1_000);
        for cap_ms in [100u64, 200, 400, 800, 1_000, 1_000, 1_000] {
            let d = b.step();
            let (lo, hi) = (
                Duration::from_millis(cap_ms / 2),
                Duration::from_millis(cap_ms),
            );
            assert!(lo <= d && d <= hi, "{d:?} not in [{lo:?}, {hi:?}]");
        }
        b.reset();
        assert!(b.step() <= Duration::from_millis(100));
    }

    #[test]
    fn backoff_is_never_zero_and_a_max_below_initial_is_raised() {
        let mut b = backoff(0, 0);
        for _ in 0..20 {
            assert!(
                b.step() >= Duration::from_micros(500),
                "a dead endpoint is not spun on"
            );
        }
        let mut b = backoff(500, 10);
        assert!(
            b.step() >= Duration::from_millis(250),
            "max is raised to initial"
        );
    }

    #[test]
    fn transient_answers_are_retried_and_refusals_are_not() {
        assert_eq!(service_fate("", Some(503)), Fate::Retry);
        assert_eq!(service_fate("", Some(500)), Fate::Retry);
        assert_eq!(service_fate("", Some(429)), Fate::Retry);
        assert_eq!(service_fate("ThrottlingException", Some(400)), Fate::Retry);
        assert_eq!(service_fate("Throttling", None), Fate::Retry);
        assert_eq!(
            service_fate("InvalidParameterValue", Some(400)),
            Fate::Reject
        );
        assert_eq!(service_fate("AccessDenied", Some(403)), Fate::Reject);
        assert_eq!(service_fate("", None), Fate::Reject);
    }
}
