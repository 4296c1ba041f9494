//! Completed consents, relayed to every other replica over Redis pub/sub on
//! `<prefix>:consents`, so a 2025-11-25 session waiting on one replica hears
//! `notifications/elicitation/complete` when the provider's callback lands on another.
//!
//! A message names a user, so it travels sealed with the vault's key (only replicas holding
//! it open one, and a message of another purpose does not open as this one), stamped with
//! when it was sent: an old one replayed is ignored. Best effort, as pub/sub is: the client
//! retries its call anyway, and the grant is on Redis for every replica.
//!
//! Owns: the channel and its messages. Must not: decide who waits (the protocol layer's
//! listener does) or touch grants.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::Cluster;
use crate::vault::{GrantKey, Vault};

/// Told the identity of a completed consent.
pub type ConsentListener = Arc<dyn Fn(&GrantKey<'_>) + Send + Sync>;

/// What the vault seals the messages for.
const PURPOSE: &str = "consent-completed";
/// How old (or, by clock skew, how far ahead) a relayed consent may be.
const FRESH_MS: u64 = 30_000;

#[derive(Serialize, Deserialize)]
struct Relayed {
    /// The replica it came from (whose sessions heard it already).
    from: String,
    tenant: String,
    issuer: String,
    subject: String,
    service: String,
    /// When it was sent (ms since the epoch).
    at: u64,
}

impl Cluster {
    /// Tell `here` of consents completed on other replicas until `shutdown`; the listener
    /// returned tells the other replicas of one completed on this one.
    pub fn relay_consents(
        &self,
        vault: Arc<Vault>,
        here: ConsentListener,
        shutdown: &CancellationToken,
    ) -> ConsentListener {
        let (cluster, heard_vault, shutdown) = (self.clone(), vault.clone(), shutdown.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = cluster.hear_consents(&heard_vault, &here) => {}
            }
        });
        let cluster = self.clone();
        Arc::new(move |key: &GrantKey<'_>| {
            let message = Relayed {
                from: cluster.replica().to_string(),
                tenant: key.tenant.into(),
                issuer: key.issuer.into(),
                subject: key.subject.into(),
                service: key.service.into(),
                at: super::seal::now_ms(),
            };
            let Ok(plain) = serde_json::to_vec(&message) else {
                return;
            };
            let payload = vault.seal_note(PURPOSE, &plain);
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return;
            };
            let cluster = cluster.clone();
            runtime.spawn(async move {
                let mut cmd = redis::cmd("PUBLISH");
                cmd.arg(cluster.inner.keys.consents()).arg(payload);
                if let Err(e) = cluster.run::<()>("relay a consent", &cmd).await {
                    tracing::warn!("a completed consent was told only to this replica's sessions (the client's retry still finds the grant): {e}");
                }
            });
        })
    }

    async fn hear_consents(&self, vault: &Vault, here: &ConsentListener) {
        let me = self.replica().to_string();
        let channel = self.inner.keys.consents();
        self.hear(channel, "completed consents", |payload| {
            let opened = vault
                .open_note(PURPOSE, payload)
                .map(|plain| serde_json::from_slice::<Relayed>(&plain));
            match opened {
                None => tracing::warn!(
                    "ignored a relayed consent that did not open (published by something else, or by a replica with another vault key)"
                ),
                Some(Err(e)) => tracing::warn!("ignored a malformed relayed consent: {e}"),
                Some(Ok(r)) if r.from == me => {}
                Some(Ok(r)) if r.at.abs_diff(super::seal::now_ms()) > FRESH_MS => {
                    tracing::warn!("ignored a relayed consent sent too long ago (replayed?)");
                }
                Some(Ok(r)) => here(&GrantKey {
                    tenant: &r.tenant,
                    issuer: &r.issuer,
                    subject: &r.subject,
                    service: &r.service,
                }),
            }
        })
        .await;
    }
}
