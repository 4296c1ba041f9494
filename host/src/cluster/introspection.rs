//! The introspection budget every replica shares (`auth::SharedBudget`): per client network
//! and minute, a counter `<prefix>:introspect:<keyed digest of the network>` that each
//! introspection takes a slot of before it starts and gives back when its token was accepted,
//! so junk tokens spread over the replicas cost the authorization server at most one budget.

use std::net::IpAddr;
use std::sync::LazyLock;

use futures::future::BoxFuture;

use super::Cluster;
use crate::auth::SharedBudget;

/// Takes a slot unless the budget is spent. KEYS: the network's counter. ARGV: the budget,
/// the window (ms). Returns -1 when taken, else the milliseconds until the window ends.
static TAKE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then
  redis.call('DECR', KEYS[1])
  return redis.call('PTTL', KEYS[1])
end
return -1
",
    )
});

/// Gives a slot back (never below zero). KEYS: the network's counter.
static GIVE_BACK: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then redis.call('DECR', KEYS[1]) end
return 1
",
    )
});

/// The window a budget is counted in.
const WINDOW_MS: u64 = 60_000;

impl Cluster {
    /// The introspection budget shared through this cluster.
    pub fn introspection_budget(&self) -> std::sync::Arc<dyn SharedBudget> {
        std::sync::Arc::new(Budget(self.clone()))
    }
}

struct Budget(Cluster);

impl Budget {
    fn key(&self, network: IpAddr) -> String {
        let inner = &self.0.inner;
        let digest = inner
            .tagger
            .digest(&[b"introspection network", network.to_string().as_bytes()]);
        inner.keys.introspection(&digest)
    }
}

impl SharedBudget for Budget {
    fn take(&self, network: IpAddr, per_minute: u32) -> BoxFuture<'_, Result<Option<u64>, String>> {
        Box::pin(async move {
            let mut invocation = TAKE.key(self.key(network));
            invocation.arg(per_minute).arg(WINDOW_MS);
            let left: i64 = self
                .0
                .script("take introspection budget", &invocation)
                .await
                .map_err(|e| e.to_string())?;
            Ok(match left {
                -1 => None,
                ms if ms > 0 => Some(u64::try_from(ms).unwrap_or(0).div_ceil(1000).max(1)),
                _ => Some(WINDOW_MS / 1000),
            })
        })
    }

    fn give_back(&self, network: IpAddr) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let invocation = GIVE_BACK.key(self.key(network));
            if let Err(e) = self
                .0
                .script::<i64>("give back introspection budget", &invocation)
                .await
            {
                tracing::debug!(
                    "an accepted introspection keeps its slot until the window ends: {e}"
                );
            }
        })
    }
}
