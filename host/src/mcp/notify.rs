//! Change notifications: the tenant's list and resource changes, pushed to the clients that
//! asked for them.
//!
//! Owns: one forwarding loop ([`forward`]) for both recipients — a 2025 session (its watcher,
//! started on `notifications/initialized`, hears every list change and the resources it
//! subscribed to) and a 2026-07-28 `subscriptions/listen` stream (hears what its filter
//! accepted). A resource update is authorized again at every update, so a caller that lost
//! access stops hearing of it. Must not: keep subscriptions (`crate::sessions` does for
//! sessions; a listen stream's filter is its own).

use rmcp::RoleServer;
use rmcp::model::{
    ResourceUpdatedNotification, ResourceUpdatedNotificationParam, ServerNotification,
};
use rmcp::service::{Peer, SubscriptionSink};
use tokio::sync::broadcast::{self, error::RecvError};

use super::tenant::TenantContext;
use crate::auth::Principal;
use crate::plugins::Change;

/// Which list changes a recipient wants.
#[derive(Clone, Copy, Debug)]
pub(super) struct Lists {
    pub(super) tools: bool,
    pub(super) prompts: bool,
    pub(super) resources: bool,
}

impl Lists {
    /// Every list.
    pub(super) const ALL: Lists = Lists {
        tools: true,
        prompts: true,
        resources: true,
    };
}

/// Where notifications go.
pub(super) enum Sink {
    /// A 2025 session's stream.
    Session(Peer<RoleServer>),
    /// A 2026-07-28 `subscriptions/listen` stream.
    Listen(SubscriptionSink),
}

impl Sink {
    /// Send one notification; `false` once the recipient is gone.
    async fn send(&self, n: ServerNotification) -> bool {
        match self {
            Sink::Session(peer) => {
                peer.send_notification(n).await.is_ok() && !peer.is_transport_closed()
            }
            Sink::Listen(sink) => sink.send(n).await.is_ok(),
        }
    }
}

/// Forward the tenant's changes from `changes` to `sink` until the recipient is gone or the
/// tenant's channel closes: the lists in `wants`, and updates of resources `subscriber`
/// names a caller for who may read them now.
pub(super) async fn forward(
    tenant: &TenantContext,
    mut changes: broadcast::Receiver<Change>,
    wants: Lists,
    subscriber: impl Fn(&str) -> Option<Principal>,
    sink: Sink,
) {
    loop {
        let change = match changes.recv().await {
            Ok(c) => c,
            // Missed changes: every list may have changed.
            Err(RecvError::Lagged(_)) => Change::Lists {
                tools: true,
                prompts: true,
                resources: true,
            },
            Err(RecvError::Closed) => return,
        };
        for n in notifications(change, wants, |uri| {
            subscriber(uri).is_some_and(|who| tenant.may_read(&who, uri))
        }) {
            if !sink.send(n).await {
                return;
            }
        }
    }
}

/// The notifications `change` means for a recipient wanting `wants`, who may hear of a
/// resource update when `may_hear` says so.
fn notifications(
    change: Change,
    wants: Lists,
    may_hear: impl Fn(&str) -> bool,
) -> Vec<ServerNotification> {
    match change {
        Change::Lists {
            tools,
            prompts,
            resources,
        } => [
            (tools && wants.tools)
                .then(|| ServerNotification::ToolListChangedNotification(Default::default())),
            (prompts && wants.prompts)
                .then(|| ServerNotification::PromptListChangedNotification(Default::default())),
            (resources && wants.resources)
                .then(|| ServerNotification::ResourceListChangedNotification(Default::default())),
        ]
        .into_iter()
        .flatten()
        .collect(),
        Change::ResourceUpdated(uri) if may_hear(&uri) => {
            vec![ServerNotification::ResourceUpdatedNotification(
                ResourceUpdatedNotification::new(ResourceUpdatedNotificationParam::new(uri)),
            )]
        }
        Change::ResourceUpdated(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn methods(ns: Vec<ServerNotification>) -> Vec<String> {
        ns.into_iter()
            .map(|n| {
                serde_json::to_value(n).unwrap()["method"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn a_recipient_hears_only_the_lists_it_wants_and_the_updates_it_may_hear() {
        let change = Change::Lists {
            tools: true,
            prompts: true,
            resources: false,
        };
        let wants = Lists {
            tools: false,
            prompts: true,
            resources: true,
        };
        assert_eq!(
            methods(notifications(change, wants, |_| true)),
            ["notifications/prompts/list_changed"]
        );
        let update = || Change::ResourceUpdated("notes://a".into());
        assert_eq!(
            methods(notifications(update(), Lists::ALL, |u| u == "notes://a")),
            ["notifications/resources/updated"]
        );
        assert!(notifications(update(), Lists::ALL, |_| false).is_empty());
    }
}
