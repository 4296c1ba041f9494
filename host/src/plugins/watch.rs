//! Hot reload: watches the tenants' plugin files, directories and manifests, and rebuilds a
//! tenant's catalog when one changes.
//!
//! Owns the file watcher (notify with a debouncer) and the reload task. Events are collapsed
//! per tenant; the rebuild runs off the request path ([`build_catalog`] compiles on the
//! blocking pool), reuses unchanged plugins, keeps the previous version of a plugin whose
//! update fails, and swaps the catalog atomically, so calls in flight finish on the version
//! they started with. Only events that can change a file's content count (creates, writes,
//! renames, removes — not opens, reads or metadata changes, which the gateway's own reloads
//! cause); every 2 s the entries' metadata (size, modified time, inode; never their bytes)
//! is compared with what was loaded, so an event the debouncer coalesced or the kernel
//! dropped still ends in a reload. It must not decide what a valid plugin is: that is
//! [`super`]'s job.
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

/// Hears each reload: the tenant, and the catalog it now serves.
pub type OnReload = Box<dyn Fn(&str, &super::Catalog) + Send + Sync>;

/// Start watching every tenant's plugin entries; reloads run on the current runtime, and
/// `on_reload` hears each.
pub fn start(
    sandbox: Sandbox,
    config: Arc<Config>,
    tenants: BTreeMap<String, Arc<TenantPlugins>>,
    (debounce, on_reload): (Duration, OnReload),
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
    let mut reloader = Reloader {
        sandbox,
        config,
        tenants,
        watched,
        loaded: BTreeMap::new(),
        on_reload,
    };
    for id in reloader.tenants.keys().cloned().collect::<Vec<_>>() {
        let seen = reloader.fingerprint(&id);
        reloader.loaded.insert(id, seen);
    }
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

/// What a tenant's plugin entries look like on disk, by metadata only (path, size, modified
/// time, inode): reading a file does not change it, writing, renaming or removing one does.
type Fingerprint = Vec<(PathBuf, u64, Option<std::time::SystemTime>, u64)>;

/// How often the entries are compared with what was loaded, in case an event was lost
/// (coalesced by the debouncer, or dropped by the kernel under load). Metadata only.
const RECHECK: Duration = Duration::from_secs(2);

/// Rebuilds a tenant's catalog when one of its entries changes.
struct Reloader {
    sandbox: Sandbox,
    config: Arc<Config>,
    tenants: BTreeMap<String, Arc<TenantPlugins>>,
    watched: Vec<Watched>,
    /// Each tenant's entries as they were when its catalog was last built.
    loaded: BTreeMap<String, Fingerprint>,
    on_reload: OnReload,
}

impl Reloader {
    /// The metadata of every file `tenant`'s entries name.
    fn fingerprint(&self, tenant: &str) -> Fingerprint {
        let mut files: Vec<PathBuf> = Vec::new();
        for w in self.watched.iter().filter(|w| w.tenant == tenant) {
            if w.is_dir {
                if let Ok(entries) = std::fs::read_dir(&w.path) {
                    files.extend(entries.filter_map(Result::ok).map(|e| e.path()));
                }
            } else {
                files.extend([w.path.clone(), manifest_path(&w.path)]);
            }
        }
        let mut seen: Fingerprint = files
            .into_iter()
            .filter(|p| self.watched.iter().any(|w| w.concerns(p)))
            .filter_map(|p| {
                let meta = std::fs::metadata(&p).ok()?;
                #[cfg(unix)]
                let ino = std::os::unix::fs::MetadataExt::ino(&meta);
                #[cfg(not(unix))]
                let ino = 0;
                Some((p, meta.len(), meta.modified().ok(), ino))
            })
            .collect();
        seen.sort();
        seen
    }

    async fn run(
        mut self,
        mut rx: tokio::sync::mpsc::Receiver<DebounceEventResult>,
        shutdown: CancellationToken,
    ) {
        let mut recheck = tokio::time::interval(RECHECK);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let events = tokio::select! {
                () = shutdown.cancelled() => return,
                _ = recheck.tick() => {
                    let ids: Vec<String> = self.tenants.keys().cloned().collect();
                    for id in ids {
                        if self.loaded.get(&id) != Some(&self.fingerprint(&id)) {
                            self.reload(&id).await;
                        }
                    }
                    continue;
                }
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

    async fn reload(&mut self, id: &str) {
        let (Some(plugins), Some(tenant)) = (
            self.tenants.get(id).cloned(),
            self.config.tenants.iter().find(|t| t.id == id).cloned(),
        ) else {
            return;
        };
        // Taken before reading: a change during the build shows at the next recheck.
        let seen = self.fingerprint(id);
        self.loaded.insert(id.to_string(), seen);
        let tenant = &tenant;
        let started = std::time::Instant::now();
        let previous = plugins.catalog();
        let catalog = build_catalog(&self.sandbox, &self.config, tenant, &previous).await;
        let failures = catalog.failures.len();
        let changed = plugins.publish(catalog);
        (self.on_reload)(id, &plugins.catalog());
        tracing::info!(
            tenant = %id, ms = started.elapsed().as_millis() as u64, failures,
            "plugins reloaded{}",
            if changed { "; clients notified of changed lists" } else { "" }
        );
    }
}
