//! What one tenant may consume: request rates (per tenant and per subject, token buckets),
//! requests in progress, and its share of the sandbox's instance pool.
//!
//! With several replicas the rates and the in-progress cap are shared ([`SharedQuotas`],
//! which `cluster` implements on Redis): the buckets and counts are global, and this
//! replica's own are the fallback while the shared store cannot be reached (or every request
//! a quota covers is refused, as configured).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::CallerId;
use crate::config::{QuotaConfig, QuotasWithoutRedis};
use crate::sandbox::{BoxFuture, Share};

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
    /// The shared quota store cannot be reached and quotas refuse without it.
    #[error("the gateway cannot check its shared quotas right now")]
    Unavailable,
}

impl Refusal {
    /// A fixed word for metrics and logs.
    pub fn limit(&self) -> &'static str {
        match self {
            Refusal::TenantRate { .. } => "tenant_rate",
            Refusal::SubjectRate { .. } => "subject_rate",
            Refusal::Concurrency { .. } => "concurrency",
            Refusal::Unavailable => "unavailable",
        }
    }

    /// Whether the caller's use caused it (429), rather than the gateway's state (503).
    pub fn is_callers(&self) -> bool {
        !matches!(self, Refusal::Unavailable)
    }

    /// Whole seconds a client should wait (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            Refusal::TenantRate { retry_after } | Refusal::SubjectRate { retry_after } => {
                retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)
            }
            Refusal::Concurrency { .. } | Refusal::Unavailable => 1,
        }
        .max(1)
    }
}

/// Held while an admitted request is in progress.
pub struct Admission {
    _permit: Option<OwnedSemaphorePermit>,
    /// A place among the requests in progress on every replica, given back when dropped.
    _lease: Option<Box<dyn Send + Sync>>,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission").finish_non_exhaustive()
    }
}

/// An admission shared by everything doing its request's work — the response stream, the
/// handler (which may go on after the client has gone), a task the call became — so the
/// place among the requests in progress is given back when the last of them ends, not when
/// the response stream does.
#[derive(Clone, Debug)]
pub struct Held(#[allow(dead_code, reason = "held for its Drop")] Arc<Admission>);

impl From<Admission> for Held {
    fn from(admission: Admission) -> Self {
        Self(Arc::new(admission))
    }
}

/// A token bucket: `per_minute` cells a minute, at most `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Cells added per minute.
    pub per_minute: u32,
    /// Most cells available at once.
    pub burst: u32,
}

/// The shared store could not be asked.
#[derive(Debug, thiserror::Error)]
#[error("the shared quota store is unreachable: {0}")]
pub struct StoreDown(pub String);

/// Buckets and in-progress counts every replica shares.
pub trait SharedQuotas: Send + Sync {
    /// Take one cell from `caller`'s bucket of `tenant` (at `subject`) and one from the
    /// tenant's (at `whole`), both or neither; `None` when admitted.
    fn take<'a>(
        &'a self,
        tenant: &'a str,
        caller: &'a CallerId,
        subject: Option<Rate>,
        whole: Option<Rate>,
    ) -> BoxFuture<'a, Result<Option<Refusal>, StoreDown>>;
    /// Enter as one of at most `limit` requests of `tenant` in progress on every replica:
    /// the lease to hold until the request ends, or `None` when full.
    #[allow(clippy::type_complexity, reason = "a boxed future of a boxed lease")]
    fn enter<'a>(
        &'a self,
        tenant: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Option<Box<dyn Send + Sync>>, StoreDown>>;
}

/// The shared quotas of one tenant, and what to do without them.
#[derive(Clone)]
pub struct Shared {
    /// The tenant's id.
    pub tenant: Arc<str>,
    /// The store.
    pub store: Arc<dyn SharedQuotas>,
    /// `cluster.quotas_without_redis`.
    pub without: QuotasWithoutRedis,
}

/// One tenant's limits.
pub struct Quotas {
    tenant_rate: Option<DefaultDirectRateLimiter>,
    /// Per caller: (issuer, subject), so equal `sub`s from two issuers never share a bucket.
    subject_rate: Option<DefaultKeyedRateLimiter<CallerId>>,
    in_progress: Option<(Arc<Semaphore>, usize)>,
    /// The rates as configured (for the shared buckets).
    rates: (Option<Rate>, Option<Rate>),
    /// With several replicas: the buckets and counts they share.
    shared: Option<Shared>,
    /// Whether the shared store was unreachable at the last request (logged on change).
    degraded: std::sync::atomic::AtomicBool,
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

fn rate(per_minute: Option<u32>, burst: Option<u32>) -> Option<Rate> {
    let per_minute = per_minute.filter(|n| *n > 0)?;
    Some(Rate {
        per_minute,
        burst: burst.filter(|b| *b > 0).unwrap_or(per_minute),
    })
}

fn quota(rate: Option<Rate>) -> Option<Quota> {
    let rate = rate?;
    Some(
        Quota::per_minute(NonZeroU32::new(rate.per_minute)?)
            .allow_burst(NonZeroU32::new(rate.burst)?),
    )
}

impl Quotas {
    /// Limits from `[tenant.quota]`, with `instance_share` plugin instances; `shared` when
    /// other replicas serve the tenant too.
    pub fn new(config: &QuotaConfig, instance_share: u32, shared: Option<Shared>) -> Self {
        let subject = rate(config.subject_requests_per_minute, config.subject_burst);
        let whole = rate(config.requests_per_minute, config.burst);
        Self {
            tenant_rate: quota(whole).map(DefaultDirectRateLimiter::direct),
            subject_rate: quota(subject).map(DefaultKeyedRateLimiter::keyed),
            in_progress: config
                .max_concurrent_requests
                .map(|n| (Arc::new(Semaphore::new(n)), n)),
            rates: (subject, whole),
            shared,
            degraded: Default::default(),
            instances: Share {
                permits: Arc::new(Semaphore::new(instance_share.max(1) as usize)),
                size: instance_share.max(1),
            },
        }
    }

