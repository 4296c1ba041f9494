//! The vault's store on Redis, for replicas: `<prefix>:grant:<name>` → the sealed grant
//! (`vault` seals it under its own keys, the name as associated data; the name is the
//! tenant and a keyed digest, confirming no user). Redis sees no token and can forge none.

use std::sync::Arc;

use super::Cluster;
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
