//! The quotas every replica shares, on Redis: token buckets as GCRA in one Lua script (the
//! caller's and the tenant's taken together or not at all, timed by Redis' own clock so the
//! replicas' clocks do not matter), and the requests in progress as a sorted set of leases,
//! each renewed while its request runs and expiring on its own when a replica dies.
//!
//! Keys: `<prefix>:quota:<tenant>:subject:<sha256(issuer, name)>` (no subject in clear),
//! `<prefix>:quota:<tenant>:rate`, `<prefix>:quota:<tenant>:in-progress`.

use std::sync::LazyLock;
use std::time::Duration;

use super::Cluster;
use crate::auth::CallerId;
use crate::sandbox::BoxFuture;
use crate::tenancy::quota::{Rate, Refusal, SharedQuotas, StoreDown};

/// How long a request's place among those in progress lasts unless renewed (a third of it
/// between renewals): a replica that dies frees its places after this long.
const LEASE: Duration = Duration::from_secs(30);

/// KEYS: the buckets; ARGV: for each, its emission interval and burst (µs, cells). Returns
/// `{0, 0}` when a cell was taken from every bucket, else `{i, wait µs}` for the first bucket
/// `i` (1-based) that had none (and nothing is taken).
static TAKE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local next = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local after = tat + interval
  local allowed_at = after - burst * interval
  if now < allowed_at then return {i, allowed_at - now} end
  next[i] = after
end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, string.format('%d', next[i]), 'PX', math.ceil((next[i] - now) / 1000) + 1)
end
return {0, 0}
",
    )
});

/// KEYS[1]: the leases; ARGV: limit, lease (ms), member. 1 when a place was taken, else 0.
static ENTER: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
",
    )
});

/// KEYS[1]: the leases; ARGV: lease (ms), member. Extends the member's lease if it has one.
static RENEW: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
",
    )
});

fn store_down(e: super::RedisDown) -> StoreDown {
    StoreDown(e.to_string())
}

/// µs between two cells of `rate` (at least 1: above 60 million a minute the shared bucket
/// is as good as unlimited).
fn interval_us(rate: Rate) -> u64 {
    (60_000_000 / u64::from(rate.per_minute.max(1))).max(1)
}

impl Cluster {
    /// The quotas shared through this cluster.
    pub fn quotas(&self) -> std::sync::Arc<dyn SharedQuotas> {
        std::sync::Arc::new(self.clone())
    }
}

impl SharedQuotas for Cluster {
    fn take<'a>(
        &'a self,
        tenant: &'a str,
        caller: &'a CallerId,
        subject: Option<Rate>,
        whole: Option<Rate>,
    ) -> BoxFuture<'a, Result<Option<Refusal>, StoreDown>> {
        Box::pin(async move {
            let keys = &self.inner.keys;
            let mut buckets = Vec::new();
            if let Some(rate) = subject {
                let key = keys.subject_bucket(tenant, &self.caller_digest(caller));
                buckets.push((key, rate, true));
            }
            if let Some(rate) = whole {
                buckets.push((keys.tenant_bucket(tenant), rate, false));
            }
            let mut invocation = TAKE.prepare_invoke();
            for (key, rate, _) in &buckets {
                invocation.key(key).arg(interval_us(*rate)).arg(rate.burst);
            }
            let (which, wait_us): (usize, u64) = self
                .script("take quota", &invocation)
                .await
                .map_err(store_down)?;
            let Some((_, _, is_subject)) = which.checked_sub(1).and_then(|i| buckets.get(i)) else {
                return Ok(None);
            };
            let retry_after = Duration::from_micros(wait_us);
            Ok(Some(if *is_subject {
                Refusal::SubjectRate { retry_after }
            } else {
                Refusal::TenantRate { retry_after }
            }))
        })
    }

    fn enter<'a>(
        &'a self,
        tenant: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Option<Box<dyn Send + Sync>>, StoreDown>> {
        Box::pin(async move {
            let key = self.inner.keys.in_progress(tenant);
            let member = format!(
                "{}:{}",
                self.replica(),
                hex::encode(rand::random::<[u8; 8]>())
            );
            let lease_ms = LEASE.as_millis() as u64;
            let mut invocation = ENTER.prepare_invoke();
            invocation.key(&key).arg(limit).arg(lease_ms).arg(&member);
            let entered: u8 = self
                .script("enter in-progress", &invocation)
                .await
                .map_err(store_down)?;
            if entered == 0 {
                return Ok(None);
            }
            Ok(Some(
                Box::new(Lease::hold(self.clone(), key, member)) as Box<dyn Send + Sync>
            ))
        })
    }
}

/// A place among a tenant's requests in progress: renewed while held, given back on drop.
struct Lease {
    renewal: tokio::task::JoinHandle<()>,
    give_back: Option<(Cluster, String, String)>,
}

impl Lease {
    fn hold(cluster: Cluster, key: String, member: String) -> Self {
        let (c, k, m) = (cluster.clone(), key.clone(), member.clone());
        let renewal = tokio::spawn(async move {
            loop {
                tokio::time::sleep(LEASE / 3).await;
                let mut invocation = RENEW.prepare_invoke();
                invocation.key(&k).arg(LEASE.as_millis() as u64).arg(&m);
                // A failed renewal is counted; the next one tries again.
                let _ = c.script::<u8>("renew in-progress", &invocation).await;
            }
        });
        Self {
            renewal,
            give_back: Some((cluster, key, member)),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewal.abort();
        let Some((cluster, key, member)) = self.give_back.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let mut cmd = redis::cmd("ZREM");
                cmd.arg(key).arg(member);
                // Failing, the place frees itself when its lease runs out.
                let _ = cluster.run::<()>("leave in-progress", &cmd).await;
            });
        }
    }
}
