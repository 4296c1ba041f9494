//! The vault's store on Redis, for replicas: `<prefix>:grant:<name>` → the sealed grant
//! (`vault` seals it under its own keys, the name as associated data; the name is the
//! tenant and a keyed digest, confirming no user). Redis sees no token and can forge none.
//! Also the consent flow's used steps, `<prefix>:consent-spent:<step id>` (random ids), so a
//! step is good once on every replica.

use std::sync::Arc;

use super::Cluster;
use crate::downstream::{SharedDown, SpentStates};
use crate::vault::{VaultError, VaultStore};
use futures::future::BoxFuture;

/// The vault's grants, on Redis.
struct RedisGrants {
    cluster: Cluster,
}

impl Cluster {
    /// The vault's store every replica shares.
    pub fn grants(&self) -> Arc<dyn VaultStore> {
        Arc::new(RedisGrants {
            cluster: self.clone(),
        })
    }
}

impl RedisGrants {
    fn key(&self, name: &str) -> String {
        self.cluster.inner.keys.grant(name)
    }
}

fn down(e: super::RedisDown) -> VaultError {
    VaultError::Unavailable(e.to_string())
}

impl VaultStore for RedisGrants {
    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<String>, VaultError>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("GET");
            cmd.arg(self.key(name));
            self.cluster.run("read grant", &cmd).await.map_err(down)
        })
    }

    fn put<'a>(&'a self, name: &'a str, sealed: &'a str) -> BoxFuture<'a, Result<(), VaultError>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.key(name)).arg(sealed);
            self.cluster.run("keep grant", &cmd).await.map_err(down)
        })
    }

    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, VaultError>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("DEL");
            cmd.arg(self.key(name));
            let n: i64 = self.cluster.run("revoke grant", &cmd).await.map_err(down)?;
            Ok(n > 0)
        })
    }
}

/// The consent flow's used steps, on Redis.
struct RedisSpent {
    cluster: Cluster,
}

impl Cluster {
    /// The consent flow's used steps every replica shares.
    pub fn spent_states(&self) -> Arc<dyn SpentStates> {
        Arc::new(RedisSpent {
            cluster: self.clone(),
        })
    }
}

impl SpentStates for RedisSpent {
    fn first_use<'a>(
        &'a self,
        id: &'a str,
        within: std::time::Duration,
    ) -> BoxFuture<'a, Result<bool, SharedDown>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.cluster.inner.keys.consent_spent(id))
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(u64::try_from(within.as_millis()).unwrap_or(u64::MAX));
            let set: Option<String> = self
                .cluster
                .run("spend consent step", &cmd)
                .await
                .map_err(|e| SharedDown(e.to_string()))?;
            Ok(set.is_some())
        })
    }
}
