//! `[sandbox]` and `[limits]`: the engine, the pool and per-call limits.

use std::path::PathBuf;

use serde::Deserialize;

/// `sandbox.max_instances` unless set: the pool size.
pub const DEFAULT_MAX_INSTANCES: u32 = 200;
/// `sandbox.max_memory_mb` unless set: the ceiling on any plugin's memory.
pub const DEFAULT_MAX_MEMORY_MB: usize = 256;

/// `[sandbox]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxSection {
    /// Plugin instances that may exist at once, across all tenants. Default 200.
    pub max_instances: u32,
    /// Hard ceiling on any plugin's memory, in MiB. Default 256.
    pub max_memory_mb: usize,
    /// Where compiled plugins are cached across restarts (created owner-only; a directory
    /// of another user, a symlink, or one others can write turns the cache off, logged).
    /// Default `$XDG_CACHE_HOME/portcullis` or `~/.cache/portcullis`; `""` turns it off.
    pub cache_dir: Option<PathBuf>,
    /// Most MiB of compiled artifacts kept; the oldest go first. Default 1024.
    pub cache_max_mb: u64,
    /// Watch plugin files, directories and manifests, and reload on change. Default true.
    pub watch: bool,
    /// How long changes must settle before a reload, in milliseconds. Default 300.
    pub reload_debounce_ms: u64,
}

impl Default for SandboxSection {
    fn default() -> Self {
        Self {
            max_instances: DEFAULT_MAX_INSTANCES,
            max_memory_mb: DEFAULT_MAX_MEMORY_MB,
            cache_dir: None,
            cache_max_mb: 1024,
            watch: true,
            reload_debounce_ms: 300,
        }
    }
}

/// `[limits]` and `[tenant.limits]`: per-call limits for plugins. Unset keys inherit.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Deadline for one call, in milliseconds. Default 30000.
    pub deadline_ms: Option<u64>,
    /// Memory one instance may use, in MiB. Default 64.
    pub memory_mb: Option<usize>,
    /// Concurrent calls into one plugin. Default 64.
    pub max_concurrency: Option<usize>,
}

/// `$XDG_CACHE_HOME/portcullis`, else `$HOME/.cache/portcullis`.
pub(super) fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("portcullis"))
}
