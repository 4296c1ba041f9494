//! The session directory on Redis: `<prefix>:session:<tenant>:<sha256(id)>` → the id of the
//! replica holding the session, expiring twice the session idle time after its last use (a
//! session the protocol layer closed for idleness leaves no record behind for long).
//!
//! A record names a replica, not an address: when that replica's announcement is gone, so is
//! the session, whatever the record says.
//!
//! Each caller's sessions are also counted across the replicas (`<prefix>:caller-sessions:
//! <tenant>:<keyed caller digest>`, session digests by creation, and `caller-pending`, the
//! rooms reserved for sessions being created), so `server.max_sessions_per_subject` holds for
//! the whole cluster: a caller at its cap has its oldest session ended wherever it is held
//! (its replica is told on `<prefix>:session-control`, tagged and stamped). Records are tagged with the cluster key (bound to
//! their key): one planted by a Redis writer is ignored.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::Cluster;
use crate::auth::CallerId;
use crate::sandbox::BoxFuture;
use crate::sessions::{
    Directory, DirectoryDown, Evicted, Location, SharedNoRoom, SharedRoom, session_digest,
};

/// Reserves room for one more session of a caller across the replicas: drops expired
/// reservations, refuses (`busy`) when the caller is opening as many as its cap, names its
/// oldest sessions beyond the cap (removed from its set) and adds the reservation.
/// KEYS: the caller's sessions, its reservations. ARGV: now (ms), cap, reservation id,
/// reservation TTL (ms), sessions TTL (ms).
static RESERVE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local opening = redis.call('ZCARD', KEYS[2])
local cap = tonumber(ARGV[2])
if opening >= cap then return {'busy'} end
local over = redis.call('ZCARD', KEYS[1]) + opening + 1 - cap
local out = {'ok'}
if over > 0 then
  local victims = redis.call('ZRANGE', KEYS[1], 0, over - 1)
  for _, v in ipairs(victims) do
    redis.call('ZREM', KEYS[1], v)
    table.insert(out, v)
  end
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[5]) end
return out
",
    )
});

/// A reservation became a session. KEYS: the caller's sessions, its reservations. ARGV:
/// reservation id, session digest, now (ms), sessions TTL (ms).
static OPENED: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[1], tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
",
    )
});

/// How long a reservation holds its room if its replica never says what became of it.
const RESERVATION_TTL: Duration = Duration::from_secs(30);
/// How old (or, by clock skew, how far ahead) a relayed eviction may be.
const FRESH_MS: u64 = 30_000;

/// One eviction relayed to the replica holding the session.
#[derive(Serialize, Deserialize)]
struct Eviction {
    tenant: String,
    digest: String,
    at: u64,
}

/// How many held records may accumulate between two prunings of expired ones.
const PRUNE_EVERY: usize = 1024;

pub(super) struct RedisDirectory {
    cluster: Cluster,
    /// How long a record lives after its last claim or refresh.
    ttl: Duration,
    /// Who hears the evictions of each tenant's sessions held here.
    evicted: parking_lot::Mutex<HashMap<String, Evicted>>,
}

