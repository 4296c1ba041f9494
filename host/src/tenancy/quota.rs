//! What one tenant may consume: request rates (per tenant and per subject, token buckets),
//! requests in progress, and its share of the sandbox's instance pool.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::CallerId;
use crate::config::QuotaConfig;
use crate::sandbox::Share;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The tenant's request rate is used up.
    #[error("the tenant's request rate limit is exhausted")]
    TenantRate {
        /// When a request would be admitted again.
        retry_after: Duration,
    },
    /// This subject's request rate is used up.
    #[error("your request rate limit is exhausted")]
    SubjectRate {
        /// When a request would be admitted again.
        retry_after: Duration,
    },
    /// Too many of the tenant's requests are in progress.
    #[error("the tenant has {limit} requests in progress, its limit")]
    Concurrency {
        /// The cap.
        limit: usize,
    },
}

impl Refusal {
    /// A fixed word for metrics and logs.
    pub fn limit(&self) -> &'static str {
        match self {
            Refusal::TenantRate { .. } => "tenant_rate",
            Refusal::SubjectRate { .. } => "subject_rate",
            Refusal::Concurrency { .. } => "concurrency",
        }
    }

    /// Whole seconds a client should wait (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            Refusal::TenantRate { retry_after } | Refusal::SubjectRate { retry_after } => {
                retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)
            }
            Refusal::Concurrency { .. } => 1,
        }
        .max(1)
    }
}

/// Held while an admitted request is in progress.
#[derive(Debug)]
pub struct Admission {
    _permit: Option<OwnedSemaphorePermit>,
}

/// One tenant's limits.
pub struct Quotas {
    tenant_rate: Option<DefaultDirectRateLimiter>,
    /// Per caller: (issuer, subject), so equal `sub`s from two issuers never share a bucket.
    subject_rate: Option<DefaultKeyedRateLimiter<CallerId>>,
    in_progress: Option<(Arc<Semaphore>, usize)>,
    /// The tenant's share of the instance pool, in units: every plugin call holds as many
    /// as its component's footprint in the pool.
    pub instances: Share,
}

impl std::fmt::Debug for Quotas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quotas")
            .field("tenant_rate", &self.tenant_rate.is_some())
            .field("subject_rate", &self.subject_rate.is_some())
            .field("in_progress", &self.in_progress.as_ref().map(|(_, n)| n))
            .field("instance_share", &self.instances.size)
            .finish()
    }
}

fn quota(per_minute: Option<u32>, burst: Option<u32>) -> Option<Quota> {
    let rate = NonZeroU32::new(per_minute?)?;
    let burst = burst.and_then(NonZeroU32::new).unwrap_or(rate);
    Some(Quota::per_minute(rate).allow_burst(burst))
}

impl Quotas {
    /// Limits from `[tenant.quota]`, with `instance_share` plugin instances.
    pub fn new(config: &QuotaConfig, instance_share: u32) -> Self {
        Self {
            tenant_rate: quota(config.requests_per_minute, config.burst)
                .map(DefaultDirectRateLimiter::direct),
            subject_rate: quota(config.subject_requests_per_minute, config.subject_burst)
                .map(DefaultKeyedRateLimiter::keyed),
            in_progress: config
                .max_concurrent_requests
                .map(|n| (Arc::new(Semaphore::new(n)), n)),
            instances: Share {
                permits: Arc::new(Semaphore::new(instance_share.max(1) as usize)),
                size: instance_share.max(1),
            },
        }
    }

    /// Admit one JSON-RPC request from `caller`, or say why not. The caller's bucket is
    /// checked before the tenant's, so a noisy caller spends only its own budget.
    pub fn admit(&self, caller: &CallerId) -> Result<Admission, Refusal> {
        let permit = match &self.in_progress {
            Some((sem, limit)) => Some(
                sem.clone()
                    .try_acquire_owned()
                    .map_err(|_| Refusal::Concurrency { limit: *limit })?,
            ),
            None => None,
        };
        let clock = DefaultClock::default();
        if let Some(limiter) = &self.subject_rate
            && let Err(wait) = limiter.check_key(caller)
        {
            return Err(Refusal::SubjectRate {
                retry_after: wait.wait_time_from(clock.now()),
            });
        }
        if let Some(limiter) = &self.tenant_rate
            && let Err(wait) = limiter.check()
        {
            return Err(Refusal::TenantRate {
                retry_after: wait.wait_time_from(clock.now()),
            });
        }
        Ok(Admission { _permit: permit })
    }

    /// Forget subjects whose buckets are full again (bounds memory; call periodically).
    pub fn forget_idle_subjects(&self) {
        if let Some(l) = &self.subject_rate {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// Whether any request-level limit is configured.
    pub fn limits_requests(&self) -> bool {
        self.tenant_rate.is_some() || self.subject_rate.is_some() || self.in_progress.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::CallerName;

    fn who(issuer: &str, sub: &str) -> CallerId {
        CallerId {
            issuer: Some(Arc::from(issuer)),
            name: CallerName::Subject(sub.into()),
        }
    }

    #[test]
    fn the_same_sub_from_two_issuers_has_two_buckets() {
        let q = Quotas::new(
            &QuotaConfig {
                subject_requests_per_minute: Some(1),
                ..Default::default()
            },
            4,
        );
        assert!(q.admit(&who("https://x", "alice")).is_ok());
        assert!(q.admit(&who("https://x", "alice")).is_err());
        assert!(
            q.admit(&who("https://y", "alice")).is_ok(),
            "alice@y is not alice@x"
        );
    }

    #[test]
    fn subject_and_tenant_buckets() {
        let q = Quotas::new(
            &QuotaConfig {
                requests_per_minute: Some(5),
                subject_requests_per_minute: Some(2),
                ..Default::default()
            },
            4,
        );
        assert!(q.admit(&who("https://x", "alice")).is_ok());
        assert!(q.admit(&who("https://x", "alice")).is_ok());
        let refused = q.admit(&who("https://x", "alice")).unwrap_err();
        assert!(matches!(refused, Refusal::SubjectRate { .. }));
        // 2 per minute: the next cell is 30 s away.
        assert!((29..=30).contains(&refused.retry_after_secs()));
        assert!(q.admit(&who("https://x", "bob")).is_ok());
        assert!(q.admit(&who("https://x", "bob")).is_ok());
        assert!(q.admit(&who("https://x", "carol")).is_ok());
        assert!(matches!(
            q.admit(&who("https://x", "dave")).unwrap_err(),
            Refusal::TenantRate { .. }
        ));
    }

    #[test]
    fn requests_in_progress_are_capped() {
        let q = Quotas::new(
            &QuotaConfig {
                max_concurrent_requests: Some(1),
                ..Default::default()
            },
            1,
        );
        let held = q.admit(&who("https://x", "a")).unwrap();
        assert_eq!(
            q.admit(&who("https://x", "b")).unwrap_err(),
            Refusal::Concurrency { limit: 1 }
        );
        drop(held);
        assert!(q.admit(&who("https://x", "b")).is_ok());
    }
}
