//! Hot reload: watches the tenants' plugin files, directories and manifests, and rebuilds a
//! tenant's catalog when one changes.
//!
//! Owns the file watcher (notify with a debouncer) and the reload task. Events are collapsed
//! per tenant; the rebuild runs off the request path ([`build_catalog`] compiles on the
//! blocking pool), reuses unchanged plugins, keeps the previous version of a plugin whose
//! update fails, and swaps the catalog atomically, so calls in flight finish on the version
//! they started with. It must not decide what a valid plugin is: that is [`super`]'s job.
//!
//! Deploy plugins atomically (write a temporary file in the same directory, then rename it
//! over the old one). A file written in place may be seen half-written: it then fails to
//! load, the previous version keeps serving, and the write's last event reloads it whole.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use tokio_util::sync::CancellationToken;

use super::{TenantPlugins, build_catalog, manifest_path};
use crate::config::Config;
use crate::sandbox::Sandbox;

/// What one tenant entry watches: a directory of plugins, or one plugin file.
struct Watched {
    tenant: String,
    path: PathBuf,
    is_dir: bool,
}

impl Watched {
    /// Whether a change at `p` concerns this entry.
    fn concerns(&self, p: &Path) -> bool {
        let plugin_file = p.extension().is_some_and(|e| e == "wasm" || e == "toml");
        if self.is_dir {
            plugin_file && p.parent() == Some(self.path.as_path())
        } else {
            p == self.path || p == manifest_path(&self.path)
        }
    }
}

/// Keeps watching until dropped or until the shutdown token is cancelled.
pub struct PluginWatcher {
    _debouncer: Box<dyn std::any::Any + Send + Sync>,
}

impl std::fmt::Debug for PluginWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PluginWatcher")
    }
}

/// Start watching every tenant's plugin entries; reloads run on the current runtime.
pub fn start(
    sandbox: Sandbox,
    config: Arc<Config>,
    tenants: BTreeMap<String, Arc<TenantPlugins>>,
    debounce: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<PluginWatcher> {
    let watched = watch_set(&config);
    let (tx, rx) = tokio::sync::mpsc::channel::<DebounceEventResult>(64);
    let mut debouncer = new_debouncer(debounce, None, move |res| {
        let _ = tx.blocking_send(res);
    })?;
    let mut dirs = BTreeSet::new();
    for w in &watched {
        let dir = if w.is_dir {
            w.path.clone()
        } else {
            w.path.parent().map(Path::to_path_buf).unwrap_or_default()
        };
        if dirs.insert(dir.clone()) {
            debouncer
                .watch(&dir, RecursiveMode::NonRecursive)
                .map_err(|e| anyhow::anyhow!("cannot watch {}: {e}", dir.display()))?;
            tracing::info!(dir = %dir.display(), "watching for plugin changes");
        }
    }
    let reloader = Reloader {
        sandbox,
        config,
        tenants,
        watched,
    };
    tokio::spawn(reloader.run(rx, shutdown));
    Ok(PluginWatcher {
        _debouncer: Box::new(debouncer),
    })
}

/// Every tenant's plugin entries, as absolute paths.
fn watch_set(config: &Config) -> Vec<Watched> {
    let mut watched = Vec::new();
    for t in &config.tenants {
        for entry in &t.plugins {
            let path = config.resolve_path(entry);
            let is_dir = path.is_dir();
            watched.push(Watched {
                tenant: t.id.clone(),
                path: std::path::absolute(&path).unwrap_or(path),
                is_dir,
            });
        }
    }
    watched
}

/// Whether an event can change what a file holds. Opening, reading and closing a file
/// unwritten (anyone's, the gateway's own reload included) and metadata changes cannot: a
/// watcher that reloaded on them would feed itself forever.
fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    }
}

/// Rebuilds a tenant's catalog when one of its entries changes.
struct Reloader {
    sandbox: Sandbox,
    config: Arc<Config>,
    tenants: BTreeMap<String, Arc<TenantPlugins>>,
    watched: Vec<Watched>,
}

impl Reloader {
    async fn run(
        self,
        mut rx: tokio::sync::mpsc::Receiver<DebounceEventResult>,
        shutdown: CancellationToken,
    ) {
        loop {
            let events = tokio::select! {
                () = shutdown.cancelled() => return,
                ev = rx.recv() => match ev {
                    Some(Ok(events)) => events,
                    Some(Err(errors)) => {
                        for e in errors {
                            tracing::warn!("plugin watcher: {e}");
                        }
                        continue;
                    }
                    None => return,
                },
            };
            let mut due = BTreeSet::new();
            let changed = events.iter().filter(|e| changes_content(&e.kind));
            for path in changed.flat_map(|e| e.paths.iter()) {
                for w in self.watched.iter().filter(|w| w.concerns(path)) {
                    due.insert(w.tenant.clone());
                }
            }
            for id in due {
                self.reload(&id).await;
            }
        }
    }

    async fn reload(&self, id: &str) {
        let (Some(plugins), Some(tenant)) = (
            self.tenants.get(id),
            self.config.tenants.iter().find(|t| t.id == id),
        ) else {
            return;
        };
        let started = std::time::Instant::now();
        let previous = plugins.catalog();
        let catalog = build_catalog(&self.sandbox, &self.config, tenant, &previous).await;
        let failures = catalog.failures.len();
        let changed = plugins.publish(catalog);
        tracing::info!(
            tenant = %id, ms = started.elapsed().as_millis() as u64, failures,
            "plugins reloaded{}",
            if changed { "; clients notified of changed lists" } else { "" }
        );
    }
}