impl RedisDirectory {
    /// The directory, hearing other replicas' evictions until `shutdown`.
    pub(super) fn start(
        cluster: Cluster,
        session_idle: Duration,
        shutdown: &CancellationToken,
    ) -> Arc<Self> {
        let directory = Arc::new(Self {
            cluster,
            ttl: session_idle.saturating_mul(2).max(Duration::from_secs(1)),
            evicted: Default::default(),
        });
        let (hearing, shutdown) = (directory.clone(), shutdown.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = hearing.hear_evictions() => {}
            }
        });
        directory
    }

    /// Apply the evictions other replicas relay, for as long as this replica runs.
    async fn hear_evictions(&self) {
        let channel = self.cluster.inner.keys.session_control();
        self.cluster
            .hear(channel.clone(), "session evictions", |payload| {
                let Some(json) = self.cluster.inner.tagger.verify(&channel, payload) else {
                    tracing::warn!("ignored a session eviction without this cluster's tag (published by something else, or by a replica with another server.state_key_env)");
                    return;
                };
                match serde_json::from_str::<Eviction>(json) {
                    Ok(e) if e.at.abs_diff(super::seal::now_ms()) > FRESH_MS => {
                        tracing::warn!("ignored a session eviction sent too long ago (replayed?)");
                    }
                    Ok(e) => {
                        let hears = self.evicted.lock().get(&e.tenant).cloned();
                        if let Some(evicted) = hears {
                            evicted(&e.digest);
                        }
                    }
                    Err(e) => tracing::warn!("ignored a malformed session eviction: {e}"),
                }
            })
            .await;
    }

    fn caller_keys(&self, tenant: &str, caller: &CallerId) -> (String, String) {
        self.cluster
            .inner
            .keys
            .caller_sessions(tenant, &self.cluster.caller_digest(caller))
    }

    /// Write the record of session `id`: this replica, for another TTL.
    async fn record(&self, tenant: &str, id: &str) -> Result<(), DirectoryDown> {
        let key = self.cluster.inner.keys.session(tenant, id);
        {
            let mut held = self.cluster.inner.held.lock();
            held.insert(key.clone(), (Instant::now(), self.ttl));
            // Sessions the protocol layer closed for idleness are never released here: drop
            // records past their TTL now and then, so the map stays bounded by the sessions
            // used within one TTL (plus this batch).
            if held.len().is_multiple_of(PRUNE_EVERY) {
                held.retain(|_, (at, ttl)| at.elapsed() < *ttl);
            }
        }
        self.cluster
            .write_record(&key, self.ttl)
            .await
            .map_err(|e| DirectoryDown(e.to_string()))
    }
}

impl Cluster {
    /// `key` → this replica, expiring after `ttl`.
    async fn write_record(&self, key: &str, ttl: Duration) -> Result<(), super::RedisDown> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key)
            .arg(self.inner.tagger.sign(key, &self.inner.replica))
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64);
        self.run::<()>("record session", &cmd).await
    }

    /// Write every record this replica holds again (Redis came back without them), each
    /// for what is left of its TTL.
    pub(super) async fn rewrite_records(&self) {
        let held: Vec<(String, Duration)> = {
            let mut held = self.inner.held.lock();
            held.retain(|_, (at, ttl)| at.elapsed() < *ttl);
            held.iter()
                .map(|(key, (at, ttl))| (key.clone(), ttl.saturating_sub(at.elapsed())))
                .collect()
        };
        let mut written = 0;
        for (key, left) in &held {
            if self.write_record(key, *left).await.is_ok() {
                written += 1;
            }
        }
        tracing::info!(replica = %self.replica(), written, held = held.len(),
            "wrote this replica's session records again (Redis had lost them)");
    }
}

impl Directory for RedisDirectory {
    fn replica(&self) -> &str {
        self.cluster.replica()
    }

    fn claim<'a>(
        &'a self,
        tenant: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<(), DirectoryDown>> {
        Box::pin(self.record(tenant, id))
    }

