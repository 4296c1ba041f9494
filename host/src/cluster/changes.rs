//! Changes plugins report (`host.notify-lists-changed`, `host.notify-resource-updated`),
//! relayed to every other replica over Redis pub/sub on `<prefix>:changes`, so sessions and
//! `subscriptions/listen` streams held anywhere hear them. Reloads of the shared plugin files
//! are not relayed: every replica watches the files itself.
//!
//! Best effort, as pub/sub is: a change reported while a replica's subscription is down
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
}

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
        self.hear(
            self.changes_channel(),
            "plugin changes",
            |payload| match serde_json::from_str::<Relayed>(payload) {
                Ok(r) if r.from == me => {}
                Ok(r) => match tenants.get(&r.tenant) {
                    Some(t) => t.announce(r.change),
                    None => tracing::debug!(tenant = %crate::telemetry::untrusted(&r.tenant),
                        "a relayed change for a tenant this replica does not serve"),
                },
                Err(e) => tracing::warn!("ignored a malformed relayed change: {e}"),
            },
        )
        .await;
    }
}

impl ChangeRelay for Relay {
    fn relay(&self, tenant: &str, change: &Change) {
        let message = Relayed {
            from: self.cluster.replica().to_string(),
            tenant: tenant.to_string(),
            change: change.clone(),
        };
        let Ok(payload) = serde_json::to_string(&message) else {
            return;
        };
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
