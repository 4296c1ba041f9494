//! Changes plugins report (`host.notify-lists-changed`, `host.notify-resource-updated`),
//! relayed to every other replica over Redis pub/sub on `<prefix>:changes`, so sessions and
//! `subscriptions/listen` streams held anywhere hear them. Reloads of the shared plugin files
//! are not relayed: every replica watches the files itself.
//!
//! Each message is tagged with the cluster key and stamped with when it was sent: one a Redis
//! client publishes, or replays later, is ignored. Best effort, as pub/sub is: a change reported while a replica's subscription is down
//! (Redis away) does not reach it; the subscription comes back on its own.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::Cluster;
use crate::plugins::{Change, ChangeRelay, TenantPlugins};

/// One relayed change.
#[derive(Serialize, Deserialize)]
struct Relayed {
    /// The replica it came from (which announced it already).
    from: String,
    tenant: String,
    change: Change,
    /// When it was sent (ms since the epoch): a message replayed later is ignored.
    at: u64,
}

/// How old (or, by clock skew, how far ahead) a relayed change may be.
const FRESH_MS: u64 = 30_000;

struct Relay {
    cluster: Cluster,
}

impl Cluster {
    fn changes_channel(&self) -> String {
        self.inner.keys.changes()
    }

    /// Relay the changes the plugins of `tenants` report to the other replicas, and announce
    /// theirs here, until `shutdown`.
    pub fn relay_changes(&self, tenants: &[Arc<TenantPlugins>], shutdown: &CancellationToken) {
        let relay = Arc::new(Relay {
            cluster: self.clone(),
        });
        for t in tenants {
            t.relay_through(relay.clone());
        }
        let by_id: HashMap<String, Arc<TenantPlugins>> = tenants
            .iter()
            .map(|t| (t.tenant.to_string(), t.clone()))
            .collect();
        let (cluster, shutdown) = (self.clone(), shutdown.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = cluster.hear_changes(&by_id) => {}
            }
        });
    }

    /// Announce what other replicas relay, for as long as this replica runs.
    async fn hear_changes(&self, tenants: &HashMap<String, Arc<TenantPlugins>>) {
        let me = self.replica().to_string();
        let channel = self.changes_channel();
        self.hear(channel.clone(), "plugin changes", |payload| {
            let Some(json) = self.inner.tagger.verify(&channel, payload) else {
                tracing::warn!("ignored a relayed change without this cluster's tag (published by something else, or by a replica with another server.state_key_env)");
                return;
            };
            match serde_json::from_str::<Relayed>(json) {
                Ok(r) if r.from == me => {}
                Ok(r) if r.at.abs_diff(super::seal::now_ms()) > FRESH_MS => {
                    tracing::warn!("ignored a relayed change sent too long ago (replayed?)");
                }
                Ok(r) => match tenants.get(&r.tenant) {
                    Some(t) => t.announce(r.change),
                    None => tracing::debug!(tenant = %crate::telemetry::untrusted(&r.tenant),
                        "a relayed change for a tenant this replica does not serve"),
                },
                Err(e) => tracing::warn!("ignored a malformed relayed change: {e}"),
            }
        })
        .await;
    }
}

impl ChangeRelay for Relay {
    fn relay(&self, tenant: &str, change: &Change) {
        let message = Relayed {
            from: self.cluster.replica().to_string(),
            tenant: tenant.to_string(),
            change: change.clone(),
            at: super::seal::now_ms(),
        };
        let Ok(json) = serde_json::to_string(&message) else {
            return;
        };
        let payload = self
            .cluster
            .inner
            .tagger
            .sign(&self.cluster.changes_channel(), &json);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let cluster = self.cluster.clone();
        runtime.spawn(async move {
            let mut cmd = redis::cmd("PUBLISH");
            cmd.arg(cluster.changes_channel()).arg(payload);
            if let Err(e) = cluster.run::<()>("relay a change", &cmd).await {
                tracing::warn!("a plugin's change reached only this replica's clients: {e}");
            }
        });
    }
}