    /// Written again rather than only extended, so a record lost with Redis (restarted
    /// without persistence) comes back with the session's next request.
    fn refresh<'a>(&'a self, tenant: &'a str, id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Err(e) = self.record(tenant, id).await {
                tracing::warn!(tenant = %tenant, "a session's directory record was not renewed: {e}");
            }
        })
    }

    fn release<'a>(
        &'a self,
        tenant: &'a str,
        id: &'a str,
        caller: Option<&'a CallerId>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let key = self.cluster.inner.keys.session(tenant, id);
            self.cluster.inner.held.lock().remove(&key);
            let mut cmd = redis::cmd("DEL");
            cmd.arg(key);
            if let Err(e) = self.cluster.run::<()>("release session", &cmd).await {
                tracing::warn!(tenant = %tenant, "an ended session's directory record stays until it expires: {e}");
            }
            if let Some(caller) = caller {
                let (sessions, _) = self.caller_keys(tenant, caller);
                let mut cmd = redis::cmd("ZREM");
                cmd.arg(sessions).arg(session_digest(id));
                if let Err(e) = self.cluster.run::<()>("release session", &cmd).await {
                    tracing::warn!(tenant = %tenant, "an ended session still counts for its caller until it is evicted: {e}");
                }
            }
        })
    }

    fn reserve<'a>(
        &'a self,
        tenant: &'a str,
        caller: &'a CallerId,
        cap: usize,
    ) -> BoxFuture<'a, Result<SharedRoom, SharedNoRoom>> {
        Box::pin(async move {
            let (sessions, pending) = self.caller_keys(tenant, caller);
            let reservation = hex::encode(rand::random::<[u8; 16]>());
            let mut invocation = RESERVE.key(&sessions);
            invocation
                .key(&pending)
                .arg(super::seal::now_ms())
                .arg(cap)
                .arg(&reservation)
                .arg(RESERVATION_TTL.as_millis() as u64)
                .arg(self.ttl.as_millis() as u64);
            let out: Vec<String> = self
                .cluster
                .script("reserve session", &invocation)
                .await
                .map_err(|e| DirectoryDown(e.to_string()))?;
            match out.split_first() {
                Some((status, evict)) if status == "ok" => Ok(SharedRoom {
                    reservation,
                    evict: evict.to_vec(),
                }),
                _ => Err(SharedNoRoom::Busy(cap)),
            }
        })
    }

    fn opened<'a>(
        &'a self,
        tenant: &'a str,
        caller: &'a CallerId,
        reservation: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let (sessions, pending) = self.caller_keys(tenant, caller);
            let mut invocation = OPENED.key(&sessions);
            invocation
                .key(&pending)
                .arg(reservation)
                .arg(session_digest(id))
                .arg(super::seal::now_ms())
                .arg(self.ttl.as_millis() as u64);
            if let Err(e) = self
                .cluster
                .script::<i64>("open session", &invocation)
                .await
            {
                tracing::warn!(tenant = %tenant, "a new session is not counted for its caller on the other replicas: {e}");
            }
        })
    }

    fn unreserve<'a>(
        &'a self,
        tenant: &'a str,
        caller: &'a CallerId,
        reservation: &'a str,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let (_, pending) = self.caller_keys(tenant, caller);
            let mut cmd = redis::cmd("ZREM");
            cmd.arg(pending).arg(reservation);
            if let Err(e) = self.cluster.run::<()>("unreserve session", &cmd).await {
                tracing::debug!(tenant = %tenant, "a reservation holds its room until it expires: {e}");
            }
        })
    }

    fn evict<'a>(&'a self, tenant: &'a str, digest: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            // No replica routes to it from now on; its own replica is told to end it.
            let mut cmd = redis::cmd("DEL");
            cmd.arg(self.cluster.inner.keys.session_by_digest(tenant, digest));
            if let Err(e) = self.cluster.run::<()>("evict session", &cmd).await {
                tracing::warn!(tenant = %tenant, "an evicted session's record stays until it expires: {e}");
            }
            let message = Eviction {
                tenant: tenant.to_string(),
                digest: digest.to_string(),
                at: super::seal::now_ms(),
            };
            let Ok(json) = serde_json::to_string(&message) else {
                return;
            };
            let channel = self.cluster.inner.keys.session_control();
            let payload = self.cluster.inner.tagger.sign(&channel, &json);
            let mut cmd = redis::cmd("PUBLISH");
            cmd.arg(&channel).arg(payload);
            if let Err(e) = self.cluster.run::<()>("evict session", &cmd).await {
                tracing::warn!(tenant = %tenant, "the replica holding an evicted session was not told; it ends when idle: {e}");
            }
        })
    }

    fn on_evicted(&self, tenant: &str, evicted: Evicted) {
        self.evicted.lock().insert(tenant.to_string(), evicted);
    }

    fn locate<'a>(
        &'a self,
        tenant: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Location, DirectoryDown>> {
        Box::pin(async move {
            let down = |e: super::RedisDown| DirectoryDown(e.to_string());
            let key = self.cluster.inner.keys.session(tenant, id);
            let mut cmd = redis::cmd("GET");
            cmd.arg(&key);
            let holder: Option<String> = self
                .cluster
                .run("locate session", &cmd)
                .await
                .map_err(down)?;
            let Some(record) = holder else {
                return Ok(Location::Nowhere);
            };
            let Some(replica) = self.cluster.inner.tagger.verify(&key, &record) else {
                // Not written by a replica of this cluster: planted, or another state key.
                tracing::warn!(tenant = %tenant,
                    "ignored a session record without this cluster's tag (written to Redis by something else, or by a replica with another server.state_key_env)");
                return Ok(Location::Nowhere);
            };
            let replica = replica.to_string();
            if replica == self.cluster.replica() {
                return Ok(Location::Here);
            }
            Ok(match self.cluster.peer(&replica).await.map_err(down)? {
                Some(url) => Location::Peer { replica, url },
                None => Location::Nowhere,
            })
        })
    }
}
