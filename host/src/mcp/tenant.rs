//! What every session and request of one tenant shares: its plugins, services, quotas, tasks
//! and the key that seals its `requestState`.
//!
//! Owns: [`TenantContext`], the re-check of a resource read for notifications, and the
//! sessions waiting for a consent they were sent a URL elicitation for. Must not: hold
//! per-session state (`crate::sessions`) or per-request state (the handlers).

use std::sync::Arc;

use parking_lot::Mutex;

use super::live::SessionTable;
use super::request_state::StateSealer;
use crate::auth::Principal;
use crate::authz::{Request, TenantAuthz};
use crate::downstream::TenantServices;
use crate::plugins::{Catalog, Target, TenantPlugins};
use crate::tasks::TaskTable;
use crate::tenancy::quota::Quotas;

/// What every session of one tenant shares.
#[derive(Debug)]
pub struct TenantContext {
    /// The tenant's plugins.
    pub plugins: Arc<TenantPlugins>,
    pub(crate) sealer: Arc<StateSealer>,
    /// Every authorization decision of the tenant (and what its lists show).
    pub authz: Arc<TenantAuthz>,
    /// Where the record of every decision goes.
    pub audit: crate::audit::Audit,
    /// The tenant's downstream services.
    pub(crate) services: Arc<TenantServices>,
    /// What the tenant may consume.
    pub quotas: Arc<Quotas>,
    /// The tenant's initialized 2025 sessions, for the direct path.
    pub(crate) live: Arc<SessionTable>,
    /// The tenant's MCP Tasks.
    pub tasks: Arc<TaskTable>,
    /// 2025-11-25 sessions waiting for a consent they were sent a URL elicitation for.
    pub(crate) consents: Mutex<Vec<WaitingConsent>>,
    /// The authorization extensions the tenant honours, advertised in `initialize` and
    /// `server/discover` capabilities (client credentials, enterprise-managed).
    pub(crate) auth_extensions: Vec<&'static str>,
}

/// The OAuth client-credentials extension's identifier (machine-to-machine callers).
pub const CLIENT_CREDENTIALS_EXTENSION: &str = "io.modelcontextprotocol/oauth-client-credentials";
/// The Enterprise-Managed Authorization extension's identifier (ID-JAG).
pub const ENTERPRISE_MANAGED_EXTENSION: &str =
    "io.modelcontextprotocol/enterprise-managed-authorization";

/// A session told to consent at a URL (its `elicitationId`), until the consent completes.
pub(crate) struct WaitingConsent {
    issuer: String,
    subject: String,
    service: String,
    elicitation_id: String,
    peer: rmcp::service::Peer<rmcp::RoleServer>,
    since: std::time::Instant,
}

impl std::fmt::Debug for WaitingConsent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitingConsent")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

/// How long a session waits for a consent's completion to be told.
const CONSENT_WAIT: std::time::Duration = std::time::Duration::from_secs(600);
/// Most sessions waiting at once, per tenant.
const MAX_WAITING_CONSENTS: usize = 10_000;

impl TenantContext {
    /// A context for `plugins`, sealing `requestState` with `state_key` (random if `None`).
    pub fn new(
        plugins: Arc<TenantPlugins>,
        state_key: Option<Vec<u8>>,
        authz: Arc<TenantAuthz>,
        services: Arc<TenantServices>,
        quotas: Arc<Quotas>,
        tasks: Arc<TaskTable>,
    ) -> Self {
        Self {
            plugins,
            sealer: Arc::new(StateSealer::new(state_key)),
            authz,
            audit: crate::audit::Audit::off(),
            services,
            quotas,
            live: Arc::default(),
            tasks,
            consents: Mutex::default(),
            auth_extensions: Vec::new(),
        }
    }

    /// Record every decision to `audit`.
    #[must_use]
    pub fn with_audit(mut self, audit: crate::audit::Audit) -> Self {
        self.audit = audit;
        self
    }

    /// Advertise the authorization extensions `extensions` (the tenant honours them).
    #[must_use]
    pub fn with_auth_extensions(mut self, extensions: Vec<&'static str>) -> Self {
        self.auth_extensions = extensions;
        self
    }

    /// `peer`'s session was sent URL elicitation `elicitation_id` for `who`'s consent at
    /// `service`: tell it when that consent completes (2025-11-25).
    pub(crate) fn await_consent(
        &self,
        who: &crate::auth::Principal,
        service: &str,
        elicitation_id: &str,
        peer: rmcp::service::Peer<rmcp::RoleServer>,
    ) {
        let (Some(issuer), Some(subject)) = (who.issuer.as_deref(), who.subject.as_deref()) else {
            return;
        };
        let mut waiting = self.consents.lock();
        waiting.retain(|w| w.since.elapsed() < CONSENT_WAIT && !w.peer.is_transport_closed());
        if waiting.len() >= MAX_WAITING_CONSENTS {
            return;
        }
        waiting.push(WaitingConsent {
            issuer: issuer.into(),
            subject: subject.into(),
            service: service.into(),
            elicitation_id: elicitation_id.into(),
            peer,
            since: std::time::Instant::now(),
        });
    }

    /// The consent of `subject` (at `issuer`) for `service` completed: every session
    /// waiting for it is told (`notifications/elicitation/complete`).
    pub fn consented(&self, issuer: &str, subject: &str, service: &str) {
        let done: Vec<WaitingConsent> = {
            let mut waiting = self.consents.lock();
            let (done, rest) = std::mem::take(&mut *waiting)
                .into_iter()
                .partition(|w| w.issuer == issuer && w.subject == subject && w.service == service);
            *waiting = rest;
            done
        };
        for w in done {
            tokio::spawn(async move {
                let to = super::exchange::ToClient::Peer(w.peer);
                to.notify(
                    "portcullis",
                    "notifications/elicitation/complete",
                    serde_json::json!({"elicitationId": w.elicitation_id}),
                )
                .await;
            });
        }
    }

    /// The tenant's id.
    pub fn id(&self) -> &Arc<str> {
        &self.plugins.tenant
    }

    /// `who` (with their token `secret`) revokes their grant at `service`: whether there was
    /// one; `None` for a service the tenant does not have.
    pub async fn revoke_grant(
        &self,
        who: &crate::auth::Principal,
        secret: &crate::auth::SecretToken,
        service: &str,
    ) -> Option<Result<bool, crate::downstream::CredentialError>> {
        let user = who.subject.as_deref()?;
        self.services.revoke_grant(service, secret, user).await
    }

    /// The catalog as it is now.
    pub(super) fn catalog(&self) -> Arc<Catalog> {
        self.plugins.catalog()
    }

    /// Whether `who` may see `target` in a list (the one decision, [`TenantAuthz::decide`]).
    pub(super) fn visible(&self, catalog: &Catalog, who: &Principal, target: Target<'_>) -> bool {
        self.authz.visible(catalog, who, target)
    }

    /// Whether `who` may read `uri` now (checked again at every resource update, silently:
    /// a subscriber that lost the scope just stops hearing of it).
    pub(super) fn may_read(&self, who: &Principal, uri: &str) -> bool {
        let catalog = self.catalog();
        self.authz
            .decide(&catalog, &Request::of(who, Target::Resource(uri)))
            .is_ok()
    }
}
