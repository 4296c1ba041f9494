//! Changes plugins report (`host.notify-lists-changed`, `host.notify-resource-updated`),
//! relayed to every other replica over Redis pub/sub on `<prefix>:changes`, so sessions and
//! `subscriptions/listen` streams held anywhere hear them. Reloads of the shared plugin files
//! are not relayed: every replica watches the files itself.
//!
//! Best effort, as pub/sub is: a change reported while a replica's subscription is down
//! (Redis away) does not reach it; the subscription comes back on its own.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::Cluster;
use crate::plugins::{Change, ChangeRelay, TenantPlugins};

/// How long a lost subscription waits before subscribing again.
const RESUBSCRIBE: Duration = Duration::from_secs(1);

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

    /// Subscribe (again whenever the subscription is lost) and announce what other replicas
    /// relay.
    async fn hear_changes(&self, tenants: &HashMap<String, Arc<TenantPlugins>>) {
        let channel = self.changes_channel();
        let mut subscribed = true;
        loop {
            let connected = tokio::time::timeout(self.inner.timeout, async {
                let mut pubsub = self.inner.client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            })
            .await;
            let pubsub = match connected {
                Ok(Ok(p)) => p,
                failed => {
                    if subscribed {
                        let why = match failed {
                            Ok(Err(e)) => super::describe(&e),
                            _ => "timed out".into(),
                        };
                        tracing::warn!(replica = %self.replica(),
                            "not hearing other replicas' plugin changes until Redis is back: {why}");
                    }
                    self.count_failure("subscribe to changes");
                    subscribed = false;
                    tokio::time::sleep(RESUBSCRIBE).await;
                    continue;
                }
            };
            if !subscribed {
                tracing::info!(replica = %self.replica(), "hearing other replicas' plugin changes again");
            }
            let mut messages = pubsub.into_on_message();
            while let Some(message) = messages.next().await {
                let Ok(payload) = message.get_payload::<String>() else {
                    continue;
                };
                match serde_json::from_str::<Relayed>(&payload) {
                    Ok(r) if r.from == self.replica() => {}
                    Ok(r) => match tenants.get(&r.tenant) {
                        Some(t) => t.announce(r.change),
                        None => tracing::debug!(tenant = %crate::telemetry::untrusted(&r.tenant),
                            "a relayed change for a tenant this replica does not serve"),
                    },
                    Err(e) => tracing::warn!("ignored a malformed relayed change: {e}"),
                }
            }
            self.count_failure("subscribe to changes");
            tracing::warn!(replica = %self.replica(),
                "the subscription to other replicas' plugin changes was lost; subscribing again");
            subscribed = false;
            tokio::time::sleep(RESUBSCRIBE).await;
        }
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
