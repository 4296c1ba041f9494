//! The session directory on Redis: `<prefix>:session:<tenant>:<sha256(id)>` → the id of the
//! replica holding the session, expiring twice the session idle time after its last use (a
//! session the protocol layer closed for idleness leaves no record behind for long).
//!
//! A record names a replica, not an address: when that replica's announcement is gone, so is
//! the session, whatever the record says. Records are tagged with the cluster key (bound to
//! their key): one planted by a Redis writer is ignored.

use std::time::{Duration, Instant};

use super::Cluster;
use crate::sandbox::BoxFuture;
use crate::sessions::{Directory, DirectoryDown, Location};

/// How many held records may accumulate between two prunings of expired ones.
const PRUNE_EVERY: usize = 1024;

pub(super) struct RedisDirectory {
    cluster: Cluster,
    /// How long a record lives after its last claim or refresh.
    ttl: Duration,
}

impl RedisDirectory {
    pub(super) fn new(cluster: Cluster, session_idle: Duration) -> Self {
        Self {
            cluster,
            ttl: session_idle.saturating_mul(2).max(Duration::from_secs(1)),
        }
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

    fn release<'a>(&'a self, tenant: &'a str, id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let key = self.cluster.inner.keys.session(tenant, id);
            self.cluster.inner.held.lock().remove(&key);
            let mut cmd = redis::cmd("DEL");
            cmd.arg(key);
            if let Err(e) = self.cluster.run::<()>("release session", &cmd).await {
                tracing::warn!(tenant = %tenant, "an ended session's directory record stays until it expires: {e}");
            }
        })
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
