//! What every session and request of one tenant shares: its plugins, services, quotas, tasks
//! and the key that seals its `requestState`.
//!
//! Owns: [`TenantContext`] and the re-check of a resource read for notifications. Must not:
//! hold per-session state (`crate::sessions`) or per-request state (the handlers).

use std::sync::Arc;

use super::live::SessionTable;
use super::request_state::StateSealer;
use crate::auth::Principal;
use crate::config::ToolsList;
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
    /// What `tools/list` shows.
    pub(crate) tools_list: ToolsList,
    /// The tenant's downstream services.
    pub(crate) services: Arc<TenantServices>,
    /// What the tenant may consume.
    pub quotas: Arc<Quotas>,
    /// The tenant's initialized 2025 sessions, for the direct path.
    pub(crate) live: Arc<SessionTable>,
    /// The tenant's MCP Tasks.
    pub tasks: Arc<TaskTable>,
}

impl TenantContext {
    /// A context for `plugins`, sealing `requestState` with `state_key` (random if `None`).
    pub fn new(
        plugins: Arc<TenantPlugins>,
        state_key: Option<Vec<u8>>,
        tools_list: ToolsList,
        services: Arc<TenantServices>,
        quotas: Arc<Quotas>,
        tasks: Arc<TaskTable>,
    ) -> Self {
        Self {
            plugins,
            sealer: Arc::new(StateSealer::new(state_key)),
            tools_list,
            services,
            quotas,
            live: Arc::default(),
            tasks,
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

    /// Whether `who` may see `target` in a list (the one decision, [`Catalog::authorize`]).
    pub(super) fn visible(&self, catalog: &Catalog, who: &Principal, target: Target<'_>) -> bool {
        catalog.visible(who, target, self.tools_list)
    }

    /// Whether `who` may read `uri` now (checked again at every resource update, silently:
    /// a subscriber that lost the scope just stops hearing of it).
    pub(super) fn may_read(&self, who: &Principal, uri: &str) -> bool {
        self.catalog()
            .authorize(who, Target::Resource(uri), self.tools_list)
            .is_ok()
    }
}
