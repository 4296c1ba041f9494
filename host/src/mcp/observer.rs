//! Where a running plugin's log and progress reports go: the request's own stream.
//!
//! Logs reach the client only at or above the level it asked for (per request `_meta` on
//! 2026-07-28, `logging/setLevel` on 2025 sessions) and always reach the gateway log at debug.
//! Progress goes out only when the client sent a progress token, echoed with its JSON type,
//! and only when it increases.

use std::sync::Arc;

use parking_lot::Mutex;
use rmcp::model::ProgressToken;
use serde_json::json;

use super::exchange::{Exchange, ToClient};
use crate::plugins::{Change, TenantPlugins};
use crate::sandbox::{BoxFuture, CallObserver, wit};
use crate::sessions::LogLevel;

/// The severity of a plugin's log record.
fn severity(level: wit::LogLevel) -> LogLevel {
    match level {
        wit::LogLevel::Debug => LogLevel::Debug,
        wit::LogLevel::Info => LogLevel::Info,
        wit::LogLevel::Notice => LogLevel::Notice,
        wit::LogLevel::Warning => LogLevel::Warning,
        wit::LogLevel::Error => LogLevel::Error,
        wit::LogLevel::Critical => LogLevel::Critical,
        wit::LogLevel::Alert => LogLevel::Alert,
        wit::LogLevel::Emergency => LogLevel::Emergency,
    }
}

/// Forwards one request's plugin reports to the client that made the request.
pub(crate) struct RequestObserver {
    to_client: ToClient,
    plugin: Arc<str>,
    /// Lowest level the client wants; `None` means no log notifications at all.
    min_level: Option<LogLevel>,
    progress_token: Option<ProgressToken>,
    last_progress: Mutex<Option<f64>>,
    plugins: Arc<TenantPlugins>,
}

impl RequestObserver {
    /// The observer of one call of `plugin` for the request `ex`, whose client wants log
    /// records at `min_level` and above (none when `None`).
    pub(super) fn for_call(
        ex: &Exchange,
        plugin: &Arc<str>,
        min_level: Option<LogLevel>,
        plugins: &Arc<TenantPlugins>,
    ) -> Arc<Self> {
        Arc::new(Self {
            to_client: ex.to_client.clone(),
            plugin: plugin.clone(),
            min_level,
            progress_token: ex.meta.get_progress_token(),
            last_progress: Mutex::new(None),
            plugins: plugins.clone(),
        })
    }

    async fn send(&self, method: &str, params: serde_json::Value) {
        self.to_client.notify(&self.plugin, method, params).await;
    }
}

impl CallObserver for RequestObserver {
    fn log(
        &self,
        level: wit::LogLevel,
        logger: Option<String>,
        message: String,
    ) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let level = severity(level);
            tracing::debug!(plugin = %self.plugin, level = level.name(), min = ?self.min_level, logger = logger.as_deref(), "plugin log: {message}");
            if self.min_level.is_some_and(|min| level >= min) {
                let mut params = json!({"level": level.name(), "data": message});
                if let Some(l) = logger {
                    params["logger"] = l.into();
                }
                self.send("notifications/message", params).await;
            }
        })
    }

    fn progress(
        &self,
        progress: f64,
        total: Option<f64>,
        message: Option<String>,
    ) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(token) = &self.progress_token else {
                return;
            };
            if !progress.is_finite() {
                return;
            }
            {
                let mut last = self.last_progress.lock();
                if last.is_some_and(|l| progress <= l) {
                    tracing::debug!(plugin = %self.plugin, progress, "dropping progress that does not increase");
                    return;
                }
                *last = Some(progress);
            }
            let mut params = json!({"progressToken": token, "progress": progress});
            if let Some(t) = total {
                params["total"] = t.into();
            }
            if let Some(m) = message {
                params["message"] = m.into();
            }
            self.send("notifications/progress", params).await;
        })
    }

    fn lists_changed(&self, kinds: wit::ListKinds) {
        self.plugins.report(Change::Lists {
            tools: kinds.contains(wit::ListKinds::TOOLS),
            prompts: kinds.contains(wit::ListKinds::PROMPTS),
            resources: kinds.contains(wit::ListKinds::RESOURCES),
        });
    }

    fn resource_updated(&self, uri: String) {
        self.plugins.report(Change::ResourceUpdated(uri));
    }
}
