//! The session directory on Redis: `<prefix>:session:<tenant>:<sha256(id)>` → the id of the
//! replica holding the session, expiring twice the session idle time after its last use (a
//! session the protocol layer closed for idleness leaves no record behind for long).
//!
//! A record names a replica, not an address: when that replica's announcement is gone, so is
//! the session, whatever the record says.

use std::time::Duration;

use super::Cluster;
use crate::sandbox::BoxFuture;
use crate::sessions::{Directory, DirectoryDown, Location};

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
        let inner = &self.cluster.inner;
        let mut cmd = redis::cmd("SET");
        cmd.arg(inner.keys.session(tenant, id))
            .arg(&inner.replica)
            .arg("PX")
            .arg(self.ttl.as_millis() as u64);
        self.cluster
            .run::<()>("record session", &cmd)
            .await
            .map_err(|e| DirectoryDown(e.to_string()))
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
            let mut cmd = redis::cmd("DEL");
            cmd.arg(self.cluster.inner.keys.session(tenant, id));
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
            let mut cmd = redis::cmd("GET");
            cmd.arg(self.cluster.inner.keys.session(tenant, id));
            let holder: Option<String> = self
                .cluster
                .run("locate session", &cmd)
                .await
                .map_err(down)?;
            let Some(replica) = holder else {
                return Ok(Location::Nowhere);
            };
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