    /// Admit one JSON-RPC request from `caller`, or say why not: on the shared buckets and
    /// counts when there are some (this replica's own while the store is unreachable, or
    /// [`Refusal::Unavailable`], as configured), else on this replica's.
    pub async fn admit(&self, caller: &CallerId) -> Result<Admission, Refusal> {
        let Some(shared) = &self.shared else {
            return self.admit_here(caller);
        };
        use std::sync::atomic::Ordering::Relaxed;
        match self.admit_shared(shared, caller).await {
            Ok(admitted) => {
                if self.degraded.swap(false, Relaxed) {
                    tracing::info!(tenant = %shared.tenant, "quotas are shared again");
                }
                admitted
            }
            Err(down) => {
                if !self.degraded.swap(true, Relaxed) {
                    tracing::warn!(tenant = %shared.tenant, fallback = ?shared.without,
                        "quotas fall back while the shared store is away (each failure is counted in portcullis.cluster.redis.errors): {down}");
                }
                match shared.without {
                    QuotasWithoutRedis::Local => self.admit_here(caller),
                    QuotasWithoutRedis::Refuse => Err(Refusal::Unavailable),
                }
            }
        }
    }

    async fn admit_shared(
        &self,
        shared: &Shared,
        caller: &CallerId,
    ) -> Result<Result<Admission, Refusal>, StoreDown> {
        let lease = match &self.in_progress {
            Some((_, limit)) => match shared.store.enter(&shared.tenant, *limit).await? {
                Some(lease) => Some(lease),
                None => return Ok(Err(Refusal::Concurrency { limit: *limit })),
            },
            None => None,
        };
        let (subject, whole) = self.rates;
        if (subject, whole) != (None, None)
            && let Some(refusal) = shared
                .store
                .take(&shared.tenant, caller, subject, whole)
                .await?
        {
            return Ok(Err(refusal));
        }
        Ok(Ok(Admission {
            _permit: None,
            _lease: lease,
        }))
    }

    /// Admit on this replica's own buckets and cap. The caller's bucket is checked before
    /// the tenant's, so a noisy caller spends only its own budget.
    fn admit_here(&self, caller: &CallerId) -> Result<Admission, Refusal> {
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
        Ok(Admission {
            _permit: permit,
            _lease: None,
        })
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

    #[tokio::test]
    async fn the_same_sub_from_two_issuers_has_two_buckets() {
        let q = Quotas::new(
            &QuotaConfig {
                subject_requests_per_minute: Some(1),
                ..Default::default()
            },
            4,
            None,
        );
        assert!(q.admit(&who("https://x", "alice")).await.is_ok());
        assert!(q.admit(&who("https://x", "alice")).await.is_err());
        assert!(
            q.admit(&who("https://y", "alice")).await.is_ok(),
            "alice@y is not alice@x"
        );
    }

    #[tokio::test]
    async fn subject_and_tenant_buckets() {
        let q = Quotas::new(
            &QuotaConfig {
                requests_per_minute: Some(5),
                subject_requests_per_minute: Some(2),
                ..Default::default()
            },
            4,
            None,
        );
        assert!(q.admit(&who("https://x", "alice")).await.is_ok());
        assert!(q.admit(&who("https://x", "alice")).await.is_ok());
        let refused = q.admit(&who("https://x", "alice")).await.unwrap_err();
        assert!(matches!(refused, Refusal::SubjectRate { .. }));
        // 2 per minute: the next cell is 30 s away.
        assert!((29..=30).contains(&refused.retry_after_secs()));
        assert!(q.admit(&who("https://x", "bob")).await.is_ok());
        assert!(q.admit(&who("https://x", "bob")).await.is_ok());
        assert!(q.admit(&who("https://x", "carol")).await.is_ok());
        assert!(matches!(
            q.admit(&who("https://x", "dave")).await.unwrap_err(),
            Refusal::TenantRate { .. }
        ));
    }

    #[tokio::test]
    async fn requests_in_progress_are_capped() {
        let q = Quotas::new(
            &QuotaConfig {
                max_concurrent_requests: Some(1),
                ..Default::default()
            },
            1,
            None,
        );
        let held = q.admit(&who("https://x", "a")).await.unwrap();
        assert_eq!(
            q.admit(&who("https://x", "b")).await.unwrap_err(),
            Refusal::Concurrency { limit: 1 }
        );
        drop(held);
        assert!(q.admit(&who("https://x", "b")).await.is_ok());
    }
}
