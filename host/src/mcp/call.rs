//! One plugin call's environment: its limits and cancellation, the host capabilities it gets
//! (each prepared by its owner) and the context the plugin is told.
//!
//! Owns: assembling a [`CallEnv`] and a [`wit::CallContext`] from an [`Exchange`]. Must not:
//! build a capability's own state (`downstream::TenantServices::for_call` and
//! `RequestObserver::for_call` do) or decide whether the call may happen (`authz`).

use std::sync::Arc;

use super::era::{Era, client_features};
use super::exchange::Exchange;
use super::gateway::Gateway;
use super::observer::RequestObserver;
use super::record::RequestRecord;
use crate::downstream::CallOrigin;
use crate::plugins::LoadedPlugin;
use crate::sandbox::{CallEnv, CallLabels, wit};
use crate::sessions::LogLevel;

/// One round's inputs to a plugin export (cloned per round).
#[derive(Clone)]
pub(super) struct Invocation {
    pub(super) tenant: Arc<str>,
    pub(super) plugin: Arc<LoadedPlugin>,
    pub(super) env: CallEnv,
    pub(super) context: wit::CallContext,
    /// Where a failure of the sandbox is noted for the request's record.
    pub(super) trail: Arc<crate::audit::Trail>,
}

impl Gateway {
    /// Everything one call of `plugin` for the request `ex` runs with.
    pub(super) fn invocation(
        &self,
        ex: &Exchange,
        plugin: &Arc<LoadedPlugin>,
        record: &RequestRecord,
    ) -> Invocation {
        Invocation {
            tenant: self.tenant.id().clone(),
            plugin: plugin.clone(),
            env: self.call_env(ex, plugin, record),
            context: call_context(ex, plugin),
            trail: record.trail.clone(),
        }
    }

    /// The lowest log level the client wants for this request, if any.
    fn min_log_level(&self, ex: &Exchange) -> Option<LogLevel> {
        match ex.era {
            // 2026-07-28: only when this request asked, never otherwise.
            Era::Stateless => {
                let level = ex.meta.log_level()?;
                serde_json::to_value(level)
                    .ok()
                    .and_then(|v| v.as_str().and_then(LogLevel::from_name))
            }
            // 2025 sessions: what logging/setLevel chose, everything until then.
            Era::Session => Some(self.session.log_level()),
        }
    }

    fn call_env(&self, ex: &Exchange, plugin: &LoadedPlugin, record: &RequestRecord) -> CallEnv {
        let version = &plugin.sha256[..12];
        record.span.record("portcullis.plugin", &*plugin.name);
        record.span.record("portcullis.plugin.version", version);
        record.note_version(version);
        let origin = CallOrigin {
            trace_parent: ex.meta.get_traceparent().map(str::to_string),
            subject: ex.secret.clone(),
            user: ex.who.subject.clone(),
            needs: ex.needs.clone(),
            trail: record.trail.clone(),
        };
        CallEnv {
            plugin: plugin.name.clone(),
            limits: plugin.limits.clone(),
            cancel: ex.cancel.clone(),
            observer: RequestObserver::for_call(
                ex,
                &plugin.name,
                self.min_log_level(ex),
                &self.tenant.plugins,
            ),
            egress: self
                .tenant
                .services
                .for_call(&plugin.name, &plugin.services, origin),
            concurrency: plugin.concurrency.clone(),
            share: self.tenant.quotas.instances.clone(),
            labels: CallLabels {
                owner: self.tenant.id().clone(),
                version: Arc::from(version),
                parent: record.span.clone(),
            },
        }
    }
}

/// What the plugin is told about the call: the caller's identity, the request, the client.
fn call_context(ex: &Exchange, plugin: &LoadedPlugin) -> wit::CallContext {
    let who = &ex.who;
    wit::CallContext {
        tenant: who.tenant.to_string(),
        issuer: who.issuer.as_deref().map(str::to_string),
        subject: who.subject.clone(),
        client_id: who.client_id.clone(),
        scopes: who.scope_list(),
        claims: who.claims.clone(),
        request_id: ex.id_text(),
        trace_parent: ex.meta.get_traceparent().map(str::to_string),
        client: client_features(&ex.client_caps),
        config: plugin.config.clone(),
    }
}
